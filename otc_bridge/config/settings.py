"""The :class:`Config` dataclass: every setting, its default, and the rules between settings."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from otc_bridge.config.chain import CONTRACT_MAX_LOCK_SECONDS, QuoteChain, read_quote_chain
from otc_bridge.config.reader import ConfigError, RateLimit, Reader
from otc_bridge.domain.destinations import Webhook

#: The node clamps job TTLs to this (docs/escrow-node.md §1.2); our escrow must fit inside it.
NODE_MAX_JOB_TTL_SECONDS = 30 * 24 * 3600
#: The node's own floor for a job TTL (docs/escrow-node.md §1.2).
NODE_MIN_JOB_TTL_SECONDS = 3600


@dataclass(frozen=True)
class Config:
    """Every setting of the bridge. Build it with :meth:`from_env`; tests use ``replace``.

    Times are seconds. ``node_url`` is ``None`` only for commands that do not talk to a
    node; ``serve`` refuses to start without one.
    """

    db_path: str = "otc_bridge.storage.db"
    node_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 5580
    node_admin_key: str | None = field(default=None, repr=False)  # secrets: never in a log line
    node_tls_verify: bool | str = True
    node_connect_timeout_seconds: float = 3.05
    node_read_timeout_seconds: float = 10.0
    node_deadline_seconds: float = 15.0
    node_max_response_bytes: int = 1024 * 1024
    allow_insecure_admin: bool = False
    admin_token: str | None = field(default=None, repr=False)
    worker_wallet: str = "otc_bridge_worker"
    cors_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    rate_limit: RateLimit = field(default_factory=lambda: RateLimit(10, 60))
    max_body_bytes: int = 64 * 1024
    stream_max_clients: int = 64
    stream_heartbeat_seconds: float = 15.0
    stream_poll_seconds: float = 0.5
    metrics_token: str | None = field(default=None, repr=False)
    sqlite_synchronous: str = "FULL"
    settle_window_seconds: int = 48 * 3600
    htlc_min_seconds: int = 12 * 3600
    claim_margin_seconds: int = 24 * 3600
    escrow_margin_seconds: int = 24 * 3600
    default_order_ttl_seconds: int = 7 * 24 * 3600
    reconcile_interval_seconds: int = 10
    settlement_stuck_seconds: int = 300
    reconcile_disabled: bool = False
    alert_webhook_url: str | None = None
    escrow_lock_wait_seconds: float = 10.0
    webhooks: tuple[Webhook, ...] = ()
    outbox_disabled: bool = False
    outbox_interval_seconds: float = 2.0
    outbox_max_attempts: int = 8
    outbox_visibility_seconds: int = 60
    outbox_backoff_base_seconds: int = 2
    outbox_backoff_max_seconds: int = 3600
    webhook_connect_timeout_seconds: float = 3.0
    webhook_read_timeout_seconds: float = 10.0
    # How `otc-bridge serve` bounds each connection (docs/serving.md): seconds, except the
    # connections per worker (open sockets, waiting or being served).
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 10.0
    keepalive_seconds: float = 5.0
    write_timeout_seconds: float = 30.0
    handler_timeout_seconds: float = 120.0
    worker_connections: int = 4096
    # The EVM quote chain (ETH, USDC), or None: every pair settled on evidence (config/chain.py).
    quote_chain: QuoteChain | None = None

    @property
    def max_order_ttl_seconds(self) -> int:
        """Longest order TTL whose escrow job still fits the node's 30-day cap (docs/protocol.md §4)."""
        return NODE_MAX_JOB_TTL_SECONDS - self.settle_window_seconds - self.escrow_margin_seconds

    def escrow_margin_for(self, pair: str) -> int:
        """How long (seconds) an order's escrow job outlives its ``settle_by``. For an EVM pair
        watched on chain, at least the contract's longest timelock (7 d) plus an hour: in the
        seller-held mode the escrow must not go back to the seller while any lock with the
        order's hashlock could still be claimed (docs/protocol.md §12.4), and a job past its
        TTL is refunded by the node itself."""
        if self.quote_chain is not None and pair in ("RTC/ETH", "RTC/USDC"):
            return max(self.escrow_margin_seconds, CONTRACT_MAX_LOCK_SECONDS + 3600)
        return self.escrow_margin_seconds

    def max_order_ttl_for(self, pair: str) -> int:
        """Longest order TTL (seconds) for ``pair`` whose escrow job fits the node's 30-day cap."""
        return NODE_MAX_JOB_TTL_SECONDS - self.settle_window_seconds - self.escrow_margin_for(pair)

    @property
    def escrow_create_lease_seconds(self) -> float:
        """TTL of the per-wallet lease held around one escrow creation (settlement/lock.py);
        every node call's total deadline must be shorter (docs/escrow-node.md §4)."""
        return self.escrow_lock_wait_seconds + 2 * (self.node_connect_timeout_seconds + self.node_read_timeout_seconds)

    def replace(self, **changes: object) -> Config:
        """A copy with ``changes`` applied and validated again."""
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    def validate(self) -> None:
        """Cross-field rules; raises :class:`ConfigError` naming the variable at fault."""
        if self.htlc_min_seconds >= self.settle_window_seconds - self.claim_margin_seconds:
            raise ConfigError(
                "OTC_HTLC_MIN_SECONDS",
                "must be less than OTC_SETTLE_WINDOW_SECONDS - OTC_CLAIM_MARGIN_SECONDS, "
                "or the buyer has no valid HTLC timelock",
            )
        if self.max_order_ttl_seconds < NODE_MIN_JOB_TTL_SECONDS:
            raise ConfigError(
                "OTC_SETTLE_WINDOW_SECONDS",
                "settle window + escrow margin leave no room for an order within the "
                "node's 30-day job TTL",
            )
        if self.default_order_ttl_seconds < NODE_MIN_JOB_TTL_SECONDS:
            raise ConfigError("OTC_DEFAULT_TTL_SECONDS", "must be at least 3600")
        if self.default_order_ttl_seconds > self.max_order_ttl_seconds:
            raise ConfigError(
                "OTC_DEFAULT_TTL_SECONDS",
                f"must be at most {self.max_order_ttl_seconds} (node 30-day cap minus "
                "settle window and escrow margin)",
            )
        if self.metrics_token is not None and len(self.metrics_token) < 24:
            raise ConfigError("OTC_METRICS_TOKEN", "must be at least 24 characters")
        if "*" in self.cors_origins:
            raise ConfigError("OTC_CORS_ORIGINS", "'*' is refused; list the allowed origins")
        if self.outbox_visibility_seconds <= self.webhook_connect_timeout_seconds + self.webhook_read_timeout_seconds:
            raise ConfigError("OTC_OUTBOX_VISIBILITY_SECONDS",
                              "must exceed the webhook connect + read timeouts, or a slow delivery "
                              "would be taken for a crashed one and sent twice")
        if self.node_deadline_seconds >= self.escrow_create_lease_seconds:
            raise ConfigError("OTC_NODE_DEADLINE_SECONDS",
                              f"must be below the escrow-create lease ({self.escrow_create_lease_seconds:g} s = "
                              "OTC_ESCROW_LOCK_WAIT_SECONDS + 2 x (connect + read timeouts)), or the lease "
                              "could expire while a job creation is still running")
        if self.quote_chain is not None:
            self.quote_chain.validate(self.settle_window_seconds)
        if self.outbox_backoff_max_seconds < self.outbox_backoff_base_seconds:
            raise ConfigError("OTC_OUTBOX_BACKOFF_MAX_SECONDS", "must be at least OTC_OUTBOX_BACKOFF_BASE_SECONDS")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """Read every variable from ``env`` (normally ``os.environ``).

        Raises :class:`ConfigError` on the first bad value, naming its variable.
        """
        r = Reader(env)
        cfg = cls(
            db_path=r.text("OTC_DB_PATH", cls.db_path),
            node_url=r.url("RUSTCHAIN_NODE"),
            host=r.text("OTC_HOST", cls.host),
            port=r.integer("OTC_PORT", cls.port, 1, 65535),
            node_admin_key=r.optional("RC_ADMIN_KEY"),
            node_tls_verify=r.tls_verify(),
            node_connect_timeout_seconds=r.number("OTC_NODE_CONNECT_TIMEOUT_SECONDS", 3.05),
            node_read_timeout_seconds=r.number("OTC_NODE_TIMEOUT_SECONDS", 10.0),
            allow_insecure_admin=r.flag("OTC_ALLOW_INSECURE_ADMIN"),
            admin_token=r.admin_token(),
            worker_wallet=r.text("OTC_WORKER_WALLET", cls.worker_wallet),
            cors_origins=r.origins("OTC_CORS_ORIGINS"),
            trusted_proxies=r.networks("OTC_TRUSTED_PROXIES"),
            rate_limit=r.rate("OTC_RATE_LIMIT", "10/minute"),
            max_body_bytes=r.integer("OTC_MAX_BODY_BYTES", cls.max_body_bytes, 1024, 10**7),
            stream_max_clients=r.integer("OTC_STREAM_MAX_CLIENTS", cls.stream_max_clients, 1, 10_000),
            stream_heartbeat_seconds=r.number("OTC_STREAM_HEARTBEAT_SECONDS", cls.stream_heartbeat_seconds),
            stream_poll_seconds=r.number("OTC_STREAM_POLL_SECONDS", cls.stream_poll_seconds),
            metrics_token=r.optional("OTC_METRICS_TOKEN"),
            sqlite_synchronous=r.choice("OTC_SQLITE_SYNCHRONOUS", "FULL", ("FULL", "NORMAL", "EXTRA")),
            settle_window_seconds=r.integer("OTC_SETTLE_WINDOW_SECONDS", cls.settle_window_seconds, 3600, 10**7),
            htlc_min_seconds=r.integer("OTC_HTLC_MIN_SECONDS", cls.htlc_min_seconds, 600, 10**7),
            claim_margin_seconds=r.integer("OTC_CLAIM_MARGIN_SECONDS", cls.claim_margin_seconds, 600, 10**7),
            escrow_margin_seconds=r.integer("OTC_ESCROW_MARGIN_SECONDS", cls.escrow_margin_seconds, 600, 10**7),
            default_order_ttl_seconds=r.integer("OTC_DEFAULT_TTL_SECONDS", cls.default_order_ttl_seconds, 1, 10**8),
            reconcile_interval_seconds=r.integer("OTC_RECONCILE_INTERVAL_SECONDS", 10, 1, 86400),
            settlement_stuck_seconds=r.integer("OTC_SETTLEMENT_STUCK_SECONDS", 300, 1, 10**7),
            reconcile_disabled=r.flag("OTC_RECONCILE_DISABLED"),
            alert_webhook_url=r.url("RC_SOPHIACHECK_WEBHOOK"),
            escrow_lock_wait_seconds=r.number("OTC_ESCROW_LOCK_WAIT_SECONDS", 10.0),
            # Default 15 s, less if 2 x (connect + read) is less: always below the escrow-create lease.
            node_deadline_seconds=r.number("OTC_NODE_DEADLINE_SECONDS", min(cls.node_deadline_seconds, 2 * (
                r.number("OTC_NODE_CONNECT_TIMEOUT_SECONDS", 3.05) + r.number("OTC_NODE_TIMEOUT_SECONDS", 10.0)))),
            node_max_response_bytes=r.integer("OTC_NODE_MAX_RESPONSE_BYTES", cls.node_max_response_bytes,
                                              4096, 64 * 1024 * 1024),
            webhooks=r.webhooks("OTC_WEBHOOKS"),
            outbox_disabled=r.flag("OTC_OUTBOX_DISABLED"),
            outbox_interval_seconds=r.number("OTC_OUTBOX_INTERVAL_SECONDS", 2.0),
            outbox_max_attempts=r.integer("OTC_OUTBOX_MAX_ATTEMPTS", 8, 1, 100),
            outbox_visibility_seconds=r.integer("OTC_OUTBOX_VISIBILITY_SECONDS", 60, 2, 86400),
            outbox_backoff_base_seconds=r.integer("OTC_OUTBOX_BACKOFF_BASE_SECONDS", 2, 1, 3600),
            outbox_backoff_max_seconds=r.integer("OTC_OUTBOX_BACKOFF_MAX_SECONDS", 3600, 1, 7 * 86400),
            webhook_connect_timeout_seconds=r.number("OTC_WEBHOOK_CONNECT_TIMEOUT_SECONDS", 3.0),
            webhook_read_timeout_seconds=r.number("OTC_WEBHOOK_TIMEOUT_SECONDS", 10.0),
            header_timeout_seconds=r.number("OTC_HEADER_TIMEOUT_SECONDS", cls.header_timeout_seconds),
            body_timeout_seconds=r.number("OTC_BODY_TIMEOUT_SECONDS", cls.body_timeout_seconds),
            keepalive_seconds=r.number("OTC_KEEPALIVE_SECONDS", cls.keepalive_seconds),
            write_timeout_seconds=r.number("OTC_WRITE_TIMEOUT_SECONDS", cls.write_timeout_seconds),
            handler_timeout_seconds=r.number("OTC_HANDLER_TIMEOUT_SECONDS", cls.handler_timeout_seconds),
            worker_connections=r.integer("OTC_WORKER_CONNECTIONS", cls.worker_connections, 64, 100_000),
            quote_chain=read_quote_chain(r),
        )
        cfg.validate()
        return cfg


