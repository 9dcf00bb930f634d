// The quote-chain wallet that sends the RTC buyer's lock and refund, and the RTC seller's
// claim when the bridge does not claim for him (docs/protocol.md §12.5).
//
// * Production: the trader's injected EIP-1193 wallet (window.ethereum, e.g. a browser
//   extension): it holds the key, asks the person to approve each transaction and talks to
//   its own node. The page only requests accounts, checks the chain id and sends calldata.
// * `otc-bridge dev`: no extension exists, so the page talks to the dev chain through the
//   bridge's same-origin relay (page-config dev_chain.rpc_path, POST /dev/evm-rpc), sending
//   from anvil's unlocked demo account of the person's role (the buyer locks and refunds,
//   the seller claims). No key ever reaches the page.
// Both are used through the same request({method, params}) shape.

import {serverNow} from './api.js';
import {state} from './state.js';
import {quantity} from './evm.js';

const RECEIPT_POLL_MS = 1500;
const RECEIPT_TIMEOUT_MS = 15 * 60 * 1000; // a congested chain can take minutes; then we say so

export class ChainError extends Error {}

// Chain time minus the bridge's clock (seconds), as last read: the contract's timelocks run
// on block timestamps, which can drift from wall time (and jump on a dev chain).
let chainOffsetSeconds = 0;
let chainReadAt = 0;

/** A provider for the dev chain relay, sending from ``account``. */
function devProvider(rpcPath, account) {
  let nextId = 0;
  return {
    async request({method, params = []}) {
      if (method === 'eth_requestAccounts' || method === 'eth_accounts') return [account];
      let response;
      try {
        response = await fetch(rpcPath, {method: 'POST', credentials: 'same-origin', cache: 'no-store',
          headers: {'Content-Type': 'application/json', Accept: 'application/json'},
          body: JSON.stringify({jsonrpc: '2.0', id: ++nextId, method, params})});
      } catch (err) {
        throw new ChainError(`The dev chain relay did not answer: ${err.message}`);
      }
      const data = await response.json().catch(() => ({}));
      if (data.error) throw new ChainError(data.error.message || `dev chain error ${data.error.code}`);
      if (!response.ok) throw new ChainError(`The dev chain relay answered HTTP ${response.status}`);
      return data.result;
    },
  };
}

/**
 * What sends transactions here for a person in ``role`` ('buyer' | 'seller': which demo
 * account the dev chain uses): {kind: 'dev' | 'injected', label, provider}, or null when
 * this browser has no wallet (and this is not the dev setup).
 */
export function chainAccess(role = 'buyer') {
  const dev = state.config?.dev_chain;
  if (dev) {
    const account = dev.accounts[role];
    if (!account) return null;
    return {kind: 'dev', account, provider: devProvider(dev.rpc_path, account),
      label: `the dev chain's demo ${role} account ${account} (anvil, unlocked: dev only)`};
  }
  if (globalThis.ethereum?.request) {
    return {kind: 'injected', account: null, provider: globalThis.ethereum, label: 'your browser wallet (window.ethereum)'};
  }
  return null;
}

async function call(provider, method, params = []) {
  try {
    return await provider.request({method, params});
  } catch (err) {
    if (err instanceof ChainError) throw err;
    // EIP-1193: 4001 is the person declining in their wallet.
    if (err?.code === 4001) throw new ChainError('You declined the request in your wallet; nothing was sent.');
    throw new ChainError(err?.data?.message || err?.message || String(err));
  }
}

/**
 * Connect to the wallet on chain ``chainId`` as ``role`` (see chainAccess): {provider,
 * account, label}. Asks the wallet to switch chains when it is elsewhere. Throws ChainError
 * with a sentence for the person.
 */
export async function connect(chainId, role = 'buyer') {
  const access = chainAccess(role);
  if (!access) {
    throw new ChainError('No Ethereum wallet in this browser. Install a wallet extension (one that provides '
      + 'window.ethereum), or lock with any wallet using the instructions above.');
  }
  const accounts = await call(access.provider, 'eth_requestAccounts');
  const account = accounts?.[0];
  if (!account) throw new ChainError('The wallet gave no account.');
  let current = Number(BigInt(await call(access.provider, 'eth_chainId')));
  if (current !== chainId && access.kind === 'injected') {
    await call(access.provider, 'wallet_switchEthereumChain', [{chainId: quantity(chainId)}]);
    current = Number(BigInt(await call(access.provider, 'eth_chainId')));
  }
  if (current !== chainId) throw new ChainError(`The wallet is on chain ${current}; this bridge's HTLC is on chain ${chainId}.`);
  return {provider: access.provider, account, label: access.label};
}

/** The latest block's timestamp (unix seconds): the clock the contract and the bridge use. */
export async function chainTime(conn) {
  const block = await call(conn.provider, 'eth_getBlockByNumber', ['latest', false]);
  const time = Number(BigInt(block.timestamp));
  chainOffsetSeconds = time - serverNow();
  chainReadAt = Date.now();
  return time;
}

/** Chain time now (unix seconds), estimated from the last read (the bridge's clock before any). */
export const chainNow = () => serverNow() + chainOffsetSeconds;

/**
 * Read the chain's clock again if the last read is older than ``maxAgeMs`` (a read-only call
 * that needs no account permission); resolves true when it was read. Never throws.
 */
export async function refreshChainClock(maxAgeMs = 15_000) {
  const access = chainAccess();
  if (!access || Date.now() - chainReadAt < maxAgeMs) return false;
  chainReadAt = Date.now(); // one read at a time, even when it fails
  try {
    await chainTime({provider: access.provider});
    return true;
  } catch {
    return false;
  }
}

/** Send ``{to, data, value?}`` (value in wei/base units, BigInt or string) from the account; the tx hash. */
export async function send(conn, {to, data, value}) {
  const tx = {from: conn.account, to, data};
  if (value !== undefined) tx.value = quantity(value);
  return call(conn.provider, 'eth_sendTransaction', [tx]);
}

/**
 * Run ``{to, data}`` from the account as an ``eth_call`` at the latest block, without
 * sending it: throws ChainError with the node's reason when the contract would revert.
 */
export async function simulate(conn, {to, data}) {
  await call(conn.provider, 'eth_call', [{from: conn.account, to, data}, 'latest']);
}

/** Wait for ``hash``'s receipt (polling); throws ChainError if it reverted or took too long. */
export async function mined(conn, hash) {
  const deadline = Date.now() + RECEIPT_TIMEOUT_MS;
  for (;;) {
    const receipt = await call(conn.provider, 'eth_getTransactionReceipt', [hash]);
    if (receipt) {
      if (BigInt(receipt.status) !== 1n) throw new ChainError(`Transaction ${hash} reverted on chain.`);
      return receipt;
    }
    if (Date.now() > deadline) throw new ChainError(`Transaction ${hash} is not mined yet; check it in your wallet.`);
    await new Promise((resolve) => { setTimeout(resolve, RECEIPT_POLL_MS); });
  }
}
