// The wallet: an Ed25519 key that never leaves this browser.
//
// * The key is its 32-byte private seed (the same form Python's
//   Ed25519PrivateKey.from_private_bytes takes), shown and imported as 64 hex characters.
// * Address = "RTC" + first 40 hex of sha256(raw 32-byte public key)   (docs/protocol.md §3).
// * Signing uses WebCrypto's Ed25519 when the browser has it (the seed is imported as a
//   non-extractable PKCS#8 key); otherwise the vendored @noble/ed25519 (MIT, loaded
//   lazily from /static/vendor). Ed25519 is deterministic, so both give the same bytes.
// * Kept in memory only, unless the person ticks "keep": then in this origin's
//   localStorage under STORAGE_KEY, until they untick it or forget the wallet.

import {signedMessage} from './canonical.js';
import {serverNow} from './api.js';

export const STORAGE_KEY = 'otc_bridge.wallet.v1';
// PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410): this prefix + the 32 seed bytes.
const PKCS8_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03,
  0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);

export const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
export function fromHex(hex) {
  if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw new Error('not hex');
  return Uint8Array.from(hex.match(/../g) || [], (h) => parseInt(h, 16));
}

/** True when this page may hold keys (WebCrypto exists only in a secure context). */
export const secureContextOk = () => Boolean(globalThis.isSecureContext && crypto.subtle);

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

let nobleModule = null;
async function noble() {
  nobleModule ??= await import('../vendor/noble-ed25519/index.js');
  return nobleModule;
}

/** Which implementation signs here: 'webcrypto' or 'noble' (probed once). */
let backendPromise = null;
export function backend() {
  backendPromise ??= crypto.subtle.importKey('pkcs8', pkcs8(new Uint8Array(32)), {name: 'Ed25519'}, false, ['sign'])
    .then(() => 'webcrypto', () => 'noble');
  return backendPromise;
}

function pkcs8(seed) {
  const out = new Uint8Array(PKCS8_PREFIX.length + 32);
  out.set(PKCS8_PREFIX);
  out.set(seed, PKCS8_PREFIX.length);
  return out;
}

export class Wallet {
  /** Use Wallet.fromSeed / generate / fromHex: the constructor takes finished parts. */
  constructor(seed, publicKey, address, signer) {
    this.seedHex = toHex(seed);
    this.publicKeyHex = toHex(publicKey);
    this.address = address;
    this.sign = signer; // (Uint8Array) => Promise<Uint8Array>
    this.lastTimestamp = 0;
  }

  static async fromSeed(seed, forceBackend) {
    if (!(seed instanceof Uint8Array) || seed.length !== 32) throw new Error('a private key is 32 bytes');
    const kind = forceBackend || await backend();
    let publicKey;
    let signer;
    if (kind === 'webcrypto') {
      const key = await crypto.subtle.importKey('pkcs8', pkcs8(seed), {name: 'Ed25519'}, true, ['sign']);
      // The public key is derived by exporting the private key as JWK ("x" is the public key).
      const jwk = await crypto.subtle.exportKey('jwk', key);
      publicKey = fromBase64Url(jwk.x);
      const signing = await crypto.subtle.importKey('pkcs8', pkcs8(seed), {name: 'Ed25519'}, false, ['sign']);
      signer = async (msg) => new Uint8Array(await crypto.subtle.sign({name: 'Ed25519'}, signing, msg));
    } else {
      const ed = await noble();
      publicKey = await ed.getPublicKeyAsync(seed);
      const copy = seed.slice();
      signer = (msg) => ed.signAsync(msg, copy);
    }
    const address = await addressFor(publicKey);
    return new Wallet(seed, publicKey, address, signer);
  }

  static generate() {
    return Wallet.fromSeed(crypto.getRandomValues(new Uint8Array(32)));
  }

  /** Import 64 hex characters (the private seed); throws a sentence for the person. */
  static async fromHex(text) {
    const hex = String(text || '').trim().replace(/^0x/i, '');
    if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
      throw new Error('A private key is 64 hexadecimal characters (0-9, a-f).');
    }
    return Wallet.fromSeed(fromHex(hex));
  }

  /**
   * The wallet_auth object for one request (auth.verify). Timestamps are the bridge's
   * clock and strictly increasing, so two identical requests never produce the same
   * (single-use) signed message.
   */
  async auth(action, orderId, bound) {
    const timestamp = Math.max(serverNow(), this.lastTimestamp + 1);
    this.lastTimestamp = timestamp;
    const signature = await this.sign(signedMessage(action, orderId, timestamp, this.address, bound));
    return {public_key: this.publicKeyHex, signature: toHex(signature), timestamp};
  }

  /** Text for the key backup file. */
  backupText() {
    return [
      'RustChain RTC wallet (Ed25519) - exported from the OTC bridge page',
      `address:     ${this.address}`,
      `public key:  ${this.publicKeyHex}`,
      `private key: ${this.seedHex}`,
      '',
      'Anyone holding the private key controls this wallet. Keep this file offline.',
      'To use it again: open the bridge page, Wallet, "Import a private key".',
      '',
    ].join('\n');
  }
}

export async function addressFor(publicKey) {
  return `RTC${toHex(await sha256(publicKey)).slice(0, 40)}`;
}

function fromBase64Url(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  return Uint8Array.from(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
}

// ---- keeping the key (only when asked) ----

export function storedSeedHex() {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    const seed = raw && JSON.parse(raw).private_key;
    return typeof seed === 'string' ? seed : null;
  } catch {
    return null;
  }
}

export function keep(wallet) {
  localStorage.setItem(STORAGE_KEY, JSON.stringify({
    address: wallet.address, private_key: wallet.seedHex, kept_at: new Date().toISOString(),
  }));
}

export function unkeep() {
  localStorage.removeItem(STORAGE_KEY);
}

/** A dev-only demo wallet of `otc-bridge dev`: seed = sha256(passphrase) (client.py from_seed). */
export async function demoWallet(passphrase) {
  return Wallet.fromSeed(await sha256(new TextEncoder().encode(passphrase)));
}
