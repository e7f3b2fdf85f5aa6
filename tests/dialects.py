"""One test module, both control-plane dialects: ``v1`` and hosted·ai's platform (``gpuaas``).

A directory whose guarantees hold on both calls ``parametrize_dialects`` from its
``pytest_generate_tests``: every test there that uses the ``make_emulator`` (or
``emulator``) fixture runs once per dialect. On ``gpuaas`` the emulator speaks the platform,
and the environment makes every client the test builds a ``gpuaas`` client of one team with
a ledger of the test's own (``HOSTED_AI_DIALECT``, ``HOSTED_AI_TEAM_ID``,
``HOSTED_AI_LEDGER_DIR``). A test that pins something only v1 has (TTL renewals, idempotency
keys, ``/v1/inference``) says so with ``@pytest.mark.v1_only("why")``: its gpuaas run is
skipped with that reason. Paths a test names go through the ``paths`` fixture.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from fnmatch import fnmatchcase

import attrs
import httpx
import pytest

from hostedai_harpoon.testing import Emulator

DIALECTS = ("v1", "gpuaas")
TEAM = "team-harpoon-tests"


@attrs.frozen
class Paths:
    """What each lease operation sends, as ``(method, path glob)``, in one dialect."""

    create: tuple[str, str]
    ready: tuple[str, str]
    release: tuple[str, str]
    inference: tuple[str, str]
    pools: tuple[str, str]

    def infers(self, request: httpx.Request) -> bool:
        """Whether ``request`` is an inference."""
        return _is(request, self.inference)

    def releases(self, request: httpx.Request) -> bool:
        """Whether ``request`` is a release."""
        return _is(request, self.release)


def _is(request: httpx.Request, operation: tuple[str, str]) -> bool:
    method, glob = operation
    return request.method == method and fnmatchcase(request.url.path, glob)


PATHS = {
    "v1": Paths(
        create=("POST", "/v1/allocate"),
        ready=("GET", "/v1/allocate/*"),
        release=("DELETE", "/v1/allocate/*"),
        inference=("POST", "/v1/inference"),
        pools=("GET", "/v1/pools"),
    ),
    "gpuaas": Paths(
        create=("POST", "/api/gpuaas/pool/subscribe"),
        ready=("GET", "/api/gpuaas/connection-info"),
        release=("POST", "/api/gpuaas/pool/unsubscribe"),
        inference=("POST", "/v1/chat/completions"),
        pools=("GET", "/api/gpuaas/available-pools"),
    ),
}


def parametrize_dialects(
    metafunc: pytest.Metafunc, wires: tuple[Sequence[str], Sequence[str]] | None = None
) -> None:
    """Run the test on both dialects when it uses the emulator fixtures (see the module).
    ``wires``: for a test that also takes a ``wire``, the wires of v1 and of gpuaas."""
    if "dialect" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("v1_only")
    marks = []
    if marker is not None:
        reason = marker.args[0] if marker.args else "pins something only the v1 API has"
        marks = [pytest.mark.skip(reason=f"v1 only: {reason}")]
    if wires is None or "wire" not in metafunc.fixturenames:
        metafunc.parametrize("dialect", ["v1", pytest.param("gpuaas", marks=marks)])
        return
    v1_wires, gpuaas_wires = wires
    metafunc.parametrize(
        ("dialect", "wire"),
        [("v1", wire) for wire in v1_wires]
        + [pytest.param("gpuaas", wire, marks=marks) for wire in gpuaas_wires],
    )


def made(emu: Emulator) -> int:
    """How many allocations (subscriptions) the emulator made, in any state."""
    return len(emu.allocations())


def allocation_of(emu: Emulator, request: httpx.Request) -> str | None:
    """The allocation (subscription) an inference request is for: v1 names it in the body;
    on gpuaas each pod has an address of its own."""
    if PATHS[emu.dialect].infers(request):
        if emu.dialect == "v1":
            return str(json.loads(request.content)["allocation_id"])
        host = request.headers.get("host")
        return next((a.id for a in emu.allocations() if a.address == host), None)
    return None


def model_of(emu: Emulator, request: httpx.Request) -> str | None:
    """The model an inference request is for (``None``: not an inference)."""
    if emu.dialect == "v1":
        allocation = allocation_of(emu, request)
        return None if allocation is None else str(emu.get(allocation).model)
    if not PATHS[emu.dialect].infers(request):
        return None
    return str(json.loads(request.content)["model"])
