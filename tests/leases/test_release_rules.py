"""The rules of the release module on their own: which failed create certainly made nothing
(``nothing_was_made``) and which failed replay proves it (``replay_proves_nothing_made``)."""

from __future__ import annotations

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon._exceptions import status_error_class
from hostedai_harpoon._leases._release import nothing_was_made, replay_proves_nothing_made


def status(code: int, envelope_code: str | None = None) -> harpoon.APIStatusError:
    return status_error_class(code, envelope_code)(f"{code}", status_code=code, code=envelope_code)


def unsent(error: harpoon.APIConnectionError) -> harpoon.APIConnectionError:
    error._unsent = True
    return error


MADE_NOTHING = [
    status(503, "capacity_exhausted"),  # a full pool
    harpoon.ConfigurationError("refused before sending"),
    harpoon.CircuitOpenError("the breaker refused the first attempt"),
    unsent(harpoon.APIConnectionError("no attempt could connect")),
    status(400),
    status(401),
    status(403),
    status(404),
    status(409, "idempotency_conflict"),  # the key is bound to another body
    status(410),
    status(422),
]
LEFT_OPEN = [
    harpoon.APIConnectionError("the connection broke after sending"),
    harpoon.APITimeoutError("no answer in time"),
    status(408),
    status(429),
    status(500),
    status(502),
    status(503),  # unavailable, not a full pool
    harpoon.ResponseValidationError("a garbled answer", status_code=201),
    RuntimeError("anything else"),
]


@pytest.mark.parametrize("error", MADE_NOTHING, ids=repr)
def test_a_create_that_failed_so_made_nothing(error: BaseException) -> None:
    assert nothing_was_made(error)


@pytest.mark.parametrize("error", LEFT_OPEN, ids=repr)
def test_a_create_that_failed_so_may_have_made_an_allocation(error: BaseException) -> None:
    assert not nothing_was_made(error)


def test_a_replay_proves_nothing_was_made_only_with_a_definite_answer() -> None:
    assert replay_proves_nothing_made(status(404), answered=False)
    # The first create was answered (garbled): the server made something under the key.
    assert not replay_proves_nothing_made(status(404), answered=True)
    # A replay that could not connect says nothing about the first create.
    unreachable = unsent(harpoon.APIConnectionError("the API is restarting"))
    assert not replay_proves_nothing_made(unreachable, answered=False)
    assert not replay_proves_nothing_made(status(500), answered=False)
