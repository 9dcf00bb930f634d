// Creating an order. The summary under the form is computed with the same integer rules
// as the bridge and the node (total rounded up; the node's 5 % fee; the escrow the RTC
// seller locks) and is on screen before the person presses "Sign and place". The request
// is signed with the wallet (action create_order, bound side, pair, amounts, TTL and the
// quote address) and sent once; the button stays disabled while it is in flight.

import {api, ApiError} from './api.js';
import {busy, byId, el, replace} from './dom.js';
import {amountProblem, escrowMicro, formatQuote, formatRtc, formatUnits, MoneyInputError, nodeFeeMicro, parseUnits,
  priceProblem, PRICE_DECIMALS, RTC_DECIMALS, totalQuoteBaseUnits, totalQuoteNano} from './money.js';
import {forget, newPreimage, remember} from './preimage.js';
import {showSecret} from './secret.js';
import {asset, buyerHeldPair, clearErrors, fieldError, notify, onWalletChange, quoteAddressProblem, showError,
  state} from './state.js';
import {duration} from './time.js';

const form = byId('create-form');
const amountInput = byId('create-amount');
const priceInput = byId('create-price');
const ttlSelect = byId('create-ttl');
const addressInput = byId('create-address');
const submit = byId('create-submit');
const errorBox = byId('create-error');
const FIELDS = {amount_rtc: amountInput, amount_micro_rtc: amountInput, price_per_rtc: priceInput,
  price_per_rtc_nano_quote: priceInput, eth_address: addressInput};

const side = () => form.querySelector('input[name=side]:checked').value;

export function initTrade() {
  const cfg = state.config;
  const presets = [3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400, 14 * 86400, cfg.ttl_max_seconds];
  for (const seconds of [...new Set(presets)].filter((s) => s >= cfg.ttl_min_seconds && s <= cfg.ttl_max_seconds)) {
    ttlSelect.append(el('option', {value: String(seconds)}, ttlLabel(seconds) + (seconds === cfg.ttl_max_seconds ? ' (maximum)' : '')));
  }
  ttlSelect.value = String(cfg.ttl_default_seconds);
  form.addEventListener('input', refreshCreateForm);
  form.addEventListener('change', refreshCreateForm);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(submit, placeOrder);
  });
  onWalletChange(refreshCreateForm);
}

/** "1 hour", "6 hours", "1 day", "27 days"; anything else as a duration. */
function ttlLabel(seconds) {
  const plural = (n, unit) => `${n} ${unit}${n === 1 ? '' : 's'}`;
  if (seconds % 86400 === 0) return plural(seconds / 86400, 'day');
  if (seconds % 3600 === 0) return plural(seconds / 3600, 'hour');
  return duration(seconds);
}

/** Read and check the form; returns {values} or {problems}. Shows nothing by itself. */
function readForm() {
  const problems = {};
  let amount = null;
  let price = null;
  try {
    amount = parseUnits(amountInput.value, RTC_DECIMALS, 'the amount');
    const p = amountProblem(amount);
    if (p) problems.amount = p;
  } catch (err) {
    if (!(err instanceof MoneyInputError)) throw err;
    problems.amount = err.message;
  }
  try {
    price = parseUnits(priceInput.value, PRICE_DECIMALS, 'the price');
    const p = priceProblem(price);
    if (p) problems.price = p;
  } catch (err) {
    if (!(err instanceof MoneyInputError)) throw err;
    problems.price = err.message;
  }
  const address = addressInput.value.trim();
  if (side() === 'sell') {
    const p = quoteAddressProblem(state.pair, address);
    if (p) problems.address = address ? p : `Enter your ${asset(state.pair).symbol} address: the buyer's HTLC pays it.`;
  }
  return {amount, price, address: side() === 'sell' ? address : '', ttl: Number(ttlSelect.value), problems};
}

/** Update labels and the summary to the form's current values (live, before signing). */
export function refreshCreateForm() {
  const {symbol, decimals} = asset(state.pair);
  for (const node of document.querySelectorAll('.quote-symbol')) node.textContent = symbol;
  const selling = side() === 'sell';
  byId('create-address-field').hidden = !selling;
  const devChain = state.config.dev_chain;
  byId('create-address-hint').textContent = devChain && buyerHeldPair(state.pair)
    ? `The buyer's HTLC pays this address on the quote chain. Dev chain: the demo seller's account is ${devChain.accounts.seller}.`
    : 'The buyer\'s HTLC pays this address on the quote chain.';
  submit.textContent = `Sign and place ${selling ? 'sell' : 'buy'} order`;
  byId('create-wallet-hint').textContent = state.wallet
    ? `Signed by your wallet ${state.wallet.address}.`
    : 'You need a wallet to sign: open Wallet to create or import one.';
  const {amount, price, problems} = readForm();
  const lines = [];
  if (amount !== null && price !== null && !problems.amount && !problems.price) {
    const total = totalQuoteNano(amount, price);
    const fee = nodeFeeMicro(amount);
    const base = totalQuoteBaseUnits(amount, price, decimals);
    lines.push(['You ' + (selling ? 'sell' : 'buy'), formatRtc(amount)]);
    lines.push(['Price', `${formatUnits(price, PRICE_DECIMALS)} ${symbol} per RTC`]);
    lines.push(['Total', `${formatQuote(total, symbol)} (${base} base units; rounded up)`]);
    lines.push(["Node's 5 % escrow fee", `${formatRtc(fee)} (paid by the RTC seller, not refunded on completion)`]);
    lines.push([selling ? 'You lock in escrow now' : 'The seller who takes it locks',
      `${formatRtc(escrowMicro(amount))} (amount + fee)`]);
    lines.push([selling ? 'You receive' : 'You pay', `${formatQuote(total, symbol)} through an HTLC on the ${symbol} chain`]);
  }
  replace(byId('create-summary'), lines.length
    ? el('dl', {}, lines.map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]))
    : el('p', {class: 'hint'}, 'Enter an amount and a price to see the total, the fee and the escrow before signing.'));
}

async function placeOrder() {
  clearErrors(errorBox, {a: amountInput, p: priceInput, q: addressInput});
  const {amount, price, address, ttl, problems} = readForm();
  if (problems.amount) fieldError(amountInput, problems.amount);
  if (problems.price) fieldError(priceInput, problems.price);
  if (problems.address) fieldError(addressInput, problems.address);
  const wallet = state.wallet;
  if (Object.keys(problems).length || !wallet) {
    errorBox.textContent = !wallet ? 'Create or import a wallet first (Wallet, at the top).' : 'Please correct the fields marked above.';
    errorBox.hidden = false;
    return;
  }
  const chosenSide = side();
  const bound = {side: chosenSide, pair: state.pair, amount_micro_rtc: amount, price_per_rtc_nano_quote: price,
    ttl_seconds: ttl, eth_address: address};
  // A buy order on a pair verified on chain is buyer-held: the maker's own preimage, made
  // and kept here (preimage.js) before the request is sent; only its sha256 is signed and sent.
  const held = chosenSide === 'buy' && buyerHeldPair(state.pair) ? await newPreimage() : null;
  let created;
  try {
    if (held) {
      remember(held.htlcHash, {preimage: held.preimage});
      bound.htlc_hash = held.htlcHash;
    }
    const walletAuth = await wallet.auth('create_order', 'create_order', bound);
    created = await api.create({...bound, wallet: wallet.address, wallet_auth: walletAuth});
  } catch (err) {
    if (held && err instanceof ApiError) forget(held.htlcHash); // refused: never used
    showError(errorBox, err, FIELDS);
    return;
  }
  if (held) {
    remember(held.htlcHash, {order_id: created.order_id});
    await showSecret(created.order_id, held.preimage, held.htlcHash, 'buyer');
  }
  amountInput.value = '';
  priceInput.value = '';
  refreshCreateForm();
  if (created.htlc_secret) await showSecret(created.order_id, created.htlc_secret, created.htlc_hash);
  notify(`${chosenSide === 'sell' ? 'Sell' : 'Buy'} order ${created.order_id} placed.`);
  location.hash = `#/order/${encodeURIComponent(created.order_id)}`;
}
