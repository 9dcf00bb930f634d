"""Settings, read from the environment once and validated at startup.

Variable names follow the reference bridge where one exists (docs/protocol.md §3), so an
operator can switch without renaming anything. A bad value is a :class:`ConfigError` that
names the variable; nothing falls back silently to a default. :mod:`.reader` parses one
variable; :mod:`.settings` holds :class:`Config` and its cross-field rules; :mod:`.chain` the EVM quote
chain's.
"""

from otc_bridge.config.chain import QuoteChain
from otc_bridge.config.reader import ConfigError, RateLimit
from otc_bridge.config.settings import NODE_MAX_JOB_TTL_SECONDS, NODE_MIN_JOB_TTL_SECONDS, Config

__all__ = ["Config", "ConfigError", "QuoteChain", "RateLimit", "NODE_MAX_JOB_TTL_SECONDS", "NODE_MIN_JOB_TTL_SECONDS"]
