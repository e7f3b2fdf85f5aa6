"""Errors are values a program can keep: they pickle, and their repr says what happened."""

from __future__ import annotations

import pickle

import pytest

import hostedai_harpoon as harpoon


@pytest.mark.parametrize(
    "error",
    [
        harpoon.NotFoundError("gone", status_code=404, request_id="req_1", code="x", body={}),
        harpoon.CapacityError("full", status_code=503, code="capacity_exhausted", retry_after=2),
        harpoon.APITimeoutError("slow", request_id="req_2"),
        harpoon.ResponseValidationError("bad", status_code=200, body="<html>"),
        harpoon.CircuitOpenError("open", retry_after=3.0),
        harpoon.AllocationError("lost", allocation_id="alloc_1"),
        harpoon.NoRouteError("none", reasons={"gemma-3-270m": "breaker open"}),
        harpoon.ConfigurationError("no key"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_every_error_survives_pickling(error: harpoon.HostedAIError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


def test_a_status_errors_repr_names_the_status_and_code() -> None:
    error = harpoon.RateLimitError(
        "slow down", status_code=429, code="rate_limited", request_id="req_9"
    )
    assert repr(error) == (
        "RateLimitError(status_code=429, code='rate_limited', message='slow down', "
        "request_id='req_9')"
    )


@pytest.mark.parametrize("timeout", [-1, "x", float("nan")])
def test_a_bad_timeout_is_a_configuration_error(timeout: object) -> None:
    with pytest.raises(harpoon.ConfigurationError, match="timeout"):
        harpoon.HostedAI("http://127.0.0.1:8080", "sk", timeout=timeout)  # type: ignore[arg-type]
