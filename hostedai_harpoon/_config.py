"""Client settings: from arguments first, then the environment."""

from __future__ import annotations

import ipaddress
import math
import os
import uuid
from datetime import timedelta
from typing import Final

import attrs
import httpx

from ._exceptions import ConfigurationError

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "NOT_GIVEN",
    "NotGiven",
    "Secret",
    "Settings",
    "resolve_settings",
]

ENV_BASE_URL: Final = "HOSTED_AI_BASE_URL"
ENV_API_KEY: Final = "HOSTED_AI_API_KEY"
ENV_POOL_ID: Final = "HOSTED_AI_POOL_ID"

DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=5.0)
DEFAULT_MAX_RETRIES: Final = 2
DEFAULT_MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024


class NotGiven:
    """The type of ``NOT_GIVEN``: an argument left out, so that ``None`` can mean "none"."""

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()


@attrs.frozen(repr=False)
class Secret:
    """A string that never shows itself in a repr, str or format."""

    _value: str = attrs.field(alias="value")

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


@attrs.frozen
class Settings:
    """What a client needs to reach the API. The key is a ``Secret``."""

    base_url: str
    api_key: Secret
    pool_id: str | None


def _from_env(value: str | None, variable: str) -> str | None:
    if value is not None:
        if not isinstance(value, str):
            raise ConfigurationError(
                f"the value for {variable} must be a string, got {type(value).__name__}"
            )
        return value.strip() or None
    found = os.environ.get(variable, "").strip()
    return found or None


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_base_url(raw: str, allow_insecure_http: bool) -> str:
    try:
        url = httpx.URL(raw.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"the base URL {raw!r} is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"the base URL {raw!r} must be an absolute http:// or https:// URL "
            f"(set {ENV_BASE_URL} or pass base_url=)"
        )
    if url.userinfo:
        raise ConfigurationError("the base URL must not carry credentials; pass api_key= instead")
    if url.scheme == "http" and not allow_insecure_http and not _is_loopback(url.host):
        raise ConfigurationError(
            f"refusing plain http:// to {url.host!r}: the API key would cross the network "
            "unencrypted. Use https://, or pass allow_insecure_http=True if you mean it."
        )
    return str(url.copy_with(query=None, fragment=None)).rstrip("/")


def resolve_settings(
    base_url: str | None,
    api_key: str | None,
    pool_id: str | None,
    *,
    allow_insecure_http: bool = False,
) -> Settings:
    """Settings from the arguments, falling back to ``HOSTED_AI_*`` environment variables.

    Raises ``ConfigurationError`` naming the variable when the base URL or the key is missing,
    and for a URL that is not absolute http(s) or that would send the key in clear text.
    """
    url = _from_env(base_url, ENV_BASE_URL)
    if url is None:
        raise ConfigurationError(
            f"no base URL: pass base_url= or set the {ENV_BASE_URL} environment variable"
        )
    key = _from_env(api_key, ENV_API_KEY)
    if key is None:
        raise ConfigurationError(
            f"no API key: pass api_key= or set the {ENV_API_KEY} environment variable"
        )
    if any(ch in key for ch in "\r\n\0"):
        raise ConfigurationError("the API key contains control characters")
    return Settings(
        base_url=_check_base_url(url, allow_insecure_http),
        api_key=Secret(key),
        pool_id=_from_env(pool_id, ENV_POOL_ID),
    )


def ttl_seconds(ttl: float | timedelta | None) -> int | None:
    """Whole seconds from a TTL given as seconds or a ``timedelta`` (``None`` stays)."""
    if ttl is None:
        return None
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 < seconds < math.inf
    ):
        raise ConfigurationError(f"ttl must be a positive number of seconds, got {ttl!r}")
    return math.ceil(seconds)


def new_idempotency_key() -> str:
    """A fresh ``Idempotency-Key`` value."""
    return f"harpoon-{uuid.uuid4().hex}"


def check_seconds(value: object, what: str) -> float:
    """A duration argument, checked: a finite number of seconds >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ConfigurationError(f"{what} must be a number of seconds >= 0, got {value!r}")
    return float(value)
