"""Keeping secrets out of logs and telemetry.

Two nets: the secrets the SDK was given (each client registers its API key here), replaced
wherever they appear; and the shapes a credential takes in text (``Bearer ...``, an
``Authorization`` or ``api_key`` assignment, a password in a URL), masked whatever the value.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import httpx

MASK: Final = "***"
URL_MASK: Final = "REDACTED"

# Shorter than this, a "secret" would mask ordinary words; the shape patterns still apply.
MIN_SECRET = 8

_SHAPES = (
    r"(?i)(?P<scheme>\bbearer\s+)[^\s'\",;]+"
    r"|(?P<name>\b(?:authorization|proxy-authorization|x-api-key|api[_-]?key|hosted_ai_api_key)"
    r"[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+)?[^\s'\",;&]+"
    r"|(?P<userinfo>://)[^/\s@]+@"
)


@functools.cache
def _shapes() -> re.Pattern[str]:
    # Compiled on first use: most programs never log anything of ours.
    return re.compile(_SHAPES)


# Query parameters whose values are credentials (our API uses none; a proxy's URL might).
_SECRET_PARAMS: Final = frozenset(
    {
        "api_key",
        "apikey",
        "api-key",
        "key",
        "token",
        "access_token",
        "sig",
        "signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "awsaccesskeyid",
        "x-goog-signature",
    }
)

_secrets: frozenset[str] = frozenset()
_lock = threading.Lock()


def remember_secret(secret: str) -> None:
    """Mask ``secret`` wherever it appears in logs and telemetry from now on."""
    global _secrets
    if len(secret) < MIN_SECRET or secret in _secrets:
        return
    with _lock:
        _secrets = _secrets | {secret}


def _mask_shape(match: re.Match[str]) -> str:
    if match.group("scheme") is not None:
        return match.group("scheme") + MASK
    if match.group("name") is not None:
        return match.group("name") + MASK
    return f"://{URL_MASK}:{URL_MASK}@"


def redact(text: str) -> str:
    """``text`` with every known secret and every credential-shaped value masked."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return _shapes().sub(_mask_shape, text)


def url_full(url: httpx.URL) -> str:
    """``url`` as ``url.full`` may carry it: no credentials in the user info or the query."""
    if url.userinfo:
        url = url.copy_with(username=URL_MASK, password=URL_MASK)
    if url.query:
        url = url.copy_with(
            params=[
                (name, URL_MASK if name.lower() in _SECRET_PARAMS else value)
                for name, value in url.params.multi_items()
            ]
        )
    text = str(url)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, URL_MASK)
    return text


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message and traceback before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` with its secrets masked; never drops a record."""
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FORMATTER = logging.Formatter()
