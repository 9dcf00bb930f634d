"""The services' shared dependencies, built once by the app factory or the CLI."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from otc_bridge.config import Config
from otc_bridge.node.client import EscrowNodeClient
from otc_bridge.storage.db import Database

if TYPE_CHECKING:  # web3 takes seconds to import: only a bridge with a chain configured pays for it
    from otc_bridge.chain.reader import QuoteChainReader


def wall_clock() -> int:
    """Unix time in whole seconds (the unit of every timestamp the bridge stores)."""
    return int(time.time())


@dataclass
class Bridge:
    """Database, settings, escrow-node client, quote-chain reader and clock, passed to every
    service call.

    ``chain`` is ``None`` when no EVM chain is configured (every pair settled on evidence).
    ``clock`` returns unix seconds; tests pass their own (or use freezegun). Timelock
    margins use chain time instead (``chain.latest_time()``).
    """

    config: Config
    db: Database
    node: EscrowNodeClient
    clock: Callable[[], int] = field(default=wall_clock)
    chain: QuoteChainReader | None = None

    def now(self) -> int:
        """Current unix time in seconds."""
        return self.clock()
