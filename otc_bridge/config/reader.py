"""Typed, validated reads of settings from an environment mapping.

Every error is a :class:`ConfigError` that names the variable at fault; nothing falls back
silently to a default (docs/deploy.md lists every variable).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from otc_bridge.domain.destinations import Webhook, parse_webhooks
from otc_bridge.domain.parsing import ascii_decimal, ascii_int

_RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE_RE = re.compile(r"[ \t]*([0-9]{1,9})[ \t]*/[ \t]*(second|minute|hour|day)s?[ \t]*")  # ASCII digits only


class ConfigError(ValueError):
    """A setting is missing or malformed; ``variable`` names the environment variable."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


@dataclass(frozen=True)
class RateLimit:
    """``requests`` allowed per ``window_seconds`` (parsed from strings like ``10/minute``)."""

    requests: int
    window_seconds: int


class Reader:
    """Typed access to an environment mapping (``os.environ`` or a test's dict); every
    method returns the parsed value or its default, and raises :class:`ConfigError` naming
    the variable on a bad value."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def optional(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        value = ascii_int(raw, signed=True)
        if value is None:
            raise ConfigError(name, f"must be a whole number, got {raw!r}")
        if not low <= value <= high:
            raise ConfigError(name, f"must be between {low} and {high}, got {value}")
        return value

    def number(self, name: str, default: float) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        parsed = ascii_decimal(raw)  # float() would take "nan", "1e3", "1_0" and other scripts' digits
        if parsed is None:
            raise ConfigError(name, f"must be a number of seconds, got {raw!r}")
        value = float(parsed)
        if not 0 < value <= 3600:
            raise ConfigError(name, f"must be > 0 and <= 3600 seconds, got {raw!r}")
        return value

    def flag(self, name: str) -> bool:
        raw = (self.optional(name) or "0").lower()
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(name, f"must be 1/0, true/false, yes/no or on/off, got {raw!r}")

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = (self.optional(name) or default).upper()
        if value not in allowed:
            raise ConfigError(name, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def url(self, name: str) -> str | None:
        raw = self.optional(name)
        if raw is None:
            return None
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s]*)?", raw):
            raise ConfigError(name, f"must be an http:// or https:// URL, got {raw!r}")
        return raw.rstrip("/")

    def tls_verify(self) -> bool | str:
        # A CA bundle path wins over the boolean: it is the more specific instruction.
        bundle = self.optional("RUSTCHAIN_CA_BUNDLE")
        # Blank means "use the default" here as everywhere: verification stays on.
        verify = self.flag("RUSTCHAIN_TLS_VERIFY") if self.optional("RUSTCHAIN_TLS_VERIFY") else True
        if bundle and not verify:
            raise ConfigError("RUSTCHAIN_CA_BUNDLE", "set, but RUSTCHAIN_TLS_VERIFY disables verification")
        return bundle or verify

    def admin_token(self) -> str | None:
        token = self.optional("OTC_ADMIN_TOKEN")
        if token is not None and len(token) < 24:
            raise ConfigError("OTC_ADMIN_TOKEN", "must be at least 24 characters")
        return token

    def origins(self, name: str) -> tuple[str, ...]:
        raw = self.optional(name)
        if raw is None:
            return ()
        origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
        for origin in origins:
            if origin == "*":
                raise ConfigError(name, "'*' is refused; list the allowed origins")
            if not re.fullmatch(r"https?://[^\s/?#]+", origin):
                raise ConfigError(name, f"{origin!r} is not an origin like https://example.com")
        return origins

    def networks(self, name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        raw = self.optional(name)
        if raw is None:
            return ()
        try:
            return tuple(
                ipaddress.ip_network(part.strip(), strict=False) for part in raw.split(",") if part.strip()
            )
        except ValueError as exc:
            raise ConfigError(name, f"must be comma-separated CIDRs: {exc}") from None

    def rate(self, name: str, default: str) -> RateLimit:
        raw = self.optional(name) or default
        match = _RATE_RE.fullmatch(raw.lower())
        if not match or int(match.group(1)) < 1:
            raise ConfigError(name, f"must look like '10/minute' (second|minute|hour|day), got {raw!r}")
        return RateLimit(int(match.group(1)), _RATE_UNITS[match.group(2)])

    def webhooks(self, name: str) -> tuple[Webhook, ...]:
        """A JSON list of ``{"url", "secret", "events", "name"?}`` (see :mod:`otc_bridge.domain.destinations`)."""
        raw = self.optional(name)
        if raw is None:
            return ()
        try:
            return parse_webhooks(raw)
        except ValueError as exc:
            raise ConfigError(name, str(exc)) from None
