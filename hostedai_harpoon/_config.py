"""Client settings: from arguments first, then the environment."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import attrs
import httpx

from ._checks import check_flag
from ._exceptions import ConfigurationError
from ._telemetry import remember_secret

log = logging.getLogger("hostedai_harpoon")

__all__ = [
    "API_PREFIX",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "NOT_GIVEN",
    "SECRET_HEADERS",
    "DefaultHeaders",
    "NotGiven",
    "Secret",
    "Settings",
    "resolve_dialect",
    "resolve_settings",
]

ENV_BASE_URL: Final = "HOSTED_AI_BASE_URL"
ENV_API_KEY: Final = "HOSTED_AI_API_KEY"
ENV_POOL_ID: Final = "HOSTED_AI_POOL_ID"
ENV_DIALECT: Final = "HOSTED_AI_DIALECT"
ENV_TEAM_ID: Final = "HOSTED_AI_TEAM_ID"
ENV_LEDGER_DIR: Final = "HOSTED_AI_LEDGER_DIR"
DIALECTS: Final = ("v1", "gpuaas")
# The headers a key may travel in: each is masked wherever a server echoes it.
AUTH_HEADERS: Final = ("authorization", "x-api-key", "api-key")

DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=5.0)
DEFAULT_MAX_RETRIES: Final = 2
DEFAULT_MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024
# Every path of the API starts with it; a base URL may end with it too.
API_PREFIX: Final = "/v1"
# Headers whose values are credentials, whoever set them: never shown, masked in what a
# server says back.
SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key"})


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
    def of(cls, value: object, name: str) -> Secret | None:
        """``value`` kept as a secret (``None`` when absent), checked to be a string without
        ever showing it. ``name`` is where it came from: the argument (``api_key``), which
        must not be blank, or an environment variable, where blank means unset."""
        if value is None:
            return None
        if not isinstance(value, str):
            kind = type(value).__name__
            del value  # no frame that raises may hold a key
            raise ConfigurationError(f"{name} must be a string, got {kind}")
        stripped = value.strip()
        del value
        if not stripped and name == "api_key":
            raise ConfigurationError(
                f"api_key is blank: pass the key, or None to read {ENV_API_KEY}"
            )
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


@attrs.frozen(repr=False)
class DefaultHeaders:
    """The ``default_headers`` of a client, checked; their values never show (one of them
    may carry a key)."""

    _items: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, headers: object) -> DefaultHeaders:
        """``headers`` (a mapping of printable ASCII strings, or ``None``) checked and kept."""
        if headers is None:
            return cls()
        if not isinstance(headers, Mapping):
            kind = type(headers).__name__
            del headers  # no frame that raises may hold a key
            raise ConfigurationError(f"default_headers must be a mapping, got {kind}")
        items = tuple(headers.items())
        del headers
        if not all(
            isinstance(name, str)
            and isinstance(value, str)
            and (name + value).isascii()
            and (name + value).isprintable()
            for name, value in items
        ):
            del items
            raise ConfigurationError("default_headers must map strings to printable ASCII strings")
        return cls(tuple((name.lower(), value) for name, value in items))

    def split(self, key: Secret | None) -> tuple[dict[str, str], dict[str, Secret]]:
        """The headers to send as they are, and those to keep as secrets: a credential
        header's, and any whose value is the key. The ``Authorization`` header is left out:
        it carries the key, set on each request as it is built."""
        plain: dict[str, str] = {}
        secret: dict[str, Secret] = {}
        for name, value in self._items:
            if name == "authorization":
                continue
            if name in SECRET_HEADERS or (
                key is not None and value in (key.reveal(), key.bearer())
            ):
                secret[name] = Secret(value)
            else:
                plain[name] = value
        return plain, secret

    def __repr__(self) -> str:
        return f"DefaultHeaders({', '.join(name for name, _ in self._items)})"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("default headers cannot be pickled: one of them may be a key")


@attrs.frozen
class Settings:
    """What a client needs to reach the API. The key is a ``Secret``."""

    base_url: str
    api_key: Secret
    pool_id: str | None


def _from_env(value: str | None, argument: str, variable: str) -> str | None:
    """The argument, else the environment variable (where blank means unset). An argument
    given must be a string that is not blank."""
    if value is not None:
        if not isinstance(value, str):
            raise ConfigurationError(f"{argument} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise ConfigurationError(
                f"{argument} is blank: pass a value, or None to read {variable}"
            )
        return value.strip()
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


def _check_base_url(raw: str, source: str, allow_insecure_http: bool) -> str:
    """The base URL from ``source`` (``base_url`` or the environment variable), checked."""
    try:
        url = httpx.URL(raw.strip())
    except (httpx.InvalidURL, TypeError, UnicodeError) as exc:
        raise ConfigurationError(
            f"{source} {_shown(raw)} is not a valid URL ({type(exc).__name__})"
        ) from None
    if url.userinfo:
        raise ConfigurationError(f"{source} must not carry credentials; pass api_key= instead")
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"{source} {_shown(raw)} must be an absolute http:// or https:// URL "
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
    check_flag(allow_insecure_http, "allow_insecure_http")
    url = _from_env(base_url, "base_url", ENV_BASE_URL)
    if url is None:
        raise ConfigurationError(
            f"no base URL: pass base_url= or set the {ENV_BASE_URL} environment variable"
        )
    secret = api_key if isinstance(api_key, Secret) else Secret.of(api_key, "api_key")
    del api_key  # from here on the key is only in the Secret, which never shows it
    from_argument = secret is not None
    if secret is None:
        secret = Secret.of(os.environ.get(ENV_API_KEY), ENV_API_KEY)
    if secret is None:
        raise ConfigurationError(
            f"no API key: pass api_key= or set the {ENV_API_KEY} environment variable"
        )
    problem = key_problem(secret, "api_key" if from_argument else ENV_API_KEY)
    if problem is not None:
        raise ConfigurationError(problem)
    return Settings(
        base_url=_check_base_url(
            url, "base_url" if base_url is not None else ENV_BASE_URL, allow_insecure_http
        ),
        api_key=secret,
        pool_id=_from_env(pool_id, "pool_id", ENV_POOL_ID),
    )


def key_problem(secret: Secret, source: str = "api_key") -> str | None:
    """Why the key (from ``source``) cannot be sent in an ``Authorization`` header, if it
    cannot (never the key)."""
    value = secret.reveal()
    if value.isascii() and value.isprintable() and " " not in value:
        return None
    return (
        f"{source} holds characters that cannot be sent in an HTTP header (only printable "
        "ASCII can): look for a pasted curly quote, a space or a line break"
    )


def new_idempotency_key() -> str:
    """A fresh ``Idempotency-Key`` value."""
    return f"harpoon-{uuid.uuid4().hex}"


@attrs.frozen
class DialectSettings:
    """Which API the control plane speaks, and what the ``gpuaas`` dialect needs."""

    dialect: str
    auth_header: str
    team_id: str | None = None
    ledger_dir: Path = Path()
    subscribe_options: Mapping[str, object] = attrs.field(factory=dict)


def resolve_dialect(
    dialect: str | None,
    team_id: str | None,
    auth_header: str | None,
    ledger_dir: str | os.PathLike[str] | None,
    subscribe_options: Mapping[str, object] | None,
) -> DialectSettings:
    """The dialect from the argument, else ``HOSTED_AI_DIALECT`` (default ``"v1"``); a
    ``gpuaas`` client needs a team (``team_id=`` or ``HOSTED_AI_TEAM_ID``)."""
    chosen = _from_env(dialect, "dialect", ENV_DIALECT) or "v1"
    if chosen not in DIALECTS:
        source = "dialect" if dialect is not None else ENV_DIALECT
        raise ConfigurationError(f"{source} must be one of {DIALECTS}, got {chosen!r}")
    header = _from_env(auth_header, "auth_header", "HOSTED_AI_AUTH_HEADER")
    header = (header or ("x-api-key" if chosen == "gpuaas" else "authorization")).lower()
    if header not in AUTH_HEADERS:
        raise ConfigurationError(f"auth_header must be one of {AUTH_HEADERS}, got {header!r}")
    if chosen == "v1":
        for name, value in (
            ("team_id", team_id),
            ("ledger_dir", ledger_dir),
            ("subscribe_options", subscribe_options),
        ):
            if value is not None:
                raise ConfigurationError(f"{name} is for dialect='gpuaas' only")
        return DialectSettings("v1", header)
    team = _from_env(team_id, "team_id", ENV_TEAM_ID)
    if team is None:
        raise ConfigurationError(
            f"dialect='gpuaas' needs a team: pass team_id= or set {ENV_TEAM_ID}"
        )
    if ledger_dir is not None and not isinstance(ledger_dir, str | os.PathLike):
        raise ConfigurationError(f"ledger_dir must be a path, got {type(ledger_dir).__name__}")
    if subscribe_options is not None and not (
        isinstance(subscribe_options, Mapping)
        and all(isinstance(key, str) for key in subscribe_options)
    ):
        raise ConfigurationError("subscribe_options must be a mapping with string keys")
    try:  # sent in every subscribe's body: refused now, not as a TypeError when sending
        json.dumps(dict(subscribe_options or {}), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigurationError(f"subscribe_options must hold JSON values only: {exc}") from None
    return DialectSettings(
        "gpuaas",
        header,
        team,
        Path(ledger_dir) if ledger_dir is not None else default_ledger_dir(),
        dict(subscribe_options or {}),
    )


def default_ledger_dir() -> Path:
    """Where the ``gpuaas`` ledger lives: ``$HOSTED_AI_LEDGER_DIR``, else the user's cache
    directory (``$XDG_CACHE_HOME`` or ``~/.cache``) under ``hostedai-harpoon``."""
    found = os.environ.get(ENV_LEDGER_DIR, "").strip()
    if found:
        return Path(found)
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(cache) if cache else Path.home() / ".cache") / "hostedai-harpoon"
