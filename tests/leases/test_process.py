"""Leases and the process around them: killed outright, or exiting with a block still open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from hostedai_harpoon.testing import Emulator

HOLD_AND_WAIT = textwrap.dedent(
    """
    import sys, threading, time
    import hostedai_harpoon as harpoon

    client = harpoon.HostedAI(sys.argv[1], "sk-test")
    ttl = float(sys.argv[2])

    def hold():
        with client.allocate(model="gemma-3-270m", ttl=ttl) as lease:
            print(lease.id, flush=True)
            threading.Event().wait()

    if sys.argv[3] == "thread":
        threading.Thread(target=hold, daemon=True).start()
        time.sleep(float(sys.argv[4]))
    else:
        hold()
    """
)


def start_holder(
    base_url: str, ttl: float, mode: str, linger: float = 0.0
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HOSTED_AI_API_KEY", None)
    return subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_WAIT, base_url, str(ttl), mode, str(linger)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_allocation_id(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    if not line.startswith("alloc_"):
        child.kill()
        _, err = child.communicate(timeout=10)
        pytest.fail(f"the child did not start its lease: {line!r} {err}")
    return line


@pytest.mark.timeout(60)
def test_a_killed_process_loses_its_gpus_when_the_ttl_runs_out() -> None:
    emu = Emulator()
    with emu.serve() as base_url:
        child = start_holder(base_url, ttl=1, mode="main")
        try:
            allocation_id = read_allocation_id(child)
            time.sleep(1.5)  # longer than the TTL: only the child's renewals keep it alive
            assert [a.id for a in emu.live_allocations()] == [allocation_id]
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
            child.communicate(timeout=10)
        deadline = time.monotonic() + 10
        while emu.live_allocations() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert emu.live_allocations() == []
        assert emu.get(allocation_id).status.value == "expired"
        assert emu.requests_to("DELETE") == []


@pytest.mark.timeout(60)
def test_a_lease_still_open_at_interpreter_exit_is_released() -> None:
    emu = Emulator()
    with emu.serve() as base_url:
        child = start_holder(base_url, ttl=600, mode="thread", linger=0.5)
        try:
            allocation_id = read_allocation_id(child)
            _, err = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
        assert child.returncode == 0, err
        assert "releasing allocation" in err
        assert emu.live_allocations() == []
        assert emu.get(allocation_id).status.value == "released"
