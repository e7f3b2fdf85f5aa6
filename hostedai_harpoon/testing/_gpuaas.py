"""hosted·ai's platform API (the ``gpuaas`` dialect) as the emulator speaks it: pool
subscriptions per (team, pool), their pods, exposed services, and the platform's quirks
(``GpuaasQuirks``). Each running pod serves the OpenAI-compatible API (``_openai.py``) at the
URL its exposed service names.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import attrs

from ._openai import STANDALONE_ROUTES, OpenAIApi
from ._state import PoolRecord, PoolSpec, State
from ._wire import Answer, Request, WireError, check_delay, is_number, parse_json_object

__all__ = ["OTHER_TEAM", "ROUTES", "GpuaasApi", "GpuaasQuirks", "SubscriptionRecord"]

OTHER_TEAM = 9001
"""The team (a number, as the platform may send it) of the rows ``other_teams`` adds."""
_PREFIX = "/api"
ROUTES = tuple(
    f"{_PREFIX}/{path}"
    for path in (
        "gpuaas/available-pools",
        "gpuaas/pool/subscribe",
        "gpuaas/pool-subscription",
        "gpuaas/connection-info",
        "pods/expose-service",
        "gpuaas/pool/unsubscribe",
    )
)
"""The platform's paths the emulator answers (a ``FaultPlan`` may name them)."""


def _pool_ids(value: Iterable[int | str]) -> tuple[int | str, ...]:
    return tuple(value)


@attrs.frozen
class GpuaasQuirks:
    """The platform's quirks, each switchable (rates are shares of the requests concerned,
    drawn from ``seed``):

    - ``subscribe_delay``: seconds a subscribe takes to answer (the subscription is made at once);
    - ``empty_subscribe_rate``: subscribes answered 200 with an empty body (made all the same);
    - ``lost_subscribe_rate``: subscribes made but answered only after ``lost_subscribe_delay``
      (the client times out first: a subscribe that timed out but worked);
    - ``conflict_rate``: subscribes made but answered 409 "Already subscribed";
    - ``unsubscribe_delay``: seconds a row stays ``un_subscribing`` before it leaves the list;
    - ``other_teams``: how many rows of another team (``OTHER_TEAM``) every list carries;
    - ``policy_error_rate`` / ``policy_error_200_rate``: answers replaced by ``{"code": 12370004}``
      as a 500 / as a 200;
    - ``no_capacity_rate``: subscribes refused ``10189007`` "Insufficient resources";
    - ``empty_200_rate``: list answers replaced by an empty 200;
    - ``never_running_rate``: pods that never reach ``running``;
    - ``ready_delay``: seconds a pod takes to reach ``running``;
    - ``clock_skew``: seconds the platform's clock is ahead of the client's (negative:
      behind); every time it reports (a row's ``created_at``) is off by that much;
    - ``full_pools``: pools that show room in ``available-pools`` but refuse every subscribe
      ``10189007`` "Insufficient resources" (the platform's counts lag).

    The subscription list is paginated as the platform's is (``page``, ``per_page`` up to
    100, ``total_pages``), other teams' rows included.
    """

    seed: int = 0
    subscribe_delay: float = 0.0
    empty_subscribe_rate: float = 0.0
    lost_subscribe_rate: float = 0.0
    lost_subscribe_delay: float = 30.0
    conflict_rate: float = 0.0
    unsubscribe_delay: float = 0.0
    other_teams: int = 0
    policy_error_rate: float = 0.0
    policy_error_200_rate: float = 0.0
    no_capacity_rate: float = 0.0
    empty_200_rate: float = 0.0
    never_running_rate: float = 0.0
    ready_delay: float = 0.0
    clock_skew: float = 0.0
    full_pools: tuple[int | str, ...] = attrs.field(default=(), converter=_pool_ids)

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if field.name.endswith("_rate") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{field.name} must be from 0 to 1, got {value!r}")
            if field.name.endswith("_delay"):
                check_delay(field.name, value)
        if not is_number(self.clock_skew):
            raise ValueError(
                f"clock_skew must be a finite number of seconds, got {self.clock_skew!r}"
            )


@attrs.define
class SubscriptionRecord:
    """One subscription as the emulated platform holds it. ``id`` is the string a client
    shows (``lease.id``); the wire carries it as a number."""

    id: str
    pool_id: int
    team_id: str | int
    vgpus: int
    status: str
    created_at: float
    pod_name: str
    running_at: float | None  # None: never
    gone_at: float | None = None
    exposed: bool = False
    address: str | None = None  # "ip:port" of its exposed vLLM service
    pod_failed: bool = False

    def to_wire(self, now: float, url: str | None, skew: float = 0.0) -> dict[str, Any]:
        running = self.running_at is not None and now >= self.running_at
        status = "running" if running and self.status != "un_subscribing" else "pending"
        pod: dict[str, Any] = {
            "pod_name": self.pod_name,
            "pod_status": "failed" if self.pod_failed else status,
            "gpu_count": self.vgpus,
        }
        if url is not None:
            pod["discovered_services"] = [{"name": "harpoon-vllm", "url": url}]
        return {
            "id": int(self.id),
            "pool_id": self.pool_id,
            "team_id": self.team_id,
            "status": self.status,
            "created_at": datetime.fromtimestamp(self.created_at + skew, UTC).isoformat(),
            "pods": [pod],
        }


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _error(status: int, payload: Any) -> WireError:
    error = WireError("internal_error", "", status=status)
    error.payload = payload  # type: ignore[attr-defined]
    return error


class GpuaasApi:
    """Answers the platform's paths over the emulator's pools (``pool id -> PoolSpec``)."""

    def __init__(
        self,
        pools: list[PoolSpec],
        state: State,
        quirks: GpuaasQuirks,
        *,
        api_keys: Collection[str] | None,
        latency_scale: float,
    ) -> None:
        self._pools = {self._pool_key(pool.id): pool for pool in pools}
        self._quirks = quirks
        self._api_keys = None if api_keys is None else frozenset(api_keys)
        self.openai = OpenAIApi(state, latency_scale)
        # Where pods' services are exposed. In-process: a made-up address per pod (never
        # dialled; the Host header says which pod a request is for). Served over TCP:
        # ``pod_ports`` bound on ``pod_host`` beside the API's own, taken in turn.
        self.pod_host = "127.0.0.1"
        self.pod_ports: tuple[int, ...] = ()
        self.reset()

    def reset(self) -> None:
        """Back to the freshly built platform: no subscriptions of this client's teams, the
        other teams' rows (``other_teams``) as they were, the quirks' draws from the start."""
        self._random = random.Random(self._quirks.seed)
        self._next_id = 1000
        self.subscriptions: dict[str, SubscriptionRecord] = {}
        self.gone: list[SubscriptionRecord] = []  # (this team's, for inspection)
        self.foreign_touches = 0
        self.failure_rate = 0.0
        self.fail_next = 0
        self._exposed = 0
        for index in range(self._quirks.other_teams):
            pool = list(self._pools)[index % len(self._pools)]
            self._add(pool, OTHER_TEAM, 1, 0.0, running=True)

    # Records

    def _add(
        self, pool_id: Any, team: str | int, vgpus: int, now: float, *, running: bool
    ) -> SubscriptionRecord:
        self._next_id += 1
        never = not running or self._draw(self._quirks.never_running_rate)
        failed = False
        if team != OTHER_TEAM and running:
            failed = self.fail_next > 0 or self._draw(self.failure_rate)
            self.fail_next = max(0, self.fail_next - 1)
        record = SubscriptionRecord(
            id=str(self._next_id),
            pool_id=pool_id,
            team_id=team,
            vgpus=vgpus,
            status="subscribing",
            created_at=now,
            pod_name=f"pod-{self._next_id}",
            running_at=None if never or failed else now + self._quirks.ready_delay,
            pod_failed=failed,
        )
        if team == OTHER_TEAM:
            record.status, record.running_at = "active", now
        self.subscriptions[record.id] = record
        return record

    def _record(self, value: object) -> SubscriptionRecord | None:
        """The subscription a request names (a number, or its digits), if there is one."""
        if type(value) is int or (isinstance(value, str) and value.isdigit()):
            return self.subscriptions.get(str(value))
        return None

    def _draw(self, rate: float) -> bool:
        return rate > 0 and self._random.random() < rate

    def settle(self, now: float) -> None:
        """Move each subscription on to where ``now`` puts it."""
        for record in list(self.subscriptions.values()):
            if record.status == "un_subscribing" and record.gone_at is not None:
                if now >= record.gone_at:
                    self._drop(record, "gone")
            elif record.status == "subscribing" and (
                record.running_at is not None and now >= record.running_at
            ):
                record.status = "subscribed"

    def _drop(self, record: SubscriptionRecord, status: str) -> SubscriptionRecord:
        del self.subscriptions[record.id]
        record.status = status
        if record.team_id != OTHER_TEAM:
            self.gone.append(record)
        return record

    def lose(self, subscription_id: str, status: str) -> SubscriptionRecord:
        """End a subscription now, as the platform would reclaim it (``KeyError``: none)."""
        record = self.subscriptions.get(subscription_id)
        if record is None or record.team_id == OTHER_TEAM:
            raise KeyError(subscription_id)
        return self._drop(record, status)

    def every(self) -> list[SubscriptionRecord]:
        """Every subscription of the tests' team (not of ``OTHER_TEAM``), gone ones too."""
        live = [r for r in self.subscriptions.values() if r.team_id != OTHER_TEAM]
        return sorted([*self.gone, *live], key=lambda r: int(r.id))

    def set_capacity(self, pool_id: str, gpus: int) -> None:
        """Resize a pool; subscriptions keep their vGPUs."""
        key = self._pool_key(pool_id)
        if gpus < 0:
            raise ValueError("a pool cannot have a negative number of GPUs")
        self._pools[key] = attrs.evolve(self._pools[key], gpus=gpus)

    def pool_records(self) -> list[PoolRecord]:
        """Every pool with its free vGPUs, the first as the default."""
        return [
            PoolRecord(str(key), spec.gpu_type, spec.gpus, self._free(key), spec.models, i == 0)
            for i, (key, spec) in enumerate(self._pools.items())
        ]

    @staticmethod
    def _pool_key(pool_id: str) -> Any:
        return int(pool_id) if pool_id.isdigit() else pool_id

    def live(self, team: str | None = None) -> list[SubscriptionRecord]:
        """Subscriptions not yet gone (of every team, or of ``team``), oldest first."""
        return [r for r in self.subscriptions.values() if team is None or r.team_id == team]

    # Requests

    def dispatch(self, request: Request, now: float) -> Answer | None:
        """The outcome of ``request`` at time ``now``."""
        try:
            if request.path in STANDALONE_ROUTES:  # a pod's vLLM server: no platform key
                try:
                    return self._on_pod(request, now)
                except WireError as error:  # a vLLM server's errors are in OpenAI's shape
                    payload = getattr(error, "payload", None) or {"error": {
                        "message": error.message, "type": error.code, "param": None,
                        "code": error.code}}  # fmt: skip
                    return Answer(error.status, payload, headers=error.headers)
            self._authenticate(request)
            handler = self._routes().get((request.method, request.path))
            if handler is None:
                raise _error(404, {"message": f"Cannot {request.method} {request.path}"})
            self._count_foreign(request)
            quirk = self._quirk(request)
            if quirk is not None:
                return quirk
            answer: Answer = handler(request, now)
            return answer
        except WireError as error:
            payload = getattr(error, "payload", None)
            if payload is None:
                payload = {"message": error.message}
            return Answer(error.status, payload)

    def _routes(self) -> Mapping[tuple[str, str], Any]:
        return {
            ("GET", f"{_PREFIX}/gpuaas/available-pools"): self._available_pools,
            ("POST", f"{_PREFIX}/gpuaas/pool/subscribe"): self._subscribe,
            ("GET", f"{_PREFIX}/gpuaas/pool-subscription"): self._list,
            ("GET", f"{_PREFIX}/gpuaas/connection-info"): self._connection_info,
            ("POST", f"{_PREFIX}/pods/expose-service"): self._expose,
            ("POST", f"{_PREFIX}/gpuaas/pool/unsubscribe"): self._unsubscribe,
        }

    def _authenticate(self, request: Request) -> None:
        key = request.headers.get("x-api-key", "").strip()
        if not key:
            scheme, _, key = request.headers.get("authorization", "").partition(" ")
            key = key.strip() if scheme.lower() == "bearer" else ""
        if not key or (self._api_keys is not None and key not in self._api_keys):
            raise _error(401, {"error": "Unauthorized"})

    def _count_foreign(self, request: Request) -> None:
        named: list[Any] = list(parse_qs(request.query).get("subscription_id", []))
        if request.body:
            try:
                body = parse_json_object(request.body)
            except WireError:
                body = {}
            named += [body.get("subscription_id"), body.get("pool_subscription_id")]
        for value in named:
            record = self._record(value)
            if record is not None and record.team_id == OTHER_TEAM:
                self.foreign_touches += 1

    def _quirk(self, request: Request) -> Answer | None:
        quirks = self._quirks
        if self._draw(quirks.policy_error_rate):
            return Answer(500, _POLICY)
        if self._draw(quirks.policy_error_200_rate):
            return Answer(200, _POLICY)
        if request.method == "GET" and self._draw(quirks.empty_200_rate):
            return Answer(200)
        return None

    def _team(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise _error(422, {"errors": [{"field": "team_id", "message": "is required"}]})
        return value

    def _query(self, request: Request, name: str) -> str | None:
        return parse_qs(request.query).get(name, [None])[0]

    def _available_pools(self, request: Request, now: float) -> Answer:
        self._team(self._query(request, "team_id"))
        return Answer(
            200,
            [
                {
                    "id": pool_id,
                    "pool_name": f"pool-{pool_id}",
                    "gpu_model_type": spec.gpu_type,
                    "available_vgpus": self._free(pool_id),
                    "pricing_hourly": "2.50",
                }
                for pool_id, spec in self._pools.items()
            ],
        )

    def _free(self, pool_id: Any) -> int:
        used = sum(r.vgpus for r in self.subscriptions.values() if r.pool_id == pool_id)
        return max(0, self._pools[pool_id].gpus - used)

    def _subscribe(self, request: Request, now: float) -> Answer:
        body = parse_json_object(request.body)
        team = self._team(body.get("team_id"))
        pool_id, vgpus = body.get("pool_id"), body.get("vgpus", 1)
        if pool_id not in self._pools:
            raise _error(404, {"message": f"Pool {pool_id!r} not found"})
        if type(vgpus) is not int or vgpus < 1:
            raise _error(422, {"errors": [{"field": "vgpus", "message": "must be >= 1"}]})
        if any(r.pool_id == pool_id and r.team_id == team for r in self.subscriptions.values()):
            raise _error(409, {"message": "Already subscribed to this pool"})
        if (
            self._free(pool_id) < vgpus
            or pool_id in self._quirks.full_pools
            or self._draw(self._quirks.no_capacity_rate)
        ):
            raise _error(400, {"code": 10189007, "message": "Insufficient resources"})
        record = self._add(pool_id, team, vgpus, now, running=True)
        quirks = self._quirks
        if self._draw(quirks.conflict_rate):
            return Answer(409, {"message": "Already subscribed to this pool"})
        if self._draw(quirks.lost_subscribe_rate):
            return Answer(
                200, {"subscription_id": int(record.id)}, delay=quirks.lost_subscribe_delay
            )
        if self._draw(quirks.empty_subscribe_rate):
            return Answer(200, delay=quirks.subscribe_delay)
        return Answer(200, {"subscription_id": int(record.id)}, delay=quirks.subscribe_delay)

    def _list(self, request: Request, now: float) -> Answer:
        self._team(self._query(request, "team_id"))  # and then ignored, as the platform does
        page, per_page = self._count(request, "page", 0), self._count(request, "per_page", 100)
        rows = list(self.subscriptions.values())
        items = [
            r.to_wire(now, self._url(r), self._quirks.clock_skew)
            for r in rows[page * per_page : (page + 1) * per_page]
        ]
        pages = max(1, -(-len(rows) // per_page))
        return Answer(200, {"items": items, "page": page, "per_page": per_page,
                            "total_items": len(rows), "total_pages": pages})  # fmt: skip

    def _count(self, request: Request, name: str, default: int) -> int:
        """``page`` (from 0) or ``per_page`` (1 to 100) in the query (``default``: absent)."""
        text = self._query(request, name) or str(default)
        value = int(text) if text.isascii() and text.isdigit() else -1
        if not (value >= 0 if name == "page" else 1 <= value <= 100):
            raise _error(422, {"errors": [{"field": name, "message": "is not a valid number"}]})
        return value

    def _url(self, record: SubscriptionRecord) -> str | None:
        return None if record.address is None else f"http://{record.address}"

    def _connection_info(self, request: Request, now: float) -> Answer:
        self._team(self._query(request, "team_id"))
        wanted = self._query(request, "subscription_id")
        rows = []
        for record in self.subscriptions.values():
            if wanted is None or str(record.id) == wanted:
                row = record.to_wire(now, self._url(record), self._quirks.clock_skew)
                rows.append({"id": row["id"], "pool_name": f"pool-{record.pool_id}",
                             "region_id": 1, "pods": row["pods"]})  # fmt: skip
        return Answer(200, rows)

    def _expose(self, request: Request, now: float) -> Answer:
        body = parse_json_object(request.body)
        record = self._record(body.get("pool_subscription_id"))
        if record is None or record.pod_name != body.get("pod_name"):
            raise _error(404, {"message": "Pod not found"})
        if record.address is None:
            self._exposed += 1
            if self.pod_ports:  # the next port no live pod holds (all held: the next one)
                host, ports = self.pod_host, self.pod_ports
                held = {r.address for r in self.subscriptions.values()}
                turn = [ports[(self._exposed + i) % len(ports)] for i in range(len(ports))]
                port = next((p for p in turn if _netloc(host, p) not in held), turn[0])
            else:
                number = int(record.id)
                host, port = f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}", 8000
            record.address = _netloc(host, port)
        record.exposed = True
        ip, _, node_port = record.address.rpartition(":")
        return Answer(
            200,
            {
                "id": int(record.id),
                "pod_name": record.pod_name,
                "team_id": record.team_id,
                "service_name": body.get("service_name"),
                "ip": ip.strip("[]"),
                "node_port": int(node_port),
                "pod_port": body.get("port"),
                "protocol": "TCP",
                "status": "active",
                "service_type": "http",
            },
        )

    def _unsubscribe(self, request: Request, now: float) -> Answer:
        body = parse_json_object(request.body)
        self._team(body.get("team_id"))
        record = self._record(body.get("subscription_id"))
        if record is None:
            raise _error(404, {"message": "Subscription not found"})
        if record.status != "un_subscribing":
            record.status = "un_subscribing"
            record.gone_at = now + self._quirks.unsubscribe_delay
            self.settle(now)
        return Answer(200, {"message": "Unsubscribed"})

    def _on_pod(self, request: Request, now: float) -> Answer | None:
        """The vLLM server of the running pod exposed at the request's host: it serves the
        models of that pod's pool. A pod failed, leaving or gone drops the connection (nothing
        listens behind its port); an address no pod ever had is a 404."""
        host = request.headers.get("host", "")
        record = next((r for r in self.subscriptions.values() if r.address == host), None)
        if record is None or record.status == "un_subscribing" or record.pod_failed:
            if record is not None or any(r.address == host for r in self.gone):
                return None  # a pod gone, leaving or failed: its port takes no connection
            raise WireError("not_found", "no pod serves here", status=404)
        outcome: Answer = self.openai.handle(request, now, self._pools[record.pool_id].models)
        return outcome


_POLICY = {"code": 12370004, "message": "unable to retrieve resource access permissions"}
