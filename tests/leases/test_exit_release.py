"""The async lease's release at interpreter exit goes over the user's own http settings."""

from __future__ import annotations

import asyncio
import ssl

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon._http._exit import sync_twin
from hostedai_harpoon._leases._release import open_leases
from hostedai_harpoon.testing import Emulator


def hold_past_the_loop(client: harpoon.AsyncHostedAI) -> harpoon.AsyncLease:
    """A lease entered in an event loop that then ends with the lease still open."""

    async def enter() -> harpoon.AsyncLease:
        lease = await client.allocate("gemma-3-270m").__aenter__()
        assert lease._keepalive is not None
        lease._keepalive.cancel()
        await asyncio.gather(lease._keepalive, return_exceptions=True)
        return lease

    return asyncio.run(enter())


@pytest.mark.parametrize("how", ["transport", "mounted"])
def test_the_release_at_exit_goes_through_the_users_own_transport(how: str) -> None:
    emu = Emulator()
    inner = emu.async_http_client()
    # An in-process transport, or one mounted for the API's host only: no socket reaches it.
    http = (
        inner
        if how == "transport"
        else httpx.AsyncClient(mounts={"http://127.0.0.1:8080": inner._transport})
    )
    client = harpoon.AsyncHostedAI("http://127.0.0.1:8080", "sk", http_client=http)
    lease = hold_past_the_loop(client)
    try:
        lease._release_at_exit()
    finally:
        open_leases.discard(lease)
    assert lease.state is harpoon.LeaseState.RELEASED
    assert emu.live_allocations() == []
    assert client.orphans() == []


def test_the_release_at_exit_over_tcp_keeps_the_users_headers() -> None:
    emu = Emulator()
    with emu.serve() as base_url:
        http = httpx.AsyncClient(headers={"x-tenant": "t-1"}, verify=ssl.create_default_context())
        client = harpoon.AsyncHostedAI(base_url, "sk", http_client=http)
        lease = hold_past_the_loop(client)
        try:
            lease._release_at_exit()
        finally:
            open_leases.discard(lease)
        assert emu.live_allocations() == []
        (delete,) = emu.requests_to("DELETE")
        assert delete.request_headers["x-tenant"] == "t-1"


def test_the_sync_twin_keeps_the_tls_context_and_the_proxy() -> None:
    context = ssl.create_default_context()  # where verify= and cert= end up
    http = httpx.AsyncClient(
        verify=context,
        proxy="http://user:secret@proxy.internal:3128",
        mounts={"http://10.0.0.5": httpx.AsyncHTTPTransport(verify=context)},
        timeout=7.0,
        trust_env=False,
    )
    twin = sync_twin(http)
    assert twin is not None
    pools = [transport._pool for transport in twin._mounts.values()]  # type: ignore[union-attr]
    assert all(pool._ssl_context is context for pool in pools)
    (proxy,) = [pool for pool in pools if hasattr(pool, "_proxy_url")]
    assert proxy._proxy_url.host == b"proxy.internal"
    assert (b"Proxy-Authorization", b"Basic dXNlcjpzZWNyZXQ=") in proxy._proxy_headers
    assert twin.timeout == httpx.Timeout(7.0)


def test_a_transport_of_the_users_own_has_no_sync_twin() -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(204)))
    assert sync_twin(http) is None  # then the flow runs on a fresh event loop instead
