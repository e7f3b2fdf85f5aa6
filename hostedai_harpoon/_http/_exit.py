"""Running a flow at interpreter exit, when no event loop is left, over the user's own
``httpx.AsyncClient`` settings: its transport's TLS (``verify``, ``cert``), its proxies and
mounts, its headers, timeout, cookies and ``trust_env``.

httpx's own transports are rebuilt as their sync twins around the same ``ssl.SSLContext``
(which holds the CA bundle and the client certificate) and the same proxy; any other
transport (the user's own, the emulator's in-process one) cannot be twinned, so the flow
runs on a fresh event loop through the user's client itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from ._drivers import AsyncDriver, SyncDriver
from ._steps import Flow

__all__ = ["run_at_exit", "sync_twin"]

T = TypeVar("T")


def _proxy_of(pool: Any) -> httpx.Proxy | None:
    url = pool._proxy_url  # an httpcore.URL
    return httpx.Proxy(
        httpx.URL(
            scheme=url.scheme.decode(),
            host=url.host.decode(),
            port=url.port,
            path=url.target.decode(),
        ),
        ssl_context=pool._proxy_ssl_context,
        headers=list(pool._proxy_headers),  # a Proxy-Authorization included
    )


def _sync_transport(transport: object) -> httpx.HTTPTransport | None:
    """The sync twin of one of httpx's own async transports (``None``: not one of them)."""
    import httpcore

    if type(transport) is not httpx.AsyncHTTPTransport:
        return None
    pool: Any = transport._pool
    proxy = None
    if type(pool) is httpcore.AsyncHTTPProxy:
        proxy = _proxy_of(pool)
    elif type(pool) is not httpcore.AsyncConnectionPool:
        return None  # a SOCKS proxy: run on a fresh event loop instead
    return httpx.HTTPTransport(
        verify=pool._ssl_context,
        http1=pool._http1,
        http2=pool._http2,
        retries=getattr(pool, "_retries", 0),
        local_address=getattr(pool, "_local_address", None),
        uds=getattr(pool, "_uds", None),
        socket_options=pool._socket_options,
        proxy=proxy,
    )


def sync_twin(http: httpx.AsyncClient) -> httpx.Client | None:
    """A sync client with ``http``'s settings, when every transport it routes to is one of
    httpx's own (``None`` otherwise)."""
    transport = _sync_transport(getattr(http, "_transport", None))
    mounts: dict[str, httpx.BaseTransport | None] = {}
    for pattern, mounted in getattr(http, "_mounts", {}).items():
        twin = None if mounted is None else _sync_transport(mounted)
        if mounted is not None and twin is None:
            return None
        mounts[pattern.pattern] = twin
    if transport is None:
        return None
    return httpx.Client(
        headers=http.headers,
        cookies=http.cookies,
        auth=http.auth,
        timeout=http.timeout,
        follow_redirects=False,
        trust_env=False,  # the environment's proxies are already among the mounts
        transport=transport,
        mounts=mounts,
    )


def run_at_exit(
    http: httpx.AsyncClient,
    max_response_bytes: int,
    flow: Callable[[Callable[..., httpx.Request]], Flow[T]],
) -> T:
    """Run ``flow(build_request)`` to its end with no event loop left, over ``http``'s own
    settings (see the module's docstring)."""
    twin = sync_twin(http)
    if twin is not None:
        with twin:
            return SyncDriver(twin, max_response_bytes).run(flow(twin.build_request))
    import asyncio

    driver = AsyncDriver(http, max_response_bytes)
    return asyncio.run(driver.run(flow(http.build_request)))
