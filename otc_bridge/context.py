"""The services' shared dependencies, built once by the app factory or the CLI."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from otc_bridge.config import Config
from otc_bridge.node.client import EscrowNodeClient
from otc_bridge.storage.db import Database


def wall_clock() -> int:
    """Unix time in whole seconds (the unit of every timestamp the bridge stores)."""
    return int(time.time())


@dataclass
class Bridge:
    """Database, settings, escrow-node client and clock, passed to every service call.

    ``clock`` returns unix seconds; tests pass their own (or use freezegun).
    """

    config: Config
    db: Database
    node: EscrowNodeClient
    clock: Callable[[], int] = field(default=wall_clock)

    def now(self) -> int:
        """Current unix time in seconds."""
        return self.clock()
