// Entry point: load the bridge's settings, restore a kept wallet, then route by the URL
// hash (#/market/<pair>, #/wallet, #/orders, #/order/<id>) so every view has a link and
// the Back button works. Only one view (and one live subscription) is active at a time.

import {api, ORDER_ID} from './api.js';
import {byId, el, replace} from './dom.js';
import {unsubscribe} from './live.js';
import {initMarket, showMarket} from './market.js';
import {initMyOrders, showMyOrders} from './myorders.js';
import {rerenderOrder, showOrder} from './order.js';
import {onWalletChange, state} from './state.js';
import {initTrade, refreshCreateForm} from './trade.js';
import {restoreWallet, showWallet} from './walletview.js';

const VIEWS = ['market', 'wallet', 'orders', 'order'];
let currentView = null;

function route() {
  const [, name = 'market', arg = ''] = location.hash.match(/^#\/([a-z]+)\/?(.*)$/) || [];
  const param = safeDecode(arg);
  let view = VIEWS.includes(name) ? name : 'market';
  if (view === 'order' && !ORDER_ID.test(param)) view = 'market';
  for (const v of VIEWS) byId(`view-${v}`).hidden = v !== view;
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === view) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  unsubscribe();
  if (view === 'market') showMarket(param);
  if (view === 'wallet') showWallet();
  if (view === 'orders') showMyOrders();
  if (view === 'order') showOrder(param);
  if (currentView !== null) { // move focus to the new view's heading (not on first load)
    const heading = byId(`view-${view}`).querySelector('h1');
    heading?.focus();
  }
  currentView = view;
  document.title = `${byId(`view-${view}`).querySelector('h1').textContent} · OTC Bridge`;
}

function safeDecode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return '';
  }
}

async function start() {
  try {
    state.config = await api.pageConfig();
  } catch (err) {
    replace(byId('loading'), el('span', {class: 'error', role: 'alert'},
      `The bridge did not answer (${err.message}). Reload the page when it is running.`));
    return;
  }
  byId('loading').hidden = true;
  initMarket();
  initTrade();
  initMyOrders();
  await restoreWallet();
  onWalletChange(() => {
    refreshCreateForm();
    if (currentView === 'order') rerenderOrder();
    if (currentView === 'orders') showMyOrders();
  });
  window.addEventListener('hashchange', route);
  route();
}

start();
