"""The ``Idempotency-Key`` header of every POST route (docs/protocol.md §3.3).

A client that sends ``Idempotency-Key: <1-255 printable ASCII>`` with a POST may send the same
request again with the same key, for 24 h, and gets the first answer again (status and body,
marked ``Idempotent-Replayed: true``) instead of a second effect. That is how a client whose
connection broke recovers a create's or a match's ``htlc_secret``.

How a route takes part::

    @bp.post("/api/orders/<order_id>/cancel")
    @idempotency.idempotent               # validates the header (400 naming it), stores the answer
    def cancel_order(order_id):
        data = body.json_object(...)       # input errors: answered, never stored, nothing reserved
        wallet = idempotency.signed_wallet(...)          # the scope: who proved the request
        idempotency.begin(idempotency.wallet_scope(wallet), recover=...)  # reserve, or answer now
        order = cancel.cancel_order(...)   # the effect
        return jsonify(...)                # stored by the decorator

Semantics, decided here:

* **Scope.** A key belongs to whoever proved the request: the wallet whose signature over the
  request verifies (create, match, cancel); for a confirm, which the preimage authorises, the
  order's preimage holder (scope ``order:<id>:preimage-holder``, whoever sends the preimage);
  for ``/admin/*`` the admin token. A request whose signature does not verify takes no part
  (nothing is reserved; the service refuses it with 401), so nobody can occupy or probe
  another wallet's keys. The signature's freshness is the service's check on a first run; a
  replay may come later than the 300 s window, so here only the signature itself counts.
* **Same request.** The method, the path and the parsed body, less ``wallet_auth``, hashed
  (:func:`fingerprint`): key order and blanks do not matter, and a retry may carry a new
  signature. Anything else with the same key is 422; a retry while the first attempt runs is
  409 with ``Retry-After``.
* **What is stored.** Every answer below 500 except 401: a refused credential proves nothing
  and the reservation is deleted. A 5xx (or an unexpected error) leaves the reservation
  *abandoned*: the next retry decides from the order's state (the ``recover`` function of the
  route) or runs the request again; the services are idempotent by state.
* **Crash safety.** The reservation is committed before the service runs and the answer is
  stored after it returned; a process that dies in between leaves an ``in_flight`` row that a
  retry takes over once stale (its process gone, or older than ``OTC_HANDLER_TIMEOUT_SECONDS``
  + ``STALE_MARGIN_SECONDS``), handing it to ``recover``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flask import Response, current_app, g, jsonify, request

from otc_bridge.api import body
from otc_bridge.context import Bridge
from otc_bridge.domain import wallets
from otc_bridge.domain.errors import Invalid
from otc_bridge.storage import idempotency as store

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
#: Beyond the request bound (``OTC_HANDLER_TIMEOUT_SECONDS``, after which the worker process is
#: restarted), a reservation is stale: its request can no longer be running.
STALE_MARGIN_SECONDS = 30
#: What a 409 "still in progress" tells the client to wait (a request takes seconds at most).
IN_PROGRESS_RETRY_AFTER_SECONDS = 2
#: Expired rows are deleted at most this often per process, by a request that uses a key.
PRUNE_INTERVAL_SECONDS = 300
#: Response headers stored with the answer and replayed.
KEPT_HEADERS = ("Retry-After",)

#: 1-255 characters from space to tilde, not starting or ending with a space (HTTP strips
#: surrounding blanks from a header value, so they could never be part of the key).
_VALID_KEY = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?")
INVALID_KEY = "Idempotency-Key must be 1-255 printable ASCII characters (space to ~, not at either end)"
KEY_REUSED = ("Idempotency-Key was already used for a different request (another path or body); "
              "use a new key for a new request")
IN_PROGRESS = "A request with this Idempotency-Key is still in progress; retry it shortly"

_STATE = "otc_idempotency"
_EXTENSION = "otc_idempotency"


class Answered(Exception):  # noqa: N818 (not an error: the request is answered)
    """Raised by :func:`begin` when the answer is known without running the request (a replay,
    409, 422, or a recovered answer); :func:`idempotent` returns ``response``."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass
class _Attempt:
    """The reservation this request holds: the client's key, the row id, who and since when."""

    key: str
    key_id: str
    holder: str
    locked_at: int
    linked: Any = None  # the connection whose order inserts are linked to the row (a create)


@dataclass
class _State:
    key: str
    attempt: _Attempt | None = None


def _bridge() -> Bridge:
    return current_app.extensions["otc_bridge"]


# --- the decorator --------------------------------------------------------------------------------

def idempotent(view: Callable[..., Any]) -> Callable[..., Any]:
    """Give a POST view the ``Idempotency-Key`` semantics of the module docstring.

    Without the header the view runs exactly as before (no statement is added). With it, a
    malformed key is 400 ``{"error": INVALID_KEY, "field": "Idempotency-Key"}`` before the view
    runs; the view then calls :func:`begin` once its input is valid, and the answer of an attempt
    that :func:`begin` reserved is stored here, whether the view returned it or raised it.
    """

    @functools.wraps(view)
    def run(*args: Any, **kwargs: Any) -> Any:
        key = header_key()
        if key is None:
            return view(*args, **kwargs)
        state = _State(key)
        setattr(g, _STATE, state)
        try:
            response = current_app.make_response(view(*args, **kwargs))
        except Answered as answered:
            return answered.response
        except Exception as exc:
            if state.attempt is None:
                raise
            # The app's own handlers shape the answer (a domain error's JSON, the generic 500),
            # so what is stored is exactly what the client gets.
            response = current_app.make_response(current_app.handle_user_exception(exc))
        finally:
            _unlink(state)
        if state.attempt is not None:
            _finish(state.attempt, response)
        return response

    run.idempotent = True  # type: ignore[attr-defined]  # read by the route test and the OpenAPI document
    return run


def header_key() -> str | None:
    """The request's ``Idempotency-Key``, or ``None`` without one; :class:`Invalid` (400,
    field ``Idempotency-Key``) when malformed. (A header sent twice reaches WSGI as one value,
    the two joined by ``", "``, as HTTP allows: that is then the key.)"""
    value = request.headers.get(HEADER)
    if value is None:
        return None
    if not _VALID_KEY.fullmatch(value):
        raise Invalid(INVALID_KEY, field=HEADER)
    return value


# --- scopes ---------------------------------------------------------------------------------------

def signed_wallet(wallet: object, wallet_auth: object, *, action: str, order_id: str,
                  bound: dict[str, Any]) -> str | None:
    """The canonical wallet whose Ed25519 signature over this request verifies, else ``None``.

    The same message as the service checks (``domain.wallets.signed_message`` of ``action``,
    ``order_id`` and the ``bound`` fields), but not the timestamp window: a replay may come
    hours after its first run. Nothing is burnt; the service still checks freshness and
    single use whenever the request actually runs.
    """
    if not isinstance(wallet, str) or not isinstance(wallet_auth, dict):
        return None
    timestamp = wallet_auth.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        return None
    try:
        # ``now`` = the signature's own timestamp: the window check passes by construction.
        return wallets.verify(wallet, wallet_auth, action=action, order_id=order_id, bound=bound,
                              now=timestamp).wallet
    except wallets.AuthError:  # not an error here: no scope, nothing reserved; the service answers the 401
        return None


def wallet_scope(wallet: str | None) -> str | None:
    """The scope of a verified canonical wallet (``None`` passes through: no scope)."""
    return None if wallet is None else f"wallet:{wallet}"


def preimage_holder_scope(order_id: str) -> str:
    """The scope of a confirm: whoever holds the order's preimage (it is the authority)."""
    return f"order:{order_id}:preimage-holder"


def admin_scope() -> str:
    """The scope of an admin request: the configured token (a new token starts a new scope)."""
    token = _bridge().config.admin_token or ""
    return "admin:" + hashlib.sha256(token.encode()).hexdigest()


# --- the request's fingerprint --------------------------------------------------------------------

def _tagged(value: object) -> object:
    if isinstance(value, Decimal):  # tagged: a number never equals the string that spells it
        return {"$decimal": str(value)}
    if isinstance(value, body.NonFinite):
        return {"$non_finite": value.literal}
    raise TypeError(f"not JSON: {type(value).__name__}")


def fingerprint(route: str, data: object, extra: dict[str, str] | None = None) -> str:
    """sha256 hex of ``route`` (``"POST /api/orders"``), the parsed body ``data`` without its
    top-level ``wallet_auth`` (the credential, not the request: a retry may re-sign it), and
    ``extra`` (headers that are part of the request, such as ``X-Operator``)."""
    content = {k: v for k, v in data.items() if k != "wallet_auth"} if isinstance(data, dict) else data
    text = json.dumps({"route": route, "body": content, "extra": extra or {}}, sort_keys=True,
                      separators=(",", ":"), default=_tagged)
    return hashlib.sha256(text.encode()).hexdigest()


# --- begin: reserve, or answer at once ------------------------------------------------------------

def begin(scope: str | None, *, recover: Callable[[str | None], Response | None] | None = None,
          link_order: bool = False, extra: dict[str, str] | None = None) -> None:
    """Reserve this request's key in ``scope`` before the effect; a no-op without a key or
    without a scope (``None``: the credential did not verify, the service will refuse it).

    Raises :class:`Answered` with: the stored answer (replayed); 422 when the key was used for
    another request; 409 while another attempt holds it. When a stale attempt is taken over,
    ``recover(order_id)`` (``order_id``: the order a create's first attempt wrote, else
    ``None``) may return the answer to give from the order's state, which is stored; ``None``
    runs the request again. ``link_order`` (create) records the order the request inserts in
    the reservation, in the insert's own transaction (:func:`otc_bridge.storage.idempotency.link_orders_to`).
    """
    state: _State | None = g.get(_STATE)
    if state is None or scope is None:
        return
    if state.attempt is not None:
        raise RuntimeError("idempotency.begin() called twice in one request")
    b = _bridge()
    now = b.now()
    _prune_now_and_then(b, now)
    key_id = store.key_id(scope, state.key)
    route = f"{request.method} {request.path}"
    request_print = fingerprint(route, body.parsed_json(), extra)
    holder = store.this_holder()
    taken_over = None
    if not store.reserve(b.db, key_id, route=route, fingerprint=request_print, holder=holder, now=now):
        row = store.find(b.db.connection(), key_id, now=now)
        if row is not None:
            _answer_existing(b, row, route=route, fingerprint_=request_print, key=state.key, holder=holder, now=now)
            taken_over = row  # stale, and now ours
        elif not store.reserve(b.db, key_id, route=route, fingerprint=request_print, holder=holder, now=now):
            raise Answered(_in_progress())  # released and reserved again by another request meanwhile
    attempt = state.attempt = _Attempt(state.key, key_id, holder, now)
    if taken_over is not None and recover is not None:
        recovered = recover(taken_over.order_id)
        if recovered is not None:
            state.attempt = None
            _finish(attempt, recovered)
            raise Answered(recovered)
    if link_order:
        conn = b.db.connection()
        store.link_orders_to(conn, key_id)
        attempt.linked = conn


def keep_secret(secret: str) -> None:
    """Seal ``secret`` (a preimage this request made and will hand out once) into the
    reservation, committed before the order that uses it is written: a retry after a crash at
    any later point gets it back (:func:`kept_secret`). A no-op without a reserved key."""
    state: _State | None = g.get(_STATE)
    if state is None or state.attempt is None:
        return
    attempt = state.attempt
    sealed = store.seal(attempt.key, attempt.key_id, secret.encode())
    if not store.keep_secret(_bridge().db, attempt.key_id, holder=attempt.holder, locked_at=attempt.locked_at,
                             sealed=sealed):
        raise Answered(_in_progress())  # a retry took the key over meanwhile: it decides


def kept_secret() -> str | None:
    """The preimage an earlier attempt with this request's key kept (:func:`keep_secret`), or
    ``None``; only while this request holds the key."""
    state: _State | None = g.get(_STATE)
    if state is None or state.attempt is None:
        return None
    sealed = store.kept_secret(_bridge().db.connection(), state.attempt.key_id)
    return None if sealed is None else store.unseal(state.key, state.attempt.key_id, sealed).decode()


def _answer_existing(b: Bridge, row: store.Row, *, route: str, fingerprint_: str, key: str, holder: str,
                     now: int) -> None:
    """Answer from a live row, or take it over when stale (then return)."""
    if row.route != route or row.fingerprint != fingerprint_:
        raise Answered(_error(422, KEY_REUSED))
    if row.done:
        raise Answered(_replay(row, key))
    stale_after = math.ceil(b.config.handler_timeout_seconds) + STALE_MARGIN_SECONDS
    if not store.is_stale(row, now=now, stale_after_seconds=stale_after):
        raise Answered(_in_progress())
    if not store.take_over(b.db, row, holder=holder, now=now):
        raise Answered(_in_progress())  # another retry took it over first
    log.warning("idempotency key of %s taken over from a stale attempt (holder %s, since %s)", route,
                row.holder, row.locked_at)


def _finish(attempt: _Attempt, response: Response) -> None:
    """Store ``response`` as the key's answer, or release / abandon the reservation (module
    docstring). A database error here is logged, not raised: the client still gets its answer,
    and the row, left ``in_flight``, is recovered from the order's state by a later retry."""
    db = _bridge().db
    status = response.status_code
    try:
        if status == 401:
            store.release(db, attempt.key_id, holder=attempt.holder, locked_at=attempt.locked_at)
        elif status >= 500:
            store.abandon(db, attempt.key_id, holder=attempt.holder, locked_at=attempt.locked_at)
        else:
            sealed = store.seal(attempt.key, attempt.key_id, response.get_data())
            kept = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
            if not store.complete(db, attempt.key_id, holder=attempt.holder, locked_at=attempt.locked_at,
                                  status_code=status, response=sealed, headers=kept, now=_bridge().now()):
                log.warning("idempotency key taken over by a retry before its first attempt answered")
    except sqlite3.Error:
        log.exception("could not store the answer of an idempotent request; a retry recovers it from the order")


def _unlink(state: _State) -> None:
    attempt = state.attempt
    if attempt is not None and attempt.linked is not None:
        try:
            store.unlink_orders(attempt.linked)
        except sqlite3.Error:
            log.exception("could not clear the idempotency order link")
        attempt.linked = None


def _replay(row: store.Row, key: str) -> Response:
    response = Response(store.unseal(key, row.key_id, row.response), status=row.status_code,
                        mimetype="application/json")
    for name, value in row.headers.items():
        response.headers[name] = value
    response.headers[REPLAYED_HEADER] = "true"
    return response


def _error(status: int, message: str) -> Response:
    response = jsonify(error=message, field=HEADER)
    response.status_code = status
    return response


def _in_progress() -> Response:
    response = jsonify(error=IN_PROGRESS, field=HEADER, retry_after_seconds=IN_PROGRESS_RETRY_AFTER_SECONDS)
    response.status_code = 409
    response.headers["Retry-After"] = str(IN_PROGRESS_RETRY_AFTER_SECONDS)
    return response


def _prune_now_and_then(b: Bridge, now: int) -> None:
    """Delete expired rows, at most every ``PRUNE_INTERVAL_SECONDS`` per app: one indexed
    DELETE, paid by a request that uses a key (no key, no rows to prune)."""
    schedule = current_app.extensions.setdefault(_EXTENSION, {"next_prune_at": 0})
    if now < schedule["next_prune_at"]:
        return
    schedule["next_prune_at"] = now + PRUNE_INTERVAL_SECONDS
    try:
        store.prune(b.db, now)
    except sqlite3.OperationalError:  # busy: the next interval's prune takes these rows too
        log.warning("idempotency prune skipped (database busy)", exc_info=True)
