"""Argument checks: every public argument is checked before anything is sent.

Each check names the argument as the caller spelled it (``gpus``, not ``gpu_count``) and
raises ``ConfigurationError``; none of them echoes a secret.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, Final
from urllib.parse import quote

from ._exceptions import ConfigurationError

__all__ = [
    "API_DEFAULT_MAX_TOKENS",
    "MAX_GPUS",
    "MAX_RETRIES",
    "MAX_SECONDS",
    "MAX_TOKENS",
    "check_callable",
    "check_flag",
    "check_gpus",
    "check_id",
    "check_idempotency_key",
    "check_instance",
    "check_int",
    "check_iterable",
    "check_mapping",
    "check_max_tokens",
    "check_number",
    "check_optional_text",
    "check_retries",
    "check_seconds",
    "check_stop",
    "check_temperature",
    "check_text",
    "ttl_seconds",
]

# Longer than this is a mistake (and past what threads and event loops can wait for).
MAX_SECONDS: Final = 7 * 24 * 3600.0
# The API's own bounds (docs/openapi.yaml).
MAX_TTL_SECONDS: Final = 86_400
MAX_GPUS: Final = 64
MAX_TOKENS: Final = 32_768
API_DEFAULT_MAX_TOKENS: Final = 256
"""What the HostedAI API generates when a request gives no ``max_tokens`` (``None``)."""
MAX_TEMPERATURE: Final = 2.0
MAX_STOP_SEQUENCES: Final = 4
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255
# More retries than this is a loop, not a policy: 100 attempts at the default 8 s cap is
# already over 13 minutes.
MAX_RETRIES: Final = 100


def _kind(value: object) -> str:
    return type(value).__name__


def _sendable(value: str) -> bool:
    """Whether the text survives UTF-8 encoding (a lone surrogate does not)."""
    if value.isascii():  # a flag CPython keeps on the string: no copy made to find out
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_flag(value: object, name: str) -> bool:
    """``True`` or ``False``, nothing else: a string such as ``"false"`` is a mistake, not
    a true value."""
    if type(value) is not bool:
        raise ConfigurationError(f"{name} must be True or False, got {_kind(value)} {value!r}")
    return value


def check_text(value: object, name: str) -> str:
    """A non-empty string that can be sent as UTF-8."""
    if type(value) is not str:
        raise ConfigurationError(f"{name} must be a string, got {_kind(value)}")
    if not value:
        raise ConfigurationError(f"{name} must not be empty")
    if not _sendable(value):
        raise ConfigurationError(f"{name} holds characters that cannot be sent (a lone surrogate)")
    return value


def check_optional_text(value: object, name: str) -> str | None:
    """``None``, or what ``check_text`` accepts."""
    return None if value is None else check_text(value, name)


# The characters ``quote(..., safe="")`` never encodes (RFC 3986's unreserved ones).
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+").fullmatch


def check_id(value: object, name: str) -> str:
    """An id fit to stand as one path segment, returned percent-encoded."""
    text = check_text(value, name)
    if text in (".", ".."):
        raise ConfigurationError(f"{name} must not be {text!r}")
    if _UNRESERVED(text) is not None:  # what ``quote`` leaves as it is, told apart faster
        return text
    return quote(text, safe="")


def _check_int(value: object, name: str, minimum: int, maximum: int | None) -> int:
    if type(value) is not int:
        raise ConfigurationError(f"{name} must be an integer, got {_kind(value)} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigurationError(f"{name} must be an integer {bound}, got {value!r}")
    return value


def check_int(value: object, name: str, minimum: int, maximum: int | None = None) -> int:
    """An integer from ``minimum`` to ``maximum`` (``True`` and ``1.0`` are refused)."""
    return _check_int(value, name, minimum, maximum)


def check_gpus(value: object, name: str = "gpus") -> int:
    """How many GPUs: an integer from 1 to 64, the API's bounds (``True`` and ``1.0`` are
    refused)."""
    return _check_int(value, name, 1, MAX_GPUS)


def check_retries(value: object, name: str = "max_retries") -> int:
    """How many times a failed attempt may be retried: an integer from 0 to 100."""
    return _check_int(value, name, 0, MAX_RETRIES)


def check_max_tokens(value: object) -> int | None:
    """``None`` (the server's default) or an integer within the API's bounds."""
    return None if value is None else _check_int(value, "max_tokens", 1, MAX_TOKENS)


def _check_number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number, got {_kind(value)} {value!r}")
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, got {value!r}")
    return value


def check_number(
    value: object, name: str, low: float, high: float, *, above_low: bool = False
) -> float:
    """A finite number (not a bool) from ``low`` (or above it, with ``above_low``) to ``high``."""
    number = _check_number(value, name)
    if number < low or (above_low and number == low) or number > high:
        least = f"above {low:g}" if above_low else f">= {low:g}"
        bounds = least if high == math.inf else f"{least} and at most {high:g}"
        raise ConfigurationError(f"{name} must be a finite number {bounds}, got {value!r}")
    return number


def check_temperature(value: object) -> float | None:
    """``None`` or a finite number from 0 to 2."""
    return None if value is None else check_number(value, "temperature", 0, MAX_TEMPERATURE)


def check_callable(value: object, name: str, *, optional: bool = False) -> Any:
    """A callable (or ``None`` with ``optional``)."""
    if (optional and value is None) or callable(value):
        return value
    extra = " or None" if optional else ""
    raise ConfigurationError(f"{name} must be callable{extra}, got {_kind(value)} {value!r}")


def check_instance(value: object, kind: type[Any], name: str, *, optional: bool = False) -> Any:
    """An instance of ``kind`` (or ``None`` with ``optional``)."""
    if (optional and value is None) or isinstance(value, kind):
        return value
    extra = " or None" if optional else ""
    raise ConfigurationError(f"{name} must be a {kind.__name__}{extra}, got {_kind(value)}")


def check_iterable(value: object, name: str, what: str) -> Iterable[Any]:
    """A collection of ``what`` (a list, a tuple, a set...): not a string, bytes or mapping,
    which would be taken apart character by character or key by key."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ConfigurationError(f"{name} must be a list of {what}, got {_kind(value)} {value!r}")
    return value


def check_mapping(value: object, name: str, what: str) -> Mapping[Any, Any]:
    """A mapping (a dict) of ``what``."""
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"{name} must be a mapping of {what}, got {_kind(value)} {value!r}"
        )
    return value


def check_stop(value: object) -> str | list[str] | None:
    """``None``, one stop sequence, or a list of up to four."""
    if value is None or type(value) is str:
        return check_optional_text(value, "stop")
    if not isinstance(value, list | tuple):
        raise ConfigurationError(
            f"stop must be a string or a list of strings, got {_kind(value)} {value!r}"
        )
    if not 1 <= len(value) <= MAX_STOP_SEQUENCES:
        raise ConfigurationError(
            f"stop must hold 1 to {MAX_STOP_SEQUENCES} sequences, got {len(value)}"
        )
    return [check_text(item, "stop") for item in value]


def check_idempotency_key(value: object) -> str | None:
    """``None`` or a key fit for an HTTP header: printable ASCII, at most 255 characters."""
    if value is None:
        return None
    if type(value) is not str:
        raise ConfigurationError(f"idempotency_key must be a string, got {_kind(value)}")
    if not value or len(value) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ConfigurationError(
            f"idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters long"
        )
    if not (value.isascii() and value.isprintable()):
        raise ConfigurationError("idempotency_key must be printable ASCII (it is sent as a header)")
    return value


def check_seconds(
    value: object, name: str, *, positive: bool = False, minimum: float = 0.0
) -> float:
    """A duration argument: a finite number of seconds, at least ``minimum`` (more than 0
    with ``positive``) and at most a week."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
    if value < minimum or (positive and value <= 0):
        least = f"at least {minimum}" if minimum else ("more than 0" if positive else ">= 0")
        raise ConfigurationError(f"{name} must be {least} seconds, got {value!r}")
    if value > MAX_SECONDS:
        raise ConfigurationError(
            f"{name} must be at most {MAX_SECONDS:.0f} seconds (a week), got {value!r}"
        )
    return float(value)


def ttl_seconds(ttl: object, name: str = "ttl") -> int | None:
    """Whole seconds from a TTL given as seconds or a ``timedelta`` (``None`` stays)."""
    if ttl is None:
        return None
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 < seconds <= MAX_TTL_SECONDS
    ):
        raise ConfigurationError(
            f"{name} must be a number of seconds from 1 to {MAX_TTL_SECONDS}, got {ttl!r}"
        )
    return math.ceil(seconds)
