"""What clients can make the forwarder hold is bounded: queries waiting on upstreams (shared
ones included), upstream exchanges in flight, the cache in bytes, and failure log lines."""

from __future__ import annotations

import asyncio
import logging
import re

import dns.message
import dns.rcode
import dnslib
import pytest

from kubedns import config as kubedns_config
from kubedns.config import CacheConfig, ConfigError
from kubedns.forward import Forwarder
from kubedns.logs import ERRORS
from tests.forward.fakes import (
    FakeClock,
    FakeUpstream,
    answer_a,
    ask,
    closed_port,
    forward_config,
    metric_sum,
    reply_to,
)

TXT_STRINGS = 10
"""Ten 200-byte strings: an answer of about 2 KB."""


def sample(name: str, **labels: str) -> float:
    return metric_sum(name, **labels)


async def wait_for(predicate: object) -> None:
    """Poll until ``predicate()`` holds; the bound only ends a hang, it is not a speed test."""
    assert callable(predicate)
    async with asyncio.timeout(10):
        while not predicate():
            await asyncio.sleep(0.01)


class Held:
    """Answers A queries, but only once ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, data: bytes, proto: str) -> list[bytes]:
        await self.release.wait()
        return await answer_a("192.0.2.50")(data, proto)


async def test_followers_of_a_shared_exchange_count_against_max_concurrent() -> None:
    held = Held()
    async with FakeUpstream(held) as upstream:
        forwarder = Forwarder(forward_config(upstream.address, max_concurrent=3), CacheConfig())
        before = sample("coredns_forward_max_concurrent_rejects_total")
        waiting = [asyncio.create_task(ask(forwarder, "same.test.", "A")) for _ in range(3)]
        await wait_for(lambda: forwarder.in_flight == 3 and upstream.count() == 1)
        assert forwarder.exchanges == 1 and upstream.count() == 1
        for _ in range(2):  # the same name again: no slot left, shared or not
            assert (await ask(forwarder, "same.test.", "A")).rcode() == dns.rcode.REFUSED
        assert (await ask(forwarder, "other.test.", "A")).rcode() == dns.rcode.REFUSED
        assert sample("coredns_forward_max_concurrent_rejects_total") - before == 3
        held.release.set()
        for task in waiting:
            assert (await task).rcode() == dns.rcode.NOERROR
        assert forwarder.in_flight == 0 and forwarder.exchanges == 0
        assert upstream.count() == 1


async def test_exchanges_in_flight_never_exceed_max_concurrent() -> None:
    held = Held()
    async with FakeUpstream(held) as upstream:
        forwarder = Forwarder(forward_config(upstream.address, max_concurrent=4), CacheConfig())
        names = [f"n{i % 6}.test." for i in range(20)]  # six names, most asked several times
        tasks = [asyncio.create_task(ask(forwarder, name, "A")) for name in names]
        await wait_for(lambda: sum(task.done() for task in tasks) == 16)
        assert forwarder.in_flight == 4 and forwarder.exchanges <= 4
        held.release.set()
        replies = [await task for task in tasks]
        rcodes = [reply.rcode() for reply in replies]
        assert rcodes.count(dns.rcode.NOERROR) == 4
        assert rcodes.count(dns.rcode.REFUSED) == 16
        assert forwarder.in_flight == 0 and forwarder.exchanges == 0


async def large_txt(data: bytes, _proto: str) -> list[bytes]:
    reply = reply_to(data)
    strings = [("x" * 199 + str(i)).encode() for i in range(TXT_STRINGS)]
    reply.add_answer(dnslib.RR(reply.q.qname, dnslib.QTYPE.TXT, rdata=dnslib.TXT(strings), ttl=300))
    return [reply.pack()]


async def test_cache_is_bounded_in_bytes_evicting_the_least_recently_used(
    clock: FakeClock,
) -> None:
    async with FakeUpstream(large_txt) as upstream:
        cache = CacheConfig(max_bytes=8192)  # room for three 2 KB answers, not for ten
        forwarder = Forwarder(forward_config(upstream.address, timeout=5), cache, clock=clock)
        evicted = sample("coredns_cache_evictions_total", type="success")
        for i in range(10):
            reply = await ask(forwarder, f"big{i}.test.", "TXT", use_edns=0, payload=4096)
            assert len(reply.answer[0][0].strings) == TXT_STRINGS
        assert 0 < sample("kubedns_cache_bytes", type="success") <= 8192
        assert sample("coredns_cache_evictions_total", type="success") - evicted >= 6
        assert upstream.count() == 10
        await ask(forwarder, "big9.test.", "TXT", use_edns=0, payload=4096)  # newest: kept
        assert upstream.count() == 10
        await ask(forwarder, "big0.test.", "TXT", use_edns=0, payload=4096)  # oldest: gone
        assert upstream.count() == 11


async def test_answer_larger_than_the_byte_bound_is_relayed_not_cached(clock: FakeClock) -> None:
    async with FakeUpstream(large_txt) as upstream:
        forwarder = Forwarder(
            forward_config(upstream.address), CacheConfig(max_bytes=1024), clock=clock
        )
        for _ in range(2):
            reply = await ask(forwarder, "huge.test.", "TXT", use_edns=0, payload=4096)
            assert len(reply.answer[0][0].strings) == TXT_STRINGS
        assert upstream.count() == 2


def test_cache_max_bytes_is_validated() -> None:
    assert kubedns_config.load(None, {}).cache.max_bytes == 16 << 20
    with pytest.raises(ConfigError, match=r"cache\.max_bytes"):
        kubedns_config.load(None, {"cache.max_bytes": 100})
    assert kubedns_config.load(None, {"cache.size": 0, "cache.max_bytes": 0}).cache.size == 0


async def test_failed_queries_go_to_the_error_log_consolidated(
    clock: FakeClock, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    forwarder = Forwarder(forward_config(closed_port()), CacheConfig(size=0), clock=clock)
    monkeypatch.setattr(ERRORS, "_clock", clock)
    monkeypatch.setattr(ERRORS, "_windows", {})
    monkeypatch.setattr(ERRORS, "lines", 2)
    monkeypatch.setattr(ERRORS, "interval", 60.0)
    caplog.set_level(logging.DEBUG, logger="kubedns.errors")
    for i in range(5):
        assert (await ask(forwarder, f"f{i}.test.", "A")).rcode() == dns.rcode.SERVFAIL
    clock.advance(60)
    assert (await ask(forwarder, "g.test.", "A")).rcode() == dns.rcode.SERVFAIL
    lines = [r.getMessage() for r in caplog.records if r.name == "kubedns.errors"]
    assert all(r.levelno == logging.ERROR for r in caplog.records if r.name == "kubedns.errors")
    assert len(lines) == 4
    assert re.match(r"SERVFAIL f0\.test\. A: upstream refused \(f0\.test via pool \.: ", lines[0])
    assert lines[1].startswith("SERVFAIL f1.test. A: upstream refused")
    assert lines[2] == "3 errors like 'upstream refused' occurred in the last 60s"
    assert lines[3].startswith("SERVFAIL g.test. A: upstream refused")
