"""Upstream faults with in-process fake servers: nothing a bad upstream does crashes us."""

from __future__ import annotations

import asyncio
import random
import socket

import dns.flags
import dns.message
import dns.rcode
import dnslib
import pytest

from kubedns.config import CacheConfig, HostPort
from kubedns.forward import Forwarder
from tests.forward.fakes import (
    FakeClock,
    FakeUpstream,
    answer_a,
    answer_lines,
    ask,
    black_hole,
    closed_port,
    forward_config,
    metric_sum,
    rcode_only,
    reply_to,
)


async def wait_for(predicate: object, *, limit: float = 5.0) -> None:
    """Poll until ``predicate()`` holds; the limit only bounds a hang, it is not a speed test."""
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not predicate():
        assert loop.time() < end, "condition never became true"
        await asyncio.sleep(0.01)


def sample(name: str, **labels: str) -> float:
    return metric_sum(name, **labels)


async def test_no_listener_fails_over_to_the_next_upstream() -> None:
    async with FakeUpstream(answer_a("192.0.2.7")) as good:
        forwarder = Forwarder(forward_config(closed_port(), good.address), CacheConfig(size=0))
        reply = await ask(forwarder, "a.test.", "A")
        assert answer_lines(reply) == ["a.test. 300 IN A 192.0.2.7"]


async def test_black_hole_then_good_upstream_within_one_deadline() -> None:
    async with FakeUpstream(black_hole) as hole, FakeUpstream(answer_a("192.0.2.8")) as good:
        config = forward_config(hole.address, good.address, timeout=1.5)
        forwarder = Forwarder(config, CacheConfig(size=0))
        reply = await ask(forwarder, "b.test.", "A")
        assert answer_lines(reply) == ["b.test. 300 IN A 192.0.2.8"]
        assert hole.count() == 1 and good.count() == 1


async def test_every_upstream_silent_gives_servfail() -> None:
    async with FakeUpstream(black_hole) as hole:
        forwarder = Forwarder(forward_config(hole.address, timeout=0.3), CacheConfig())
        reply = await ask(forwarder, "c.test.", "A", use_edns=0)
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert reply.edns == 0  # an EDNS query gets an EDNS answer, even a failure


async def test_slow_upstream_still_answers_within_the_deadline() -> None:
    async def slow(data: bytes, proto: str) -> list[bytes]:
        await asyncio.sleep(0.2)
        return await answer_a("192.0.2.9")(data, proto)

    async with FakeUpstream(slow) as upstream:
        forwarder = Forwarder(forward_config(upstream.address, timeout=3), CacheConfig())
        reply = await ask(forwarder, "d.test.", "A")
        assert answer_lines(reply) == ["d.test. 300 IN A 192.0.2.9"]


async def test_garbage_wrong_id_and_wrong_question_are_ignored() -> None:
    async def noisy(data: bytes, proto: str) -> list[bytes]:
        good = (await answer_a("192.0.2.10")(data, proto))[0]
        wrong_id = bytes([good[0] ^ 0xFF]) + good[1:]
        other = dnslib.DNSRecord.question("other.test.").reply()
        other.header.id = dnslib.DNSRecord.parse(data).header.id
        return [b"\x01\x02garbage", good[:20], wrong_id, other.pack(), good]

    async with FakeUpstream(noisy) as upstream:
        label = str(upstream.address)
        before = sample("kubedns_forward_ignored_replies_total", to=label)
        forwarder = Forwarder(forward_config(upstream.address), CacheConfig())
        reply = await ask(forwarder, "e.test.", "A")
        assert answer_lines(reply) == ["e.test. 300 IN A 192.0.2.10"]
        assert sample("kubedns_forward_ignored_replies_total", to=label) - before == 4


async def test_garbage_only_upstream_counts_as_failed() -> None:
    async def garbage(_data: bytes, _proto: str) -> list[bytes]:
        return [b"\xff" * 40]

    async with FakeUpstream(garbage) as bad, FakeUpstream(answer_a("192.0.2.11")) as good:
        config = forward_config(bad.address, good.address, timeout=1.0)
        forwarder = Forwarder(config, CacheConfig())
        reply = await ask(forwarder, "f.test.", "A")
        assert answer_lines(reply) == ["f.test. 300 IN A 192.0.2.11"]
        assert forwarder.pools[0].upstreams[0].fails == 1


async def test_tc_reply_over_udp_is_retried_over_tcp() -> None:
    async def truncating(data: bytes, proto: str) -> list[bytes]:
        if proto == "udp":
            reply = reply_to(data)
            reply.header.tc = 1
            return [reply.pack()]
        reply = reply_to(data)
        for i in range(40):
            reply.add_answer(
                dnslib.RR(reply.q.qname, dnslib.QTYPE.A, rdata=dnslib.A(f"192.0.2.{i}"), ttl=60)
            )
        return [reply.pack()]

    async with FakeUpstream(truncating) as upstream:
        forwarder = Forwarder(forward_config(upstream.address), CacheConfig())
        reply = await ask(forwarder, "g.test.", "A")
        assert not reply.flags & dns.flags.TC
        assert len(answer_lines(reply)) == 40
        assert upstream.count("udp") == 1 and upstream.count("tcp") == 1


async def test_truncated_reply_is_not_cached() -> None:
    async def always_truncated(data: bytes, _proto: str) -> list[bytes]:
        reply = reply_to(data)
        reply.header.tc = 1
        return [reply.pack()]

    async with FakeUpstream(always_truncated) as upstream:
        forwarder = Forwarder(forward_config(upstream.address), CacheConfig())
        for _ in range(2):
            reply = await ask(forwarder, "h.test.", "A")
            assert reply.flags & dns.flags.TC
        assert upstream.count("tcp") == 2


async def test_servfail_moves_on_and_is_relayed_when_nobody_does_better() -> None:
    async with FakeUpstream(rcode_only(2)) as failing, FakeUpstream(answer_a("192.0.2.12")) as ok:
        both = Forwarder(forward_config(failing.address, ok.address), CacheConfig())
        assert answer_lines(await ask(both, "i.test.", "A")) == ["i.test. 300 IN A 192.0.2.12"]
        alone = Forwarder(forward_config(failing.address), CacheConfig())
        assert (await ask(alone, "i.test.", "A")).rcode() == dns.rcode.SERVFAIL
        assert not alone.pools[0].upstreams[0].is_down  # it answered: it is alive


async def test_servfail_is_cached_only_briefly() -> None:
    clock = FakeClock()
    async with FakeUpstream(rcode_only(2)) as failing:
        forwarder = Forwarder(
            forward_config(failing.address), CacheConfig(servfail_ttl=3), clock=clock
        )
        await ask(forwarder, "j.test.", "A")
        await ask(forwarder, "j.test.", "A")
        assert failing.count() == 1
        clock.advance(3)
        await ask(forwarder, "j.test.", "A")
        assert failing.count() == 2


async def test_failing_upstream_is_marked_down_skipped_and_probed_back() -> None:
    async with FakeUpstream(black_hole) as flaky, FakeUpstream(answer_a("192.0.2.13")) as good:
        config = forward_config(
            flaky.address, good.address, timeout=0.6, max_fails=2, health_check_interval=0.05
        )
        forwarder = Forwarder(config, CacheConfig(size=0))
        for _ in range(2):
            await ask(forwarder, "k.test.", "A")
        first = forwarder.pools[0].upstreams[0]
        assert first.is_down
        await ask(forwarder, "k.test.", "A")
        assert flaky.count() == 2  # skipped while down
        async with forwarder:
            flaky.handler = answer_a("192.0.2.14")
            await wait_for(lambda: not first.is_down)
        reply = await ask(forwarder, "k.test.", "A")
        assert answer_lines(reply) == ["k.test. 300 IN A 192.0.2.14"]


async def test_close_cancels_and_awaits_health_tasks() -> None:
    async with FakeUpstream(answer_a("192.0.2.1")) as upstream:
        forwarder = Forwarder(forward_config(upstream.address), CacheConfig())
        await forwarder.start()
        names = {t.get_name() for t in asyncio.all_tasks()}
        assert "forward-health ." in names
        await forwarder.close()
        assert "forward-health ." not in {t.get_name() for t in asyncio.all_tasks()}


async def test_round_robin_spreads_queries() -> None:
    async with (
        FakeUpstream(answer_a("192.0.2.1")) as one,
        FakeUpstream(answer_a("192.0.2.2")) as two,
    ):
        config = forward_config(one.address, two.address, policy="round_robin")
        forwarder = Forwarder(config, CacheConfig(size=0))
        for _ in range(4):
            await ask(forwarder, "l.test.", "A")
        assert one.count() == 2 and two.count() == 2


async def test_sequential_always_starts_with_the_first() -> None:
    async with (
        FakeUpstream(answer_a("192.0.2.1")) as one,
        FakeUpstream(answer_a("192.0.2.2")) as two,
    ):
        forwarder = Forwarder(forward_config(one.address, two.address), CacheConfig(size=0))
        for _ in range(3):
            await ask(forwarder, "m.test.", "A")
        assert one.count() == 3 and two.count() == 0


async def test_max_concurrent_rejects_fast_with_refused() -> None:
    release = asyncio.Event()

    async def held(data: bytes, proto: str) -> list[bytes]:
        await release.wait()
        return await answer_a("192.0.2.15")(data, proto)

    async with FakeUpstream(held) as upstream:
        config = forward_config(upstream.address, max_concurrent=2, timeout=5)
        forwarder = Forwarder(config, CacheConfig(size=0))
        before = sample("coredns_forward_max_concurrent_rejects_total")
        waiting = [asyncio.create_task(ask(forwarder, f"n{i}.test.", "A")) for i in range(2)]
        await wait_for(lambda: upstream.count() == 2)
        rejected = await ask(forwarder, "n3.test.", "A")
        assert rejected.rcode() == dns.rcode.REFUSED
        assert sample("coredns_forward_max_concurrent_rejects_total") - before == 1
        release.set()
        for task in waiting:
            assert (await task).rcode() == dns.rcode.NOERROR
        assert forwarder.in_flight == 0


async def test_positive_ttl_is_clamped_aged_and_expires(clock: FakeClock) -> None:
    async with FakeUpstream(answer_a("192.0.2.16", ttl=2)) as upstream:
        cache = CacheConfig(min_ttl=30, max_ttl=60)
        forwarder = Forwarder(forward_config(upstream.address), cache, clock=clock)
        first = await ask(forwarder, "o.test.", "A")
        assert answer_lines(first) == ["o.test. 2 IN A 192.0.2.16"]  # relayed as given
        clock.advance(10.5)
        cached = await ask(forwarder, "O.TEST.", "A")
        assert answer_lines(cached) == ["O.TEST. 20 IN A 192.0.2.16"]  # min 30, aged 10
        assert upstream.count() == 1
        clock.advance(20)
        await ask(forwarder, "o.test.", "A")
        assert upstream.count() == 2


async def test_long_ttl_is_capped_by_max_ttl(clock: FakeClock) -> None:
    async with FakeUpstream(answer_a("192.0.2.17", ttl=86400)) as upstream:
        forwarder = Forwarder(
            forward_config(upstream.address), CacheConfig(max_ttl=100), clock=clock
        )
        await ask(forwarder, "p.test.", "A")
        clock.advance(1)
        assert answer_lines(await ask(forwarder, "p.test.", "A"))[0].split()[1] == "99"
        clock.advance(99)
        await ask(forwarder, "p.test.", "A")
        assert upstream.count() == 2


async def test_cache_key_separates_do_bit(clock: FakeClock) -> None:
    async with FakeUpstream(answer_a("192.0.2.18")) as upstream:
        forwarder = Forwarder(forward_config(upstream.address), CacheConfig(), clock=clock)
        await ask(forwarder, "q.test.", "A", want_dnssec=False, use_edns=0)
        await ask(forwarder, "q.test.", "A", want_dnssec=True)
        await ask(forwarder, "q.test.", "A", want_dnssec=True)
        assert upstream.count() == 2


async def test_serve_stale_when_every_upstream_is_down(clock: FakeClock) -> None:
    upstream = FakeUpstream(answer_a("192.0.2.19", ttl=60))
    async with upstream:
        cache = CacheConfig(serve_stale=True, stale_answer_ttl=7, stale_max_age=600)
        config = forward_config(upstream.address, timeout=0.3)
        forwarder = Forwarder(config, cache, clock=clock)
        plain = Forwarder(config, CacheConfig(), clock=clock)
        await ask(forwarder, "r.test.", "A")
        await ask(plain, "r.test.", "A")
    clock.advance(120)
    stale = await ask(forwarder, "r.test.", "A")
    assert answer_lines(stale) == ["r.test. 7 IN A 192.0.2.19"]
    assert (await ask(plain, "r.test.", "A")).rcode() == dns.rcode.SERVFAIL
    clock.advance(600)
    assert (await ask(forwarder, "r.test.", "A")).rcode() == dns.rcode.SERVFAIL


async def test_never_forwarded_zone_is_refused_without_upstream_traffic() -> None:
    async with FakeUpstream(answer_a("192.0.2.20")) as upstream:
        forwarder = Forwarder(
            forward_config(upstream.address), CacheConfig(), never_forward=["cluster.local."]
        )
        reply = await ask(forwarder, "web.shop.svc.Cluster.Local.", "A")
        assert reply.rcode() == dns.rcode.REFUSED
        assert upstream.count() == 0


async def test_cache_metrics_count_hits_and_misses() -> None:
    async with FakeUpstream(answer_a("192.0.2.21")) as upstream:
        forwarder = Forwarder(forward_config(upstream.address), CacheConfig())
        hits = sample("coredns_cache_hits_total", type="success")
        misses = sample("coredns_cache_misses_total")
        await ask(forwarder, "s.test.", "A")
        await ask(forwarder, "s.test.", "A")
        assert sample("coredns_cache_hits_total", type="success") - hits == 1
        assert sample("coredns_cache_misses_total") - misses == 1
        label = str(upstream.address)
        assert sample("coredns_forward_responses_total", to=label, rcode="NOERROR") == 1


async def test_lru_eviction_is_counted() -> None:
    async with FakeUpstream(answer_a("192.0.2.22")) as upstream:
        forwarder = Forwarder(forward_config(upstream.address), CacheConfig(size=2))
        before = sample("coredns_cache_evictions_total", type="success")
        for name in ("t1.test.", "t2.test.", "t3.test."):
            await ask(forwarder, name, "A")
        assert sample("coredns_cache_evictions_total", type="success") - before == 1
        await ask(forwarder, "t1.test.", "A")  # evicted: asked again
        assert upstream.count() == 4


def _with_bad_soa(data: bytes) -> bytes:
    """An NXDOMAIN whose SOA RDATA is four bytes: walkable, but no MINIMUM to read."""
    reply = reply_to(data, rcode=3)
    reply.header.auth = 1
    head = bytearray(reply.pack())
    head[8:10] = b"\x00\x01"  # NSCOUNT 1
    return bytes(head) + b"\x00" + bytes([0, 6, 0, 1, 0, 0, 0, 60, 0, 4]) + b"\x01\x02\x03\x04"


async def test_mangled_soa_is_relayed_but_not_cached() -> None:
    async def bad_soa(data: bytes, _proto: str) -> list[bytes]:
        return [_with_bad_soa(data)]

    async with FakeUpstream(bad_soa) as upstream:
        forwarder = Forwarder(forward_config(upstream.address), CacheConfig())
        for _ in range(2):
            reply = await forwarder.resolve(dnslib.DNSRecord.question("u.test.").pack())
            assert reply[3] & 0xF == 3
        assert upstream.count() == 2


async def test_random_junk_after_a_valid_question_never_crashes() -> None:
    rng = random.Random(4)

    async def junk(data: bytes, proto: str) -> list[bytes]:
        query_end = len(dnslib.DNSRecord.parse(data).pack())
        header = bytearray(reply_to(data).pack()[:query_end])
        header[6:12] = bytes(rng.randrange(4) for _ in range(6))  # random record counts
        tail = bytes(rng.randrange(256) for _ in range(rng.randrange(60)))
        return [bytes(header) + tail, *await answer_a("192.0.2.40")(data, proto)]

    async with FakeUpstream(junk) as upstream:
        forwarder = Forwarder(forward_config(upstream.address), CacheConfig())
        for i in range(50):
            reply = await ask(forwarder, f"v{i}.test.", "A")
            assert reply.rcode() == dns.rcode.NOERROR


async def test_identical_queries_in_flight_share_one_upstream_query() -> None:
    release = asyncio.Event()

    async def held(data: bytes, proto: str) -> list[bytes]:
        await release.wait()
        return await answer_a("192.0.2.41")(data, proto)

    async with FakeUpstream(held) as upstream:
        forwarder = Forwarder(forward_config(upstream.address, max_concurrent=3), CacheConfig())
        names = ["w.test.", "W.TEST.", "w.Test."]
        waiting = [asyncio.create_task(ask(forwarder, name, "A")) for name in names]
        await wait_for(lambda: upstream.count() == 1)
        release.set()
        replies = [await task for task in waiting]
        assert upstream.count() == 1
        for name, reply in zip(names, replies, strict=True):
            assert answer_lines(reply) == [f"{name} 300 IN A 192.0.2.41"]


async def test_udp_limit_cuts_a_large_reply_with_tc() -> None:
    async def large(data: bytes, _proto: str) -> list[bytes]:
        reply = reply_to(data)
        for i in range(60):
            rdata = dnslib.A(f"192.0.2.{i}")
            reply.add_answer(dnslib.RR(reply.q.qname, dnslib.QTYPE.A, rdata=rdata, ttl=60))
        return [reply.pack()]

    async with FakeUpstream(large) as upstream:
        forwarder = Forwarder(forward_config(upstream.address), CacheConfig())
        query = dns.message.make_query("big.test.", "A")
        cut_wire = await forwarder.resolve(query.to_wire(), udp_limit=512)
        cut = dns.message.from_wire(cut_wire)
        # As many whole records as fit (CoreDNS's Truncate), so a client that never retries
        # over TCP still gets addresses; 16 bytes each after a 29-byte header and question.
        assert cut.flags & dns.flags.TC and len(cut.answer[0]) == (512 - 12 - 14) // 16
        assert len(cut_wire) <= 512
        whole = dns.message.from_wire(await forwarder.resolve(query.to_wire()))
        assert len(whole.answer[0]) == 60


async def test_answer_now_serves_cache_hits_without_io() -> None:
    async with FakeUpstream(answer_a("192.0.2.42")) as upstream:
        forwarder = Forwarder(forward_config(upstream.address), CacheConfig())
        query = dns.message.make_query("y.test.", "A")
        misses = sample("coredns_cache_misses_total")
        assert forwarder.answer_now(query.to_wire()) is None
        await forwarder.resolve(query.to_wire())
        assert sample("coredns_cache_misses_total") - misses == 1  # not twice
        again = dns.message.make_query("Y.test.", "A")
        reply = forwarder.answer_now(again.to_wire())
        assert reply is not None
        assert answer_lines(dns.message.from_wire(reply)) == ["Y.test. 300 IN A 192.0.2.42"]
        assert upstream.count() == 1


async def test_random_policy_uses_every_upstream() -> None:
    async with (
        FakeUpstream(answer_a("192.0.2.1")) as one,
        FakeUpstream(answer_a("192.0.2.2")) as two,
    ):
        config = forward_config(one.address, two.address, policy="random")
        forwarder = Forwarder(config, CacheConfig(size=0))
        for _ in range(40):
            await ask(forwarder, "z.test.", "A")
        assert one.count() + two.count() == 40
        assert one.count() > 0 and two.count() > 0  # all on one: chance 2 in 2**40


async def test_ipv6_upstream_over_udp_and_tcp() -> None:
    try:
        upstream = FakeUpstream(answer_a("192.0.2.43"), host="::1")
        await upstream.__aenter__()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    try:
        forwarder = Forwarder(forward_config(upstream.address), CacheConfig())
        assert str(upstream.address).startswith("[::1]:")
        reply = await ask(forwarder, "v6.test.", "A")
        assert answer_lines(reply) == ["v6.test. 300 IN A 192.0.2.43"]
    finally:
        await upstream.close()


class _SpoofingServer(asyncio.DatagramProtocol):
    """Answers every query correctly, but from another port: an off-path spoofer's reply."""

    def __init__(self) -> None:
        self.received = 0

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.received += 1
        reply = reply_to(data)
        reply.add_answer(dnslib.RR(reply.q.qname, dnslib.QTYPE.A, rdata=dnslib.A("6.6.6.6")))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.sendto(reply.pack(), (str(addr[0]), int(addr[1])))


async def test_reply_from_another_address_is_not_accepted() -> None:
    loop = asyncio.get_running_loop()
    server = _SpoofingServer()
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        config = forward_config(HostPort("127.0.0.1", port), timeout=0.5)
        forwarder = Forwarder(config, CacheConfig())
        reply = await ask(forwarder, "spoof.test.", "A")
        assert server.received >= 1
        assert reply.rcode() == dns.rcode.SERVFAIL and not reply.answer
    finally:
        transport.close()
