"""Secrets never reach a log line or an attribute; HOSTED_AI_LOG turns on a stderr log."""

from __future__ import annotations

import logging

import httpx
import pytest

from hostedai_harpoon._telemetry import _logging, redact, remember_secret
from hostedai_harpoon._telemetry._redact import RedactingFilter, url_full

KEY = "hk-live-7c1d0e5f9a2b"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("authorization: Bearer abc.def", "authorization: ***"),
        ("headers={'Authorization': 'Bearer abc'}", "headers={'Authorization': '***'}"),
        ("sent Bearer abc123 to host", "sent Bearer *** to host"),
        ("HOSTED_AI_API_KEY=abc123 python app.py", "HOSTED_AI_API_KEY=*** python app.py"),
        ("api_key='abc123'", "api_key='***'"),
        ("https://me:pw@host/v1", "https://REDACTED:REDACTED@host/v1"),
        ("nothing to hide here", "nothing to hide here"),
    ],
)
def test_credential_shapes_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_remembered_key_is_masked_wherever_it_appears() -> None:
    remember_secret(KEY)
    assert redact(f"the key {KEY} leaked ({KEY})") == "the key *** leaked (***)"
    assert KEY not in url_full(httpx.URL(f"https://host/v1/x/{KEY}"))


def test_short_values_are_not_remembered_as_secrets() -> None:
    remember_secret("test")
    assert redact("a test message") == "a test message"


def test_the_filter_masks_message_arguments_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    remember_secret(KEY)
    logger = logging.getLogger("tests.redaction")
    logger.addFilter(RedactingFilter())
    try:
        raise ValueError(f"bad key {KEY}")
    except ValueError:
        with caplog.at_level(logging.DEBUG, logger="tests.redaction"):
            logger.exception("sending %s with %r", KEY, {"authorization": f"Bearer {KEY}"})
    finally:
        logger.filters.clear()
    assert KEY not in caplog.text
    assert "sending *** with" in caplog.text
    assert "ValueError: bad key ***" in caplog.text


def test_hosted_ai_log_turns_on_one_stderr_handler(
    package_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    remember_secret(KEY)
    _logging.configure_logging({"HOSTED_AI_LOG": "DEBUG"})
    _logging.configure_logging({"HOSTED_AI_LOG": "debug"})
    added = [h for h in package_logger.handlers if isinstance(h, _logging._StderrHandler)]
    assert len(added) == 1
    assert package_logger.level == logging.DEBUG
    logging.getLogger("hostedai_harpoon.testing").debug("child says %s", KEY)
    package_logger.info("POST /v1/inference -> 200 (key %s)", KEY)
    err = capsys.readouterr().err
    assert "INFO    hostedai_harpoon: POST /v1/inference -> 200 (key ***)" in err
    assert "hostedai_harpoon.testing: child says ***" in err
    assert KEY not in err


@pytest.mark.parametrize("value", ["", "verbose", "0"])
def test_other_values_add_no_handler_but_keep_redaction(
    package_logger: logging.Logger, value: str
) -> None:
    before = list(package_logger.handlers)
    _logging.configure_logging({"HOSTED_AI_LOG": value})
    assert package_logger.handlers == before
    assert any(isinstance(f, RedactingFilter) for f in package_logger.filters)
