"""Client settings: from arguments first, then the environment."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import uuid
from typing import Final

import attrs
import httpx

from ._exceptions import ConfigurationError
from ._telemetry import remember_secret

log = logging.getLogger("hostedai_harpoon")

__all__ = [
    "API_PREFIX",
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
# Every path of the API starts with it; a base URL may end with it too.
API_PREFIX: Final = "/v1"


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

    def __attrs_post_init__(self) -> None:
        remember_secret(self._value)  # masked in logs and telemetry from now on

    @classmethod
    def of(cls, value: object, variable: str) -> Secret | None:
        """``value`` kept as a secret (``None`` when absent or blank), checked to be a string
        without ever showing it."""
        if value is None:
            return None
        if not isinstance(value, str):
            kind = type(value).__name__
            del value  # no frame that raises may hold a key
            raise ConfigurationError(f"the value for {variable} must be a string, got {kind}")
        stripped = value.strip()
        return cls(stripped) if stripped else None

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def bearer(self) -> str:
        """The ``Authorization`` header value carrying the secret."""
        return f"Bearer {self._value}"

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
            kind = type(value).__name__
            del value  # it may be a key: no frame that raises may hold it
            raise ConfigurationError(f"the value for {variable} must be a string, got {kind}")
        return value.strip() or None
    found = os.environ.get(variable, "").strip()
    return found or None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (plain http to it crosses no network)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _shown(raw: str) -> str:
    """The URL as an error may show it: any ``user:password@`` blanked."""
    return repr(re.sub(r"//[^/@]*@", "//***@", raw))


def _check_base_url(raw: str, allow_insecure_http: bool) -> str:
    try:
        url = httpx.URL(raw.strip())
    except (httpx.InvalidURL, TypeError, UnicodeError) as exc:
        raise ConfigurationError(
            f"the base URL {_shown(raw)} is not a valid URL ({type(exc).__name__})"
        ) from None
    if url.userinfo:
        raise ConfigurationError("the base URL must not carry credentials; pass api_key= instead")
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"the base URL {_shown(raw)} must be an absolute http:// or https:// URL "
            f"(set {ENV_BASE_URL} or pass base_url=)"
        )
    if url.scheme == "http" and not allow_insecure_http and not is_loopback(url.host):
        raise ConfigurationError(
            f"refusing plain http:// to {url.host!r}: the API key would cross the network "
            "unencrypted. Use https://, or pass allow_insecure_http=True if you mean it."
        )
    base = str(url.copy_with(query=None, fragment=None)).rstrip("/")
    if base.endswith(API_PREFIX):
        # Copied from another SDK's settings: the paths carry the version already.
        log.debug("the base URL ends in %s; the client adds it itself", API_PREFIX)
        base = base.removesuffix(API_PREFIX)
    return base


def resolve_settings(
    base_url: str | None,
    api_key: str | Secret | None,
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
    secret = api_key if isinstance(api_key, Secret) else Secret.of(api_key, ENV_API_KEY)
    del api_key  # from here on the key is only in the Secret, which never shows it
    if secret is None:
        secret = Secret.of(os.environ.get(ENV_API_KEY), ENV_API_KEY)
    if secret is None:
        raise ConfigurationError(
            f"no API key: pass api_key= or set the {ENV_API_KEY} environment variable"
        )
    problem = key_problem(secret)
    if problem is not None:
        raise ConfigurationError(problem)
    return Settings(
        base_url=_check_base_url(url, allow_insecure_http),
        api_key=secret,
        pool_id=_from_env(pool_id, ENV_POOL_ID),
    )


def key_problem(secret: Secret) -> str | None:
    """Why the key cannot be sent in an ``Authorization`` header, if it cannot (never the key)."""
    value = secret.reveal()
    if value.isascii() and value.isprintable() and " " not in value:
        return None
    return (
        "the API key holds characters that cannot be sent in an HTTP header (only printable "
        "ASCII can): look for a pasted curly quote, a space or a line break"
    )


def new_idempotency_key() -> str:
    """A fresh ``Idempotency-Key`` value."""
    return f"harpoon-{uuid.uuid4().hex}"
