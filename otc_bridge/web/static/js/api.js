// The bridge's JSON API, same origin only. Every refusal becomes an ApiError carrying the
// API's own message ({"error", "field"?, "details"?, "hint"?}), so the page can always say
// what went wrong; network failures and non-JSON answers get a sentence too.
// The server's Date header also gives us its clock: signatures must be within 300 s of it
// and countdowns should agree with it, whatever the person's computer clock says.

import {canonicalJson} from './canonical.js';

let clockOffsetSeconds = 0;

/** Unix seconds on the bridge's clock (as far as the last response told us). */
export function serverNow() {
  return Math.floor(Date.now() / 1000) + clockOffsetSeconds;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || `The bridge answered HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.field = this.body.field || null;
  }
}

// Friendlier words for the reference's signature error codes (the code is shown as well).
const AUTH_HINTS = {
  wallet_auth_timestamp_expired: 'Your computer clock differs from the bridge by more than 5 minutes. Fix the clock, then try again.',
  wallet_auth_replayed: 'This exact signed request was already used once. Try again: the page signs it afresh.',
  wallet_auth_invalid_signature: 'The bridge could not verify the signature made with your wallet key.',
  wallet_auth_public_key_does_not_match_wallet: 'The wallet address does not belong to this key.',
};

/** The sentence(s) to show for an error: the API's message first, then any detail. */
export function describeError(err) {
  if (!(err instanceof ApiError)) return `Could not reach the bridge: ${err?.message || err}`;
  const parts = [err.message];
  const {details, hint, retry_after_seconds: retry} = err.body;
  if (typeof details === 'string' && details) parts.push(details);
  if (typeof hint === 'string' && hint) parts.push(hint);
  if (AUTH_HINTS[err.message]) parts.push(AUTH_HINTS[err.message]);
  if (Number.isInteger(retry)) parts.push(`Try again in ${retry} s.`);
  return parts.join(' — ');
}

async function call(method, path, body) {
  const init = {method, headers: {Accept: 'application/json'}, credentials: 'same-origin', cache: 'no-store'};
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = canonicalJson(body); // integers stay integers (BigInt-safe), no floats
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new Error(err.message || 'network error');
  }
  learnClock(response);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = {error: `The bridge answered HTTP ${response.status} without a JSON body`};
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function learnClock(response) {
  const date = Date.parse(response.headers.get('Date') || '');
  if (!Number.isNaN(date)) clockOffsetSeconds = Math.round((date - Date.now()) / 1000);
}

const q = (params) => {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') search.set(k, v);
  const text = search.toString();
  return text ? `?${text}` : '';
};
const seg = (text) => encodeURIComponent(text);

export const api = {
  pageConfig: () => call('GET', '/page-config.json'),
  orderbook: (pair) => call('GET', `/api/orderbook${q({pair})}`),
  openOrders: (pair, limit = 100) => call('GET', `/api/orders${q({pair, limit})}`),
  trades: (pair, limit = 20) => call('GET', `/api/trades${q({pair, limit})}`),
  order: (id) => call('GET', `/api/orders/${seg(id)}`),
  events: (id, after = 0) => call('GET', `/api/orders/${seg(id)}/events${q({after, limit: 500})}`),
  walletOrders: (wallet, status, limit = 100) =>
    call('GET', `/api/wallets/${seg(wallet)}/orders${q({status, limit})}`),
  create: (body) => call('POST', '/api/orders', body),
  match: (id, body) => call('POST', `/api/orders/${seg(id)}/match`, body),
  confirm: (id, body) => call('POST', `/api/orders/${seg(id)}/confirm`, body),
  cancel: (id, body) => call('POST', `/api/orders/${seg(id)}/cancel`, body),
};

export const ORDER_ID = /^[A-Za-z0-9_-]{1,64}$/;
