"""Settings the emulator refuses when it is built, before they could break a request."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from hostedai_harpoon.testing import Emulator, Fault, FaultPlan, ManualClock, PoolSpec
from hostedai_harpoon.testing.__main__ import main as serve_main
from hostedai_harpoon.testing.__main__ import parse_args
from tests.conftest import EmulatorFactory

from .conftest import AUTH, allocate

BAD_DELAYS = [-1, -0.001, math.inf, -math.inf, math.nan, "1"]

DELAY_SETTINGS: list[tuple[str, Callable[[object], object]]] = [
    ("Fault.delay", lambda d: Fault("latency", delay=d)),  # type: ignore[arg-type]
    ("FaultPlan.latency", lambda d: FaultPlan(latency_rate=1.0, latency=d)),  # type: ignore[arg-type]
    ("Emulator(latency_scale)", lambda d: Emulator(latency_scale=d)),  # type: ignore[arg-type]
    ("Emulator(stream_chunk_delay)", lambda d: Emulator(stream_chunk_delay=d)),  # type: ignore[arg-type]
    ("Emulator(ready_delay)", lambda d: Emulator(ready_delay=d)),  # type: ignore[arg-type]
    ("PoolSpec.ready_delay", lambda d: PoolSpec("p", ready_delay=d)),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("delay", BAD_DELAYS, ids=repr)
@pytest.mark.parametrize(("setting", "build"), DELAY_SETTINGS, ids=[s for s, _ in DELAY_SETTINGS])
def test_a_delay_must_be_finite_and_not_negative(
    setting: str, build: Callable[[object], object], delay: object
) -> None:
    with pytest.raises(ValueError, match="finite number of seconds >= 0"):
        build(delay)


@pytest.mark.parametrize(("setting", "build"), DELAY_SETTINGS, ids=[s for s, _ in DELAY_SETTINGS])
@pytest.mark.parametrize("delay", [0, 0.0, 0.25, 3])
def test_a_finite_delay_from_zero_up_is_accepted(
    setting: str, build: Callable[[object], object], delay: float
) -> None:
    build(delay)


@pytest.mark.parametrize("delay", [-1, math.inf])
def test_setting_a_bad_stream_chunk_delay_later_is_refused_too(
    emulator: Emulator, delay: float
) -> None:
    with pytest.raises(ValueError, match="stream_chunk_delay"):
        emulator.stream_chunk_delay = delay
    assert emulator.stream_chunk_delay == 0.0


@pytest.mark.parametrize("ttl", [0, -1, 86401, 1.5, True, "600"], ids=repr)
def test_a_default_ttl_outside_the_contract_is_refused(ttl: object) -> None:
    with pytest.raises(ValueError, match="default_ttl must be an integer from 1 to 86400"):
        Emulator(default_ttl=ttl)  # type: ignore[arg-type]


@pytest.mark.parametrize(("ttl", "expires"), [(None, False), (1, True), (86400, True)])
def test_a_default_ttl_in_the_contract_or_none_applies_to_new_allocations(
    make_emulator: EmulatorFactory, clock: ManualClock, ttl: int | None, expires: bool
) -> None:
    emu = make_emulator(default_ttl=ttl, clock=clock)
    with emu.http_client(headers=AUTH) as http:
        created = allocate(http).json()
        assert created["status"] == "ready"
        assert created["ttl_seconds"] == ttl
        assert (created["expires_at"] is not None) is expires
        clock.advance(86401)
        assert http.get(f"/v1/allocate/{created['id']}").json()["status"] == (
            "expired" if expires else "ready"
        )


@pytest.mark.parametrize(("text", "ttl"), [("none", None), ("None", None), ("1", 1), ("90", 90)])
def test_the_command_line_ttl_takes_seconds_or_none(text: str, ttl: int | None) -> None:
    assert parse_args(["--ttl", text]).ttl == ttl
    assert parse_args([]).ttl == 600


@pytest.mark.parametrize("text", ["0", "-5", "86401", "1.5", "never"])
def test_the_command_line_refuses_a_ttl_outside_the_contract(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        serve_main(["--port", "0", "--ttl", text])
    assert exited.value.code == 2
    assert "expected seconds from 1 to 86400, or 'none'" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--ready-delay", "--stream-chunk-delay", "--latency-scale"])
@pytest.mark.parametrize("value", ["-1", "inf", "nan"])
def test_the_command_line_refuses_a_bad_delay_naming_the_option(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        serve_main(["--port", "0", option, value])
    assert exited.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(
        f"python -m hostedai_harpoon.testing: error: argument {option}: expected a number "
    )
    assert last.endswith(f"from 0, got {value!r}")
