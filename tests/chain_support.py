"""The EVM dev chain for any test directory: one anvil per session, started on first use.

Use it from a conftest (importing a fixture registers it there):

    from chain_support import dev_chain, evm  # noqa: F401

``dev_chain`` (session) is a started :class:`otc_bridge.dev.chain.DevChain`: anvil on
127.0.0.1, HTLC and test USDC deployed, demo wallets funded. ``evm`` (per test) is the same
chain inside a snapshot that is reverted when the test ends, so tests cannot see each
other's swaps, balances or clock moves. Nothing here imports web3 until a test asks for a
chain, so suites that never do pay nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from otc_bridge.dev.chain import DevChain


def start_dev_chain(**kwargs) -> DevChain:
    """A started :class:`DevChain` (``kwargs`` go to its constructor); the caller stops it."""
    from otc_bridge.dev.chain import DevChain

    return DevChain(**kwargs).start()


@pytest.fixture(scope="session")
def dev_chain() -> Iterator[DevChain]:
    """anvil with our contracts, shared by the session; stopped when it ends."""
    chain = start_dev_chain()
    try:
        yield chain
    finally:
        chain.stop()


@pytest.fixture
def evm(dev_chain) -> Iterator[DevChain]:
    """The session's chain, reverted to how this test found it when the test ends."""
    with dev_chain.isolated():
        yield dev_chain
