// Every order status in plain language: what is happening now, and what this person
// should do next, depending on who they are in the trade (RTC seller, RTC buyer, maker,
// or someone just looking). Statuses are otc_bridge/domain/status.py's; causes are end_cause.

import {formatRtc} from './money.js';
import {chainNow} from './ethwallet.js';
import {bridgeClaims, state} from './state.js';

export const STATUS_LABELS = {
  locking: 'Locking escrow',
  open: 'Open',
  matched: 'Matched: waiting for settlement',
  settling: 'Settling',
  payout_pending: 'Payout pending',
  settlement_recovery: 'Needs operator recovery',
  refund_pending: 'Refund pending',
  completed: 'Completed',
  cancelled: 'Cancelled',
  expired: 'Expired',
};

const CAUSES = {
  cancelled: 'the maker cancelled it',
  expired: 'its time to live ran out',
  settle_deadline_passed: 'nobody presented the secret before the settle-by deadline',
  escrow_rejected: 'the escrow job on the node did not hold what the order needs',
  escrow_moved: 'the escrow job was moved on the node by someone other than the bridge',
  escrow_refused: 'the escrow node refused the escrow',
  escrow_outcome_lost: 'the answer that carried the secret was lost, so the order could never settle',
  taker_escrow_rejected: "the taker's escrow could not be kept",
  escrow_tampered: 'the escrow was taken back or moved on the node by someone other than the bridge',
};

export function causeText(cause) {
  if (!cause) return null;
  if (CAUSES[cause]) return CAUSES[cause];
  if (cause.startsWith('operator_')) return 'an operator resolved it';
  return cause;
}

/** Who ``wallet`` is in ``order``: {seller, buyer, maker, party}. */
export function roleOf(order, wallet) {
  const me = (wallet || '').toLowerCase();
  const maker = (order.maker_wallet || '').toLowerCase() === me && me !== '';
  const taker = (order.taker_wallet || '').toLowerCase() === me && me !== '';
  const seller = order.side === 'sell' ? maker : taker;
  const buyer = order.side === 'sell' ? taker : maker;
  return {seller, buyer, maker, taker, party: maker || taker};
}

/**
 * {now, next} sentences for ``order`` as seen by ``wallet``. ``next`` is what to do
 * (or "Nothing to do: ..." when the bridge is working on it).
 */
export function explain(order, wallet) {
  const r = roleOf(order, wallet);
  const rtc = formatRtc(BigInt(order.amount_micro_rtc));
  const q = order.quote_currency;
  const cause = causeText(order.end_cause);
  switch (order.status) {
    case 'locking':
      return {now: `The bridge is locking ${rtc} of the seller's in escrow on the RustChain node.`,
        next: 'Nothing to do: this normally takes seconds. If it stops here, the reconciler finishes the lock or refunds it.'};
    case 'open':
      if (r.maker && order.side === 'sell') {
        return {now: `Your ${rtc} (plus the node's 5 % fee) is held in escrow and your order is on the book.`,
          next: 'Wait for a buyer to take it (this page updates by itself), or cancel it to get the escrow refunded. Keep your secret safe.'};
      }
      if (r.maker) {
        return {now: 'Your buy order is on the book. Nothing of yours is held.',
          next: `Wait for a seller to take it: they lock the RTC in escrow, then you lock the ${q} in an HTLC as instructed here. You can cancel it while it is open.`};
      }
      return {now: 'This order is on the book, waiting for someone to take it.',
        next: order.side === 'sell'
          ? `Take it to buy the RTC: you will then lock the ${q} in an HTLC on the ${q} chain.`
          : `Take it to sell your RTC: your RTC (plus the node's 5 % fee) is locked in escrow and you receive a secret to keep.`};
    case 'matched':
      if (order.preimage_holder === 'buyer') return explainBuyerHeld(order, r, rtc, q);
      if (r.buyer) {
        return {now: `Matched. The RTC is in escrow for you until the settle-by deadline.`,
          next: `Lock exactly the amount shown below in an HTLC on the ${q} chain, with the hashlock, recipient and timelock shown. When the seller claims it, the secret becomes public on that chain: enter it below to release the RTC to you before the settle-by deadline.`};
      }
      if (r.seller) {
        return {now: `Matched. Your ${rtc} is in escrow; the buyer must lock the ${q} in an HTLC paying your address.`,
          next: `Check the buyer's HTLC on the ${q} chain (amount, hashlock, your address, timelock). Claim it with your secret, then enter the secret below to release the RTC to the buyer. Do not reveal the secret before the HTLC is locked.`};
      }
      return {now: 'Matched: the RTC is in escrow and the buyer locks the quote in an HTLC.',
        next: 'Anyone holding the secret can complete the settlement below.'};
    case 'settling':
      return {now: 'The secret was accepted. The bridge is releasing the escrow and queueing the RTC payout.',
        next: 'Nothing to do: the bridge finishes this (the reconciler takes over if it is interrupted).'};
    case 'payout_pending':
      if (order.preimage_holder === 'buyer' && r.seller) {
        return {now: `The escrow was released and the payout of ${rtc} to the buyer is queued on the node, waiting for the node to confirm it. The buyer's preimage is now shown to you.`,
          next: sellerClaimHint(order, q)};
      }
      return {now: `The escrow was released and the payout of ${rtc} to the buyer is queued on the node, waiting for the node to confirm it. The secret stays hidden until then.`,
        next: r.buyer ? 'Nothing to do: the RTC arrives in your wallet when the node confirms the payout. This page updates by itself.'
          : 'Nothing to do: this page updates by itself when the node confirms the payout.'};
    case 'settlement_recovery':
      return {now: 'The escrow left but the outcome of the payout is not certain (the node gave an unclear answer or refused it). Operators have been alerted; the payout is keyed, so it cannot be paid twice.',
        next: 'Do not confirm again. Keep your secret and the quote transaction id, and give the operator this order id if you contact them. The order moves on only when the node\'s records prove the outcome.'};
    case 'refund_pending':
      return {now: `The order ended${cause ? ` because ${cause}` : ''}. The escrow refund to the RTC seller is in progress and is retried until the node confirms it.`,
        next: 'Nothing to do: the refund completes by itself.'};
    case 'completed':
      return {now: `The swap is complete: ${rtc} was paid to the buyer's RTC wallet.`,
        next: r.buyer ? 'Done. The RTC is in your wallet.'
          : r.seller && order.preimage_holder === 'buyer' ? `Done. ${sellerClaimHint(order, q)}`
            : r.seller ? `Done. You were paid in ${q} when you claimed the HTLC.` : 'Nothing more to do.'};
    case 'cancelled':
      return {now: `Cancelled${cause ? ` because ${cause}` : ''}. Any escrow was refunded to the RTC seller.`,
        next: 'Nothing more to do.'};
    case 'expired':
      return {now: `Expired${cause ? ` because ${cause}` : ''}. Any escrow was refunded to the RTC seller.`,
        next: 'Nothing more to do.'};
    default:
      return {now: `Status: ${order.status}.`, next: 'Reload the page if this does not change.'};
  }
}

/** A matched buyer-held order: the RTC buyer locks, then reveals; the bridge claims for the seller. */
function explainBuyerHeld(order, r, rtc, q) {
  const locked = order.quote_leg?.state === 'locked';
  if (r.buyer) {
    return {now: `Matched. The RTC is in escrow for you until the settle-by deadline. You hold the secret (preimage): this page made it.`,
      next: locked ? 'Your lock is verified: reveal your preimage below to release the RTC to you, before the reveal deadline.'
        : `Lock the amount shown below in the bridge's HTLC on the ${q} chain from this page, before the lock-by time. Once the bridge has verified it, reveal your preimage here to receive the RTC.`};
  }
  if (r.seller) {
    return {now: `Matched. Your ${rtc} is in escrow; the buyer locks the ${q} in the bridge's HTLC, paying your address, under the buyer's own hashlock.`,
      next: `Nothing to do now: the bridge verifies the buyer's lock and releases the RTC on the buyer's reveal${bridgeClaims()
        ? ', then claims the HTLC for you (you pay no gas).'
        : '. This bridge does not claim for you: once the buyer\'s payout is committed, this page shows the preimage and a button to claim the HTLC (you pay its gas).'}${order.seller_secret_void ? ' The secret you saved when you created the order is void for this match.' : ''}`};
  }
  return {now: `Matched: the buyer locks the ${q} in the bridge's HTLC and holds the secret.`,
    next: locked ? 'The lock is verified; the buyer reveals next.' : 'Waiting for the buyer\'s lock.'};
}

/** The buyer-held RTC seller's next step once the payout is committed: claim, or be claimed for. */
function sellerClaimHint(order, q) {
  const leg = order.quote_leg;
  if (leg?.state === 'claimed') return `The buyer's HTLC was claimed: it paid the ${q} to your address (see the quote leg).`;
  if (leg?.state !== 'locked') return `See the quote leg for the buyer's HTLC on the ${q} chain.`;
  const margin = state.config?.quote_chain?.buyer_margin_seconds ?? 0;
  if (bridgeClaims() && !(leg.timelock && chainNow() >= leg.timelock - margin)) {
    return `Nothing to do: the bridge claims the buyer's HTLC for you, which pays the ${q} to your address (see the quote leg).`;
  }
  return `Claim the buyer's HTLC now from the quote leg below, before its timelock: it pays the ${q} to your address. ${bridgeClaims()
    ? 'The bridge no longer claims this close to the timelock.' : 'This bridge does not claim for you.'}`;
}

/** A short line for tables ("Waiting for you to lock the HTLC"). */
export function shortHint(order, wallet) {
  const r = roleOf(order, wallet);
  if (order.status === 'matched' && order.preimage_holder === 'buyer') {
    if (r.buyer) return order.quote_leg?.state === 'locked' ? 'Reveal your preimage' : 'Lock the HTLC from the order page';
    return r.seller ? (bridgeClaims() ? 'The bridge settles it for you' : 'Claim the HTLC once the buyer reveals')
      : 'Settling on the quote chain';
  }
  if (r.seller && order.preimage_holder === 'buyer' && ['payout_pending', 'completed'].includes(order.status)
    && order.quote_leg?.state === 'locked' && !bridgeClaims()) {
    return 'Claim the HTLC from the order page';
  }
  if (order.status === 'matched') return r.buyer ? 'Lock the HTLC, then confirm' : r.seller ? 'Claim the HTLC, then confirm' : 'Settling on the quote chain';
  if (order.status === 'open') return r.maker ? 'On the book' : 'Can be taken';
  return {
    locking: 'Escrow being locked', settling: 'Escrow being released', payout_pending: 'Node confirming the payout',
    settlement_recovery: 'Operators are resolving it', refund_pending: 'Refund in progress',
  }[order.status] || '';
}
