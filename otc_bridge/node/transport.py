"""One HTTP call to the escrow node, mapped onto ok / failed / unknown, and the admin key's safety.

:class:`Transport` sends a call once (never retried, never redirected: a redirect would carry
``X-Admin-Key`` to another host), times it, and classifies the answer with
:func:`otc_bridge.node.results.classify`. The admin key goes only over TLS, to a loopback
host, or with the operator's explicit opt-out (docs/protocol.md §5), checked when the client
is built and again before every admin call.

Every call has a total deadline (``OTC_NODE_DEADLINE_SECONDS``, :mod:`otc_bridge.node.deadline`)
and a response size cap (``OTC_NODE_MAX_RESPONSE_BYTES``), both kept below the escrow-create
lease by the settings. A call that runs out of either is ``unknown``: the node may have
applied it (docs/protocol.md §4 rule 3). The body is read uncompressed (``Accept-Encoding:
identity``, never decoded), so the cap counts the bytes that crossed the wire.

Calls go over pooled keep-alive connections (:class:`NodeSession`), which never cross a
``fork``: gunicorn forks its workers, and a connection shared by two processes would mix
their answers, so a process that finds itself forked mounts fresh pools before its first call.
Proxy settings from the environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``,
``~/.netrc``, ``REQUESTS_CA_BUNDLE``) are never used for the node: its URL and CA bundle are
configured explicitly (``RUSTCHAIN_NODE``, ``RUSTCHAIN_CA_BUNDLE``), and reading the
environment on every call cost a noticeable share of the bridge's CPU (docs/performance.md).
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import os
import re
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from otc_bridge.node.deadline import DeadlineAdapter, Watch, deadline
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

_CHUNK_BYTES = 8192
#: What can break while a body is read, once ``requests`` no longer wraps it (a read cut by
#: the deadline's shutdown surfaces as one of these).
_READ_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)


class _Abandoned(Exception):
    """The answer was given up on: past the deadline or over the size cap (``str`` says which)."""


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


class NodeSession(requests.Session):
    """The ``requests`` session of the node's calls: ``trust_env`` off (no environment proxies,
    ``~/.netrc`` or ``REQUESTS_CA_BUNDLE``, see the module docstring) and a direct path for the
    calls :class:`Transport` makes. Safe to share between threads for those calls.

    A call without redirects, cookies, auth, files, form data, hooks, proxies or client cert
    (Transport's shape) is prepared from its own arguments over the session's ``headers``
    and handed straight to the adapter mounted for its URL: no merging of session settings,
    no cookie jar (the node sets no cookies), no ``Session.send`` bookkeeping. The session's
    own ``cookies``, ``auth``, ``params``, ``proxies`` and ``hooks`` do not apply to it. Any
    other call goes through ``requests.Session.request`` unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False

    def request(self, method: str, url: str, params: Any = None, data: Any = None,  # type: ignore[override]
                headers: Any = None, cookies: Any = None, files: Any = None, auth: Any = None,
                timeout: Any = None, allow_redirects: bool = True, proxies: Any = None,
                hooks: Any = None, stream: bool | None = None, verify: Any = None, cert: Any = None,
                json: Any = None) -> requests.Response:
        if allow_redirects or any(x is not None for x in (data, cookies, files, auth, proxies, hooks, cert)):
            return super().request(method, url, params=params, data=data, headers=headers, cookies=cookies,
                                   files=files, auth=auth, timeout=timeout, allow_redirects=allow_redirects,
                                   proxies=proxies, hooks=hooks, stream=stream, verify=verify, cert=cert,
                                   json=json)
        prepared = requests.PreparedRequest()
        prepared.prepare_method(method)
        prepared.prepare_url(url, params)
        merged = {**self.headers, **headers} if headers else self.headers
        # As merge_setting: a header set to None drops the session's one.
        prepared.prepare_headers({name: value for name, value in merged.items() if value is not None})
        prepared.prepare_body(None, None, json)
        if "@" in url:  # credentials in the URL become Basic auth, as the stock path does
            prepared.prepare_auth(None, url)
        return self.get_adapter(url).send(
            prepared, stream=self.stream if stream is None else stream, timeout=timeout,
            verify=self.verify if verify is None else verify, cert=None, proxies={})


class Transport:
    """The HTTP edge of one escrow node: ``base_url`` (``http(s)://host[:port]``), the optional
    admin key, a ``requests.Session`` (a :class:`NodeSession` by default; any session gets
    ``trust_env = False``), the ``(connect, read)`` timeout in seconds, the total
    ``deadline_seconds`` of one call, the largest answer body read (``max_response_bytes``)
    and the TLS setting (bool or CA bundle path). A :class:`~otc_bridge.node.deadline.DeadlineAdapter`
    (the connection pool) is mounted on ``session`` for ``base_url``, again in each forked
    process before its first call.

    Raises ValueError for a base_url that is not http(s) with a host, and
    InsecureAdminTransport when the admin key could not be sent safely.
    """

    def __init__(self, base_url: str, *, admin_key: str | None, session: requests.Session | None,
                 timeout: tuple[float, float], allow_insecure_admin: bool, tls_verify: bool | str,
                 deadline_seconds: float = 15.0, max_response_bytes: int = 1024 * 1024) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"escrow node base_url must be http(s)://host[:port]: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._admin_key = admin_key or None
        self._allow_insecure_admin = allow_insecure_admin
        if self._admin_key is not None:
            _check_admin_transport(self.base_url, allow_insecure_admin)
        self._session = session if session is not None else NodeSession()
        self._session.trust_env = False
        self._session.mount(self.base_url + "/", DeadlineAdapter())
        self._pid = os.getpid()
        self._timeout = timeout
        self._deadline_seconds = deadline_seconds
        self._max_response_bytes = max_response_bytes
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
        """Send one call, never retried, and map it onto ok/failed/unknown (unknown also past
        the deadline or over the size cap, with ``error`` saying which)."""
        endpoint = f"{method} {route}"
        headers = {"Accept": "application/json", "Accept-Encoding": "identity",
                   **(self._admin_headers() if admin else {})}
        if self._pid != os.getpid():
            self._remount_after_fork()
        started = time.monotonic()
        with deadline(self._deadline_seconds) as watch:
            try:
                resp = self._session.request(
                    method, self.base_url + path, params=params, json=payload, headers=headers,
                    timeout=self._timeout, verify=self._tls_verify, allow_redirects=False, stream=True)
                with resp:
                    content = self._read_body(resp, watch, started + self._deadline_seconds)
            except _Abandoned as exc:
                return self._unknown(endpoint, str(exc), started)
            except requests.RequestException as exc:
                error = self._deadline_error() if watch.fired else transport_error(exc)
                return self._unknown(endpoint, error, started, exc)
            except _READ_ERRORS as exc:  # the body broke off: cut by the deadline, or by the node
                error = self._deadline_error() if watch.fired else f"transport error: {type(exc).__name__}"
                return self._unknown(endpoint, error, started, exc)
        latency_ms = int((time.monotonic() - started) * 1000)
        body = json_object(content)
        outcome, error = classify(resp.status_code, body, expect, authoritative)
        retry_after = None
        if resp.status_code == 429:
            raw = resp.headers.get("Retry-After", "").strip()
            retry_after = int(raw) if re.fullmatch(r"[0-9]{1,9}", raw) else DEFAULT_RETRY_AFTER_SECONDS
        if outcome is not Outcome.OK:
            log.warning("escrow node %s -> %s status=%d error=%r latency_ms=%d", endpoint,
                        outcome.value, resp.status_code, error, latency_ms)
        return NodeResult(outcome, endpoint, resp.status_code, body, error, latency_ms, retry_after)

    def _remount_after_fork(self) -> None:
        """Give this (forked) process its own pool: the parent's pooled sockets are left
        unused here, closed only in this process when the old adapter is collected."""
        adapters: OrderedDict[str, Any] = OrderedDict(self._session.adapters)
        adapters[self.base_url + "/"] = DeadlineAdapter()
        # Swapped whole, not mounted in place: another thread may be looking an adapter up.
        # Longest prefix first, as Session.mount keeps them.
        self._session.adapters = OrderedDict(sorted(adapters.items(), key=lambda item: -len(item[0])))
        self._pid = os.getpid()

    def _read_body(self, resp: requests.Response, watch: Watch, deadline_at: float) -> bytes:
        """The raw body, refusing one over the cap (by its ``Content-Length`` before reading,
        else as it arrives) or one still arriving at the deadline. Raises :class:`_Abandoned`."""
        cap = self._max_response_bytes
        declared = resp.headers.get("Content-Length", "").strip()
        if re.fullmatch(r"[0-9]{1,19}", declared) and int(declared) > cap:
            raise _Abandoned(f"response too large: Content-Length {declared} over the {cap}-byte cap")
        chunks, size = [], 0
        for chunk in resp.raw.stream(_CHUNK_BYTES, decode_content=False):
            size += len(chunk)
            if size > cap:
                raise _Abandoned(f"response too large: over the {cap}-byte cap")
            if watch.fired or time.monotonic() > deadline_at:
                raise _Abandoned(self._deadline_error())
            chunks.append(chunk)
        if watch.fired:  # the shutdown can end a body without Content-Length as if it were whole
            raise _Abandoned(self._deadline_error())
        return b"".join(chunks)

    def _deadline_error(self) -> str:
        return f"deadline exceeded: no complete answer within {self._deadline_seconds:g} s"

    @staticmethod
    def _unknown(endpoint: str, error: str, started: float, exc: BaseException | None = None) -> NodeResult:
        latency_ms = int((time.monotonic() - started) * 1000)
        log.warning("escrow node %s -> unknown error=%r latency_ms=%d", endpoint, error, latency_ms,
                    exc_info=exc)
        return NodeResult(Outcome.UNKNOWN, endpoint, None, None, error, latency_ms)
