"""The ``hostedai_harpoon`` logger: redaction always, a readable stderr log on request."""

from __future__ import annotations

import logging
import os
from typing import Final

from ._names import LOG_ENV
from ._redact import RedactingFilter

LOGGER: Final = "hostedai_harpoon"
LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO}
FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# The loggers of the HTTP stack under the SDK. httpcore's print, at DEBUG, the headers each
# response came with, which a server may have filled with the key it was sent. (A logger's
# filter only sees the records logged to it by name: each one is named.)
HTTP_LOGGERS: Final = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)

_FILTER = RedactingFilter()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``HOSTED_AI_LOG`` turns on (its own class, so it is added once)."""


def configure_logging(environ: os._Environ[str] | dict[str, str] = os.environ) -> None:
    """Put the redaction filter on the package logger and those of httpx and httpcore (whose
    levels are left alone) and, when ``HOSTED_AI_LOG`` is ``debug`` or ``info``, a stderr
    handler on the package logger only, at that level. Calling it again changes nothing."""
    for name in (*HTTP_LOGGERS, LOGGER):
        filtered = logging.getLogger(name)
        if _FILTER not in filtered.filters:
            filtered.addFilter(_FILTER)
    logger = logging.getLogger(LOGGER)
    level = LEVELS.get(environ.get(LOG_ENV, "").strip().lower())
    if level is None or any(isinstance(h, _StderrHandler) for h in logger.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    # Records of child loggers (the emulator's) reach the handler without the logger's filter.
    handler.addFilter(_FILTER)
    logger.addHandler(handler)
    logger.setLevel(level)
