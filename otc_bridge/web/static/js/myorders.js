// "My orders": every order of this wallet as maker or taker, any status, newest first
// (GET /api/wallets/<wallet>/orders), with what each needs next. Live from the stream
// (wallet=...) or polling; a row is replaced only by a version that is not older.

import {api} from './api.js';
import {byId, el, replace} from './dom.js';
import {fresher, subscribe, unsubscribe} from './live.js';
import {formatQuote, formatRtc, formatUnits, PRICE_DECIMALS} from './money.js';
import {roleOf, shortHint, STATUS_LABELS} from './status.js';
import {state} from './state.js';
import {deadline, localDate} from './time.js';

let shown = new Map(); // order_id -> order
let listWallet = null;

export function initMyOrders() {
  const select = byId('orders-status');
  select.append(el('option', {value: ''}, 'Any status'));
  for (const [value, label] of Object.entries(STATUS_LABELS)) select.append(el('option', {value}, label));
  select.addEventListener('change', () => showMyOrders());
}

export function showMyOrders() {
  const body = byId('orders-body');
  const wallet = state.wallet;
  shown = new Map();
  if (!wallet) {
    replace(body, el('p', {}, 'No wallet yet. ', el('a', {href: '#/wallet'}, 'Create or import a wallet'),
      ' to trade; its orders appear here.'));
    unsubscribe();
    return;
  }
  listWallet = wallet.address;
  replace(body, el('p', {}, 'Loading your orders…'));
  const poll = () => load(wallet.address).catch((err) => {
    replace(body, el('p', {class: 'error', role: 'alert'}, `Could not load your orders: ${err.message}`));
  });
  subscribe({wallet: wallet.address}, {
    onOrder: (data) => {
      const old = shown.get(data.order.order_id);
      if (old && !fresher(data.order, old)) return; // stale update: dropped
      shown.set(data.order.order_id, data.order);
      render();
    },
    poll, pollMs: 5000,
  });
}

async function load(address) {
  const status = byId('orders-status').value;
  const res = await api.walletOrders(address, status);
  if (address !== listWallet) return;
  const next = new Map();
  for (const order of res.orders) {
    const old = shown.get(order.order_id);
    next.set(order.order_id, old && !fresher(order, old) ? old : order);
  }
  shown = next;
  render(res.total);
}

function render(total) {
  const body = byId('orders-body');
  const me = state.wallet?.address;
  const status = byId('orders-status').value;
  const orders = [...shown.values()].filter((o) => !status || o.status === status)
    .sort((a, b) => b.created_at - a.created_at || (a.order_id < b.order_id ? 1 : -1));
  if (!orders.length) {
    replace(body, el('p', {class: 'empty'}, status ? 'No orders with this status.' : 'No orders yet. Place one from the Market page.'));
    return;
  }
  const rows = orders.map((o) => {
    const r = roleOf(o, me);
    const role = r.seller ? 'You sell' : r.buyer ? 'You buy' : '—';
    const due = o.status === 'matched' && o.settle_by ? deadline(o.settle_by, 'deadline passed')
      : o.status === 'open' ? deadline(o.expires_at, 'expired') : '';
    return el('tr', {},
      el('td', {dataset: {label: 'Order'}}, el('a', {href: `#/order/${encodeURIComponent(o.order_id)}`, class: 'mono'}, o.order_id)),
      el('td', {dataset: {label: 'Your role'}}, `${role} (${o.side} order${r.maker ? ', yours' : ', taken'})`),
      el('td', {dataset: {label: 'Pair'}}, o.pair),
      el('td', {class: 'num', dataset: {label: 'Amount'}}, formatRtc(BigInt(o.amount_micro_rtc))),
      el('td', {class: 'num', dataset: {label: 'Price'}}, `${formatUnits(BigInt(o.price_per_rtc_nano_quote), PRICE_DECIMALS)}`),
      el('td', {class: 'num', dataset: {label: 'Total'}}, formatQuote(BigInt(o.total_quote_nano), o.quote_currency)),
      el('td', {dataset: {label: 'Status'}}, el('span', {class: `badge status-${o.status}`}, STATUS_LABELS[o.status] || o.status),
        shortHint(o, me) && el('span', {class: 'hint block'}, shortHint(o, me))),
      el('td', {dataset: {label: due ? 'Deadline' : 'Created'}}, due || localDate(o.created_at)));
  });
  replace(body,
    el('div', {class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Your orders'},
      el('table', {id: 'my-orders-table', class: 'cards'},
        el('thead', {}, el('tr', {}, ['Order', 'Your role', 'Pair', 'Amount', 'Price', 'Total', 'Status', 'Deadline / created']
          .map((h) => el('th', {scope: 'col'}, h)))),
        el('tbody', {}, rows))),
    total !== undefined && total > orders.length ? el('p', {class: 'hint'}, `Showing the newest ${orders.length} of ${total}.`) : null);
}
