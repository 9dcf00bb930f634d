"""Admin routes, behind the bridge's own ``OTC_ADMIN_TOKEN`` (never the node's key).

With no token configured the routes do not exist (404), so a forgotten setting cannot
leave them open. The token is accepted as ``Authorization: Bearer <token>`` or
``X-Admin-Key: <token>`` and compared in constant time. Operator actions name the
operator from the ``X-Operator`` header (default ``admin``) in the order's audit trail.
The POST routes take an ``Idempotency-Key`` scoped to the admin token
(:mod:`otc_bridge.api.idempotency`); a retry of one whose first attempt died runs again:
a reconcile pass, a redrive (same payout key) and a resolve are idempotent by state.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, abort, jsonify, request

from otc_bridge.api import body, idempotency
from otc_bridge.api.orders import bridge
from otc_bridge.domain import views
from otc_bridge.domain.errors import BridgeError, Invalid
from otc_bridge.domain.parsing import ascii_int
from otc_bridge.operator import attention, audit, common, redrive, resolve
from otc_bridge.settlement import reconcile

bp = Blueprint("admin", __name__)


@bp.before_request
def require_admin_token() -> None:
    """404 when admin is disabled; 401 ``unauthorized`` on a missing or wrong token; then
    415 on a POST whose body is not declared JSON (:func:`otc_bridge.api.body.require_json_content_type`)."""
    token = bridge().config.admin_token
    if not token:
        abort(404)
    auth = request.headers.get("Authorization", "")
    given = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("X-Admin-Key", "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise BridgeError("unauthorized", http_status=401)
    if request.method == "POST":  # after the token: the unauthenticated learn nothing more
        body.require_json_content_type()


@bp.post("/admin/reconcile")
@idempotency.idempotent
def admin_reconcile():
    """Run one reconcile pass now; returns its counts."""
    idempotency.begin(idempotency.admin_scope())
    return jsonify(ok=True, summary=reconcile.run_once(bridge()))


# --- operator tools (docs/protocol.md §7) ---------------------------------------------------------------

def _operator_name() -> str:
    """The acting operator from the ``X-Operator`` header (default ``admin``); 400 if malformed."""
    name = request.headers.get("X-Operator", "admin").strip(" \t")  # ASCII blanks only, as the name is
    common.operator_actor(name, field="X-Operator")
    return name


def _flag(name: str) -> bool:
    raw = request.args.get(name, "0").strip().lower()
    if raw not in ("0", "1", "true", "false", "yes", "no"):
        raise Invalid(f"{name} must be 1 or 0", field=name)
    return raw in ("1", "true", "yes")


@bp.get("/admin/attention")
def admin_attention():
    """Orders needing an operator, with their events; ``older_than`` (seconds, default
    3600) is the age from which a ``payout_pending`` order is listed."""
    raw = request.args.get("older_than", str(attention.DEFAULT_ATTENTION_AGE_SECONDS))
    older_than = ascii_int(raw, max_digits=9)
    if older_than is None:
        raise Invalid("older_than must be a whole number of seconds", field="older_than")
    return jsonify(ok=True, orders=attention.attention(bridge(), older_than_seconds=older_than))


@bp.get("/admin/audit")
def admin_audit():
    """Read-only audit against the node; ``all=1`` includes terminal orders. 200
    ``{"ok": no mismatch, "mismatches": [{"code", "order_id", "detail"}]}``."""
    found = audit.audit(bridge(), include_terminal=_flag("all"))
    return jsonify(ok=not found, mismatches=[m.as_dict() for m in found])


@bp.post("/admin/orders/<order_id>/redrive-payout")
@idempotency.idempotent
def admin_redrive_payout(order_id: str):
    """Re-send an order's payout: ``{"reason", "new_key": false}``; 409 when the node's state
    does not allow it (e.g. a voided key without ``new_key``, or a payout still live)."""
    data = body.json_object({"reason", "new_key"})
    reason = common.check_reason(data.get("reason"))
    new_key = data.get("new_key", False)
    if not isinstance(new_key, bool):
        raise Invalid("new_key must be true or false", field="new_key")
    operator = _operator_name()
    idempotency.begin(idempotency.admin_scope(), extra={"X-Operator": operator})
    done = redrive.redrive_payout(bridge(), order_id, operator_name=operator, reason=reason, new_key=new_key)
    return jsonify(ok=True, order=views.order_view(done.order), phase=done.phase, message=done.message)


@bp.post("/admin/orders/<order_id>/resolve")
@idempotency.idempotent
def admin_resolve(order_id: str):
    """Move a ``settlement_recovery`` order forward: ``{"to", "reason"}``; 409 unless the
    node's state proves ``to``."""
    data = body.json_object({"to", "reason"})
    to = resolve.resolve_target(data.get("to"))
    reason = common.check_reason(data.get("reason"))
    operator = _operator_name()
    idempotency.begin(idempotency.admin_scope(), extra={"X-Operator": operator})
    order = resolve.resolve(bridge(), order_id, to, operator_name=operator, reason=reason)
    return jsonify(ok=True, order=views.order_view(order))
