"""The claimer's transactions (docs/protocol.md §12.8): sign, record, broadcast, replace.

:class:`Claimer` is ``OTC_EVM_CLAIMER_KEY`` on the configured chain. Every transaction it
signs is recorded first (:func:`otc_bridge.storage.quote_locks.record_claim_tx`: order, hash,
nonce, gas, fees, the latest block and the bridge's time) in its own committed write, and
only then broadcast; the crash points ``before:claim_tx`` / ``after:claim_tx`` surround every
broadcast. So after a crash anywhere the reconciler finds the nonce in flight and every hash
sent under it, and re-broadcasts, replaces or recognises what landed. The decisions (what to
send, when) are :mod:`otc_bridge.settlement.quote_claim`'s; this module only carries them out.

Fees are wei per gas (:class:`otc_bridge.chain.tx.Fees`), never above
``OTC_EVM_MAX_FEE_WEI``. Chain calls raise what web3 raises (``Web3Exception``, ``requests``
errors) or :class:`otc_bridge.chain.tx.ChainError`; the caller's pass logs and retries.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from otc_bridge import crashpoints
from otc_bridge.context import Bridge
from otc_bridge.domain.order import Order
from otc_bridge.storage import orders, outbox, quote_locks
from otc_bridge.storage.quote_locks import ClaimTx

if TYPE_CHECKING:  # web3 loads only with a chain configured
    from otc_bridge.chain.reader import BlockRef
    from otc_bridge.chain.tx import Fees, SignedTx

log = logging.getLogger(__name__)


class Claimer:
    """The claimer key of ``bridge`` (which must have a chain and ``OTC_EVM_CLAIMER_KEY``)."""

    def __init__(self, bridge: Bridge) -> None:
        from eth_account import Account

        self.bridge = bridge
        self.settings = bridge.config.quote_chain
        self.chain = bridge.chain
        self.w3 = bridge.chain.w3
        self.account = Account.from_key(self.settings.claimer_key)
        self._suggested: Fees | None = None  # read once per pass: a pass takes well under a block

    @property
    def address(self) -> str:
        return self.account.address

    # --- reads ---------------------------------------------------------------------------------

    def nonces(self) -> tuple[int, int]:
        """``(mined, pending)``: the key's transaction count in the latest block, and with the
        node's pending transactions counted. ``pending > mined`` means something is in flight."""
        return (self.w3.eth.get_transaction_count(self.address),
                self.w3.eth.get_transaction_count(self.address, "pending"))

    def last(self) -> ClaimTx | None:
        """The newest transaction this key signed as the claimer (recorded, maybe never sent)."""
        return quote_locks.last_claim_tx(self.bridge.db.connection(), self.address)

    def pooled(self, claim: ClaimTx) -> bool:
        """True if the node knows ``claim``'s transaction (pending, or mined a moment ago)."""
        from otc_bridge.chain import tx

        return tx.find(self.w3, claim.tx_hash) is not None

    def stuck(self, claim: ClaimTx, head: BlockRef) -> bool:
        """True if ``claim`` is due for a replacement: ``OTC_EVM_CLAIM_BUMP_SECONDS`` passed
        since it was sent, and ``OTC_EVM_CLAIM_BUMP_BLOCKS`` blocks were mined without it or
        the next block's base fee is above what it may pay (it cannot be mined at all)."""

        q = self.settings
        if self.bridge.now() - claim.sent_at < q.claim_bump_after_seconds:
            return False
        if head.number - claim.sent_block >= q.claim_bump_after_blocks:
            return True
        suggested = self.suggested_fees()
        # The suggestion's max fee is 2 base + tip: its base fee is (max - tip) / 2.
        return not suggested.legacy and fees_of(claim).ceiling_wei < (
            suggested.max_fee_per_gas_wei - suggested.max_priority_fee_per_gas_wei) // 2

    def suggested_fees(self) -> Fees:
        """The node's fees for the next block (:func:`otc_bridge.chain.tx.suggest_fees`)."""
        from otc_bridge.chain import tx

        if self._suggested is None:
            self._suggested = tx.suggest_fees(self.w3)
        return self._suggested

    def market_fees(self) -> Fees | None:
        """The node's suggested fees with the max fee lowered to the cap, or None (alert
        ``claim_fee_capped``, once an hour) when even the next block's price is above it."""
        cap_wei = self.settings.max_fee_per_gas_wei
        suggested = self.suggested_fees()
        # What the next block charges: the gas price, or the base fee plus the tip (the
        # suggested max fee is 2 base + tip, so (max + tip) / 2 is exactly base + tip).
        price_wei = (suggested.gas_price_wei if suggested.legacy else
                     (suggested.max_fee_per_gas_wei + suggested.max_priority_fee_per_gas_wei) // 2)
        if price_wei > cap_wei:
            self._alert_once("claim_fee_capped", f"gas price {price_wei} wei is above OTC_EVM_MAX_FEE_WEI {cap_wei}; "
                                                 "claims wait", key=str(self.bridge.now() // 3600))
            return None
        return suggested.capped(cap_wei)

    def replacement_fees(self, claim: ClaimTx) -> Fees | None:
        """Fees for a transaction replacing ``claim``: each fee raised by
        ``OTC_EVM_CLAIM_BUMP_PERCENT`` (at least 10 % plus 1 wei), or to the node's suggestion
        if higher, lowered to the cap; None when the cap leaves less than nodes accept."""
        from otc_bridge.chain import tx

        old = fees_of(claim)
        wanted = tx.bumped(old, self.settings.claim_bump_percent).at_least(self.suggested_fees())
        fees = wanted.capped(self.settings.max_fee_per_gas_wei)
        return fees if fees.covers(tx.replacement_floor(old)) else None

    # --- writes --------------------------------------------------------------------------------

    def send(self, order: Order, *, action: str, nonce: int, fees: Fees, head: BlockRef, gas: int | None = None,
             reason: str) -> str:
        """Sign ``action`` (``claim`` of ``order``'s lock, or ``cancel``) at ``nonce`` with
        ``fees``, record it, then broadcast it; returns its hash. A claim's gas is estimated
        when ``gas`` is None, so a claim that would revert is never sent
        (:class:`~otc_bridge.chain.tx.TransactionReverted`, nothing recorded)."""
        signed = self._sign(order, action=action, nonce=nonce, fees=fees, gas=gas)
        claim = ClaimTx(order_id=order.order_id, tx_hash=signed.hash, sender=self.address.lower(), nonce=nonce,
                        action=action, gas=signed.gas, max_fee_per_gas_wei=fees.max_fee_per_gas_wei,
                        max_priority_fee_per_gas_wei=fees.max_priority_fee_per_gas_wei,
                        gas_price_wei=fees.gas_price_wei, sent_block=head.number, sent_at=self.bridge.now())
        with self.bridge.db.transaction() as txn:
            quote_locks.record_claim_tx(txn, claim, order_version=order.order_version, now=self.bridge.now(),
                                        reason=f"claimer {action} at nonce {nonce}: {reason}")
        self._broadcast(signed)
        log.info("%s for the seller of order %s at nonce %d (%s): %s, max %d wei per gas", action, order.order_id,
                 nonce, reason, signed.hash, fees.ceiling_wei)
        return signed.hash

    def rebroadcast(self, claim: ClaimTx, order: Order) -> str:
        """Send the recorded ``claim`` again, exactly (the node lost it, or a crash came before
        its broadcast): signed anew from its record, which gives the same hash."""
        from otc_bridge.chain.tx import ChainError

        signed = self._sign(order, action=claim.action, nonce=claim.nonce, fees=fees_of(claim), gas=claim.gas)
        if signed.hash != claim.tx_hash:  # cannot happen with deterministic signatures: never send unrecorded
            raise ChainError(f"re-signed claim {signed.hash} differs from the recorded {claim.tx_hash}")
        self._broadcast(signed)
        log.info("claimer %s of order %s re-sent: %s", claim.action, order.order_id, claim.tx_hash)
        return claim.tx_hash

    def resolve(self, claim: ClaimTx) -> None:
        """``claim``'s nonce was used on chain: record once which of the transactions sent for
        its order under that nonce was mined (``ok``, or ``failed`` if it reverted), or
        ``unknown`` if none was (another transaction took the nonce)."""
        from web3.exceptions import TransactionNotFound

        conn = self.bridge.db.connection()
        if quote_locks.claim_outcome_recorded(conn, claim.order_id, claim.sender, claim.nonce):
            return
        outcome, landed, block = "unknown", None, None
        for sent in quote_locks.claim_txs_at(conn, claim.order_id, claim.sender, claim.nonce):
            try:
                receipt = self.w3.eth.get_transaction_receipt(sent.tx_hash)
            except TransactionNotFound:
                continue
            outcome = "ok" if receipt["status"] == 1 else "failed"
            landed, block = sent.tx_hash, receipt["blockNumber"]
            break
        what = {"ok": f"{landed} mined in block {block}", "failed": f"{landed} mined in block {block} but reverted",
                "unknown": "taken by a transaction not sent for this order"}[outcome]
        order = orders.get_order(conn, claim.order_id)
        with self.bridge.db.transaction() as txn:
            quote_locks.record_claim_outcome(txn, claim.order_id, order.order_version, sender=claim.sender,
                                             nonce=claim.nonce, outcome=outcome, tx_hash=landed, block_number=block,
                                             reason=f"claimer nonce {claim.nonce}: {what}", now=self.bridge.now())
        log.info("claimer nonce %d of order %s: %s", claim.nonce, claim.order_id, what)

    def check_balance(self) -> None:
        """Alert ``claimer_low_gas`` (once a day) below ``OTC_EVM_CLAIMER_LOW_BALANCE_WEI``."""
        balance_wei = self.w3.eth.get_balance(self.address)
        low_wei = self.settings.claimer_low_balance_wei
        if balance_wei < low_wei:
            self._alert_once("claimer_low_gas", f"the claimer {self.address} holds {balance_wei} wei, below {low_wei}; "
                                                "fund it or claims will stop", key=str(self.bridge.now() // 86400))

    # --- helpers -------------------------------------------------------------------------------

    def _sign(self, order: Order, *, action: str, nonce: int, fees: Fees, gas: int | None) -> SignedTx:
        from hexbytes import HexBytes

        from otc_bridge.chain import tx

        if action == "cancel":
            return tx.prepare_cancel(self.w3, self.account, nonce=nonce, fees=fees)
        call = self.chain.htlc.contract.functions.claim(bytes(HexBytes(order.quote_swap_id)),
                                                        bytes.fromhex(order.htlc_secret))
        return tx.prepare(self.w3, self.account, call, nonce=nonce, fees=fees, gas=gas)

    def _broadcast(self, signed: SignedTx) -> None:
        """Broadcast ``signed`` between the crash points. A refusal because its nonce was used
        meanwhile (an earlier transaction at it was mined) is no error: the next pass sees it."""
        from web3.exceptions import Web3RPCError

        from otc_bridge.chain import tx

        crashpoints.crash_point("before:claim_tx")
        try:
            tx.broadcast(self.w3, signed)
        except Web3RPCError as refused:
            if self.w3.eth.get_transaction_count(self.address) <= signed.nonce:
                raise
            log.info("claimer nonce %d was used before %s went out (%s)", signed.nonce, signed.hash, refused)
        crashpoints.crash_point("after:claim_tx")

    def _alert_once(self, code: str, message: str, *, key: str) -> None:
        log.warning("alert %s: %s", code, message)
        with self.bridge.db.transaction() as txn:
            outbox.alert_once(txn, code=code, message=message, key=key, now=self.bridge.now())


def fees_of(claim: ClaimTx) -> Fees:
    """The fees ``claim`` was signed with."""
    from otc_bridge.chain.tx import Fees

    if claim.gas_price_wei is not None:
        return Fees(gas_price_wei=claim.gas_price_wei)
    return Fees(claim.max_fee_per_gas_wei, claim.max_priority_fee_per_gas_wei)
