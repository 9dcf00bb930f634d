// Shared page state (the bridge's settings, the wallet, the chosen pair) and the small
// helpers every view uses to tell the person something: a polite status notice, and
// errors placed next to the form (and field) they belong to.

import {byId, replace, el} from './dom.js';
import {describeError} from './api.js';

export const state = {
  config: null, // GET /page-config.json
  wallet: null, // a wallet.js Wallet, or null
  pair: 'RTC/USDC',
};

const walletListeners = new Set();

export function onWalletChange(fn) {
  walletListeners.add(fn);
}

export function setWallet(wallet) {
  state.wallet = wallet;
  const chip = byId('wallet-chip');
  chip.textContent = wallet ? `${wallet.address.slice(0, 9)}…` : 'none';
  chip.title = wallet ? wallet.address : 'No wallet yet';
  for (const fn of walletListeners) fn(wallet);
}

/** The quote asset of a pair: {symbol, decimals}. */
export function asset(pair) {
  return state.config?.pairs?.[pair] || {symbol: pair.split('/')[1] || '?', decimals: 18};
}

/**
 * True when the bridge verifies ``pair``'s lock on an EVM chain: the page then trades it in
 * the buyer-held mode (the RTC buyer's own preimage; docs/protocol.md §12.5).
 */
export function buyerHeldPair(pair) {
  return Boolean(state.config?.quote_chain?.evm_pairs?.includes(pair));
}

/**
 * True when this bridge claims buyer-held locks for their sellers (it has a claimer key):
 * otherwise the RTC seller claims from the order page once the buyer's payout is committed.
 */
export function bridgeClaims() {
  return Boolean(state.config?.quote_chain?.bridge_claims);
}

/** Announce a short message in the status region (screen readers read it politely). */
export function notify(text) {
  const node = byId('notice');
  replace(node, el('p', {}, text));
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => replace(node), 12_000);
}

/**
 * Show ``err`` (an ApiError or network error) in ``box`` (a [role=alert] element) and,
 * when the API named a field and ``fields`` maps it to an input, next to that input.
 */
export function showError(box, err, fields = {}) {
  clearErrors(box, fields);
  const text = describeError(err);
  box.textContent = text;
  box.hidden = false;
  const input = err?.field && fields[err.field];
  if (input) fieldError(input, err.message);
  return text;
}

export function clearErrors(box, fields = {}) {
  if (box) {
    box.textContent = '';
    box.hidden = true;
  }
  for (const input of Object.values(fields)) fieldError(input, null);
}

/** Mark ``input`` invalid with ``message`` (null clears it). */
export function fieldError(input, message) {
  const node = byId(`${input.id}-error`);
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
  if (node) {
    node.textContent = message || '';
    node.hidden = !message;
  }
}

/** A one-line placeholder paragraph for empty or failed lists. */
export const emptyRow = (cols, text) => el('tr', {}, el('td', {colspan: cols, class: 'empty'}, text));

/** Quote address rule of the API (body.quote_address), to check before signing. */
export function quoteAddressProblem(pair, value) {
  if (pair === 'RTC/ERG') {
    return /^[1-9A-HJ-NP-Za-km-z]{30,120}$/.test(value) ? null : 'Enter a base58 Ergo address.';
  }
  return /^0x[0-9a-fA-F]{40}$/.test(value) ? null : 'Enter an address of 0x followed by 40 hex characters.';
}
