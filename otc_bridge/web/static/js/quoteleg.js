// The quote-leg card of an order verified on an EVM chain (docs/protocol.md §12): what the
// bridge's chain watcher saw (order.quote_leg: awaiting_lock, locked, invalid, claimed,
// refunded), with the lock and claim transactions and a countdown to the timelock, and what
// this person can do about it:
//   RTC buyer, buyer-held, matched -> lock from the page, then reveal once "locked"
//   RTC buyer, a lock past its timelock that was not claimed -> refund it
//   RTC seller, buyer-held, payout committed (the preimage is in the order view) and the
//     lock still "locked" -> claim it from the page, before its timelock: always when the
//     bridge has no claimer key (page-config quote_chain.bridge_claims false), and as a
//     fallback once chain time passes timelock - margin (the bridge no longer claims then)
//   RTC seller, claimed -> "claimed for you" (buyer-held: the bridge sent the claim)
// Kept live by order.js, which calls renderQuoteLeg on every new order version; the card is
// rebuilt only when what it shows changes, and never while one of its actions is running.

import {ApiError, serverNow} from './api.js';
import {busy, el, replace} from './dom.js';
import {chainAccess, chainNow, refreshChainClock} from './ethwallet.js';
import {formatUnits} from './money.js';
import {forget, recall, remember} from './preimage.js';
import {claimLock, importPreimage, lockQuote, refundLock, reveal} from './quoteactions.js';
import {bridgeClaims, clearErrors, notify, showError, state} from './state.js';
import {roleOf} from './status.js';
import {deadline, localDate, retarget} from './time.js';

const STATE_TEXT = {
  awaiting_lock: 'Waiting for the buyer\'s lock',
  locked: 'Locked: verified by the bridge',
  invalid: 'Only an invalid lock so far',
  claimed: 'Claimed: the seller is paid',
  refunded: 'Refunded to the buyer',
};
const ENDED = new Set(['completed', 'cancelled', 'expired']);

let shownKey = null;
let running = null; // the order id whose action is in flight: no rebuild under it
let timer = null;
const claimsSent = new Map(); // order id -> the seller's claim transaction sent from this page

/**
 * Render the card for ``order`` (with its ``instructions``, or null) into ``container`` as
 * seen by ``wallet``. ``hooks.onResponse(response)`` takes an API answer (the reveal);
 * ``hooks.refresh()`` asks order.js to render again (after an action, or when a deadline passes).
 */
export function renderQuoteLeg(container, order, instructions, wallet, hooks) {
  const chain = state.config?.quote_chain;
  const leg = order.quote_leg;
  const entry = housekeep(order, leg);
  container.hidden = !chain || !(leg || entry?.swap_id);
  if (container.hidden || running === order.order_id) return;
  // Timelock phases are judged on the chain's clock (estimated; re-read now and then).
  const now = chainNow();
  const timelock = leg?.timelock || entry?.timelock || null;
  const margin = instructions?.reveal_margin_seconds ?? chain.buyer_margin_seconds;
  const key = JSON.stringify([order.order_version, wallet?.address, entry, Boolean(instructions),
    timelock && now >= timelock, timelock && now >= timelock - margin, claimsSent.get(order.order_id) || null]);
  if (timelock && open(leg)) refreshChainClock().then((read) => { if (read) hooks.refresh(); });
  if (key === shownKey && container.isConnected && container.childElementCount) {
    syncChainCountdowns(container);
    return;
  }
  shownKey = key;
  clearTimeout(timer);
  const next = [timelock - margin, timelock].filter((t) => t && t > now).sort((a, b) => a - b)[0];
  if (next) timer = setTimeout(hooks.refresh, Math.min((next - now + 1) * 1000, 2 ** 31 - 1));

  const r = roleOf(order, wallet?.address);
  const buyerHeld = order.preimage_holder === 'buyer';
  const q = order.quote_currency;
  const lockTx = leg?.lock_tx || entry?.lock_tx;
  const facts = [
    ['State', el('span', {id: 'quote-leg-state', class: `badge leg-${leg?.state || 'unseen'}`, dataset: {state: leg?.state || ''}},
      leg ? STATE_TEXT[leg.state] || leg.state : 'Not seen by the bridge'),
    leg?.state === 'invalid' && leg.reason ? ` (${leg.reason})` : ''],
    lockTx && ['Lock transaction', el('span', {class: 'mono wrap', id: 'quote-lock-tx'}, lockTx)],
    (leg?.swap_id || entry?.swap_id) && ['Swap id', el('span', {class: 'mono wrap'}, leg?.swap_id || entry.swap_id)],
    timelock && ['Timelock', open(leg) ? chainDeadline(timelock, 'reached: the lock can be refunded') : localDate(timelock)],
    timelock && buyerHeld && order.status === 'matched' && leg?.state === 'locked'
      && ['Reveal before', chainDeadline(timelock - margin, 'too late to reveal')],
    instructions?.lock_by && order.status === 'matched' && !['locked', 'claimed'].includes(leg?.state)
      && ['Lock by', chainDeadline(instructions.lock_by, 'passed')],
    leg?.claim_tx && ['Claim transaction', el('span', {class: 'mono wrap', id: 'quote-claim-tx'}, leg.claim_tx)],
  ].filter(Boolean);
  const parts = [el('h2', {id: 'quote-title'}, `Quote leg on the ${q} chain`),
    el('dl', {class: 'facts'}, facts.map(([k, ...v]) => [el('dt', {}, k), el('dd', {}, ...v)]))];
  const amount = instructions ? `${formatUnits(BigInt(instructions.total_quote_base_units), instructions.quote_decimals)} ${q}` : `the ${q}`;
  if (r.seller && leg?.state === 'claimed') {
    const mine = claimsSent.get(order.order_id)?.toLowerCase() === leg.claim_tx?.toLowerCase();
    parts.push(el('p', {class: 'done', id: 'quote-claimed'}, mine
      ? `You claimed the buyer's HTLC, which paid ${amount} to your address, in transaction ${leg.claim_tx}.`
      : buyerHeld && bridgeClaims()
        ? `Claimed for you: the bridge claimed the buyer's HTLC, which paid ${amount} to your address, in transaction ${leg.claim_tx}.`
        : `The HTLC was claimed (paying ${amount} to your address) in transaction ${leg.claim_tx}.`));
  }
  if (r.buyer && leg?.state === 'claimed') parts.push(el('p', {}, `Your lock was claimed for the seller in transaction ${leg.claim_tx}.`));
  const progress = el('p', {class: 'hint', role: 'status', id: 'quote-progress'});
  const errors = el('p', {class: 'form-error', id: 'quote-error', role: 'alert', hidden: true});
  const run = (button, action) => busy(button, async () => {
    clearErrors(errors);
    running = order.order_id;
    try {
      await action((text) => { progress.textContent = text; });
    } catch (err) {
      // The bridge's refusals carry its own words; a wallet or chain failure is its message.
      if (err instanceof ApiError || !err?.message) showError(errors, err);
      else Object.assign(errors, {textContent: err.message, hidden: false});
    } finally {
      running = null;
      shownKey = null;
      if (errors.hidden) hooks.refresh();
    }
  });
  if (r.buyer && buyerHeld && order.status === 'matched') {
    parts.push(...buyerSteps({order, instructions, leg, entry, wallet, now, timelock, margin, run, hooks}));
  }
  if (r.seller && buyerHeld && leg?.state === 'locked' && leg.swap_id && order.htlc_secret && timelock) {
    parts.push(...sellerClaim({order, leg, chain, amount, now, timelock, margin, run}));
  }
  const swapId = leg?.swap_id || entry?.swap_id;
  if (r.buyer && swapId && timelock && open(leg) && !entry?.refund_tx) {
    if (now >= timelock) {
      const button = el('button', {type: 'button', class: 'danger'}, 'Refund my HTLC');
      button.addEventListener('click', () => run(button, async (say) => {
        await refundLock(order, {chainId: chain.chain_id, htlc: chain.htlc_contract, swapId, timelock}, say);
        notify('Your HTLC was refunded.');
      }));
      parts.push(el('p', {}, 'The timelock has passed and the lock was not claimed: refund it to get your ', q, ' back.'), button);
    } else if (order.status !== 'matched' || leg?.state !== 'locked') {
      parts.push(el('p', {class: 'hint'}, 'If this swap does not complete, refund your lock from its timelock on.'));
    }
  }
  if (entry?.refund_tx) parts.push(el('p', {}, `Refund sent in transaction ${entry.refund_tx}.`));
  replace(container, parts, progress, errors);
  syncChainCountdowns(container);
}

/**
 * A date and countdown for ``ts`` on the chain's clock (timelocks, lock_by): the countdown
 * runs on the bridge's clock (time.js) towards the moment the chain reaches ``ts``, as last
 * estimated, so a chain ahead of or behind wall time does not mislead.
 */
function chainDeadline(ts, passedText) {
  const node = deadline(ts, passedText);
  node.querySelector('.countdown').dataset.chainTime = String(ts);
  return node;
}

/** Re-aim the chain countdowns in ``container`` at the latest estimate of the chain's clock. */
function syncChainCountdowns(container) {
  const offset = chainNow() - serverNow();
  for (const node of container.querySelectorAll('.countdown[data-chain-time]')) {
    retarget(node, Number(node.dataset.chainTime) - offset);
  }
}

function open(leg) {
  return !leg || !['claimed', 'refunded'].includes(leg.state);
}

/** The kept preimage entry of this order, deleted once it can no longer be needed. */
function housekeep(order, leg) {
  const entry = order.htlc_hash ? recall(order.htlc_hash) : null;
  if (!entry) return null;
  const done = order.status === 'completed' || leg?.state === 'refunded'
    || (ENDED.has(order.status) && !entry.swap_id && leg?.state !== 'locked');
  if (done) {
    forget(order.htlc_hash);
    return null;
  }
  return entry;
}

/** The RTC buyer's lock / reveal controls for a matched buyer-held order. */
function buyerSteps({order, instructions, leg, entry, wallet, now, timelock, margin, run, hooks}) {
  const out = [];
  if (!entry) {
    const input = el('input', {id: 'import-preimage', class: 'mono', autocomplete: 'off', spellcheck: 'false'});
    const button = el('button', {type: 'submit', class: 'secondary'}, 'Keep this preimage here');
    const form = el('form', {novalidate: true}, el('label', {for: 'import-preimage'}, 'Your preimage (64 hex characters)'),
      input, button);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      run(button, () => importPreimage(order, input.value));
    });
    out.push(el('p', {class: 'warning'}, 'This browser does not hold the preimage of this order\'s hashlock (it was made in ',
      'another browser, or this browser\'s data was cleared). Paste the copy you saved to lock and reveal from here.'), form);
    return out;
  }
  if (!instructions) return out;
  const access = chainAccess();
  if (leg?.state === 'awaiting_lock' && entry.swap_id) {
    out.push(el('p', {id: 'quote-lock-sent'}, `Your lock was mined in transaction ${entry.lock_tx}. The bridge verifies `,
      'it on its next pass; this page updates by itself.'));
  } else if (['awaiting_lock', 'invalid'].includes(leg?.state)) {
    if (entry.lock_tx && !entry.swap_id) {
      out.push(el('p', {class: 'warning'}, `A lock was sent in transaction ${entry.lock_tx} but not seen mined here. `,
        'Check it in your wallet before locking again.'));
    }
    const amount = `${formatUnits(BigInt(instructions.total_quote_base_units), instructions.quote_decimals)} ${instructions.currency}`;
    const button = el('button', {type: 'button', class: 'primary'}, `Lock ${amount} in the HTLC`);
    button.disabled = !access;
    button.addEventListener('click', () => run(button, async (say) => {
      await lockQuote(order, instructions, say);
      notify('Lock mined. Waiting for the bridge to verify it.');
    }));
    out.push(el('p', {}, leg.state === 'invalid' ? 'Your earlier lock does not count (see above). ' : '',
      `Lock ${amount} for the seller under your hashlock, with a timelock the page picks inside the allowed range. `,
      access ? `It is sent from ${access.label}.` : 'No Ethereum wallet was found in this browser (window.ethereum).'), button);
  } else if (leg?.state === 'locked') {
    const late = now >= timelock - margin;
    const button = el('button', {type: 'button', class: 'primary'}, 'Reveal the preimage and release the RTC');
    button.disabled = late || !wallet;
    button.addEventListener('click', () => run(button, async (say) => {
      say('Sending the signed reveal…');
      const res = await reveal(order, wallet);
      remember(order.htlc_hash, {revealed_at: serverNow()});
      hooks.onResponse(res);
      notify(res.message || `Settlement: ${res.status}`);
    }));
    out.push(el('p', {}, late ? 'Too late to reveal: refund your lock once its timelock passes.'
      : 'Your lock is verified. Reveal your preimage to the bridge: it releases the RTC to you, then claims your lock for the seller.'),
    button);
  }
  return out;
}

/**
 * The RTC seller's claim of a buyer-held lock once the payout is committed (the order view
 * then carries the preimage): the main action when the bridge has no claimer key, a
 * fallback once chain time passes ``timelock - margin`` (the bridge stops claiming then).
 * Possible until the timelock, which the contract enforces.
 */
function sellerClaim({order, leg, chain, amount, now, timelock, margin, run}) {
  const fallback = bridgeClaims();
  if (fallback && now < timelock - margin) return []; // the bridge claims it for the seller
  const sent = claimsSent.get(order.order_id);
  if (sent) {
    return [el('p', {id: 'quote-claim-sent'}, `Your claim was mined in transaction ${sent}. The bridge records it on `,
      'its next pass; this page updates by itself.')];
  }
  const q = order.quote_currency;
  const access = chainAccess('seller');
  const late = now >= timelock;
  const button = el('button', {type: 'button', class: fallback ? 'secondary' : 'primary', id: 'quote-claim-button'},
    `Claim the ${q} now`);
  button.disabled = late || !access;
  button.addEventListener('click', () => run(button, async (say) => {
    const hash = await claimLock(order, {chainId: chain.chain_id, htlc: chain.htlc_contract, swapId: leg.swap_id,
      timelock, preimage: order.htlc_secret}, say);
    claimsSent.set(order.order_id, hash);
    notify(`Claim mined in transaction ${hash}: the HTLC paid ${amount} to your address.`);
  }));
  return [el('p', {id: 'quote-claim-why'}, fallback
    ? 'The bridge has not claimed this lock for you, and this close to the timelock it no longer tries: claim it yourself now. '
    : 'The buyer\'s RTC payout is committed, so the preimage is public to you (see Details). This bridge does not claim '
      + 'for sellers: claim the buyer\'s HTLC yourself. ',
  `The contract pays ${amount} to your address whoever sends the claim. `,
  late ? 'Too late: the timelock has passed, the contract refuses a claim now, and the buyer can refund the lock.'
    : ['Claim before the timelock: ', el('span', {id: 'quote-claim-deadline'}, chainDeadline(timelock, 'reached')),
      '; the contract refuses a claim from then on and the buyer can refund. '],
  late ? '' : access ? `It is sent from ${access.label}, which pays the gas.`
    : 'No Ethereum wallet was found in this browser (window.ethereum): send claim(swap id, preimage) to the HTLC '
      + 'contract with any wallet.'),
  button];
}
