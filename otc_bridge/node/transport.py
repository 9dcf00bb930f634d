"""One HTTP call to the escrow node, mapped onto ok / failed / unknown, and the admin key's safety.

:class:`Transport` sends a call once (never retried, never redirected: a redirect would carry
``X-Admin-Key`` to another host), times it, and classifies the answer with
:func:`otc_bridge.node.results.classify`. The admin key goes only over TLS, to a loopback
host, or with the operator's explicit opt-out (docs/protocol.md §5), checked when the client
is built and again before every admin call.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from urllib.parse import urlsplit

import requests

from otc_bridge.node.results import (
    DEFAULT_RETRY_AFTER_SECONDS,
    EscrowClientError,
    Expect,
    InsecureAdminTransport,
    NodeResult,
    Outcome,
    classify,
    json_object,
    transport_error,
)

log = logging.getLogger("otc_bridge.node")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name, not an IP literal: only "localhost" counts as loopback
        return False


def _check_admin_transport(base_url: str, allow_insecure_admin: bool) -> None:
    """Raise InsecureAdminTransport unless the admin key may travel to ``base_url`` (docs/protocol.md §5)."""
    parts = urlsplit(base_url)
    if parts.scheme == "https" or allow_insecure_admin or _is_loopback(parts.hostname or ""):
        return
    raise InsecureAdminTransport(
        f"refusing to send the admin key over plain HTTP to {parts.hostname!r}; use https, a "
        "loopback host, or OTC_ALLOW_INSECURE_ADMIN=1")


class Transport:
    """The HTTP edge of one escrow node: ``base_url`` (``http(s)://host[:port]``), the optional
    admin key, a ``requests.Session``, the ``(connect, read)`` timeout in seconds and the TLS
    setting (bool or CA bundle path).

    Raises ValueError for a base_url that is not http(s) with a host, and
    InsecureAdminTransport when the admin key could not be sent safely.
    """

    def __init__(self, base_url: str, *, admin_key: str | None, session: requests.Session | None,
                 timeout: tuple[float, float], allow_insecure_admin: bool, tls_verify: bool | str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"escrow node base_url must be http(s)://host[:port]: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._admin_key = admin_key or None
        self._allow_insecure_admin = allow_insecure_admin
        if self._admin_key is not None:
            _check_admin_transport(self.base_url, allow_insecure_admin)
        self._session = session if session is not None else requests.Session()
        self._timeout = timeout
        self._tls_verify = tls_verify

    @property
    def admin_key_state(self) -> str | None:
        """``"set"`` or ``None``: what a repr may say about the key."""
        return "set" if self._admin_key else None

    def _admin_headers(self) -> dict[str, str]:
        if self._admin_key is None:
            raise EscrowClientError("this call needs the node's admin key; none is configured")
        _check_admin_transport(self.base_url, self._allow_insecure_admin)
        return {"X-Admin-Key": self._admin_key}

    def request(self, method: str, route: str, path: str, *, expect: Expect,
                 payload: dict | None = None, params: dict | None = None, admin: bool = False,
                 authoritative: frozenset[int] = frozenset()) -> NodeResult:
        """Send one call, never retried, and map it onto ok/failed/unknown."""
        endpoint = f"{method} {route}"
        headers = {"Accept": "application/json", **(self._admin_headers() if admin else {})}
        started = time.monotonic()
        try:
            resp = self._session.request(
                method, self.base_url + path, params=params, json=payload, headers=headers,
                timeout=self._timeout, verify=self._tls_verify, allow_redirects=False)
        except requests.RequestException as exc:
            latency_ms = int((time.monotonic() - started) * 1000)
            result = NodeResult(Outcome.UNKNOWN, endpoint, None, None, transport_error(exc),
                                latency_ms)
            log.warning("escrow node %s -> unknown error=%r latency_ms=%d", endpoint,
                        result.error, latency_ms, exc_info=exc)
            return result
        latency_ms = int((time.monotonic() - started) * 1000)
        body = json_object(resp.content)
        outcome, error = classify(resp.status_code, body, expect, authoritative)
        retry_after = None
        if resp.status_code == 429:
            raw = resp.headers.get("Retry-After", "").strip()
            retry_after = int(raw) if re.fullmatch(r"[0-9]{1,9}", raw) else DEFAULT_RETRY_AFTER_SECONDS
        if outcome is not Outcome.OK:
            log.warning("escrow node %s -> %s status=%d error=%r latency_ms=%d", endpoint,
                        outcome.value, resp.status_code, error, latency_ms)
        return NodeResult(outcome, endpoint, resp.status_code, body, error, latency_ms, retry_after)
