// What a person can do to one order, by status and role:
//   open, not the maker  -> take it (signed match_order, bound eth_address; taking a sell
//                           order on a pair verified on chain also binds htlc_hash: the
//                           buyer-held mode, with a preimage made here, preimage.js)
//   open, the maker      -> cancel it (signed cancel_order)
//   matched, seller-held -> confirm with the secret (preimage) and the quote transaction
//   (matched, buyer-held: lock, reveal and refund are on the quote-leg card, quoteleg.js)
// Each button is disabled while its request is in flight; the API's error is shown in
// the form (and next to the field it names). A successful action's response is handed to
// the ``onResponse`` callback the caller (order.js) passes in, so this module does not
// import order.js back (no import cycle).

import {api, ApiError} from './api.js';
import {busy, el, field, replace} from './dom.js';
import {escrowMicro, formatQuote, formatRtc, nodeFeeMicro} from './money.js';
import {forget, newPreimage, remember} from './preimage.js';
import {showSecret} from './secret.js';
import {bridgeClaims, buyerHeldPair, clearErrors, fieldError, notify, quoteAddressProblem, showError} from './state.js';
import {roleOf} from './status.js';

/**
 * Build the action forms for ``order`` into ``container``. ``onResponse(response)`` is
 * called with each successful action's response (order fields at the top level).
 */
export function renderActions(container, order, wallet, onResponse) {
  const r = roleOf(order, wallet?.address);
  const parts = [];
  if (order.status === 'open' && !r.maker) parts.push(takeForm(order, wallet, onResponse));
  if (order.status === 'open' && r.maker) parts.push(cancelForm(order, wallet, onResponse));
  if (order.status === 'matched' && order.preimage_holder !== 'buyer') parts.push(confirmForm(order, wallet, r, onResponse));
  replace(container, parts);
}

function errorBox(id) {
  return el('p', {class: 'form-error', id, role: 'alert', hidden: true});
}

function needWallet(what) {
  return el('p', {class: 'hint'}, `To ${what}, first `, el('a', {href: '#/wallet'}, 'create or import a wallet'), '.');
}

function takeForm(order, wallet, onResponse) {
  const q = order.quote_currency;
  const amount = BigInt(order.amount_micro_rtc);
  const total = formatQuote(BigInt(order.total_quote_nano), q);
  const takerSells = order.side === 'buy';
  const buyerHeld = !takerSells && buyerHeldPair(order.pair);
  const section = el('section', {class: 'card action', 'aria-labelledby': 'take-title'},
    el('h2', {id: 'take-title'}, takerSells ? 'Sell your RTC to this buyer' : 'Buy this RTC'));
  section.append(el('p', {}, takerSells
    ? `You sell ${formatRtc(amount)} for ${total}. Taking locks ${formatRtc(escrowMicro(amount))} from your wallet in escrow now (amount + the node's 5 % fee of ${formatRtc(nodeFeeMicro(amount))}), and ${order.preimage_holder === 'buyer'
      ? `the buyer then locks the quote under their own hashlock; ${bridgeClaims() ? 'the bridge claims it for you once the buyer reveals.'
        : 'once the buyer reveals, you claim it from the order page (this bridge does not claim for you).'}`
      : 'gives you a secret to keep.'}`
    : buyerHeld
      ? `You buy ${formatRtc(amount)} for ${total}. Taking makes your own secret (preimage) in this browser; then you lock ${total} in the bridge's HTLC on the ${q} chain from this page, and once the bridge has verified the lock you reveal the secret here to receive the RTC. ${bridgeClaims() ? 'The bridge then claims the HTLC for the seller.' : 'The seller then claims the HTLC.'}`
      : `You buy ${formatRtc(amount)} for ${total}. After taking, you lock ${total} in an HTLC on the ${q} chain as the instructions will say; the RTC is released to you when the secret is presented.`));
  if (!wallet) {
    section.append(needWallet('take this order'));
    return section;
  }
  const form = el('form', {novalidate: true});
  const address = takerSells
    ? field('take-address', `Your ${q} address (the buyer's HTLC pays it)`,
      el('input', {autocomplete: 'off', spellcheck: 'false', required: true}),
      order.pair === 'RTC/ERG' ? 'A base58 Ergo address.' : '0x followed by 40 hex characters.')
    : null;
  const errors = errorBox('take-error');
  const button = el('button', {type: 'submit', class: 'primary'}, 'Sign and take this order');
  form.append(...(address ? [address.wrap] : []), errors, button);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(button, async () => {
      const fields = address ? {eth_address: address.input} : {};
      clearErrors(errors, fields);
      const quoteAddress = address ? address.input.value.trim() : '';
      if (address) {
        const problem = quoteAddressProblem(order.pair, quoteAddress);
        if (problem) { fieldError(address.input, problem); return; }
      }
      let held = null; // buyer-held: {preimage, htlcHash}, kept before the request is sent
      try {
        if (buyerHeld) {
          held = await newPreimage();
          remember(held.htlcHash, {preimage: held.preimage, order_id: order.order_id});
        }
        const bound = {eth_address: quoteAddress, ...(held ? {htlc_hash: held.htlcHash} : {})};
        const walletAuth = await wallet.auth('match_order', order.order_id, bound);
        const res = await api.match(order.order_id, {...bound, wallet: wallet.address, wallet_auth: walletAuth});
        if (res.htlc_secret) await showSecret(res.order_id, res.htlc_secret, res.htlc_hash);
        if (held) await showSecret(res.order_id, held.preimage, held.htlcHash, 'buyer');
        onResponse(res);
        notify(res.message || 'Order taken.');
      } catch (err) {
        // Refused: this hashlock will never be used. (A network failure may have matched:
        // the preimage stays kept.)
        if (held && err instanceof ApiError) forget(held.htlcHash);
        showError(errors, err, fields);
      }
    });
  });
  section.append(form);
  return section;
}

function cancelForm(order, wallet, onResponse) {
  const errors = errorBox('cancel-error');
  const button = el('button', {type: 'button', class: 'danger'},
    order.side === 'sell' ? 'Cancel order and refund the escrow' : 'Cancel order');
  button.addEventListener('click', () => busy(button, async () => {
    clearErrors(errors);
    try {
      const walletAuth = await wallet.auth('cancel_order', order.order_id, {});
      const res = await api.cancel(order.order_id, {wallet: wallet.address, wallet_auth: walletAuth});
      onResponse(res);
      notify(res.message || 'Order cancelled.');
    } catch (err) {
      showError(errors, err);
    }
  }));
  return el('section', {class: 'card action', 'aria-labelledby': 'cancel-title'},
    el('h2', {id: 'cancel-title'}, 'Cancel'),
    el('p', {}, order.side === 'sell'
      ? 'Take the order off the book. Your escrow (amount + fee) is refunded to your wallet.'
      : 'Take the order off the book. Nothing of yours is held.'),
    errors, button);
}

function confirmForm(order, wallet, r, onResponse) {
  const secret = field('confirm-secret', 'Secret (preimage, 64 hex characters)',
    el('input', {autocomplete: 'off', spellcheck: 'false', class: 'mono', required: true}),
    r.seller ? 'The secret you saved when the escrow was locked.'
      : 'Revealed on the quote chain when the seller claims your HTLC.');
  const tx = field('confirm-tx', `${order.quote_currency} transaction (the HTLC claim or lock)`,
    el('input', {autocomplete: 'off', spellcheck: 'false', required: true}),
    'Letters, digits and : _ - . only (e.g. 0xabc…).');
  const errors = errorBox('confirm-error');
  const button = el('button', {type: 'submit', class: 'primary'}, 'Confirm settlement and release the RTC');
  const form = el('form', {novalidate: true}, secret.wrap, tx.wrap, errors, button);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(button, async () => {
      const fields = {secret: secret.input, quote_tx: tx.input};
      clearErrors(errors, fields);
      const body = {secret: secret.input.value.trim(), quote_tx: tx.input.value.trim()};
      if (!body.secret) { fieldError(secret.input, 'Enter the secret.'); return; }
      if (!body.quote_tx) { fieldError(tx.input, 'Enter the quote-chain transaction.'); return; }
      if (r.party) body.wallet = wallet.address; // lets the bridge record who confirmed
      try {
        const res = await api.confirm(order.order_id, body);
        onResponse(res);
        notify(res.message || `Settlement: ${res.status}`);
      } catch (err) {
        showError(errors, err, fields);
      }
    });
  });
  return el('section', {class: 'card action', 'aria-labelledby': 'confirm-title'},
    el('h2', {id: 'confirm-title'}, 'Confirm settlement'),
    el('p', {}, 'Whoever holds the secret can release the RTC to the buyer fixed at the match. Confirm only after the quote HTLC is locked on chain.'),
    form);
}
