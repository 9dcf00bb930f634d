// Calldata for our HTLC contract and an ERC-20 token, and reading the lock back from its
// receipt: the few ABI rules these calls need, written out (no library, no float).
//
// Function selectors are the first 4 bytes of keccak256 of the signature and the event
// topic its full keccak256; they are constants here (the page has no keccak), computed once
// with Python's eth_utils:
//   python3 -c "from eth_utils import keccak; print(keccak(text='refund(bytes32)')[:4].hex())"
// tests/browser/test_quote_page.py re-derives every one and compares this module's calldata
// with web3's encoding of the same call.
//
// Amounts are BigInt (wei, token base units) or decimal strings of them; times are unix
// seconds; addresses and 32-byte values are 0x hex.

export const SELECTORS = {
  createSwapETH: '0xb73eb53b', // createSwapETH(address,bytes32,uint256,string)
  createSwapERC20: '0x89ad5065', // createSwapERC20(address,address,uint256,bytes32,uint256,string)
  claim: '0x84cc9dfb', // claim(bytes32,bytes32)
  refund: '0x7249fbb6', // refund(bytes32)
  approve: '0x095ea7b3', // approve(address,uint256)
};
// SwapCreated(bytes32,address,address,address,uint256,bytes32,uint256,string): swapId, buyer
// and seller are indexed (topics 1..3); token, amount, hashlock, timelock, rtcOrderId are data.
export const SWAP_CREATED_TOPIC = '0x9f4fb599807affaa3fcaf9aae18dc67d8ecb6cd251957e2ea3a83c6fbe778147';

const MAX_UINT256 = (1n << 256n) - 1n;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const BYTES32 = /^0x[0-9a-fA-F]{64}$/;

export class EncodingError extends Error {}

/** ``value`` (BigInt, safe integer or decimal/0x string) as a BigInt; throws if not an integer. */
export function toBigInt(value) {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new EncodingError(`not an exact integer: ${value}`);
    return BigInt(value);
  }
  if (typeof value === 'string' && /^(0x[0-9a-fA-F]+|[0-9]+)$/.test(value)) return BigInt(value);
  throw new EncodingError(`not an integer: ${value}`);
}

/** 0x hex of a non-negative integer (JSON-RPC quantities: no leading zeros). */
export const quantity = (value) => `0x${toBigInt(value).toString(16)}`;

function uintWord(value) {
  const n = toBigInt(value);
  if (n < 0n || n > MAX_UINT256) throw new EncodingError(`uint256 out of range: ${n}`);
  return n.toString(16).padStart(64, '0');
}

function addressWord(address) {
  if (!ADDRESS.test(address)) throw new EncodingError(`not an address: ${address}`);
  return address.slice(2).toLowerCase().padStart(64, '0');
}

function bytes32Word(hex) {
  const text = hex.startsWith('0x') ? hex : `0x${hex}`;
  if (!BYTES32.test(text)) throw new EncodingError(`not 32 bytes of hex: ${hex}`);
  return text.slice(2).toLowerCase();
}

/** A string's tail: its byte length, then its UTF-8 bytes right-padded to 32-byte words. */
function stringTail(text) {
  const bytes = new TextEncoder().encode(text);
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  const padded = hex.padEnd(Math.ceil(bytes.length / 32) * 64, '0');
  return uintWord(bytes.length) + padded;
}

/**
 * ABI-encode ``values`` of ``types`` ('address' | 'bytes32' | 'uint256' | 'string') after
 * ``selector``: static values in the head, each string as an offset there and its bytes in
 * the tail (offsets count from the start of the arguments).
 */
export function encodeCall(selector, types, values) {
  if (types.length !== values.length) throw new EncodingError('types and values differ in length');
  const heads = [];
  const tails = [];
  let tailBytes = 32 * types.length;
  types.forEach((type, i) => {
    const v = values[i];
    if (type === 'address') heads.push(addressWord(v));
    else if (type === 'bytes32') heads.push(bytes32Word(v));
    else if (type === 'uint256') heads.push(uintWord(v));
    else if (type === 'string') {
      const tail = stringTail(String(v));
      heads.push(uintWord(tailBytes));
      tails.push(tail);
      tailBytes += tail.length / 2;
    } else {
      throw new EncodingError(`unsupported type ${type}`);
    }
  });
  return selector + heads.join('') + tails.join('');
}

/** createSwapETH(seller, hashlock, timelock, rtcOrderId); the amount is the call's value. */
export const createSwapEthData = ({seller, hashlock, timelock, orderId}) =>
  encodeCall(SELECTORS.createSwapETH, ['address', 'bytes32', 'uint256', 'string'], [seller, hashlock, timelock, orderId]);

/** createSwapERC20(seller, token, amount, hashlock, timelock, rtcOrderId). */
export const createSwapErc20Data = ({seller, token, amount, hashlock, timelock, orderId}) =>
  encodeCall(SELECTORS.createSwapERC20, ['address', 'address', 'uint256', 'bytes32', 'uint256', 'string'],
    [seller, token, amount, hashlock, timelock, orderId]);

/**
 * claim(swapId, preimage): pays the lock to its seller, before its timelock (anyone may send
 * it; the contract checks sha256(preimage) against the hashlock). ``preimage`` is 64 hex
 * characters, with or without 0x.
 */
export const claimData = (swapId, preimage) => encodeCall(SELECTORS.claim, ['bytes32', 'bytes32'], [swapId, preimage]);

/** refund(swapId): pays the lock back to its buyer, from its timelock on (anyone may send it). */
export const refundData = (swapId) => encodeCall(SELECTORS.refund, ['bytes32'], [swapId]);

/** approve(spender, amount) on an ERC-20 token. */
export const approveData = (spender, amount) => encodeCall(SELECTORS.approve, ['address', 'uint256'], [spender, amount]);

/**
 * The SwapCreated logged by ``htlc`` in ``receipt`` (a JSON-RPC receipt), as
 * {swapId, timelock (unix seconds, number), amount (BigInt)}, or null if there is none.
 */
export function swapCreatedIn(receipt, htlc) {
  const log = (receipt?.logs || []).find((l) => String(l.address).toLowerCase() === htlc.toLowerCase()
    && l.topics?.[0]?.toLowerCase() === SWAP_CREATED_TOPIC);
  if (!log) return null;
  const word = (i) => BigInt(`0x${log.data.slice(2 + 64 * i, 2 + 64 * (i + 1))}`);
  return {swapId: log.topics[1].toLowerCase(), amount: word(1), timelock: Number(word(3))};
}
