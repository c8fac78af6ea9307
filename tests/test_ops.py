"""The operations endpoint over real HTTP: metrics counted from real queries, health, readiness
and the lame-duck period at shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import dns.asyncquery
import dns.message
import dns.rcode
import pytest
import pytest_asyncio

from kubedns.app import UDP_RECEIVE_BUFFER, Server
from kubedns.config import load

DEMO = Path(__file__).resolve().parent.parent / "config" / "demo-cluster.yaml"


def make_server(**overrides: object) -> Server:
    config = load(
        None,
        {
            "snapshot": str(DEMO),
            "listen": "127.0.0.1:0",
            "ops.listen": "127.0.0.1:0",
            "forward.upstreams": ["127.0.0.1:9"],  # loopback discard port: never leaves the host
            **overrides,
        },
    )
    server = Server(config)
    server.load_sources()
    return server


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    server = make_server()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def get(server: Server, path: str) -> tuple[int, str]:
    assert server.ops is not None
    url = f"http://{server.ops.address}{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def sample(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{re.escape(name)}{{{re.escape(labels)}}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def ask(server: Server, name: str) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    return await dns.asyncquery.udp(query, "127.0.0.1", port=server.address.port, timeout=2)


async def test_metrics_count_replies_by_rcode(server: Server) -> None:
    _, before = await get(server, "/metrics")
    await ask(server, "web.shop.svc.cluster.local")
    await ask(server, "missing.shop.svc.cluster.local")
    await ask(server, "missing.shop.svc.cluster.local")
    status, after = await get(server, "/metrics")
    assert status == 200
    server_zone = f'server="dns://{server.address}",view="",zone="."'
    nx = 'plugin="kubernetes",rcode="NXDOMAIN",' + server_zone
    ok = 'plugin="kubernetes",rcode="NOERROR",' + server_zone
    assert (
        sample(after, "coredns_dns_responses_total", nx)
        - sample(before, "coredns_dns_responses_total", nx)
        == 2
    )
    assert (
        sample(after, "coredns_dns_responses_total", ok)
        - sample(before, "coredns_dns_responses_total", ok)
        == 1
    )
    assert "kubedns_synced 1.0" in after
    assert re.search(r"^kubedns_zone_serial \d", after, re.M)
    owners = re.search(r"^kubedns_zone_owner_names (\S+)$", after, re.M)
    assert owners and float(owners.group(1)) == server.index.owner_count() > 0
    assert re.search(r'^coredns_build_info\{.*version="\d', after, re.M)


async def test_health_and_ready(server: Server) -> None:
    assert await get(server, "/health") == (200, "OK")
    assert await get(server, "/ready") == (200, "OK")


async def test_lame_duck_keeps_answering_while_not_ready() -> None:
    server = make_server(**{"ops.lame_duck": 0.5})
    await server.start()
    stopping = asyncio.create_task(server.stop())
    await asyncio.sleep(0.1)
    status, _ = await get(server, "/ready")
    assert status == 503
    reply = await ask(server, "web.shop.svc.cluster.local")
    assert reply.rcode() == dns.rcode.NOERROR
    await stopping


async def test_udp_receive_buffer_is_enlarged(server: Server) -> None:
    """Bursts of queries must not overflow the kernel's default buffer (about 200 KiB)."""
    assert server._udp is not None
    sock = server._udp.socket
    # Linux reports double the requested size (bookkeeping overhead). Tests run as root, so
    # the forced request passes net.core.rmem_max whatever the machine sets it to.
    if os.geteuid() != 0:
        pytest.skip("only root (CAP_NET_ADMIN) may pass net.core.rmem_max")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= UDP_RECEIVE_BUFFER
