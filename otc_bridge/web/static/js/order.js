// One order: status in plain words, deadlines with countdowns, settlement instructions,
// the quote leg on an EVM chain (quoteleg.js: lock, reveal, refund), the actions this
// person can take (actions.js) and the event timeline. Kept live from
// the stream (or polling); an update older than the order_version on screen is dropped.

import {api} from './api.js';
import {byId, copyButton, el, replace, short} from './dom.js';
import {fresher, subscribe} from './live.js';
import {formatQuote, formatRtc, formatUnits, PRICE_DECIMALS} from './money.js';
import {explain, roleOf, STATUS_LABELS, causeText} from './status.js';
import {bridgeClaims, notify, state} from './state.js';
import {deadline, duration, localDate} from './time.js';
import {renderActions} from './actions.js';
import {renderQuoteLeg} from './quoteleg.js';

const INSTRUCTION_STATUSES = new Set(['matched', 'settling', 'payout_pending', 'settlement_recovery', 'completed']);
let view = null; // {id, order, instructions, events, lastEventId, parts}

/** Show order ``id`` (called by the router). */
export async function showOrder(id) {
  const body = byId('order-body');
  const parts = {
    status: el('section', {class: 'card status-card', 'aria-labelledby': 'order-status-title'}),
    instructions: el('section', {class: 'card', hidden: true, 'aria-labelledby': 'instr-title'}),
    quote: el('section', {class: 'card action', hidden: true, 'aria-labelledby': 'quote-title', id: 'quote-leg'}),
    actions: el('div', {class: 'actions-area'}),
    facts: el('section', {class: 'card', 'aria-labelledby': 'facts-title'}),
    timeline: el('section', {class: 'card', 'aria-labelledby': 'timeline-title'}),
  };
  view = {id, order: null, instructions: null, events: [], lastEventId: 0, parts, actionsKey: null};
  replace(byId('order-title'), `Order ${id}`);
  replace(body, el('p', {}, 'Loading the order…'));
  try {
    await reload(view);
  } catch (err) {
    replace(body, el('p', {class: 'error', role: 'alert'},
      err.status === 404 ? `No order ${id} on this bridge.` : `Could not load the order: ${err.message}`));
    return;
  }
  replace(body, parts.status, parts.instructions, parts.quote, parts.actions, parts.facts, parts.timeline);
  render(view);
  subscribe({order_id: id}, {
    onOrder: (data) => {
      if (view?.id !== id) return;
      accept(view, data.order, undefined);
      // The stream carries transitions only; fetch every event since the last one shown
      // (node calls included) rather than append this one and skip the ones in between.
      const v = view;
      api.events(id, v.lastEventId).then((res) => addEvents(v, res.events), () => {});
    },
    poll: () => reload(view).catch(() => {}),
  });
}

/** Fetch the order, its instructions and new events; apply only if not older. */
async function reload(v) {
  const [detail, events] = await Promise.all([api.order(v.id), api.events(v.id, v.lastEventId)]);
  if (v !== view) return;
  addEvents(v, events.events);
  accept(v, detail.order, detail.settlement_instructions || null);
}

function addEvents(v, events) {
  const fresh = events.filter((e) => e.event_id > v.lastEventId);
  if (!fresh.length) return;
  v.events.push(...fresh);
  v.events.sort((a, b) => a.event_id - b.event_id);
  v.lastEventId = v.events.at(-1).event_id;
  if (v.order) renderTimeline(v);
}

/**
 * Take ``order`` (from a GET, an action's response or the stream) if it is not older than
 * what is shown. ``instructions`` undefined means "this source does not carry them".
 */
export function accept(v, order, instructions) {
  v = v || view;
  if (!v || !order || order.order_id !== v.id) return;
  if (!fresher(order, v.order)) return; // stale: never show an older state
  const changed = !v.order || order.order_version !== v.order.order_version;
  if (v.order && order.status !== v.order.status) {
    notify(`Order ${order.order_id} is now: ${STATUS_LABELS[order.status] || order.status}.`);
  }
  v.order = order;
  if (instructions !== undefined) v.instructions = instructions;
  if (INSTRUCTION_STATUSES.has(order.status) && !v.instructions && instructions === undefined) {
    reload(v).catch(() => {}); // the stream carries the order only; fetch the instructions
  }
  if (changed || instructions !== undefined) render(v);
}

/** Passed to actions.js as its onResponse: an action's response (order fields at the top level). */
export function acceptResponse(response) {
  accept(view, response, response.settlement_instructions);
  if (view) reload(view).catch(() => {}); // pick up the events the action wrote
}

function render(v) {
  if (!v.order || !v.parts.status.isConnected) return;
  renderStatus(v);
  renderInstructions(v);
  renderQuoteLeg(v.parts.quote, v.order, v.instructions, state.wallet,
    {onResponse: acceptResponse, refresh: () => { if (v === view) render(v); }});
  renderFacts(v);
  renderTimeline(v);
  const key = `${v.order.status}|${state.wallet?.address || ''}`;
  if (key !== v.actionsKey) { // forms are rebuilt only when what is possible changes
    v.actionsKey = key;
    renderActions(v.parts.actions, v.order, state.wallet, acceptResponse);
  }
}

function renderStatus(v) {
  const o = v.order;
  const {now, next} = explain(o, state.wallet?.address);
  const r = roleOf(o, state.wallet?.address);
  const who = r.seller ? 'You are the RTC seller.' : r.buyer ? 'You are the RTC buyer.' : 'You are not a party to this order.';
  replace(v.parts.status,
    el('h2', {id: 'order-status-title'}, 'Status: ', el('span', {class: `badge status-${o.status}`, id: 'order-status',
      dataset: {status: o.status, version: String(o.order_version)}}, STATUS_LABELS[o.status] || o.status)),
    el('p', {class: 'what'}, el('strong', {}, o.side === 'sell' ? 'Sell order' : 'Buy order'),
      `: ${formatRtc(BigInt(o.amount_micro_rtc))} at ${formatUnits(BigInt(o.price_per_rtc_nano_quote), PRICE_DECIMALS)} ${o.quote_currency} per RTC. ${who}`),
    el('p', {class: 'now'}, now),
    el('p', {class: 'next'}, el('strong', {}, 'What to do next: '), next),
    // The escrow watch saw the job moved on the node by someone else: both traders are told.
    o.escrow_notice ? el('p', {class: 'warning', id: 'escrow-notice', role: 'alert'}, o.escrow_notice) : null);
}

function fact(label, ...value) {
  return [el('dt', {}, label), el('dd', {}, ...value)];
}

function wallet(address) {
  if (!address) return '—';
  const mine = state.wallet && address === state.wallet.address;
  return el('span', {class: 'mono wrap'}, address, mine ? ' (you)' : '');
}

function renderFacts(v) {
  const o = v.order;
  const rows = [
    fact('Order id', el('span', {class: 'mono'}, o.order_id)),
    fact('Pair', o.pair),
    fact('Amount', formatRtc(BigInt(o.amount_micro_rtc))),
    fact('Price', `${formatUnits(BigInt(o.price_per_rtc_nano_quote), PRICE_DECIMALS)} ${o.quote_currency} per RTC`),
    fact('Total', formatQuote(BigInt(o.total_quote_nano), o.quote_currency)),
    fact('Maker', wallet(o.maker_wallet)),
    o.maker_eth_address && fact(`Maker's ${o.quote_currency} address`, el('span', {class: 'mono wrap'}, o.maker_eth_address)),
    fact('Taker', wallet(o.taker_wallet)),
    o.taker_eth_address && fact(`Taker's ${o.quote_currency} address`, el('span', {class: 'mono wrap'}, o.taker_eth_address)),
    fact('Created', localDate(o.created_at)),
    fact('Expires', o.status === 'open' ? deadline(o.expires_at, 'expired') : localDate(o.expires_at)),
    o.matched_at && fact('Matched', localDate(o.matched_at)),
    o.settle_by && fact('Settle by', o.status === 'matched' ? deadline(o.settle_by, 'deadline passed') : localDate(o.settle_by)),
    o.htlc_hash && fact('HTLC hash (sha256)', el('span', {class: 'mono wrap'}, o.htlc_hash)),
    o.escrow_job_id && fact('Escrow job', el('span', {class: 'mono'}, o.escrow_job_id)),
    o.settlement_tx && fact('Quote transaction', el('span', {class: 'mono wrap'}, o.settlement_tx)),
    o.payout_tx_hash && fact('Payout transaction', el('span', {class: 'mono wrap'}, o.payout_tx_hash)),
    o.end_cause && fact('Ended because', causeText(o.end_cause)),
    o.htlc_secret && fact('Secret (now public)', el('span', {class: 'mono wrap', id: 'revealed-secret'}, o.htlc_secret)),
    fact('Version', String(o.order_version)),
  ];
  replace(v.parts.facts, el('h2', {id: 'facts-title'}, 'Details'), el('dl', {class: 'facts'}, rows));
}

function renderInstructions(v) {
  const ins = v.instructions;
  const part = v.parts.instructions;
  part.hidden = !ins;
  if (!ins) return;
  const r = roleOf(v.order, state.wallet?.address);
  // Countdowns only while they matter (matched); afterwards the dates alone.
  const when = (ts, passed) => (v.order.status === 'matched' ? deadline(ts, passed) : localDate(ts));
  const units = el('span', {class: 'mono'}, ins.total_quote_base_units);
  const hash = el('span', {class: 'mono wrap'}, ins.htlc_hash);
  const payTo = el('span', {class: 'mono wrap'}, ins.pay_to_address || '—');
  replace(part,
    el('h2', {id: 'instr-title'}, v.order.status !== 'matched' ? `Settlement terms (HTLC on the ${ins.currency} chain)`
      : r.buyer ? `What you lock on the ${ins.currency} chain` : `What the buyer locks on the ${ins.currency} chain`),
    el('dl', {class: 'facts instructions'},
      fact('Amount to lock', el('strong', {}, `${formatUnits(BigInt(ins.total_quote_base_units), ins.quote_decimals)} ${ins.currency}`)),
      fact('In base units', units, ` (${ins.quote_decimals} decimals) `, copyButton('Copy amount', () => ins.total_quote_base_units)),
      fact(`Hashlock (${ins.hash_algorithm || 'sha256'})`, hash, ' ', copyButton('Copy hash', () => ins.htlc_hash)),
      fact('Pay to (the RTC seller)', payTo, ' ', ins.pay_to_address && copyButton('Copy address', () => ins.pay_to_address)),
      fact('RTC goes to', wallet(ins.rtc_recipient)),
      ...chainFacts(ins, when),
      fact('Settle by', when(ins.settle_by, 'deadline passed'),
        el('span', {class: 'hint block'}, ins.preimage_holder === 'buyer'
          ? 'The preimage must be revealed here before this, or the match is unwound and the escrow refunded.'
          : 'The secret must be entered here before this, or the match is unwound and the escrow refunded.'))),
    ins.warning ? el('p', {class: 'warning', id: 'instr-warning'}, ins.warning) : null,
    el('p', {class: 'hint'}, ins.preimage_holder === 'buyer'
      ? `Buyer-held: the RTC buyer made the preimage and locks under its sha256. The bridge verifies the lock on chain, releases the RTC on the buyer's signed reveal, then ${bridgeClaims()
        ? 'claims the HTLC for the seller.' : 'shows the preimage to the seller, who claims the HTLC.'}`
      : ins.note || ''));
}

/** The timelock rules, and for a lock verified on chain the contract, token and lock-by time. */
function chainFacts(ins, when) {
  const timelock = ins.preimage_holder === 'buyer' && ins.htlc_timelock_min_after_lock
    ? [fact('HTLC timelock', `${duration(ins.htlc_timelock_min_after_lock)} to ${duration(ins.htlc_timelock_max_after_lock)} `
      + 'after the block of the lock (the buyer\'s page picks it when it locks)')]
    : [fact('HTLC timelock: not before', when(ins.htlc_timelock_min, 'now allowed')),
      fact('HTLC timelock: not after', when(ins.htlc_timelock_max, 'passed'))];
  if (ins.quote_verification !== 'evm') return timelock;
  return [...timelock,
    fact('HTLC contract', el('span', {class: 'mono wrap'}, ins.htlc_contract), ` (chain id ${ins.chain_id})`),
    ins.token_contract && fact('Token contract', el('span', {class: 'mono wrap'}, ins.token_contract)),
    ins.lock_by && fact('Lock mined by', when(ins.lock_by, 'passed'),
      el('span', {class: 'hint block'}, 'A lock mined later does not count, and the match is unwound.'))];
}

function renderTimeline(v) {
  const me = state.wallet?.address;
  const items = v.events.map((e) => el('li', {},
    el('time', {datetime: new Date(e.created_at * 1000).toISOString()}, localDate(e.created_at)), ' ',
    el('span', {class: 'kind'}, e.kind), ' ',
    e.to_status ? el('span', {}, `${e.from_status ? `${e.from_status} → ` : ''}${e.to_status}`) : '', ' ',
    el('span', {class: 'reason'}, e.reason || ''),
    e.node_outcome ? el('span', {class: 'hint'}, ` [node ${e.node_endpoint || ''}: ${e.node_outcome}]`) : '',
    el('span', {class: 'actor hint', title: e.actor || ''}, ` by ${e.actor === me ? 'you' : short(e.actor || 'unknown', 12, 4)}`),
    el('span', {class: 'hint'}, ` (v${e.order_version})`)));
  replace(v.parts.timeline, el('h2', {id: 'timeline-title'}, 'Timeline'),
    items.length ? el('ol', {class: 'timeline'}, items) : el('p', {class: 'empty'}, 'No events yet.'));
}

/** Re-render with the same data (e.g. the wallet changed). */
export function rerenderOrder() {
  if (view?.order) {
    view.actionsKey = null;
    render(view);
  }
}
