"""hosted·ai's own platform API (the ``gpuaas`` dialect), operation by operation: path,
method, body, how the answer is read, and how its error envelopes become typed errors.

The shapes are those the platform's public reference application drives (``docs/dialects.md``
says which are read from it and which are guesses). Like ``_api.py`` this module only builds
``Call``s; the flows that chain them into a lease (subscribe, find, wait, expose; unsubscribe,
wait until gone) are in ``_leases/_gpuaas.py``.

Tenant safety starts here: the list endpoints ignore ``team_id`` and answer other teams'
rows too, so every parser of a list keeps only the rows whose ``team_id`` (a string or a
number on the wire) is this client's; a row without one is not provably ours and is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import attrs
import httpx

from .._checks import check_gpus, check_id
from .._exceptions import (
    APIStatusError,
    CapacityError,
    ConflictError,
    InternalServerError,
    status_error_class,
)
from .._models import InvalidPayload, Pool
from .._telemetry import Operation
from ._errors import request_id, scrub, secrets_of
from ._steps import Call

__all__ = [
    "AUTH_HEADER",
    "FAILED",
    "LIVE_STATUSES",
    "NO_CAPACITY_CODE",
    "SERVICE_NAME",
    "VLLM_PORT",
    "Pod",
    "Subscription",
    "SubscriptionPage",
    "connection_info",
    "expose_service",
    "list_pools",
    "list_subscriptions",
    "read_error",
    "subscribe",
    "team_of",
    "unsubscribe",
]

AUTH_HEADER: Final = "x-api-key"
"""The header the reference application sends the key in (``auth_header=`` changes it)."""
PREFIX: Final = "/api"
VLLM_PORT: Final = 8000
SERVICE_NAME: Final = "harpoon-vllm"
NO_CAPACITY_CODE: Final = 10189007
""""Insufficient resources": the pool cannot take the subscription (fail over)."""
# What a refusal for want of capacity says, as the reference application recognises it.
_NO_CAPACITY: Final = (
    str(NO_CAPACITY_CODE),
    "Insufficient resources",
    "Failed to validate subscription resources",
)
LIVE_STATUSES: Final = frozenset({"subscribing", "subscribed", "active"})
"""A subscription's statuses before ``un_subscribing`` (then it leaves the list)."""
RUNNING: Final = "running"
# Pod phases that will not become running (Kubernetes' Failed, and what platforms say of it).
FAILED: Final = frozenset({"failed", "error", "crashloopbackoff"})
PER_PAGE: Final = 100
"""Rows asked for per page of the subscription list."""
# 404/410 to an unsubscribe: nothing left to release.
GONE: Final = frozenset({404, 410})

_POOLS = Operation("list_pools", "/api/gpuaas/available-pools")
_SUBSCRIBE = Operation("subscribe", "/api/gpuaas/pool/subscribe")
_LIST = Operation("list_subscriptions", "/api/gpuaas/pool-subscription")
_CONNECTION = Operation("connection_info", "/api/gpuaas/connection-info")
_EXPOSE = Operation("expose_service", "/api/pods/expose-service")
_UNSUBSCRIBE = Operation("unsubscribe", "/api/gpuaas/pool/unsubscribe")


def team_of(value: object) -> str | None:
    """A row's ``team_id`` as a string (the platform sends a string or a number)."""
    if isinstance(value, str) and value:
        return value
    if type(value) is int:
        return str(value)
    return None


# Error envelopes -------------------------------------------------------------------------


def _loads(body: bytes) -> object:
    try:
        return json.loads(body) if body else None
    except (ValueError, RecursionError):
        return body[:64_000].decode("utf-8", "replace")


def _envelope(decoded: object) -> tuple[str | None, str | None]:
    """The code and message of an error envelope: ``{code, message}``, ``{message}``,
    ``{error}`` (a text or an object), ``{errors: [{field, message}]}``; a plain-text body
    (not a gateway's HTML page) is its own message, as the reference application reads it."""
    if isinstance(decoded, str) and not decoded.lstrip().startswith("<"):
        return None, decoded.strip()[:300] or None
    if type(decoded) is not dict:
        return None, None
    code = decoded.get("code")
    code_text = str(code) if type(code) in (int, str) and code != "" else None
    message = decoded.get("message")
    error = decoded.get("error")
    if not (isinstance(message, str) and message):
        message = None
        if isinstance(error, str) and error:
            message = error
        elif isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
    errors = decoded.get("errors")
    if isinstance(errors, list) and errors:
        fields = ", ".join(
            f"{item.get('field')}: {item.get('message')}" if type(item) is dict else str(item)
            for item in errors
            if type(item) is dict or isinstance(item, str)
        )
        message = f"{message} ({fields})" if message else fields or None
    return code_text, message


def _is_error_at_200(decoded: object) -> bool:
    """Whether a 2xx body is an error envelope: ``{code, message}``, ``{error}`` or
    ``{errors}`` (a ``{message}`` alone may be an ordinary acknowledgement)."""
    if type(decoded) is not dict:
        return False
    if "code" in decoded and "message" in decoded and decoded["code"] not in (0, "0", None):
        return True
    return bool(decoded.get("error")) or bool(decoded.get("errors"))


def read_error(response: httpx.Response, body: bytes) -> APIStatusError | None:
    """The typed error an answer carries, or ``None`` for a success: any 4xx/5xx, and a 2xx
    whose body is an error envelope (the platform answers some errors as 200). No capacity
    (``10189007``, "Insufficient resources", "Failed to validate subscription resources")
    is a ``CapacityError`` and "Already subscribed" a ``ConflictError``, whatever the status;
    an error answered as 200 counts as a 500. Every text is kept with the key masked."""
    status = response.status_code
    if status < 300:
        decoded = _loads(body) if body[:1] == b"{" else None
        if not _is_error_at_200(decoded):
            return None
    else:
        decoded = _loads(body)
    code, message = _envelope(decoded)
    shown = message or f"HTTP {status} {response.reason_phrase}".strip()
    if status < 300:
        shown = f"{shown} (an error answered as HTTP {status})"
    cls: type[APIStatusError]
    if code == str(NO_CAPACITY_CODE) or any(sign in (message or "") for sign in _NO_CAPACITY):
        cls = CapacityError
    elif "already subscribed" in (message or "").lower():
        cls = ConflictError  # one subscription per team and pool, whatever the status says
    elif status < 300:
        cls = InternalServerError
    else:
        cls = status_error_class(status, None)
    secrets = secrets_of(_request_of(response))
    return cls(
        scrub(shown, secrets),
        status_code=status if status >= 300 else 500,
        request_id=scrub(request_id(response), secrets),
        code=scrub(code, secrets),
        body=scrub(decoded, secrets),
    )


def _request_of(response: httpx.Response) -> httpx.Request | None:
    try:
        return response.request
    except RuntimeError:
        return None


def _gone_ok(response: httpx.Response, body: bytes) -> APIStatusError | None:
    """``read_error`` for an unsubscribe: an unknown subscription is already released."""
    if response.status_code in GONE:
        return None
    return read_error(response, body)


# Values ----------------------------------------------------------------------------------


@attrs.frozen
class Pod:
    """One pod of a subscription: its name, status and its services' ``(name, url)``."""

    name: str
    status: str
    services: tuple[tuple[str, str], ...] = ()

    def service_url(self) -> str | None:
        """The URL of the vLLM service this package exposes, if it is exposed already."""
        for name, url in self.services:
            if name in (SERVICE_NAME, "vllm"):
                return url
        return None


@attrs.frozen
class Subscription:
    """A pool subscription of this client's team, as the platform lists it."""

    id: str
    pool_id: str
    team_id: str
    status: str
    pods: tuple[Pod, ...] = ()
    created_at: datetime | None = None
    gpu_count: int = 1

    @property
    def live(self) -> bool:
        """Whether it is before ``un_subscribing`` (holding, or about to hold, GPUs)."""
        return self.status in LIVE_STATUSES


def _ident(value: object, what: str) -> str:
    if type(value) is int or (isinstance(value, str) and value):
        return str(value)
    raise InvalidPayload(f"{what} is not an id")


def _when(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _pods(value: object) -> tuple[Pod, ...]:
    if not isinstance(value, list):
        return ()
    pods = []
    for item in value:
        if type(item) is not dict or not isinstance(item.get("pod_name"), str):
            continue
        services = item.get("discovered_services")
        found = tuple(
            (s["name"], s["url"])
            for s in (services if isinstance(services, list) else ())
            if type(s) is dict and isinstance(s.get("name"), str) and isinstance(s.get("url"), str)
        )
        status = item.get("pod_status")
        pods.append(Pod(item["pod_name"], status if isinstance(status, str) else "", found))
    return tuple(pods)


def _items(data: object) -> list[Any]:
    if data is None:
        raise InvalidPayload("the answer is empty")
    if isinstance(data, list):
        return data
    if type(data) is dict and isinstance(data.get("items"), list):
        return data["items"]  # type: ignore[no-any-return]
    raise InvalidPayload("the answer is neither a list nor an object with items")


def _row(row: dict[str, Any], team_id: str) -> Subscription:
    status = row.get("status")
    pods = _pods(row.get("pods"))
    return Subscription(
        id=_ident(row.get("id"), "a subscription's id"),
        pool_id=_ident(row.get("pool_id"), "a subscription's pool_id"),
        team_id=team_id,
        status=status if isinstance(status, str) else "",
        pods=pods,
        created_at=_when(row.get("created_at")),
        gpu_count=sum(p for p in (_gpus(item) for item in row.get("pods") or ()) if p) or 1,
    )


def _gpus(item: object) -> int:
    count = item.get("gpu_count") if type(item) is dict else None
    return count if type(count) is int and count > 0 else 0


@attrs.frozen
class SubscriptionPage:
    """One page of the subscription list: this team's rows on it, and how many pages the
    list has (it holds every team's rows, so a team's own may be past the first page)."""

    rows: tuple[Subscription, ...]
    pages: int = 1


def subscriptions_of(team_id: str) -> Callable[[object, str | None], SubscriptionPage]:
    """The parser of a page of the subscription list that keeps this team's rows only."""

    def parse(data: object, _: str | None) -> SubscriptionPage:
        rows = tuple(
            _row(row, team_id)
            for row in _items(data)
            # another team's row, or one that does not say whose it is: never ours
            if type(row) is dict and team_of(row.get("team_id")) == team_id
        )
        pages = data.get("total_pages") if type(data) is dict else None
        return SubscriptionPage(rows, pages if type(pages) is int and pages > 1 else 1)

    return parse


def _connection_of(
    team_id: str, subscription_id: str
) -> Callable[[object, str | None], list[Subscription]]:
    """The parser of connection-info asked about one subscription (of this team, known
    from its list): that subscription's row only, whatever else the answer holds."""

    def parse(data: object, _: str | None) -> list[Subscription]:
        return [
            _row({"pool_id": "?", **row, "status": "subscribed"}, team_id)
            for row in _items(data)
            if type(row) is dict and str(row.get("id")) == subscription_id
        ]

    return parse


def _parse_pools(data: object, rid: str | None) -> list[Pool]:
    pools = []
    for index, row in enumerate(_items(data)):
        if type(row) is not dict:
            raise InvalidPayload(f"pool {index} is not an object")
        free = row.get("available_vgpus")
        free = free if type(free) is int and free >= 0 else 0
        name = row.get("pool_label") or row.get("pool_name") or ""
        gpu = row.get("gpu_model_type")
        pools.append(
            Pool(
                id=_ident(row.get("id"), f"pool {index}'s id"),
                gpu_type=gpu if isinstance(gpu, str) else str(name),
                gpus_total=free,
                gpus_free=free,
                models=(),
                default=index == 0,
                request_id=rid,
            )
        )
    return pools


def _parse_subscribed(data: object, _: str | None) -> str | None:
    """The subscription id the answer carries; ``None`` when it carries none (an empty
    body: the subscription may be made all the same)."""
    if type(data) is dict and data.get("subscription_id") not in (None, ""):
        return _ident(data["subscription_id"], "subscription_id")
    return None


def _parse_exposed(data: object, _: str | None) -> str:
    if type(data) is not dict:
        raise InvalidPayload("the answer to expose-service is empty")
    ip, port = data.get("ip"), data.get("node_port")
    if not (isinstance(ip, str) and ip) or type(port) is not int or not 0 < port < 65536:
        raise InvalidPayload("the exposed service has no ip and node_port")
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}"


def _acknowledged(data: object, _: str | None) -> None:
    return None


# Calls -----------------------------------------------------------------------------------


def _number(value: str, name: str) -> int | str:
    """An id the platform wants as a number (``pool_id``, ``subscription_id``), when it is one."""
    check_id(value, name)
    return int(value) if value.isascii() and value.isdigit() else value


def list_pools(team_id: str) -> Call[list[Pool]]:
    """``GET /api/gpuaas/available-pools?team_id=``."""
    call = Call(
        "GET",
        f"{PREFIX}/gpuaas/available-pools",
        _parse_pools,
        operation=_POOLS,
        params={"team_id": team_id},
    )
    call.check = read_error
    return call


def subscribe(
    team_id: str, pool_id: str, gpus: int, extra: Mapping[str, object]
) -> Call[str | None]:
    """``POST /api/gpuaas/pool/subscribe``. There is no idempotency key, yet a repeat
    cannot make a second subscription: the platform takes one per team and pool. So it is
    retried as v1's keyed allocate is; a repeat after one that worked is answered 409, and
    the lease adopts that subscription as its own (not listed before the first send)."""
    body: dict[str, object] = {
        **extra,
        "pool_id": _number(pool_id, "pool_id"),
        "team_id": team_id,
        "vgpus": check_gpus(gpus),
    }
    call = Call(
        "POST",
        f"{PREFIX}/gpuaas/pool/subscribe",
        _parse_subscribed,
        operation=_SUBSCRIBE,
        json=body,
        idempotent=True,
        retry_capacity=False,
    )
    call.check = read_error
    return call


def list_subscriptions(team_id: str, page: int = 0) -> Call[SubscriptionPage]:
    """``GET /api/gpuaas/pool-subscription?team_id=&page=&per_page=100``: this team's rows
    on that page (the first is 0)."""
    call = Call(
        "GET",
        f"{PREFIX}/gpuaas/pool-subscription",
        subscriptions_of(team_id),
        operation=_LIST,
        params={"team_id": team_id, "page": str(page), "per_page": str(PER_PAGE)},
    )
    call.check = read_error
    return call


def connection_info(team_id: str, subscription_id: str) -> Call[list[Subscription]]:
    """``GET /api/gpuaas/connection-info?team_id=&subscription_id=``: the subscription's pods
    and the URLs of their discovered services (rows of other teams dropped)."""
    call = Call(
        "GET",
        f"{PREFIX}/gpuaas/connection-info",
        _connection_of(team_id, subscription_id),
        operation=_CONNECTION,
        params={"team_id": team_id, "subscription_id": subscription_id},
    )
    call.check = read_error
    return call


def expose_service(pod_name: str, subscription_id: str) -> Call[str]:
    """``POST /api/pods/expose-service`` of the vLLM port: the URL it is reachable at."""
    body = {
        "pod_name": pod_name,
        "pool_subscription_id": _number(subscription_id, "subscription_id"),
        "port": VLLM_PORT,
        "service_name": SERVICE_NAME,
        "protocol": "TCP",
        "service_type": "http",
    }
    call = Call(
        "POST", f"{PREFIX}/pods/expose-service", _parse_exposed, operation=_EXPOSE, json=body
    )
    call.check = read_error
    return call


def unsubscribe(team_id: str, subscription_id: str, pool_id: str) -> Call[None]:
    """``POST /api/gpuaas/pool/unsubscribe``; an unknown subscription is already released."""
    body = {
        "subscription_id": _number(subscription_id, "subscription_id"),
        "team_id": team_id,
        "pool_id": _number(pool_id, "pool_id"),
    }
    call = Call(
        "POST",
        f"{PREFIX}/gpuaas/pool/unsubscribe",
        _acknowledged,
        operation=_UNSUBSCRIBE,
        json=body,
        absent_ok=GONE,
    )
    call.check = _gone_ok
    return call
