"""``RedisState``: many Orchestrator replicas, one fleet, its state shared through Redis.

``RedisState`` is the user's configuration; ``Store`` is one replica's connection to it:
every call bounded by ``timeout``, each change one Lua script (``_redis_lua``), and Redis
trouble turned into "down" (the replica then runs on local state) instead of an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import socket
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .. import ConfigurationError
from .._checks import check_seconds, check_text
from . import _redis_lua as lua

__all__ = ["STATE_URL_ENV", "RedisState", "Store"]

log = logging.getLogger("hostedai_harpoon")

STATE_URL_ENV = "HOSTED_AI_STATE_URL"
STATE_FLEET_ENV = "HOSTED_AI_STATE_FLEET"
_FLEET = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# How long the fleet's ledgers (allocations, orphans, statistics, caps) outlive the last
# replica that touched them: long enough for a replica started later to find the orphans.
_LEDGER_TTL_MS = 7 * 24 * 3600 * 1000
T = TypeVar("T")


def _masked(url: str) -> str:
    """``url`` without its password (URLs are logged and shown in reprs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class RedisState:
    """The orchestrator's state shared by every replica of a fleet through Redis:
    ``Orchestrator(client, state=RedisState("redis://host:6379/0", fleet="prod"))``.

    Shared: ``max_allocations`` per target across the fleet, breaker cool-downs, the
    latency and error statistics routing reads, the registry of allocations and the
    orphan ledger (a replica that dies has its allocations released by the others once
    its heartbeat lapses). See docs/scale-out.md for the consistency each piece gets.

    ``url`` is a ``redis://``, ``rediss://`` or ``unix://`` URL (``None``: the
    ``HOSTED_AI_STATE_URL`` variable); ``fleet`` names the replicas that share state
    (``None``: ``HOSTED_AI_STATE_FLEET``, else ``"default"``; letters, digits and
    ``._:-``, up to 64). ``heartbeat_ttl`` is how long a silent replica counts as alive,
    ``sync_interval`` how often each replica writes its heartbeat and reads the others'
    state (at most a third of ``heartbeat_ttl``), ``timeout`` the most any Redis call
    may take before the replica falls back to local state. ``client`` is a
    ``redis.asyncio`` client to use instead of one made from ``url`` (a ``RedisCluster``,
    for instance); it is never closed by the orchestrator. Needs the ``redis`` extra:
    ``pip install 'hostedai-harpoon[redis]'``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        fleet: str | None = None,
        heartbeat_ttl: float = 10.0,
        sync_interval: float = 0.5,
        timeout: float = 0.25,
        client: Any = None,
    ) -> None:
        if url is None and client is None:
            url = os.environ.get(STATE_URL_ENV)
            if not url:
                raise ConfigurationError(
                    f"RedisState needs a url (or the {STATE_URL_ENV} environment variable)"
                )
            what = STATE_URL_ENV
        else:
            what = "url"
        if url is not None:
            check_text(url, what)
            if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
                raise ConfigurationError(
                    f"{what} must be a redis://, rediss:// or unix:// URL, got {_masked(url)!r}"
                )
        if fleet is None:
            fleet = os.environ.get(STATE_FLEET_ENV) or "default"
        if type(fleet) is not str or not _FLEET.match(fleet):
            raise ConfigurationError(
                f"fleet must be 1 to 64 letters, digits or '._:-', got {fleet!r}"
            )
        ttl = check_seconds(heartbeat_ttl, "heartbeat_ttl", minimum=0.1)
        if ttl > 3600:
            raise ConfigurationError(f"heartbeat_ttl must be at most 3600 s, got {ttl!r}")
        every = check_seconds(sync_interval, "sync_interval", positive=True)
        if every > ttl / 3:
            raise ConfigurationError(
                f"sync_interval must be at most a third of heartbeat_ttl ({ttl / 3:g}), "
                f"got {every!r}"
            )
        wait = check_seconds(timeout, "timeout", positive=True)
        if wait > 5:
            raise ConfigurationError(f"timeout must be at most 5 s, got {wait!r}")
        self.url = url
        self.fleet = fleet
        self.heartbeat_ttl = float(ttl)
        self.sync_interval = float(every)
        self.timeout = float(wait)
        self.client = client

    def __repr__(self) -> str:
        where = _masked(self.url) if self.url is not None else "<client>"
        return f"RedisState({where!r}, fleet={self.fleet!r})"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Down(Exception):
    """Redis did not answer in time, or answered an error: run on local state."""


class Store:
    """One replica's side of the shared state: a replica id, the scripts, and whether
    Redis is up (``up``; ``None`` until first reached)."""

    def __init__(self, state: RedisState) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisError
        except ImportError:
            raise ConfigurationError(
                "RedisState needs the redis package: pip install 'hostedai-harpoon[redis]'"
            ) from None
        self.state = state
        self.replica = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.prefix = f"harpoon:{{{state.fleet}}}:"
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        if state.client is not None:
            self._redis = state.client
            self._owned = False
        else:
            self._redis = aioredis.from_url(
                state.url or "",
                socket_timeout=state.timeout,
                socket_connect_timeout=state.timeout,
                retry=Retry(NoBackoff(), 0),  # our own timeout and fallback instead
                decode_responses=True,
            )
            self._owned = True
        self._scripts = {
            name: self._redis.register_script(getattr(lua, name)) for name in lua.__all__
        }
        self.up: bool | None = None
        self.trouble: str | None = None
        self.writing = asyncio.Lock()
        """Held around a sync and a registration: a sync rewrites this replica's entries
        of the registry, so none may be written while one is on its way."""

    def key(self, name: str) -> str:
        return self.prefix + name

    async def call(self, what: str, call: Awaitable[T]) -> T:
        """``call``'s answer within ``timeout``; ``Down`` when Redis failed it (then the
        replica is marked down, with one log line)."""
        try:
            async with asyncio.timeout(self.state.timeout):
                answer = await call
        except self._errors as exc:
            self.went_down(what, exc)
            raise Down(str(exc)) from exc
        return answer

    def went_down(self, what: str, exc: BaseException) -> None:
        trouble = f"{what}: {type(exc).__name__}: {exc}" if str(exc) else f"{what}: timed out"
        if self.up is not False:
            where = _masked(self.state.url) if self.state.url else "the Redis client"
            log.warning(
                "shared state: Redis at %s failed (%s); this replica runs on local state "
                "until it is back",
                where,
                trouble,
            )
        self.up = False
        self.trouble = trouble

    def script(self, name: str, keys: Sequence[str], args: Sequence[object]) -> Awaitable[Any]:
        return self._scripts[name](keys=list(keys), args=list(args))  # type: ignore[no-any-return]

    # The scripts, one round trip each

    async def sync(
        self, allocations: str | None, stats: str, cools: Sequence[str], use: str = ""
    ) -> list[Any]:
        keys = [self.key("replicas"), self.key("allocs"), self.key("orphans"), self.key("stats")]
        args = [
            self.replica,
            int(self.state.heartbeat_ttl * 1000),
            _LEDGER_TTL_MS,
            self.prefix,
            "0" if allocations is None else "1",
            allocations or "",
            stats,
            "\t".join(cools),
            use,
        ]
        answer: list[Any] = await self.call("sync", self.script("SYNC", keys, args))
        return answer

    async def register(self, field: str, value: str) -> None:
        """Put ``field`` (``key:<idempotency key>``) in the fleet's registry now."""
        keys = [self.key("replicas"), self.key("allocs")]
        ttl = int(self.state.heartbeat_ttl * 1000)
        args = [self.replica, ttl, field, f"{self.replica}\t{value}"]
        await self.call("register", self.script("REGISTER", keys, args))

    async def acquire(self, target: str, limit: int) -> bool:
        keys = [self.key("replicas"), self.key(f"cap:{target}")]
        granted = await self.call(
            "acquire", self.script("ACQUIRE", keys, [self.replica, limit, _LEDGER_TTL_MS])
        )
        return bool(granted)

    async def give_back(self, target: str, count: int) -> None:
        keys = [self.key(f"cap:{target}")]
        await self.call("give back", self.script("GIVE_BACK", keys, [self.replica, count]))

    async def set_share(self, target: str, share: int) -> None:
        keys = [self.key(f"cap:{target}")]
        await self.call("reconcile", self.script("SET_SHARE", keys, [self.replica, share]))

    async def cool(self, target: str, seconds: float) -> float:
        """Open ``target``'s breaker fleet-wide for ``seconds`` (the longest wins); the
        seconds it stays open."""
        ms = max(1, int(seconds * 1000))
        keys = [self.key(f"cool:{target}")]
        left = await self.call("cool-down", self.script("COOL", keys, [ms, self.replica]))
        return float(left) / 1000.0

    async def orphan(self, allocation_id: str, target: str) -> None:
        """Put an allocation this replica could not release in the fleet's ledger."""
        await self.call(
            "orphan", self._redis.hsetnx(self.key("orphans"), allocation_id, f"{target}\t0")
        )

    async def claim(self, allocation_id: str, seconds: float) -> bool:
        """Whether this replica may release orphan ``allocation_id`` now (no other is)."""
        key = self.key(f"claim:{allocation_id}")
        ms = int(seconds * 1000)
        claimed = await self.call("claim", self._redis.set(key, self.replica, nx=True, px=ms))
        if not claimed:  # ours already (a release that failed, tried again)?
            claimed = _text(await self.call("claim", self._redis.get(key))) == self.replica
        return bool(claimed)

    async def orphan_done(self, allocation_id: str) -> None:
        keys = [self.key("orphans")]
        await self.call("orphan", self.script("ORPHAN_DONE", keys, [allocation_id, self.prefix]))

    async def leave(self, targets: Sequence[str]) -> None:
        keys = [self.key("replicas"), self.key("allocs"), self.key("stats")]
        caps = "\t".join(self.key(f"cap:{name}") for name in targets)
        await self.call("leave", self.script("LEAVE", keys, [self.replica, caps, self.prefix]))

    async def aclose(self) -> None:
        if self._owned:
            with contextlib.suppress(*self._errors):
                await self._redis.aclose()
