"""The HTLC's tests run on one anvil per session (``dev_chain``, from tests/chain_support.py),
each test inside a snapshot reverted when it ends (``evm``). The test-only contracts (a
fee-on-transfer token, a hostile receiver) are deployed once, before the first snapshot.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# web3 7 imports websockets' deprecated legacy client when it loads; nothing here uses it.
warnings.filterwarnings("ignore", "websockets.legacy is deprecated", DeprecationWarning)

from chain_helpers import TestContracts, deploy_test_contracts  # noqa: E402
from chain_support import dev_chain  # noqa: E402, F401 - fixture

from otc_bridge.dev.chain import DevChain  # noqa: E402


@pytest.fixture(scope="session")
def test_contracts(dev_chain) -> TestContracts:  # noqa: F811 - the imported fixture
    """FeeToken and two HostileReceivers, deployed on the session's chain."""
    return deploy_test_contracts(dev_chain)


@pytest.fixture
def evm(dev_chain, test_contracts) -> DevChain:  # noqa: F811
    """The session's chain (test contracts included), reverted after the test."""
    with dev_chain.isolated():
        yield dev_chain
