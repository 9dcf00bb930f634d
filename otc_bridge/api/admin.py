"""Admin routes, behind the bridge's own ``OTC_ADMIN_TOKEN`` (never the node's key).

With no token configured the routes do not exist (404), so a forgotten setting cannot
leave them open. The token is accepted as ``Authorization: Bearer <token>`` or
``X-Admin-Key: <token>`` and compared in constant time.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, abort, jsonify, request

from otc_bridge import reconcile
from otc_bridge.api.orders import bridge
from otc_bridge.errors import BridgeError

bp = Blueprint("admin", __name__)


@bp.before_request
def require_admin_token() -> None:
    """404 when admin is disabled; 401 ``unauthorized`` on a missing or wrong token."""
    token = bridge().config.admin_token
    if not token:
        abort(404)
    auth = request.headers.get("Authorization", "")
    given = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("X-Admin-Key", "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise BridgeError("unauthorized", http_status=401)


@bp.post("/admin/reconcile")
def admin_reconcile():
    """Run one reconcile pass now; returns its counts."""
    return jsonify(ok=True, summary=reconcile.run_once(bridge()))
