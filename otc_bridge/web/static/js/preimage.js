// The RTC buyer's own preimage (buyer-held mode, docs/protocol.md §12.5).
//
// The page makes 32 random bytes with crypto.getRandomValues, sends only their sha256
// (htlc_hash, signed as a bound field of the match or the buy create) and keeps the
// preimage to reveal it once the bridge has verified the lock. It is shown once in the
// secret dialog so the person can save a copy, and kept in this origin's localStorage,
// one entry per hashlock ("otc_bridge.preimage.v1.<htlc_hash>", the order view carries
// htlc_hash): the entry is written *before* the request is sent, so a lost answer cannot
// lose it. The entry also remembers this browser's lock (swap id, transactions, timelock)
// so the page can refund it even before the bridge has seen it. It is deleted once the
// order is completed (the preimage is public then) or the lock refunded.

import {fromHex, toHex} from './wallet.js';

const PREFIX = 'otc_bridge.preimage.v1.';
const HASH = /^[0-9a-f]{64}$/;

/** sha256 of the 32 bytes ``preimageHex`` encodes, as 64 lower-case hex. */
export async function hashOf(preimageHex) {
  return toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', fromHex(preimageHex))));
}

/** A fresh {preimage, htlcHash} (64 lower-case hex each). */
export async function newPreimage() {
  const preimage = toHex(crypto.getRandomValues(new Uint8Array(32)));
  return {preimage, htlcHash: await hashOf(preimage)};
}

/** The entry kept for ``htlcHash``: {preimage, order_id?, lock_tx?, swap_id?, timelock?, refund_tx?}, or null. */
export function recall(htlcHash) {
  if (!HASH.test(htlcHash || '')) return null;
  try {
    const entry = JSON.parse(localStorage.getItem(PREFIX + htlcHash) || 'null');
    return entry && typeof entry.preimage === 'string' ? entry : null;
  } catch {
    return null;
  }
}

/** Merge ``fields`` into the entry of ``htlcHash`` (creating it). Throws if storage refuses. */
export function remember(htlcHash, fields) {
  const entry = {...(recall(htlcHash) || {}), ...fields, updated_at: new Date().toISOString()};
  localStorage.setItem(PREFIX + htlcHash, JSON.stringify(entry));
  return entry;
}

export function forget(htlcHash) {
  localStorage.removeItem(PREFIX + htlcHash);
}
