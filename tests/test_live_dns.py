"""The zone follows the cluster: the real server watching the fake API server over HTTP,
checked with real DNS queries after every change and fault."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import dns.asyncquery
import dns.message
import dns.rcode
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from kubedns.app import Server
from kubedns.config import load
from tests import kubeobjects as k
from tests.fakeapi import FakeApiServer

FAST_WATCH = {
    "watch.backoff_base": 0.01,
    "watch.backoff_cap": 0.05,
    "watch.read_timeout": 5,
    "watch.connect_timeout": 1,
    "watch.list_timeout": 5,
    "watch.sync_timeout": 5,
    "watch.stop_timeout": 2,
}


def headless(namespace: str, name: str) -> dict[str, Any]:
    raw = k.service(namespace, name)
    raw["spec"]["clusterIP"] = "None"
    raw["spec"]["clusterIPs"] = ["None"]
    return raw


def slice_with(
    namespace: str, name: str, service: str, *endpoints: dict[str, Any]
) -> dict[str, Any]:
    raw = k.endpoint_slice(namespace, name, service, [])
    raw["endpoints"] = list(endpoints)
    return raw


def endpoint(ip: str, *, ready: bool | None = True, terminating: bool = False) -> dict[str, Any]:
    conditions: dict[str, Any] = {"terminating": terminating}
    if ready is not None:
        conditions["ready"] = ready
    return {"addresses": [ip], "conditions": conditions}


async def start_server(fake: FakeApiServer, tmp_path: Path, **overrides: Any) -> Server:
    kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
    settings = {
        "kubeconfig": str(kubeconfig),
        "listen": "127.0.0.1:0",
        "ops.listen": "127.0.0.1:0",
        "forward.upstreams": ["127.0.0.1:9"],
        **FAST_WATCH,
        **overrides,
    }
    server = Server(load(None, settings))
    server.load_sources()
    await server.start()
    return server


@pytest_asyncio.fixture
async def live(fake: FakeApiServer, tmp_path: Path) -> AsyncIterator[Server]:
    fake.load([k.namespace("shop"), k.namespace("default"), k.service("shop", "web", "10.0.0.5")])
    server = await start_server(fake, tmp_path)
    try:
        yield server
    finally:
        await server.stop()


async def ask(server: Server, name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return await dns.asyncquery.udp(query, "127.0.0.1", port=server.address.port, timeout=2)


async def answers(server: Server, name: str, rdtype: str = "A") -> tuple[int, set[str]]:
    reply = await ask(server, name, rdtype)
    return reply.rcode(), {rr.to_text() for rrset in reply.answer for rr in rrset}


async def eventually(check: Callable[[], Any], expected: Any, *, timeout: float = 5.0) -> None:
    """Poll an async check until it returns ``expected``; the change must land within 5 s
    (the issue asks for under a second; the margin is for a loaded CI machine)."""
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got == expected:
            return
        assert time.monotonic() < deadline, f"still {got!r}, expected {expected!r}"
        await asyncio.sleep(0.02)


def lookup(server: Server, name: str, rdtype: str = "A") -> Callable[[], Any]:
    return lambda: answers(server, name, rdtype)


NOERROR, NXDOMAIN, SERVFAIL = dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL
WEB = "web.shop.svc.cluster.local"


async def test_initial_list_is_served(live: Server) -> None:
    assert await answers(live, WEB) == (NOERROR, {"10.0.0.5"})
    assert live.is_ready()


async def test_create_update_delete_follow_the_cluster(live: Server, fake: FakeApiServer) -> None:
    fake.create(k.service("shop", "api", "10.0.0.6"))
    await eventually(lookup(live, "api.shop.svc.cluster.local"), (NOERROR, {"10.0.0.6"}))
    fake.update(k.service("shop", "api", "10.0.0.7"))
    await eventually(lookup(live, "api.shop.svc.cluster.local"), (NOERROR, {"10.0.0.7"}))
    await eventually(
        lookup(live, "7.0.0.10.in-addr.arpa", "PTR"), (NOERROR, {"api.shop.svc.cluster.local."})
    )
    fake.delete("Service", "shop", "api")
    await eventually(lookup(live, "api.shop.svc.cluster.local"), (NXDOMAIN, set()))


async def test_endpoint_readiness_changes(live: Server, fake: FakeApiServer) -> None:
    fake.create(headless("shop", "db"))
    fake.create(
        slice_with("shop", "db-1", "db", endpoint("10.1.0.1"), endpoint("10.1.0.2", ready=False))
    )
    name = "db.shop.svc.cluster.local"
    await eventually(lookup(live, name), (NOERROR, {"10.1.0.1"}))
    fake.update(slice_with("shop", "db-1", "db", endpoint("10.1.0.1"), endpoint("10.1.0.2")))
    await eventually(lookup(live, name), (NOERROR, {"10.1.0.1", "10.1.0.2"}))
    fake.update(
        slice_with(
            "shop", "db-1", "db", endpoint("10.1.0.1", terminating=True), endpoint("10.1.0.2")
        )
    )
    await eventually(lookup(live, name), (NOERROR, {"10.1.0.2"}))
    fake.update(slice_with("shop", "db-1", "db", endpoint("10.1.0.2", ready=False)))
    await eventually(lookup(live, name), (NXDOMAIN, set()))


async def test_headless_and_cluster_ip_swap(live: Server, fake: FakeApiServer) -> None:
    fake.create(slice_with("shop", "web-1", "web", endpoint("10.1.0.9")))
    fake.update(headless("shop", "web"))
    await eventually(lookup(live, WEB), (NOERROR, {"10.1.0.9"}))
    fake.update(k.service("shop", "web", "10.0.0.15"))
    await eventually(lookup(live, WEB), (NOERROR, {"10.0.0.15"}))
    await eventually(lookup(live, "10-1-0-9.web.shop.svc.cluster.local"), (NXDOMAIN, set()))


async def test_namespace_deletion(live: Server, fake: FakeApiServer) -> None:
    fake.create(k.namespace("tmp"))
    await eventually(lookup(live, "tmp.svc.cluster.local"), (NOERROR, set()))
    fake.delete("Namespace", "", "tmp")
    await eventually(lookup(live, "tmp.svc.cluster.local"), (NXDOMAIN, set()))


async def test_relist_after_410_drops_deletions_missed(live: Server, fake: FakeApiServer) -> None:
    fake.create(k.service("shop", "gone", "10.0.0.20"))
    await eventually(lookup(live, "gone.shop.svc.cluster.local"), (NOERROR, {"10.0.0.20"}))
    # Keep the Service watch down while the deletion happens and history is compacted, so the
    # watch can only resume with a 410 and a relist.
    fake.fail_next("Service", 503, count=1000)
    fake.disconnect_watches("Service")
    fake.delete("Service", "shop", "gone")
    fake.create(k.service("shop", "new", "10.0.0.21"))
    fake.compact()
    relists = REGISTRY.get_sample_value("kubedns_kubernetes_relists_total", {"kind": "Service"})
    assert await answers(live, "gone.shop.svc.cluster.local") == (NOERROR, {"10.0.0.20"})
    fake.clear_faults()
    await eventually(lookup(live, "gone.shop.svc.cluster.local"), (NXDOMAIN, set()))
    after = REGISTRY.get_sample_value("kubedns_kubernetes_relists_total", {"kind": "Service"})
    assert (after or 0) > (relists or 0)
    await eventually(lookup(live, "new.shop.svc.cluster.local"), (NOERROR, {"10.0.0.21"}))


async def test_api_outage_keeps_last_known_answers(live: Server, fake: FakeApiServer) -> None:
    for kind in ("Namespace", "Service", "EndpointSlice"):
        fake.fail_next(kind, 500, count=1000)
    fake.disconnect_watches()
    for _ in range(10):
        assert await answers(live, WEB) == (NOERROR, {"10.0.0.5"})
        assert (await answers(live, "nope.shop.svc.cluster.local"))[0] == NXDOMAIN
        await asyncio.sleep(0.02)
    assert live.is_ready()
    fake.clear_faults()
    fake.create(k.service("shop", "after", "10.0.0.30"))
    await eventually(lookup(live, "after.shop.svc.cluster.local"), (NOERROR, {"10.0.0.30"}))


async def test_before_first_list_unknown_names_get_servfail(
    fake: FakeApiServer, tmp_path: Path
) -> None:
    fake.load([k.namespace("shop"), k.service("shop", "web", "10.0.0.5")])
    fake.fail_next("EndpointSlice", 500, count=1000, on="list")
    server = await start_server(fake, tmp_path, **{"watch.sync_timeout": 0.3})
    try:
        assert not server.is_ready()
        assert server.ops is not None
        url = f"http://{server.ops.address}/ready"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 503
        # Known names answer; unknown ones are SERVFAIL, never an NXDOMAIN a cache would keep.
        assert await answers(server, WEB) == (NOERROR, {"10.0.0.5"})
        assert (await answers(server, "maybe.shop.svc.cluster.local"))[0] == SERVFAIL
        fake.clear_faults()
        await eventually(lookup(server, "maybe.shop.svc.cluster.local"), (NXDOMAIN, set()))
        assert server.is_ready()
    finally:
        await server.stop()


@pytest.mark.parametrize("pods", ["verified"])
async def test_verified_pod_records_follow_pods(
    fake: FakeApiServer, tmp_path: Path, pods: str
) -> None:
    fake.load([k.namespace("shop")])
    server = await start_server(fake, tmp_path, pods=pods)
    try:
        name = "10-2-0-1.shop.pod.cluster.local"
        assert (await answers(server, name))[0] == NXDOMAIN
        fake.create(k.pod("shop", "a", "10.2.0.1"))
        await eventually(lookup(server, name), (NOERROR, {"10.2.0.1"}))
        fake.update(k.pod("shop", "a", "10.2.0.1", phase="Succeeded"))
        await eventually(lookup(server, name), (NXDOMAIN, set()))
    finally:
        await server.stop()
