"""Forwarded answers through the answer path: one parse, cache hits served from stored bytes
with TTLs aged in whole seconds, exact cache metrics, our own EDNS, and rotation."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dnslib

from kubedns.answer.cluster import ClusterZone
from kubedns.answer.respond import Responder
from kubedns.config import CacheConfig, load
from kubedns.forward import Forwarder
from kubedns.index import REQUIRED_KINDS, RecordIndex
from kubedns.sources.events import Replace
from tests.forward.fakes import FakeClock, FakeUpstream, forward_config, metric_sum, reply_to


def hits() -> float:
    return metric_sum("coredns_cache_hits_total", type="success")


async def answer(r: Responder, query: dns.message.Message, *, tcp: bool = False) -> bytes:
    reply = r.respond(query.to_wire(), tcp=tcp)
    if reply is not None and not isinstance(reply, bytes):
        reply = await reply
    assert isinstance(reply, bytes)
    return reply


def chain(upstream: FakeUpstream, clock: FakeClock) -> Responder:
    index = RecordIndex(zone="cluster.local")
    for kind in REQUIRED_KINDS:
        index.apply(Replace(kind, ()))
    forwarder = Forwarder(forward_config(upstream.address), CacheConfig(), clock=clock)
    return Responder(ClusterZone(index, load()), fallback=forwarder, clock=clock)


async def many_a(data: bytes, _proto: str) -> list[bytes]:
    reply = reply_to(data)
    for i in range(8):
        rdata = dnslib.A(f"192.0.2.{i + 1}")
        reply.add_answer(dnslib.RR(reply.q.qname, dnslib.QTYPE.A, rdata=rdata, ttl=300))
    # An upstream OPT with a cookie: it belongs to the upstream's conversation, not the client's.
    reply.add_ar(dnslib.EDNS0(udp_len=4096, opts=[dnslib.EDNSOption(10, b"\x01" * 16)]))
    return [reply.pack()]


async def test_cache_hits_are_stored_bytes_aged_in_whole_seconds() -> None:
    clock = FakeClock()
    async with FakeUpstream(many_a) as upstream:
        r = chain(upstream, clock)
        first = dns.message.from_wire(
            await answer(r, dns.message.make_query("www.example.com", "A"))
        )
        assert first.answer[0].ttl == 300
        before = hits()
        clock.advance(2.5)
        query = dns.message.make_query("WWW.Example.COM", "A", use_edns=0)
        wire = r.respond(query.to_wire(), tcp=False)
        assert isinstance(wire, bytes), "a cache hit needs no I/O"
        reply = dns.message.from_wire(wire)
        assert reply.id == query.id
        assert reply.question[0].name.to_text() == "WWW.Example.COM."
        assert reply.answer[0].ttl == 298
        assert reply.edns == 0 and reply.payload == 1232 and not reply.options
        assert not reply.flags & dns.flags.AA and reply.flags & dns.flags.RA
        for _ in range(9):
            assert isinstance(r.respond(query.to_wire(), tcp=False), bytes)
        clock.advance(1.0)
        aged = dns.message.from_wire(await answer(r, query))
        assert aged.answer[0].ttl == 297
        assert hits() - before == 11, "every hit counted once, fast path or not"
        assert upstream.count() == 1


async def test_forwarded_a_records_rotate() -> None:
    clock = FakeClock()
    async with FakeUpstream(many_a) as upstream:
        r = chain(upstream, clock)
        query = dns.message.make_query("www.example.com", "A")
        firsts = set()
        for _ in range(20):
            reply = dns.message.from_wire(await answer(r, query))
            rdatas = [rr.to_text() for rr in reply.answer[0]]
            assert sorted(rdatas) == [f"192.0.2.{i}" for i in range(1, 9)]
            firsts.add(rdatas[0])
        assert len(firsts) == 8
        assert upstream.count() == 1


async def test_expired_entry_goes_upstream_again() -> None:
    clock = FakeClock()
    async with FakeUpstream(many_a) as upstream:
        r = chain(upstream, clock)
        query = dns.message.make_query("www.example.com", "A")
        await answer(r, query)
        await answer(r, query)
        clock.advance(301)
        pending = r.respond(query.to_wire(), tcp=False)
        assert pending is not None and not isinstance(pending, bytes), "expired: upstream"
        await pending
        assert upstream.count() == 2


async def test_forwarded_reply_is_truncated_at_whole_records_for_small_clients() -> None:
    async def big(data: bytes, _proto: str) -> list[bytes]:
        reply = reply_to(data)
        for i in range(100):
            rdata = dnslib.A(f"198.51.100.{i}")
            reply.add_answer(dnslib.RR(reply.q.qname, dnslib.QTYPE.A, rdata=rdata, ttl=60))
        return [reply.pack()]

    async with FakeUpstream(big) as upstream:
        r = chain(upstream, FakeClock())
        query = dns.message.make_query("big.example.com", "A", use_edns=0, payload=65535)
        wire = await answer(r, query)
        reply = dns.message.from_wire(wire)
        assert len(wire) <= 1232 and reply.flags & dns.flags.TC
        assert 0 < len(reply.answer[0]) < 100
        whole = dns.message.from_wire(await answer(r, query, tcp=True))
        assert len(whole.answer[0]) == 100 and not whole.flags & dns.flags.TC


async def test_a_short_name_with_a_large_answer_is_cut_to_35_times_its_query() -> None:
    """Amplification: ``m.io A`` with EDNS is a 33-byte query; no UDP reply may exceed 1155."""

    async def large(data: bytes, _proto: str) -> list[bytes]:
        reply = reply_to(data)
        for i in range(80):
            rdata = dnslib.A(f"198.51.100.{i}")
            reply.add_answer(dnslib.RR(reply.q.qname, dnslib.QTYPE.A, rdata=rdata, ttl=60))
        return [reply.pack()]

    async with FakeUpstream(large) as upstream:
        r = chain(upstream, FakeClock())
        query = dns.message.make_query("m.io", "A", use_edns=0, payload=1232)
        size = len(query.to_wire())
        for _ in range(3):  # from upstream, then a cache hit, then the fast path
            wire = await answer(r, query)
            assert len(wire) <= 35 * size < 1232
            assert dns.message.from_wire(wire).flags & dns.flags.TC
