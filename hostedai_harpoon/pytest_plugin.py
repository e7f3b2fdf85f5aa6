"""pytest fixtures for testing code that uses hostedai-harpoon, against the emulator.

Installed with the package (the ``pytest11`` entry point ``hostedai_harpoon``), so a test
only names what it needs:

```python
def test_summary(hostedai_client):
    with hostedai_client.allocate(model="gemma-3-270m") as lease:
        assert lease.infer("Hello").text
```

- ``hostedai_emulator``: an in-process :class:`~hostedai_harpoon.testing.Emulator`;
- ``hostedai_dialect``: the control-plane dialect it speaks, ``"v1"`` or ``"gpuaas"``
  (hosted·ai's platform): the marker's ``dialect=``, else ``--hostedai-dialect``, else the
  ``hostedai_dialect`` ini setting, else ``"v1"``;
- ``hostedai_server``: the base URL of that emulator served over TCP on 127.0.0.1;
- ``hostedai_env``: that URL, a key, the dialect and what it needs (v1: the default pool;
  gpuaas: the team and a ledger directory of the test's own) in the ``HOSTED_AI_*``
  variables, for code that builds its own client;
- ``hostedai_client`` / ``hostedai_async_client``: a ``HostedAI`` / ``AsyncHostedAI`` wired
  to the emulator in-process (no sockets), speaking its dialect (on gpuaas: team
  ``TEAM_ID``, no pool, a ledger under the test's ``tmp_path``);
- ``hostedai_orchestrator``: an ``Orchestrator`` over ``hostedai_async_client``, not yet
  entered: ``async with hostedai_orchestrator as orchestrator:`` in the test;
- ``hostedai_faults``: the :class:`~hostedai_harpoon.testing.FaultPlan` the emulator starts
  with, from the ``hostedai_faults`` marker (override the fixture to set one for a module).

Markers configure the fixture of the same name: ``hostedai_emulator(**Emulator kwargs)``,
``hostedai_faults(FaultPlan | *Fault rules, **FaultPlan kwargs)`` and
``hostedai_client(**client kwargs)`` (for both clients) and
``hostedai_orchestrator(**Orchestrator kwargs)`` (``policy=``, ``targets=``, ...).

The leak check: at teardown, every test that used any of these fixtures errors if an
allocation (on gpuaas, a subscription) is still live on the emulator, naming it.

Loading the plugin imports pytest and the package root only; the emulator and the clients'
modules are imported when a fixture first runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    import hostedai_harpoon as harpoon
    from hostedai_harpoon.testing import Emulator, FaultPlan

_T = TypeVar("_T")

__all__ = [
    "API_KEY",
    "BASE_URL",
    "TEAM_ID",
    "hostedai_async_client",
    "hostedai_client",
    "hostedai_dialect",
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

TEAM_ID = "test-team"
"""The team of the ``gpuaas`` fixtures' clients; the emulator accepts any team."""

_DIALECTS = ("v1", "gpuaas")
_DIALECT_HELP = (
    "the control-plane dialect of the hostedai_* fixtures' emulator and clients: v1 or "
    "gpuaas (hosted·ai's platform); a test's @pytest.mark.hostedai_emulator(dialect=...) wins"
)

_MARKERS = (
    "hostedai_emulator(**kwargs): keyword arguments for the Emulator of "
    "the hostedai_emulator fixture (dialect=, pools=, ready_delay=, clock=, ...).",
    "hostedai_faults(plan | *rules, **kwargs): the FaultPlan the emulator "
    "starts with: a FaultPlan, or Fault rules and FaultPlan keyword arguments.",
    "hostedai_client(**kwargs): keyword arguments for the HostedAI and "
    "AsyncHostedAI of the client fixtures (circuit_breaker=None, max_retries=, ...).",
    "hostedai_orchestrator(**kwargs): keyword arguments for the Orchestrator of the "
    "hostedai_orchestrator fixture (policy=, targets=, max_attempts=, ...).",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--hostedai-dialect`` and the ``hostedai_dialect`` ini setting: a suite's dialect."""
    group = parser.getgroup("hostedai", "hostedai-harpoon")
    group.addoption(
        "--hostedai-dialect",
        dest="hostedai_dialect",
        choices=_DIALECTS,
        default=None,
        help=f"{_DIALECT_HELP} (default: the hostedai_dialect ini setting, else v1).",
    )
    parser.addini("hostedai_dialect", f"{_DIALECT_HELP} (default: v1).", default="v1")


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers, so that ``--strict-markers`` accepts them; check the dialect."""
    for text in _MARKERS:
        config.addinivalue_line("markers", text)
    _suite_dialect(config)


def _suite_dialect(config: pytest.Config) -> str:
    """The dialect of the run: ``--hostedai-dialect``, else the ini setting, else v1."""
    chosen = config.getoption("hostedai_dialect")
    if chosen is None:
        chosen = str(config.getini("hostedai_dialect")).strip() or "v1"
        if chosen not in _DIALECTS:
            raise pytest.UsageError(
                f"the hostedai_dialect ini setting must be one of {', '.join(_DIALECTS)}; "
                f"got {chosen!r}"
            )
    return str(chosen)


def _marker_kwargs(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    marker = request.node.get_closest_marker(name)
    if marker is None:
        return {}
    if marker.args:
        pytest.fail(f"@pytest.mark.{name} takes keyword arguments only", pytrace=False)
    return dict(marker.kwargs)


def _built_from_marker(marker: str, build: Callable[..., _T], options: Mapping[str, Any]) -> _T:
    """``build(**options)``; a bad option fails the test with one line naming the marker."""
    from hostedai_harpoon import ConfigurationError

    try:
        return build(**options)
    except (TypeError, ValueError, ConfigurationError) as exc:
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
def hostedai_dialect(request: pytest.FixtureRequest) -> str:
    """The control-plane dialect of ``hostedai_emulator`` and the clients: ``"v1"`` or
    ``"gpuaas"`` (hosted·ai's platform, docs/dialects.md).

    ``@pytest.mark.hostedai_emulator(dialect=...)`` for a test, else ``--hostedai-dialect``
    (or the ``hostedai_dialect`` ini setting) for the run, else ``"v1"``. Override it with
    ``params=["v1", "gpuaas"]`` in a ``conftest.py`` to run each test on both.
    """
    options = _marker_kwargs(request, "hostedai_emulator")
    if "dialect" in options:
        return str(options["dialect"])  # checked by the emulator it configures
    return _suite_dialect(request.config)


@pytest.fixture
def hostedai_emulator(
    request: pytest.FixtureRequest, hostedai_faults: FaultPlan | None, hostedai_dialect: str
) -> Iterator[Emulator]:
    """An in-process HostedAI emulator; the test errors at teardown if it left a GPU held.

    Configure it with ``@pytest.mark.hostedai_emulator(pools={"gpu-pool-1": 2}, ...)`` and
    ``@pytest.mark.hostedai_faults(...)``; it speaks ``hostedai_dialect``. A test that leaves
    allocations on purpose releases them (or calls ``hostedai_emulator.reset()``) before it
    ends.
    """
    from hostedai_harpoon.testing import Emulator

    options = _marker_kwargs(request, "hostedai_emulator")
    if "faults" in options and hostedai_faults is not None:
        pytest.fail(
            "give the fault plan once: @pytest.mark.hostedai_faults or "
            "@pytest.mark.hostedai_emulator(faults=...)",
            pytrace=False,
        )
    if "dialect" not in options and hostedai_dialect not in _DIALECTS:
        pytest.fail(
            f"the hostedai_dialect fixture must give one of {', '.join(_DIALECTS)}; "
            f"got {hostedai_dialect!r}",
            pytrace=False,
        )
    options.setdefault("faults", hostedai_faults)
    options.setdefault("dialect", hostedai_dialect)
    emulator = _built_from_marker("hostedai_emulator", Emulator, options)
    yield emulator
    _fail_on_leaks(emulator)


def _fail_on_leaks(emulator: Emulator) -> None:
    live = emulator.live_allocations()
    if not live:
        return
    if emulator.dialect == "gpuaas":
        held = "; ".join(
            f"subscription {s.id} (pool {s.pool_id}, team {s.team_id}, {s.vgpus} vGPU, "
            f"{s.status}, pod {s.pod_name})"
            for s in live
        )
        what = "subscription(s)"
    else:
        held = "; ".join(
            f"{a.id} ({a.model}, {a.gpu_count} GPU, {a.status.value}, pool {a.pool_id})"
            for a in live
        )
        what = "allocation(s)"
    pytest.fail(
        f"{len(live)} {what} left live on the HostedAI emulator ({emulator.dialect}): "
        f"{held}. Release every allocation before the test ends (a `with client.allocate(...)` "
        "block does).",
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
    hostedai_server: str,
    hostedai_emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> str:
    """The ``HOSTED_AI_*`` variables pointed at ``hostedai_server``: base URL, key and
    dialect; on v1 the default pool, on gpuaas the team and a ledger directory of the test's
    own (and no pool: each lease takes a free one).

    For code that builds its own ``HostedAI()`` from the environment; returns the base URL.
    """
    from hostedai_harpoon import _config

    monkeypatch.setenv(_config.ENV_BASE_URL, hostedai_server)
    monkeypatch.setenv(_config.ENV_API_KEY, API_KEY)
    monkeypatch.setenv(_config.ENV_DIALECT, hostedai_emulator.dialect)
    if hostedai_emulator.dialect == "gpuaas":
        monkeypatch.setenv(_config.ENV_TEAM_ID, TEAM_ID)
        monkeypatch.setenv(_config.ENV_LEDGER_DIR, str(_ledger_dir(tmp_path)))
        monkeypatch.delenv(_config.ENV_POOL_ID, raising=False)
    else:
        monkeypatch.setenv(_config.ENV_POOL_ID, _default_pool(hostedai_emulator))
        monkeypatch.delenv(_config.ENV_TEAM_ID, raising=False)
        monkeypatch.delenv(_config.ENV_LEDGER_DIR, raising=False)
    return hostedai_server


def _default_pool(emulator: Emulator) -> str:
    return emulator.pools()[0].id


def _ledger_dir(tmp_path: Path) -> Path:
    """Where the gpuaas clients of a test keep their ledger: never the user's cache."""
    return tmp_path / "hostedai-ledger"


def _built_client(
    build: Callable[..., _T],
    request: pytest.FixtureRequest,
    emulator: Emulator,
    tmp_path: Path,
    http: object,
) -> _T:
    """A client of ``build`` for ``emulator``, in its dialect, with the marker's options.

    Everything is given, so that no ``HOSTED_AI_*`` variable of the developer's shell leaks
    in: on v1 the default pool; on gpuaas, where a lease takes a free pool when none is
    given, ``HOSTED_AI_POOL_ID`` is hidden while the client is made.
    """
    from hostedai_harpoon import _config

    marked = _marker_kwargs(request, "hostedai_client")
    if "dialect" in marked:
        pytest.fail(
            "@pytest.mark.hostedai_client: the clients speak the emulator's dialect; set it "
            "with @pytest.mark.hostedai_emulator(dialect=...) or --hostedai-dialect",
            pytrace=False,
        )
    options: dict[str, Any] = {
        "base_url": BASE_URL,
        "api_key": API_KEY,
        "dialect": emulator.dialect,
        "http_client": http,
    }
    if emulator.dialect == "gpuaas":
        options.update(team_id=TEAM_ID, ledger_dir=_ledger_dir(tmp_path))
    else:
        options["pool_id"] = _default_pool(emulator)
    options.update(marked)
    with pytest.MonkeyPatch.context() as env:
        env.delenv(_config.ENV_POOL_ID, raising=False)
        return _built_from_marker("hostedai_client", build, options)


@pytest.fixture
def hostedai_client(
    request: pytest.FixtureRequest, hostedai_emulator: Emulator, tmp_path: Path
) -> Iterator[harpoon.HostedAI]:
    """A ``HostedAI`` wired to ``hostedai_emulator`` in-process, in its dialect.

    ``@pytest.mark.hostedai_client(...)`` adds keyword arguments, for instance
    ``circuit_breaker=None`` under heavy fault injection.
    """
    import hostedai_harpoon as harpoon

    http = hostedai_emulator.http_client()
    try:
        with _built_client(harpoon.HostedAI, request, hostedai_emulator, tmp_path, http) as c:
            yield c
    finally:
        http.close()


@pytest.fixture
def hostedai_async_client(
    request: pytest.FixtureRequest, hostedai_emulator: Emulator, tmp_path: Path
) -> Iterator[harpoon.AsyncHostedAI]:
    """An ``AsyncHostedAI`` wired to ``hostedai_emulator`` in-process, in its dialect.

    A plain fixture, so it works with pytest-asyncio in any mode, with anyio, or with
    ``asyncio.run`` in a sync test. ``@pytest.mark.hostedai_client(...)`` adds keyword
    arguments.
    """
    import hostedai_harpoon as harpoon

    http = hostedai_emulator.async_http_client()
    try:
        yield _built_client(harpoon.AsyncHostedAI, request, hostedai_emulator, tmp_path, http)
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
