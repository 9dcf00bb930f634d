// The depth chart: cumulative RTC wanted (bids, left, green) and offered (asks, right,
// red) against price, drawn as SVG with DOM calls (no innerHTML, no inline style, so the
// strict CSP holds). Geometry uses plain numbers; money shown in labels comes from the
// exact integers. The figure carries a text summary for screen readers.

import {el, svg, replace} from './dom.js';
import {formatUnits, PRICE_DECIMALS, RTC_DECIMALS} from './money.js';

const H = 220;
const PAD = {left: 48, right: 12, top: 12, bottom: 30};

/** Cumulative steps [{price, depth}] from levels best-first (Numbers for plotting only). */
function cumulative(levels) {
  let depth = 0n;
  return levels.map((level) => {
    depth += BigInt(level.total_micro_rtc);
    return {price: Number(level.price_per_rtc_nano_quote), depth, priceNano: level.price_per_rtc_nano_quote};
  });
}

/** Draw into ``figure`` the book {bids, asks} for quote ``symbol``. */
export function drawDepth(figure, book, symbol) {
  // Draw at the figure's own width so labels keep their size on a phone.
  const W = Math.max(300, Math.min(900, Math.round(figure.clientWidth || 600)));
  const bids = cumulative(book.bids || []);
  const asks = cumulative(book.asks || []);
  if (!bids.length && !asks.length) {
    replace(figure, el('p', {class: 'empty'}, 'No open orders on this pair yet: the depth chart appears when there are some.'));
    return;
  }
  const prices = [...bids, ...asks].map((p) => p.price);
  let lo = Math.min(...prices);
  let hi = Math.max(...prices);
  const margin = (hi - lo) * 0.08 || hi * 0.1 || 1;
  lo = Math.max(0, lo - margin);
  hi += margin;
  const maxDepth = [...bids, ...asks].reduce((m, p) => (p.depth > m ? p.depth : m), 0n);
  const x = (price) => PAD.left + ((price - lo) / (hi - lo)) * (W - PAD.left - PAD.right);
  const y = (depth) => H - PAD.bottom - (Number(depth) / Number(maxDepth || 1n)) * (H - PAD.top - PAD.bottom);
  const base = y(0n);

  // Bids: from the best bid leftwards, depth steps up at each lower price.
  const bidPath = stepPath(bids, x, y, base, x(lo));
  const askPath = stepPath(asks, x, y, base, x(hi));
  const fmtPrice = (nano) => formatUnits(BigInt(nano), PRICE_DECIMALS);
  const fmtDepth = (micro) => formatUnits(micro, RTC_DECIMALS);

  const chart = svg('svg', {viewBox: `0 0 ${W} ${H}`, class: 'depth', role: 'img', 'aria-labelledby': 'depth-desc', focusable: 'false'},
  svg('line', {x1: PAD.left, y1: base, x2: W - PAD.right, y2: base, class: 'axis'}),
  svg('line', {x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: base, class: 'axis'}),
  bidPath && svg('path', {d: bidPath, class: 'bids-area'}),
  askPath && svg('path', {d: askPath, class: 'asks-area'}),
  svg('text', {x: PAD.left - 4, y: PAD.top + 10, class: 'label end'}, fmtDepth(maxDepth)),
  svg('text', {x: PAD.left - 4, y: base, class: 'label end'}, '0'),
  ...axisPrices(lo, hi, x, W).map(({px, text}) => svg('text', {x: px, y: H - 10, class: 'label middle'}, text)),
  );
  const parts = [];
  if (bids.length) parts.push(`bids from ${fmtPrice(bids[0].priceNano)} down to ${fmtPrice(bids.at(-1).priceNano)} ${symbol}, ${fmtDepth(bids.at(-1).depth)} RTC in total`);
  if (asks.length) parts.push(`asks from ${fmtPrice(asks[0].priceNano)} up to ${fmtPrice(asks.at(-1).priceNano)} ${symbol}, ${fmtDepth(asks.at(-1).depth)} RTC in total`);
  const caption = el('figcaption', {id: 'depth-desc'}, `Depth chart (cumulative RTC by price in ${symbol}): ${parts.join('; ')}.`);
  const legend = el('p', {class: 'legend', 'aria-hidden': 'true'},
    el('span', {class: 'key bids'}), ' bids  ', el('span', {class: 'key asks'}), ' asks');
  replace(figure, chart, legend, caption);
}

function stepPath(points, x, y, base, edge) {
  if (!points.length) return null;
  let d = `M${x(points[0].price)},${base}`;
  let prev = null;
  for (const p of points) {
    if (prev !== null) d += ` L${x(p.price)},${y(prev)}`;
    d += ` L${x(p.price)},${y(p.depth)}`;
    prev = p.depth;
  }
  d += ` L${edge},${y(prev)} L${edge},${base} Z`;
  return d;
}

/** Three price ticks along the x axis (display only). */
function axisPrices(lo, hi, x, width) {
  // Enough decimals to tell the ticks apart (prices are nano-quote here; display only).
  const span = (hi - lo) / 1e9;
  const digits = Math.min(9, Math.max(2, Math.ceil(-Math.log10(span || 1)) + 1));
  const fractions = width < 420 ? [0.15, 0.85] : [0.1, 0.5, 0.9];
  return fractions.map((f) => lo + (hi - lo) * f).map((nano) => ({
    px: x(nano), text: (nano / 1e9).toFixed(digits),
  }));
}
