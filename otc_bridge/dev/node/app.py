"""The dev node's app factory (see the package docstring for what the app serves)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from . import common, dev, jobs, jobs_read, pending, stats, store, wallet
from . import faults as fault_rules

MIN_ADMIN_KEY_LENGTH = 32  # the real node exits at start with a shorter RC_ADMIN_KEY


def create_app(
    db_path: str,
    admin_key: str,
    confirm_delay_seconds: int = 0,
    admin_rate_limit_max: int = 0,
    admin_rate_limit_window_seconds: int = 60,
    faults: list[dict[str, Any]] | None = None,
) -> Flask:
    """Build a dev escrow node app on the SQLite file ``db_path`` (created/migrated now).

    ``admin_key``: the ``X-Admin-Key`` value, at least 32 characters (ValueError otherwise).
    ``confirm_delay_seconds``: pending transfers are due ``now + delay`` (node default
    86400; the dev default 0 makes them confirmable at once). ``admin_rate_limit_max``:
    requests per window per IP and bucket on ``/wallet/transfer`` and ``/pending/*``;
    0 disables the limit. ``faults``: rules (see ``faults.py``) that REPLACE the rules
    stored in the DB; None keeps the stored ones. Raises ValueError for a bad argument.
    """
    if not isinstance(admin_key, str) or len(admin_key) < MIN_ADMIN_KEY_LENGTH:
        raise ValueError(f"admin_key must be at least {MIN_ADMIN_KEY_LENGTH} characters")
    for name, value, minimum in (
        ("confirm_delay_seconds", confirm_delay_seconds, 0),
        ("admin_rate_limit_max", admin_rate_limit_max, 0),
        ("admin_rate_limit_window_seconds", admin_rate_limit_window_seconds, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}")
    rules = [fault_rules.normalize_rule(rule) for rule in faults] if faults is not None else None

    store.migrate(db_path)
    if rules is not None:
        conn = store.connect(db_path)
        try:
            with store.transaction(conn):
                conn.execute("DELETE FROM dev_faults")
                fault_rules.add_rules(conn, rules, store.now(conn))
        finally:
            conn.close()

    app = Flask("otc_bridge.dev.node")
    app.json.sort_keys = True  # the node answers with jsonify's sorted keys
    app.extensions[store.EXTENSION_KEY] = store.NodeSettings(
        db_path=db_path,
        admin_key=admin_key,
        confirm_delay_seconds=confirm_delay_seconds,
        rate_limit_max=admin_rate_limit_max,
        rate_limit_window_seconds=admin_rate_limit_window_seconds,
    )
    # Hook order matters: the request counter first (it only counts, so every request is
    # counted, faulted or not), then faults (a faulted call never reaches the rate limiter, and
    # its after-request delay runs after every other after-request hook).
    stats.install(app)
    fault_rules.install(app)
    common.install(app)
    common.install_rate_limit(
        app, common.AdminRateLimiter(admin_rate_limit_max, admin_rate_limit_window_seconds)
    )
    for blueprint in (jobs.bp, jobs_read.bp, wallet.bp, pending.bp, dev.bp):
        app.register_blueprint(blueprint)
    app.teardown_appcontext(store.close_db)
    return app
