"""``python -m otc_bridge.dev.node``: run the dev escrow node in the foreground."""

from __future__ import annotations

import argparse
import logging

from . import create_app
from .faults import FaultSpecError, parse_fault_spec
from .server import DEFAULT_DEV_ADMIN_KEY, serve_forever


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the app and serve it; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m otc_bridge.dev.node", description="Local simulator of the RustChain escrow node")
    parser.add_argument("--db", default="devnode.sqlite3", help="SQLite file of the dev node")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--admin-key", default=DEFAULT_DEV_ADMIN_KEY)
    parser.add_argument("--confirm-delay", type=int, default=0, help="seconds (node: 86400)")
    parser.add_argument("--rate-limit-max", type=int, default=0, help="0 disables it")
    parser.add_argument("--rate-limit-window", type=int, default=60)
    parser.add_argument("--fault", action="append", default=None, metavar="SPEC",
                        help="e.g. 'POST /wallet/transfer=timeout_after:count=1' or JSON; "
                        "given at least once, replaces the stored rules")
    args = parser.parse_args(argv)
    try:
        faults = None
        if args.fault is not None:
            faults = [rule for spec in args.fault for rule in parse_fault_spec(spec)]
        app = create_app(args.db, args.admin_key, args.confirm_delay, args.rate_limit_max,
                         args.rate_limit_window, faults)
    except (FaultSpecError, ValueError) as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO)
    serve_forever(app, args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
