// What the traders do on the quote chain from the page (buyer-held mode, docs/protocol.md
// §12.5): the RTC buyer locks the quote in our HTLC with their own hashlock, reveals the
// preimage to the bridge once the lock is verified, and refunds the lock after its timelock
// if the swap did not complete; the RTC seller claims the lock with the published preimage
// when the bridge does not (no claimer key, or too close to the timelock). Each step
// reports progress through ``say(text)``; failures throw an Error whose message is for the
// person. Amounts stay BigInt / decimal strings of base units.

import {api} from './api.js';
import {approveData, claimData, createSwapErc20Data, createSwapEthData, refundData, swapCreatedIn} from './evm.js';
import {ChainError, chainTime, connect, mined, send, simulate} from './ethwallet.js';
import {hashOf, recall, remember} from './preimage.js';
import {duration} from './time.js';

// How far beyond the shortest allowed timelock the page sets it (seconds): room for the
// lock to be mined late without dropping below the minimum, at most half the allowed range.
const TIMELOCK_SLACK_SECONDS = 3600;

/**
 * The timelock (unix seconds) for a lock sent at chain time ``now``: ``now`` + the minimum
 * after the lock's block + the slack, inside [min, max] of the instructions.
 */
export function chooseTimelock(now, ins) {
  const min = ins.htlc_timelock_min_after_lock;
  const max = ins.htlc_timelock_max_after_lock;
  return now + min + Math.min(TIMELOCK_SLACK_SECONDS, Math.floor((max - min) / 2));
}

/**
 * Lock the order's amount in our HTLC from the connected wallet: ETH with createSwapETH,
 * USDC with approve then createSwapERC20. ``ins`` are the order's settlement instructions
 * (quote_verification "evm", preimage_holder "buyer"). Remembers the lock (tx, swap id,
 * timelock) with the preimage; resolves once it is mined.
 */
export async function lockQuote(order, ins, say) {
  if (!recall(order.htlc_hash)) {
    throw new ChainError('This browser does not hold the preimage of this order\'s hashlock: import it first, or '
      + 'you could lock and never be able to reveal.');
  }
  say('Connecting to the wallet…');
  const conn = await connect(ins.chain_id);
  const now = await chainTime(conn);
  if (ins.lock_by && now > ins.lock_by) {
    throw new ChainError('Too late to lock: the chain\'s clock is past lock_by, so the bridge would not count it. '
      + 'The match will be unwound.');
  }
  const amount = BigInt(ins.total_quote_base_units);
  const common = {seller: ins.pay_to_address, hashlock: `0x${ins.htlc_hash}`, timelock: chooseTimelock(now, ins),
    orderId: order.order_id};
  let hash;
  if (ins.token_contract) {
    say(`Approving the HTLC contract to take ${ins.total_quote_base_units} base units of ${ins.currency}…`);
    await mined(conn, await send(conn, {to: ins.token_contract, data: approveData(ins.htlc_contract, amount)}));
    say('Sending the lock…');
    hash = await send(conn, {to: ins.htlc_contract, data: createSwapErc20Data({...common, token: ins.token_contract, amount})});
  } else {
    say('Sending the lock…');
    hash = await send(conn, {to: ins.htlc_contract, value: amount, data: createSwapEthData(common)});
  }
  remember(order.htlc_hash, {lock_tx: hash, lock_from: conn.account, order_id: order.order_id});
  say(`Lock sent in transaction ${hash}; waiting for it to be mined…`);
  const created = swapCreatedIn(await mined(conn, hash), ins.htlc_contract);
  if (created) remember(order.htlc_hash, {swap_id: created.swapId, timelock: created.timelock});
  say(`Lock mined in transaction ${hash}. The bridge verifies it on its next pass; this page updates by itself.`);
  return hash;
}

/**
 * Keep a preimage the person pastes (another browser made it): checked against the
 * order's hashlock first. Throws a sentence if it does not match.
 */
export async function importPreimage(order, text) {
  const preimage = String(text || '').trim().toLowerCase().replace(/^0x/, '');
  if (!/^[0-9a-f]{64}$/.test(preimage)) throw new Error('A preimage is 64 hexadecimal characters.');
  if (await hashOf(preimage) !== order.htlc_hash) throw new Error('This is not the preimage of this order\'s hashlock.');
  remember(order.htlc_hash, {preimage, order_id: order.order_id});
}

/**
 * The signed reveal (POST /api/orders/<id>/confirm with ``secret``, ``wallet`` and
 * ``wallet_auth`` of action confirm_order, no bound fields); returns the API's answer.
 */
export async function reveal(order, wallet) {
  const entry = recall(order.htlc_hash);
  if (!entry) throw new Error('This browser does not hold the preimage: import it first.');
  const walletAuth = await wallet.auth('confirm_order', order.order_id, {});
  return api.confirm(order.order_id, {secret: entry.preimage, wallet: wallet.address, wallet_auth: walletAuth});
}

/**
 * Refund lock ``swapId`` of contract ``htlc`` on chain ``chainId`` once chain time reached
 * ``timelock``; anyone may send it and the contract pays the lock's buyer. Resolves once mined.
 */
export async function refundLock(order, {chainId, htlc, swapId, timelock}, say) {
  say('Connecting to the wallet…');
  const conn = await connect(chainId);
  const now = await chainTime(conn);
  if (now < timelock) {
    throw new ChainError(`The chain's clock has not reached the timelock yet: ${duration(timelock - now)} to go.`);
  }
  const hash = await send(conn, {to: htlc, data: refundData(swapId)});
  if (order.htlc_hash && recall(order.htlc_hash)) remember(order.htlc_hash, {refund_tx: hash});
  say(`Refund sent in transaction ${hash}; waiting for it to be mined…`);
  await mined(conn, hash);
  say(`Refunded in transaction ${hash}.`);
  return hash;
}

/**
 * The RTC seller's claim of lock ``swapId`` (contract ``htlc``, chain ``chainId``) with
 * ``preimage`` (the order view's htlc_secret, checked against the order's hashlock), from
 * the seller's wallet, while chain time is before ``timelock``: the contract pays the lock
 * to the seller's address whoever sends it. Run as an eth_call first, so a claim that would
 * revert (already claimed or refunded, timelock reached) is never sent. Resolves with the
 * transaction hash once mined.
 */
export async function claimLock(order, {chainId, htlc, swapId, timelock, preimage}, say) {
  const secret = String(preimage || '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(secret) || await hashOf(secret) !== order.htlc_hash) {
    throw new ChainError('The preimage shown for this order does not match its hashlock; nothing was sent.');
  }
  say('Connecting to the wallet…');
  const conn = await connect(chainId, 'seller');
  const now = await chainTime(conn);
  if (now >= timelock) {
    throw new ChainError('Too late to claim: the chain\'s clock has reached the timelock, so the contract refuses '
      + 'a claim; the buyer can refund the lock.');
  }
  const data = claimData(swapId, secret);
  try {
    await simulate(conn, {to: htlc, data});
  } catch (err) {
    throw new ChainError(`The HTLC would refuse this claim (${err.message}); nothing was sent. If the lock was `
      + 'claimed already, this page shows it once the bridge has seen it.');
  }
  say('Sending the claim…');
  const hash = await send(conn, {to: htlc, data});
  say(`Claim sent in transaction ${hash}; waiting for it to be mined…`);
  await mined(conn, hash);
  say(`Claimed in transaction ${hash}. The bridge records it on its next pass; this page updates by itself.`);
  return hash;
}
