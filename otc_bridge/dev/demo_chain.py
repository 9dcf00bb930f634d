"""The demo traders' side of the dev chain (``otc-bridge demo``, :mod:`otc_bridge.dev.demo`):
web3 clients of the HTLC and the test USDC that ``otc-bridge dev`` deployed, with the seller's
and buyer's keys from ``dev.json`` (anvil's public dev keys, :mod:`otc_bridge.dev.chain`).

web3 is imported only when a :class:`DemoChain` is made, so the rest of the demo loads
without it. The gas each trader pays is counted, so the demo's balance check can be exact.
"""

from __future__ import annotations


class DemoChain:
    """The demo traders on the dev chain: web3 clients of the HTLC and the test USDC, the
    seller's and buyer's keys from ``dev.json`` (anvil's public dev keys), and the gas each
    paid (wei) so the balance check can be exact."""

    def __init__(self, info: dict) -> None:
        from eth_account import Account

        from otc_bridge.chain import tx
        from otc_bridge.chain.erc20 import ERC20Client
        from otc_bridge.chain.htlc import HTLCClient

        self.w3 = tx.connect(info["evm_rpc_url"])
        self.htlc = HTLCClient(self.w3, info["htlc_address"])
        self.usdc = ERC20Client(self.w3, info["usdc_address"])
        keys = info["evm_accounts"]
        self.accounts = {role: Account.from_key(keys[role]["private_key"]) for role in ("seller", "buyer")}
        self.gas_paid = {"seller": 0, "buyer": 0}

    def address(self, role: str) -> str:
        return self.accounts[role].address

    def now(self) -> int:
        """The latest block's timestamp (unix seconds): the clock of every timelock."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def balances(self) -> dict[tuple[str, str], int]:
        """``{(role, "wei" | "usdc"): balance}`` of the seller and the buyer."""
        out = {}
        for role, account in self.accounts.items():
            out[(role, "wei")] = self.w3.eth.get_balance(account.address)
            out[(role, "usdc")] = self.usdc.balance_of(account.address)
        return out

    def _paid(self, role: str, receipt) -> None:
        self.gas_paid[role] += receipt["gasUsed"] * receipt["effectiveGasPrice"]

    def lock(self, ins: dict, order_id: str, timelock: int) -> tuple[str, bytes]:
        """The buyer locks the instructions' amount (ETH, or USDC after an approve) for
        ``pay_to_address`` under ``htlc_hash`` until ``timelock``; ``(lock tx hash, swap id)``."""
        buyer, amount = self.accounts["buyer"], int(ins["total_quote_base_units"])
        terms = {"seller": ins["pay_to_address"], "hashlock": bytes.fromhex(ins["htlc_hash"]), "timelock": timelock,
                 "rtc_order_id": order_id}
        if ins["token_contract"] is None:
            created, receipt = self.htlc.create_swap_eth(buyer, amount_wei=amount, **terms)
        else:
            self._paid("buyer", self.usdc.approve(buyer, self.htlc.address, amount))
            created, receipt = self.htlc.create_swap_erc20(buyer, token=ins["token_contract"], amount=amount, **terms)
        self._paid("buyer", receipt)
        return receipt["transactionHash"].to_0x_hex(), created.swap_id

    def claim(self, swap_id: bytes, preimage_hex: str) -> str:
        """The seller claims ``swap_id`` with the preimage (seller-held); the claim tx hash."""
        receipt = self.htlc.claim(self.accounts["seller"], swap_id, bytes.fromhex(preimage_hex))
        self._paid("seller", receipt)
        return receipt["transactionHash"].to_0x_hex()

    def sender(self, tx_hash: str) -> str:
        """Who sent ``tx_hash``."""
        return self.w3.eth.get_transaction(tx_hash)["from"]
