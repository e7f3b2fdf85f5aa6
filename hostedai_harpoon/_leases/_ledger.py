"""The ``gpuaas`` ledger: which subscriptions this client made, in a small JSON file that
outlives the process (there is no server TTL: a new process releases what a dead one left)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from .._config import ENV_LEDGER_DIR
from .._exceptions import ConfigurationError

__all__ = ["SubscriptionLedger", "alive", "listed_before"]


def alive(pid: int) -> bool:
    """Whether process ``pid`` is running (this one is)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def listed_before(entry: object) -> frozenset[str] | None:
    """The ids of the team's subscriptions to its pool listed before the subscribe of a
    ``pending`` entry was sent (none of them is its own); ``None`` for no entry, or one that
    does not say: its subscription cannot be told from another's."""
    ids = entry.get("before") if type(entry) is dict else None
    if type(ids) is not list or not all(isinstance(i, str) for i in ids):
        return None
    return frozenset(ids)


class SubscriptionLedger:
    """The subscriptions this client made (and the subscribes it sent whose subscription is
    not known yet), in ``<dir>/gpuaas-<hash of base URL and team>.json``, shared by every
    process of this user on this machine (a lock file serialises the writes).

    An entry names the process that made it: while that process lives, its subscriptions
    are its own; once it is gone, ``reconcile`` releases them.
    """

    def __init__(self, directory: Path, base_url: str, team_id: str) -> None:
        digest = hashlib.sha256(f"{base_url}\n{team_id}".encode()).hexdigest()[:16]
        self.path = directory / f"gpuaas-{digest}.json"
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _editing(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                lock = open(self.path.with_suffix(".lock"), "a")  # noqa: SIM115
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot write the subscription ledger in {self.path.parent} ({exc}); "
                    f"pass ledger_dir= or set {ENV_LEDGER_DIR}"
                ) from None
            with lock:
                try:
                    import fcntl
                except ImportError:  # not POSIX: the thread lock only
                    fcntl = None  # type: ignore[assignment]
                if fcntl is not None:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                data = self._read()
                yield data
                temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
                temporary.write_text(json.dumps(data))
                os.replace(temporary, self.path)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = None
        if type(data) is not dict:
            data = {}
        owned, pending = data.get("owned"), data.get("pending")
        return {
            "owned": owned if type(owned) is dict else {},
            "pending": pending if type(pending) is dict else {},
        }

    def snapshot(self) -> dict[str, Any]:
        """What the file says now."""
        with self._lock:
            return self._read()

    def sent(
        self, pool_id: str, at: datetime, before: Iterable[str], token: str | None = None
    ) -> str:
        """Record a subscribe about to be sent (under ``token``, or a new one), with the ids
        of this team's subscriptions to the pool listed just ``before`` it (none of those is
        its own); returns the token."""
        token = uuid.uuid4().hex if token is None else token
        entry = {"pool_id": pool_id, "at": at.isoformat(), "pid": os.getpid()}
        with self._editing() as data:
            data["pending"][token] = {**entry, "before": sorted(before)}
        return token

    def before(self, token: str) -> frozenset[str] | None:
        """The ids listed before subscribe ``token`` was sent (see ``listed_before``)."""
        return listed_before(self.snapshot()["pending"].get(token))

    def own(self, subscription_id: str, pool_id: str, token: str | None) -> None:
        """Record a subscription this client made (settling its subscribe, if any)."""
        with self._editing() as data:
            if token is not None:
                data["pending"].pop(token, None)
            data["owned"][subscription_id] = {"pool_id": pool_id, "pid": os.getpid()}

    def settle(self, token: str) -> None:
        """A subscribe that certainly made nothing."""
        with self._editing() as data:
            data["pending"].pop(token, None)

    def forget(self, subscription_id: str) -> None:
        """A subscription released."""
        with self._editing() as data:
            data["owned"].pop(subscription_id, None)

    def owner(self, subscription_id: str) -> int | None:
        """The process that made ``subscription_id``, if this ledger says one did."""
        entry = self.snapshot()["owned"].get(subscription_id)
        return entry.get("pid") if type(entry) is dict and type(entry.get("pid")) is int else None
