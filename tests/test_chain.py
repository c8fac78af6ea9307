"""The fixed chain through the real server: cluster zone first, then the forwarder.

A fake upstream on loopback records every query it gets, so the tests can prove that cluster
names never leak upstream while everything else is relayed faithfully.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dnslib
import pytest
import pytest_asyncio

from kubedns.app import Server
from kubedns.config import HostPort, load
from tests.forward.fakes import FakeUpstream, reply_to

DEMO = Path(__file__).resolve().parent.parent / "config" / "demo-cluster.yaml"


async def upstream_handler(data: bytes, _proto: str) -> list[bytes]:
    """Answers every A query with 192.0.2.99 and every PTR with host.example.net."""
    reply = reply_to(data)
    name = str(reply.q.qname)
    if reply.q.qtype == 1:
        reply.add_answer(*dnslib.RR.fromZone(f"{name} 60 IN A 192.0.2.99"))
    elif reply.q.qtype == 12:
        reply.add_answer(*dnslib.RR.fromZone(f"{name} 60 IN PTR host.example.net."))
    return [reply.pack()]


@contextlib.asynccontextmanager
async def serving(upstream: FakeUpstream, **overrides: object) -> AsyncIterator[Server]:
    """The real server on the demo cluster, forwarding to ``upstream``."""
    settings = {
        "snapshot": str(DEMO),
        "listen": "127.0.0.1:0",
        "forward.upstreams": [str(upstream.address)],
        **overrides,
    }
    server = Server(load(None, settings))
    server.load_sources()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture
async def chain() -> AsyncIterator[tuple[Server, FakeUpstream]]:
    async with (
        FakeUpstream(upstream_handler) as upstream,
        serving(upstream, **{"forward.policy": "sequential"}) as server,
    ):
        yield server, upstream


async def ask(address: HostPort, name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return await dns.asyncquery.udp(query, address.host, port=address.port, timeout=3)


def upstream_names(upstream: FakeUpstream) -> set[str]:
    """Names the upstream was asked, less our own loop probe sent at start."""
    names = {
        dns.message.from_wire(data).question[0].name.to_text().lower()
        for _, data in upstream.queries
    }
    return {name for name in names if not name.endswith(".kubedns-loop-probe.")}


async def test_external_names_are_forwarded_and_relayed(chain: tuple[Server, FakeUpstream]) -> None:
    server, upstream = chain
    reply = await ask(server.address, "www.example.com")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer[0][0].to_text() == "192.0.2.99"
    assert not reply.flags & dns.flags.AA
    assert reply.flags & dns.flags.RA
    assert "www.example.com." in upstream_names(upstream)


async def test_second_query_comes_from_the_cache(chain: tuple[Server, FakeUpstream]) -> None:
    server, upstream = chain
    await ask(server.address, "cached.example.com")
    before = len(upstream.queries)
    reply = await ask(server.address, "cached.example.com")
    assert reply.answer[0][0].to_text() == "192.0.2.99"
    assert len(upstream.queries) == before


@pytest.mark.parametrize(
    "name",
    [
        "web.shop.svc.cluster.local",
        "missing.shop.svc.cluster.local",
        "www.example.com.shop.svc.cluster.local",
        "api.example.com.svc.cluster.local",
        "api.example.com.cluster.local",
    ],
)
async def test_cluster_names_never_leak_upstream(
    chain: tuple[Server, FakeUpstream], name: str
) -> None:
    server, upstream = chain
    reply = await ask(server.address, name)
    assert reply.flags & dns.flags.AA
    assert reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
    assert not any(n.endswith("cluster.local.") for n in upstream_names(upstream))


async def test_external_name_target_is_chased_upstream(chain: tuple[Server, FakeUpstream]) -> None:
    server, _ = chain
    reply = await ask(server.address, "payments.shop.svc.cluster.local")
    lines = [line for rrset in reply.answer for line in rrset.to_text().splitlines()]
    assert lines[0].endswith("CNAME payments.example.com.")
    assert lines[1] == "payments.example.com. 60 IN A 192.0.2.99"
    assert reply.flags & dns.flags.AA


async def test_unknown_reverse_names_fall_through_to_upstream(
    chain: tuple[Server, FakeUpstream],
) -> None:
    server, upstream = chain
    reply = await ask(server.address, "4.3.2.1.in-addr.arpa", "PTR")
    assert reply.answer[0][0].to_text() == "host.example.net."
    owned = await ask(server.address, "34.12.96.10.in-addr.arpa", "PTR")
    assert owned.answer[0][0].to_text() == "web.shop.svc.cluster.local."
    assert owned.flags & dns.flags.AA
    assert upstream_names(upstream) == {"4.3.2.1.in-addr.arpa."}


async def test_loop_turns_forwarding_off() -> None:
    """An upstream that sends every query back to us is a loop; we must stop forwarding."""
    target: list[HostPort] = []

    async def bounce(data: bytes, _proto: str) -> list[bytes]:
        # Forward to kubedns itself, as a node stub resolver pointing at the cluster DNS does.
        reply = await dns.asyncquery.udp(
            dns.message.from_wire(data), target[0].host, port=target[0].port, timeout=1
        )
        return [reply.to_wire()]

    async with FakeUpstream(bounce) as upstream, serving(upstream) as server:
        target.append(server.address)
        for _ in range(50):
            if server.responder.fallback is None:
                break
            await asyncio.sleep(0.05)
        assert server.responder.fallback is None
        reply = await ask(server.address, "www.example.com")
        assert reply.rcode() == dns.rcode.REFUSED


async def big_txt_handler(data: bytes, _proto: str) -> list[bytes]:
    """A TXT answer of about 1,200 bytes: over 512, so plain UDP clients must get TC."""
    reply = reply_to(data)
    name = str(reply.q.qname)
    for i in range(6):
        reply.add_answer(*dnslib.RR.fromZone(f'{name} 60 IN TXT "{"x" * 190}{i}"'))
    return [reply.pack()]


async def test_forwarded_answers_fit_udp_and_come_whole_over_tcp() -> None:
    async with FakeUpstream(big_txt_handler) as upstream, serving(upstream) as server:
        query = dns.message.make_query("big.example.com", "TXT", use_edns=False)
        address = server.address
        udp = await dns.asyncquery.udp(query, address.host, port=address.port, timeout=3)
        assert udp.flags & dns.flags.TC
        assert udp.id == query.id
        tcp = await dns.asyncquery.tcp(query, address.host, port=address.port, timeout=3)
        assert not tcp.flags & dns.flags.TC
        assert len(tcp.answer[0]) == 6
        cluster = dns.message.make_query("payments.shop.svc.cluster.local", "A")
        chased = await dns.asyncquery.tcp(cluster, address.host, port=address.port, timeout=3)
        assert chased.answer[0].rdtype == dns.rdatatype.CNAME
