"""ERC-20 tokens (USDC, the dev chain's test USDC) from Python.

Amounts are integers in the token's base units (1 USDC = 10**6 base units). Uses the test
USDC's ABI, whose ERC-20 part is the standard one, so it reads any ERC-20; :meth:`mint`
exists only on the test token.
"""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import BlockIdentifier, TxReceipt

from otc_bridge.chain import tx
from otc_bridge.chain.artifacts import TEST_USDC, load_artifact


class ERC20Client:
    """The token at ``address``. Writes sign with ``account``, wait for the receipt and
    raise :class:`~otc_bridge.chain.tx.TransactionReverted` when the token refuses."""

    def __init__(self, w3: Web3, address: str) -> None:
        self.w3 = w3
        self.address = Web3.to_checksum_address(address)
        self.contract = tx.contract_at(w3, load_artifact(TEST_USDC), self.address)

    def balance_of(self, owner: str, *, block: BlockIdentifier = "latest") -> int:
        """``owner``'s balance in base units, as of ``block``."""
        return self.contract.functions.balanceOf(Web3.to_checksum_address(owner)).call(block_identifier=block)

    def allowance(self, owner: str, spender: str) -> int:
        """How many base units ``spender`` may still take from ``owner``."""
        return self.contract.functions.allowance(Web3.to_checksum_address(owner),
                                                 Web3.to_checksum_address(spender)).call()

    def decimals(self) -> int:
        """How many decimals one whole token has (6 for USDC)."""
        return self.contract.functions.decimals().call()

    def symbol(self) -> str:
        """The token's ticker, e.g. ``"USDC"``."""
        return self.contract.functions.symbol().call()

    def approve(self, account: LocalAccount, spender: str, amount: int) -> TxReceipt:
        """Let ``spender`` (e.g. the HTLC) take up to ``amount`` base units from ``account``."""
        return tx.transact(self.w3, account, self.contract.functions.approve(Web3.to_checksum_address(spender),
                                                                            amount))

    def transfer(self, account: LocalAccount, to: str, amount: int) -> TxReceipt:
        """Send ``amount`` base units from ``account`` to ``to``."""
        return tx.transact(self.w3, account, self.contract.functions.transfer(Web3.to_checksum_address(to), amount))

    def mint(self, account: LocalAccount, to: str, amount: int) -> TxReceipt:
        """Test token only: create ``amount`` base units for ``to`` (sent by ``account``)."""
        return tx.transact(self.w3, account, self.contract.functions.mint(Web3.to_checksum_address(to), amount))
