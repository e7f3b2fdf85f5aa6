"""pytest fixtures for testing code that uses hostedai-harpoon, against the emulator.

Installed with the package (the ``pytest11`` entry point ``hostedai_harpoon``), so a test
only names what it needs:

```python
def test_summary(hostedai_client):
    with hostedai_client.allocate(model="gemma-3-270m") as lease:
        assert lease.infer("Hello").text
```

- ``hostedai_emulator``: an in-process :class:`~hostedai_harpoon.testing.Emulator`;
- ``hostedai_server``: the base URL of that emulator served over TCP on 127.0.0.1;
- ``hostedai_env``: that URL, a key and the default pool in the ``HOSTED_AI_*`` variables,
  for code that builds its own client;
- ``hostedai_client`` / ``hostedai_async_client``: a ``HostedAI`` / ``AsyncHostedAI`` wired
  to the emulator in-process (no sockets);
- ``hostedai_orchestrator``: an ``Orchestrator`` over ``hostedai_async_client``, not yet
  entered: ``async with hostedai_orchestrator as orchestrator:`` in the test;
- ``hostedai_faults``: the :class:`~hostedai_harpoon.testing.FaultPlan` the emulator starts
  with, from the ``hostedai_faults`` marker (override the fixture to set one for a module).

Markers configure the fixture of the same name: ``hostedai_emulator(**Emulator kwargs)``,
``hostedai_faults(FaultPlan | *Fault rules, **FaultPlan kwargs)`` and
``hostedai_client(**client kwargs)`` (for both clients) and
``hostedai_orchestrator(**Orchestrator kwargs)`` (``policy=``, ``targets=``, ...).

The leak check: at teardown, every test that used any of these fixtures errors if an
allocation is still live on the emulator, naming it.

Loading the plugin imports pytest and the package root only; the emulator and the clients'
modules are imported when a fixture first runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    import hostedai_harpoon as harpoon
    from hostedai_harpoon.testing import Emulator, FaultPlan

_T = TypeVar("_T")

__all__ = [
    "API_KEY",
    "BASE_URL",
    "hostedai_async_client",
    "hostedai_client",
    "hostedai_emulator",
    "hostedai_env",
    "hostedai_faults",
    "hostedai_orchestrator",
    "hostedai_server",
]

BASE_URL = "http://hostedai-emulator.localhost"
"""The base URL the in-process clients are given (their transport never resolves it)."""

API_KEY = "test-key"
"""The API key every fixture uses; the emulator accepts any key unless it is told otherwise."""

_MARKERS = (
    "hostedai_emulator(**kwargs): keyword arguments for the Emulator of "
    "the hostedai_emulator fixture (pools=, ready_delay=, clock=, ...).",
    "hostedai_faults(plan | *rules, **kwargs): the FaultPlan the emulator "
    "starts with: a FaultPlan, or Fault rules and FaultPlan keyword arguments.",
    "hostedai_client(**kwargs): keyword arguments for the HostedAI and "
    "AsyncHostedAI of the client fixtures (circuit_breaker=None, max_retries=, ...).",
    "hostedai_orchestrator(**kwargs): keyword arguments for the Orchestrator of the "
    "hostedai_orchestrator fixture (policy=, targets=, max_attempts=, ...).",
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers, so that ``--strict-markers`` accepts them."""
    for text in _MARKERS:
        config.addinivalue_line("markers", text)


def _marker_kwargs(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    marker = request.node.get_closest_marker(name)
    if marker is None:
        return {}
    if marker.args:
        pytest.fail(f"@pytest.mark.{name} takes keyword arguments only", pytrace=False)
    return dict(marker.kwargs)


def _built_from_marker(marker: str, build: Callable[..., _T], options: Mapping[str, Any]) -> _T:
    """``build(**options)``; a bad option fails the test with one line naming the marker."""
    try:
        return build(**options)
    except (TypeError, ValueError) as exc:
        problem = str(exc)
    # Outside the except block, so that the report is this line, not a chain of errors.
    pytest.fail(f"@pytest.mark.{marker}: {problem}", pytrace=False)


@pytest.fixture
def hostedai_faults(request: pytest.FixtureRequest) -> FaultPlan | None:
    """The fault plan of ``hostedai_emulator``, from ``@pytest.mark.hostedai_faults``.

    The marker takes a ready ``FaultPlan``, or ``Fault`` rules and ``FaultPlan`` keyword
    arguments: ``@pytest.mark.hostedai_faults(Fault("drop", path="/v1/allocate", times=1))``,
    ``@pytest.mark.hostedai_faults(error_rate=0.2, seed=7)``. No marker: no faults.
    """
    from hostedai_harpoon.testing import Fault, FaultPlan

    marker = request.node.get_closest_marker("hostedai_faults")
    if marker is None:
        return None
    args, kwargs = marker.args, marker.kwargs
    if len(args) == 1 and isinstance(args[0], FaultPlan):
        if kwargs:
            pytest.fail(
                "@pytest.mark.hostedai_faults takes a FaultPlan or FaultPlan keyword "
                "arguments, not both",
                pytrace=False,
            )
        return args[0]
    if not all(isinstance(arg, Fault) for arg in args):
        pytest.fail(
            "@pytest.mark.hostedai_faults takes one FaultPlan, or Fault rules and FaultPlan "
            f"keyword arguments; got {args!r}",
            pytrace=False,
        )
    options = dict(kwargs)
    options["rules"] = (*args, *options.get("rules", ()))
    return _built_from_marker("hostedai_faults", FaultPlan, options)


@pytest.fixture
def hostedai_emulator(
    request: pytest.FixtureRequest, hostedai_faults: FaultPlan | None
) -> Iterator[Emulator]:
    """An in-process HostedAI emulator; the test errors at teardown if it left a GPU held.

    Configure it with ``@pytest.mark.hostedai_emulator(pools={"gpu-pool-1": 2}, ...)`` and
    ``@pytest.mark.hostedai_faults(...)``. A test that leaves allocations on purpose
    releases them (or calls ``hostedai_emulator.reset()``) before it ends.
    """
    from hostedai_harpoon.testing import Emulator

    options = _marker_kwargs(request, "hostedai_emulator")
    if "faults" in options and hostedai_faults is not None:
        pytest.fail(
            "give the fault plan once: @pytest.mark.hostedai_faults or "
            "@pytest.mark.hostedai_emulator(faults=...)",
            pytrace=False,
        )
    options.setdefault("faults", hostedai_faults)
    emulator = _built_from_marker("hostedai_emulator", Emulator, options)
    yield emulator
    _fail_on_leaks(emulator)


def _fail_on_leaks(emulator: Emulator) -> None:
    live = emulator.live_allocations()
    if not live:
        return
    held = "; ".join(
        f"{a.id} ({a.model}, {a.gpu_count} GPU, {a.status.value}, pool {a.pool_id})" for a in live
    )
    pytest.fail(
        f"{len(live)} allocation(s) left live on the HostedAI emulator: {held}. Release "
        "every allocation before the test ends (a `with client.allocate(...)` block does).",
        pytrace=False,
    )


@pytest.fixture
def hostedai_server(hostedai_emulator: Emulator) -> Iterator[str]:
    """The base URL of ``hostedai_emulator`` served over TCP on 127.0.0.1 (a free port).

    Needs uvicorn: ``pip install 'hostedai-harpoon[emulator]'``.
    """
    missing = None
    try:
        with hostedai_emulator.serve() as base_url:
            yield base_url
    except ImportError as exc:
        if exc.name != "uvicorn":
            raise
        missing = str(exc)
    if missing is not None:
        pytest.fail(missing, pytrace=False)


@pytest.fixture
def hostedai_env(
    hostedai_server: str, hostedai_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> str:
    """``HOSTED_AI_BASE_URL``/``_API_KEY``/``_POOL_ID`` pointed at ``hostedai_server``.

    For code that builds its own ``HostedAI()`` from the environment; returns the base URL.
    """
    from hostedai_harpoon._config import ENV_API_KEY, ENV_BASE_URL, ENV_POOL_ID

    monkeypatch.setenv(ENV_BASE_URL, hostedai_server)
    monkeypatch.setenv(ENV_API_KEY, API_KEY)
    monkeypatch.setenv(ENV_POOL_ID, _default_pool(hostedai_emulator))
    return hostedai_server


def _default_pool(emulator: Emulator) -> str:
    return emulator.pools()[0].id


def _client_options(request: pytest.FixtureRequest, emulator: Emulator) -> Mapping[str, Any]:
    # The pool is given so that a HOSTED_AI_POOL_ID in the developer's shell cannot leak in.
    return {
        "base_url": BASE_URL,
        "api_key": API_KEY,
        "pool_id": _default_pool(emulator),
        **_marker_kwargs(request, "hostedai_client"),
    }


@pytest.fixture
def hostedai_client(
    request: pytest.FixtureRequest, hostedai_emulator: Emulator
) -> Iterator[harpoon.HostedAI]:
    """A ``HostedAI`` wired to ``hostedai_emulator`` in-process.

    ``@pytest.mark.hostedai_client(...)`` adds keyword arguments, for instance
    ``circuit_breaker=None`` under heavy fault injection.
    """
    import hostedai_harpoon as harpoon

    http = hostedai_emulator.http_client()
    try:
        with harpoon.HostedAI(**_client_options(request, hostedai_emulator), http_client=http) as c:
            yield c
    finally:
        http.close()


@pytest.fixture
def hostedai_async_client(
    request: pytest.FixtureRequest, hostedai_emulator: Emulator
) -> Iterator[harpoon.AsyncHostedAI]:
    """An ``AsyncHostedAI`` wired to ``hostedai_emulator`` in-process.

    A plain fixture, so it works with pytest-asyncio in any mode, with anyio, or with
    ``asyncio.run`` in a sync test. ``@pytest.mark.hostedai_client(...)`` adds keyword
    arguments.
    """
    import hostedai_harpoon as harpoon

    http = hostedai_emulator.async_http_client()
    try:
        yield harpoon.AsyncHostedAI(**_client_options(request, hostedai_emulator), http_client=http)
    finally:
        # In-process, the client holds no sockets tied to the test's event loop.
        if not http.is_closed:
            asyncio.run(http.aclose())


@pytest.fixture
def hostedai_orchestrator(
    request: pytest.FixtureRequest, hostedai_async_client: harpoon.AsyncHostedAI
) -> harpoon.Orchestrator:
    """An ``Orchestrator`` over ``hostedai_async_client``, for the test to enter:
    ``async with hostedai_orchestrator as orchestrator: ...``. Leaving that block releases
    what it leased; what is still live at teardown fails the test like any leak.

    ``@pytest.mark.hostedai_orchestrator(...)`` adds keyword arguments (``policy=``,
    ``targets=``, ...).
    """
    import hostedai_harpoon as harpoon

    return _built_from_marker(
        "hostedai_orchestrator",
        lambda **options: harpoon.Orchestrator(hostedai_async_client, **options),
        _marker_kwargs(request, "hostedai_orchestrator"),
    )
