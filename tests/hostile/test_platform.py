"""hosted·ai's platform (the ``gpuaas`` dialect) attacked one operation at a time: each of
available-pools, subscribe, the subscription list, connection-info, expose-service,
unsubscribe and the pod's vLLM server answered with a malformed, wrong-typed, key-echoing or
quirky body (errors as 200s, ``{"code": 12370004}``, empty 200s), after doing what was asked
(``made``) or instead of it (refused).

Whatever the answer, a lease ends with its result or a typed error of the package's tree,
within a bounded number of requests and seconds of waiting; the key is in no error, log
record, orphan or ledger; and no subscription is left live that no ledger names: each one the
client made is released, or is an orphan or in the subscription ledger, from which
``release_orphans()`` and ``reconcile()`` release it once the platform answers again.
"""

from __future__ import annotations

import json
import logging
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator
from tests.client._support import BASE_URL, Waits, call
from tests.dialects import TEAM
from tests.hostile import _platform, _server
from tests.hostile._echo import everything_about
from tests.hostile._platform import ANSWERS, OPERATIONS, Hostile
from tests.hostile.test_hostile_server import run_child

KEY = "sk-platform-7c1e9a3f5b2d4e6f8a0b"
MODEL = "gemma-3-270m"
READY_TIMEOUT = CAPACITY_TIMEOUT = RELEASE_TIMEOUT = 5.0
# The waits a lease may take under attack: its ready wait or its wait for a full pool, its
# release wait and the release of what is left (the orphans' and the reconcile's, with the
# attack over), the look-ups of a subscribe with no answer (4 looks, backing off to 1 s) and
# the retries' backoff.
MAX_WAITS = max(READY_TIMEOUT, CAPACITY_TIMEOUT) + 3 * RELEASE_TIMEOUT + 10.0
MAX_REQUESTS = 200

# Answers that say for certain that nothing was done: only ever instead of the operation.
REFUSALS = frozenset({"echo-422", "echo-401", "no-capacity-200"})
# Operations with nothing to make or not make: the answer replaces the emulator's.
READS = ("pools", "list", "connection", "pod")
CASES = [
    pytest.param(operation, answer, made, id=f"{operation}-{answer}" + ("-made" if made else ""))
    for operation in OPERATIONS
    for answer in ANSWERS
    for made in ((True,) if operation in READS else (False, True))
    if not (made and answer in REFUSALS and operation not in READS)
]


def client_of(flavor: str, transport: Hostile, ledger_dir: Path) -> Any:
    options: dict[str, Any] = {"dialect": "gpuaas", "team_id": TEAM, "ledger_dir": ledger_dir}
    if flavor == "sync":
        return harpoon.HostedAI(
            BASE_URL, KEY, http_client=httpx.Client(transport=transport), **options
        )
    http = httpx.AsyncClient(transport=transport)
    return harpoon.AsyncHostedAI(BASE_URL, KEY, http_client=http, **options)


async def use_a_lease(client: Any, **changes: float) -> harpoon.HostedAIError | None:
    """Enter a lease, infer once, leave; the error it ended with, if any."""
    options: dict[str, Any] = {
        "ready_timeout": READY_TIMEOUT,
        "capacity_timeout": CAPACITY_TIMEOUT,
        "release_timeout": RELEASE_TIMEOUT,
        **changes,
    }
    try:
        if isinstance(client, harpoon.AsyncHostedAI):
            async with client.allocate(model=MODEL, **options) as lease:
                await lease.infer("hello", max_tokens=2)
        else:
            with client.allocate(model=MODEL, **options) as lease:
                lease.infer("hello", max_tokens=2)
    except harpoon.HostedAIError as error:
        return error
    return None


def ledger_text(directory: Path) -> str:
    """What the ledger directory holds, as text."""
    return "\n".join(path.read_text() for path in directory.iterdir() if path.is_file())


def unledgered(emu: Emulator, client: Any) -> list[str]:
    """This team's live subscriptions that neither the orphans nor the subscription ledger
    name (a subscribe still unsettled in the ledger names its pool's)."""
    orphans = {orphan.allocation_id for orphan in client.orphans()}
    book = client._gpuaas.ledger.snapshot()
    pending = {str(entry["pool_id"]) for entry in book["pending"].values()}
    return [
        record.id
        for record in emu.live_allocations()
        if record.id not in orphans
        and record.id not in book["owned"]
        and str(record.pool_id) not in pending
    ]


@pytest.mark.parametrize("flavor", ["sync", "async"])
@pytest.mark.parametrize(("operation", "answer", "made"), CASES)
async def test_a_hostile_answer_to_any_operation_leaks_neither_a_subscription_nor_the_key(
    flavor: str,
    operation: str,
    answer: str,
    made: bool,
    tmp_path: Path,
    waits: Waits,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    emu = Emulator(dialect="gpuaas")
    hostile = Hostile(emu, operation, ANSWERS[answer], made=made)
    client = client_of(flavor, hostile, tmp_path)
    try:
        error = await use_a_lease(client)
        assert hostile.attacks, "the attacked operation was never asked"
        assert error is None or isinstance(error, harpoon.HostedAIError)
        assert hostile.requests <= MAX_REQUESTS
        assert unledgered(emu, client) == []
        shown = "\n".join(
            [
                "" if error is None else everything_about(error),
                repr(client.orphans()),
                caplog.text,
                ledger_text(tmp_path),
            ]
        )
        assert KEY not in shown
        # The attack over, the ledgers are enough to release what the lease could not.
        hostile.armed = False
        await call(client, "release_orphans")
        await call(client, "reconcile")
        assert emu.live_allocations() == []
        assert waits.skipped <= MAX_WAITS
    finally:
        await call(client, "close")


PLAIN_CALLS = [
    ("pools", "health", ()),
    ("pools", "get_pool", ("1",)),
    ("list", "list_allocations", ()),
    ("list", "get_allocation", ("1001",)),
    ("list", "release_allocation", ("1001",)),
    ("list", "reconcile", ()),
    ("subscribe", "create_allocation", (MODEL,)),
]


@pytest.mark.parametrize("answer", list(ANSWERS))
@pytest.mark.parametrize(("operation", "method", "arguments"), PLAIN_CALLS)
async def test_a_plain_call_answered_by_a_hostile_platform_is_a_typed_error_without_the_key(
    operation: str,
    method: str,
    arguments: tuple[str, ...],
    answer: str,
    tmp_path: Path,
    waits: Waits,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    emu = Emulator(dialect="gpuaas")
    made = answer not in REFUSALS
    hostile = Hostile(emu, operation, ANSWERS[answer], made=made)
    client = client_of("sync", hostile, tmp_path)
    with client:
        if method in ("get_allocation", "release_allocation"):
            hostile.armed = False
            client.create_allocation(MODEL)  # 1001, for the calls that name it
            hostile.armed = True
        shown = ""
        try:
            getattr(client, method)(*arguments)
        except harpoon.HostedAIError as error:
            shown = everything_about(error)
        assert hostile.attacks
        assert KEY not in shown + caplog.text + ledger_text(tmp_path)
        assert unledgered(emu, client) == []
        assert waits.skipped <= MAX_WAITS


# Over TCP: huge, compressed, endless and dribbled answers, in a child process ------------

CHILD_KEY = "hostile-test-key"  # (the key _child.py sends)
DEADLINE = 1.0
# A lease in the child waits at most 3 s for its pod, a full pool or its release; each call
# gives up after the deadline (a release's, after its release timeout): the child's call is
# done within their sum, and a little more to start and to leave.
MAX_SECONDS = DEADLINE + 3 + 3 + 3.0
MAX_GROWTH_MIB = 64
TCP_CASES = [
    ("pools", "huge", "sync"),
    ("pools", "dribble-headers", "async"),
    ("subscribe", "endless", "async"),
    ("subscribe", "dribble-body", "sync"),
    ("list", "bomb", "sync"),
    ("list", "dribble-body", "async"),
    ("connection", "endless", "sync"),
    ("connection", "dribble-headers", "async"),
    ("expose", "huge", "async"),
    ("expose", "dribble-body", "sync"),
    ("unsubscribe", "endless", "sync"),
    ("unsubscribe", "dribble-headers", "async"),
    ("pod", "bomb", "async"),
    ("pod", "sse-line", "sync"),
    ("pod", "sse-keepalive", "async"),
]


@pytest.fixture(scope="module")
def bomb() -> None:
    _server.gzip_bomb()  # built before any case is timed


@pytest.mark.parametrize(("operation", "route", "flavor"), TCP_CASES)
def test_a_huge_or_dribbled_answer_to_any_operation_is_bounded_and_leaks_nothing(
    operation: str, route: str, flavor: str, tmp_path: Path, bomb: None
) -> None:
    emu = Emulator(dialect="gpuaas")
    case: dict[str, Any] = {"flavor": flavor, "call": "lease", "dialect": "gpuaas", "team_id": TEAM}
    case |= {"ledger_dir": str(tmp_path), "deadline": DEADLINE}
    if route.startswith("sse"):
        case |= {"stream": True, "read_timeout": DEADLINE}
    with _platform.serve(emu, operation, route) as url:
        result = run_child({**case, "base_url": url})
        assert result["error"] is None or "HostedAIError" in result["classes"], result
        assert result["growth_mib"] < MAX_GROWTH_MIB, result
        assert result["seconds"] < MAX_SECONDS, result
        assert CHILD_KEY not in (result["message"] or "") + ledger_text(tmp_path)
        book = json.loads(ledger_text(tmp_path) or "{}")
        pending = {str(entry["pool_id"]) for entry in book.get("pending", {}).values()}
        named = set(result["orphans"]) | set(book.get("owned", {}))
        live = emu.live_allocations()
        assert [r.id for r in live if r.id not in named and str(r.pool_id) not in pending] == []
        # What the child left, a new process releases from the ledger (the child is gone).
        options: dict[str, Any] = {"dialect": "gpuaas", "team_id": TEAM, "ledger_dir": tmp_path}
        with harpoon.HostedAI(url, KEY, http_client=emu.http_client(), **options) as client:
            client.reconcile()
        assert emu.live_allocations() == []


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_answers_refused_as_too_large_are_not_held_while_the_pod_is_awaited(
    flavor: str, tmp_path: Path, waits: Waits
) -> None:
    # Each endless answer to connection-info is refused at the limit and the pod asked
    # again: the refused bodies must not pile up (with a deadline, the sync client's did,
    # held by the swallowed errors' tracebacks until the garbage collector ran: 7 of them
    # after 10 answers).
    limit = 16 << 20  # (the default)
    emu = Emulator(dialect="gpuaas")
    options: dict[str, Any] = {"dialect": "gpuaas", "team_id": TEAM, "ledger_dir": tmp_path}
    options |= {"max_retries": 0, "deadline": 1.0}
    with _platform.serve(emu, "connection", "endless") as url:
        client: Any = (harpoon.HostedAI if flavor == "sync" else harpoon.AsyncHostedAI)(
            url, KEY, **options
        )
        tracemalloc.start()
        try:
            error = await use_a_lease(client, ready_timeout=8.0)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            await call(client, "close")
    assert isinstance(error, harpoon.AllocationError)
    assert "not ready" in str(error)
    answers = len(emu.requests_to("GET", "/api/gpuaas/connection-info"))
    assert answers >= 5  # (10 on an idle machine)
    assert peak < 2 * limit, f"{peak / limit:.1f} refused bodies held at once, of {answers}"
    assert emu.live_allocations() == []
