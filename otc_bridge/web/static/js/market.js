// The market view: pair selector, summary (last price, spread, best bid/ask, 24 h
// volume), depth chart, aggregated book, open orders (with a Take button) and recent
// trades. Refreshed from the stream (any order event on the pair) or by polling.

import {api} from './api.js';
import {byId, el, replace, short} from './dom.js';
import {drawDepth} from './depth.js';
import {subscribe} from './live.js';
import {formatUnits, PRICE_DECIMALS, RTC_DECIMALS} from './money.js';
import {asset, emptyRow, state} from './state.js';
import {deadline, localDate} from './time.js';
import {refreshCreateForm} from './trade.js';

const price = (nano) => formatUnits(BigInt(nano), PRICE_DECIMALS);
const rtc = (micro) => formatUnits(BigInt(micro), RTC_DECIMALS);
let refreshTimer = null;

export function initMarket() {
  const select = byId('pair-select');
  for (const pair of Object.keys(state.config.pairs)) select.append(el('option', {value: pair}, pair));
  select.value = state.pair;
  select.addEventListener('change', () => {
    location.hash = `#/market/${encodeURIComponent(select.value)}`;
  });
}

/** Show the market for ``pair`` (called by the router). */
export function showMarket(pair) {
  if (pair && state.config.pairs[pair]) state.pair = pair;
  byId('pair-select').value = state.pair;
  refreshCreateForm();
  subscribe({pair: state.pair}, {onOrder: () => scheduleRefresh(), poll: refresh, pollMs: 10_000});
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 250); // coalesce bursts of events into one reload
}

async function refresh() {
  const pair = state.pair;
  const symbol = asset(pair).symbol;
  const [book, open, trades] = await Promise.allSettled([api.orderbook(pair), api.openOrders(pair), api.trades(pair)]);
  if (pair !== state.pair) return; // the person switched pairs meanwhile
  if (book.status === 'fulfilled') {
    renderStats(book.value, symbol);
    renderLevels(byId('asks-table'), book.value.asks, 'ask');
    renderLevels(byId('bids-table'), book.value.bids, 'bid');
    drawDepth(byId('depth-chart'), book.value, symbol);
  } else {
    replace(byId('market-stats'), el('p', {class: 'error'}, `Order book unavailable: ${book.reason.message}`));
  }
  renderOpen(open, symbol);
  renderTrades(trades, symbol);
}

function stat(label, value) {
  return el('div', {}, el('dt', {}, label), el('dd', {}, value));
}

function renderStats(book, symbol) {
  const bestAsk = book.asks[0];
  const bestBid = book.bids[0];
  replace(byId('market-stats'),
    stat('Last price', book.last_price_nano_quote != null ? `${price(book.last_price_nano_quote)} ${symbol}` : 'no trades yet'),
    stat('Best bid', bestBid ? `${price(bestBid.price_per_rtc_nano_quote)} ${symbol}` : '—'),
    stat('Best ask', bestAsk ? `${price(bestAsk.price_per_rtc_nano_quote)} ${symbol}` : '—'),
    stat('Spread', book.spread_nano_quote != null ? `${price(book.spread_nano_quote)} ${symbol}` : '—'),
    stat('24 h volume', `${rtc(book.volume_24h_micro_rtc)} RTC (${book.trades_24h} trade${book.trades_24h === 1 ? '' : 's'})`));
}

function renderLevels(table, levels, kind) {
  const body = table.tBodies[0];
  if (!levels.length) {
    replace(body, emptyRow(4, kind === 'ask' ? 'No sellers' : 'No buyers'));
    return;
  }
  let depth = 0n;
  replace(body, levels.map((level) => {
    depth += BigInt(level.total_micro_rtc);
    return el('tr', {class: kind},
      el('td', {class: 'num'}, price(level.price_per_rtc_nano_quote)),
      el('td', {class: 'num'}, rtc(level.total_micro_rtc)),
      el('td', {class: 'num'}, rtc(depth)),
      el('td', {class: 'num count'}, String(level.order_count)));
  }));
}

function renderOpen(result, symbol) {
  const body = byId('open-table').tBodies[0];
  if (result.status === 'rejected') {
    replace(body, emptyRow(7, `Open orders unavailable: ${result.reason.message}`));
    return;
  }
  const orders = result.value.orders;
  if (!orders.length) {
    replace(body, emptyRow(7, 'No open orders on this pair. Place the first one above.'));
    return;
  }
  const me = state.wallet?.address;
  replace(body, orders.map((o) => {
    const mine = me && o.maker_wallet === me;
    const action = mine ? 'View' : o.side === 'sell' ? 'Buy' : 'Sell';
    const what = `${action === 'View' ? 'your' : ''} ${o.side} order of ${rtc(o.amount_micro_rtc)} RTC at ${price(o.price_per_rtc_nano_quote)}`;
    return el('tr', {class: o.side === 'sell' ? 'ask' : 'bid'},
      el('td', {dataset: {label: 'Side'}}, el('span', {class: `side ${o.side}`}, o.side === 'sell' ? 'Sell' : 'Buy')),
      el('td', {class: 'num', dataset: {label: 'Price'}}, `${price(o.price_per_rtc_nano_quote)}`),
      el('td', {class: 'num', dataset: {label: 'Amount'}}, `${rtc(o.amount_micro_rtc)} RTC`),
      el('td', {class: 'num', dataset: {label: 'Total'}}, `${formatUnits(BigInt(o.total_quote_nano), PRICE_DECIMALS)} ${symbol}`),
      el('td', {dataset: {label: 'Expires'}}, deadline(o.expires_at, 'expired')),
      el('td', {class: 'mono', title: o.maker_wallet, dataset: {label: 'Maker'}}, mine ? 'you' : short(o.maker_wallet)),
      el('td', {class: 'action-cell'}, el('a', {href: `#/order/${encodeURIComponent(o.order_id)}`, class: 'button small',
        'aria-label': `${action}: ${what.trim()}`}, action)));
  }));
}

function renderTrades(result, symbol) {
  const body = byId('trades-table').tBodies[0];
  if (result.status === 'rejected') {
    replace(body, emptyRow(5, `Trades unavailable: ${result.reason.message}`));
    return;
  }
  const trades = result.value.trades;
  if (!trades.length) {
    replace(body, emptyRow(5, 'No trades yet on this pair.'));
    return;
  }
  replace(body, trades.map((t) => el('tr', {},
    el('td', {dataset: {label: 'Time'}}, el('time', {datetime: new Date(t.completed_at * 1000).toISOString()}, localDate(t.completed_at))),
    el('td', {dataset: {label: 'Side'}}, t.side === 'sell' ? 'Sell order' : 'Buy order'),
    el('td', {class: 'num', dataset: {label: 'Price'}}, price(t.price_per_rtc_nano_quote)),
    el('td', {class: 'num', dataset: {label: 'Amount'}}, `${rtc(t.amount_micro_rtc)} RTC`),
    el('td', {class: 'num', dataset: {label: 'Total'}}, `${formatUnits(BigInt(t.total_quote_nano), PRICE_DECIMALS)} ${symbol}`))));
}
