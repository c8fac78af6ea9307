"""The forwarder against real resolvers (dnsmasq, unbound): answers and flags are theirs."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dnslib

from kubedns.config import CacheConfig, HostPort
from kubedns.forward import Forwarder
from tests.forward.conftest import BIG_TXT
from tests.forward.fakes import FakeClock, FakeUpstream, answer_a, answer_lines, ask, forward_config


def direct(address: HostPort, name: str, rdtype: str, **args: object) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **args)  # type: ignore[arg-type]
    return dns.query.udp(query, address.host, port=address.port, timeout=2)


async def test_answers_match_the_upstream_for_a_table_of_names(dnsmasq: HostPort) -> None:
    forwarder = Forwarder(forward_config(dnsmasq), CacheConfig(size=0))
    cases = [
        ("www.example.org.", "A", dns.rcode.NOERROR),
        ("www.example.org.", "AAAA", dns.rcode.NOERROR),
        ("www.example.org.", "MX", dns.rcode.NOERROR),  # NODATA
        ("txt.example.org.", "TXT", dns.rcode.NOERROR),
        ("alias.example.org.", "A", dns.rcode.NOERROR),  # CNAME then A
        ("nope.example.org.", "A", dns.rcode.NXDOMAIN),
        ("anything.example.com.", "A", dns.rcode.NOERROR),  # dnsmasq --address wildcard
    ]
    for name, rdtype, rcode in cases:
        ours = await ask(forwarder, name, rdtype)
        theirs = direct(dnsmasq, name, rdtype)
        assert ours.rcode() == theirs.rcode() == rcode, name
        assert answer_lines(ours) == answer_lines(theirs), name
        assert ours.flags == theirs.flags & ~dns.flags.AA, name  # AA: we are not the authority


async def test_question_letter_case_is_echoed_even_from_the_cache(dnsmasq: HostPort) -> None:
    forwarder = Forwarder(forward_config(dnsmasq), CacheConfig())
    for name in ("www.example.org.", "WwW.ExAmPlE.oRg."):
        query = dns.message.make_query(name, "A")
        wire = query.to_wire()
        reply = await forwarder.resolve(wire)
        question_end = 12 + len(name) + 1 + 4
        assert reply[12:question_end] == wire[12:question_end]
        assert reply[:2] == wire[:2]
        assert answer_lines(dns.message.from_wire(reply))[0].endswith("A 192.0.2.10")


async def test_authoritative_bit_is_cleared_and_edns_do_cd_relayed(unbound: HostPort) -> None:
    forwarder = Forwarder(forward_config(unbound), CacheConfig())
    theirs = direct(unbound, "www.example.net.", "A", want_dnssec=True)
    assert theirs.flags & dns.flags.AA
    for _ in range(2):  # from upstream, then from the cache
        query = dns.message.make_query("www.example.net.", "A", want_dnssec=True)
        query.flags |= dns.flags.CD
        reply = dns.message.from_wire(await forwarder.resolve(query.to_wire()))
        assert not reply.flags & dns.flags.AA
        assert reply.flags & dns.flags.CD
        assert reply.edns == 0
        assert reply.ednsflags & dns.flags.DO
        assert answer_lines(reply)[0].split()[-1] == "192.0.2.20"


async def test_client_without_edns_gets_no_opt_record(unbound: HostPort) -> None:
    forwarder = Forwarder(forward_config(unbound), CacheConfig())
    await ask(forwarder, "www.example.net.", "A", use_edns=0)
    reply = await ask(forwarder, "www.example.net.", "A", use_edns=False)
    assert reply.edns == -1
    assert answer_lines(reply)


async def test_truncated_udp_reply_is_retried_over_tcp(dnsmasq: HostPort) -> None:
    forwarder = Forwarder(forward_config(dnsmasq), CacheConfig())
    truncated = direct(dnsmasq, "big.example.org.", "TXT", use_edns=False)
    assert truncated.flags & dns.flags.TC
    reply = await ask(forwarder, "big.example.org.", "TXT", use_edns=False)
    assert not reply.flags & dns.flags.TC
    text = answer_lines(reply)[0]
    assert all(chunk in text for chunk in BIG_TXT)


async def test_negative_answer_is_cached_for_the_soa_minimum(unbound: HostPort) -> None:
    clock = FakeClock()
    forwarder = Forwarder(forward_config(unbound), CacheConfig(), clock=clock)
    first = await ask(forwarder, "nope.example.net.", "A")
    assert first.rcode() == dns.rcode.NXDOMAIN
    clock.advance(20)
    second = await ask(forwarder, "nope.example.net.", "A")
    assert second.rcode() == dns.rcode.NXDOMAIN
    assert second.authority[0].ttl == 40  # SOA MINIMUM 60, aged 20 s
    clock.advance(40)
    third = await ask(forwarder, "nope.example.net.", "A")
    assert third.authority[0].ttl == 60  # expired: fetched again


async def test_negative_ttl_is_capped_by_negative_max_ttl(unbound: HostPort) -> None:
    clock = FakeClock()
    cache = CacheConfig(negative_max_ttl=10)
    forwarder = Forwarder(forward_config(unbound), cache, clock=clock)
    await ask(forwarder, "www.example.net.", "MX")
    clock.advance(3)
    nodata = await ask(forwarder, "www.example.net.", "MX")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.authority[0].ttl == 7


async def test_stub_domain_goes_to_its_own_upstream(dnsmasq: HostPort, unbound: HostPort) -> None:
    config = forward_config(dnsmasq, stub_domains={"Example.NET.": (unbound,)})
    forwarder = Forwarder(config, CacheConfig())
    via_stub = await ask(forwarder, "www.example.net.", "A")
    assert answer_lines(via_stub)[0].split()[-1] == "192.0.2.20"
    via_default = await ask(forwarder, "www.example.org.", "A")
    assert answer_lines(via_default)[0].split()[-1] == "192.0.2.10"


async def test_resolve_addresses_chases_a_cname_target(dnsmasq: HostPort) -> None:
    forwarder = Forwarder(forward_config(dnsmasq), CacheConfig())
    records = await forwarder.resolve_addresses("alias.example.org", dnslib.QTYPE.A)
    assert [(dnslib.QTYPE[r.rtype], str(r.rdata)) for r in records] == [
        ("CNAME", "www.example.org"),
        ("A", "192.0.2.10"),
    ]
    assert await forwarder.resolve_addresses("nope.example.org", dnslib.QTYPE.A) == []


async def test_resolve_addresses_uses_stub_domains(dnsmasq: HostPort, unbound: HostPort) -> None:
    config = forward_config(dnsmasq, stub_domains={"example.net": (unbound,)})
    forwarder = Forwarder(config, CacheConfig())
    records = await forwarder.resolve_addresses("www.example.net.", dnslib.QTYPE.AAAA)
    assert [str(r.rdata) for r in records] == ["2001:db8::20"]


async def test_longest_stub_suffix_wins_over_a_shorter_one(unbound: HostPort) -> None:
    async with FakeUpstream(answer_a("192.0.2.99")) as deeper:
        stubs = {"example.net": (unbound,), "deep.example.net": (deeper.address,)}
        forwarder = Forwarder(forward_config(unbound, stub_domains=stubs), CacheConfig())
        deep = await ask(forwarder, "x.Deep.example.net.", "A")
        assert answer_lines(deep) == ["x.Deep.example.net. 300 IN A 192.0.2.99"]
        shallow = await ask(forwarder, "deep.example.net.", "A")
        assert answer_lines(shallow) == ["deep.example.net. 300 IN A 192.0.2.99"]
        assert deeper.count() == 2
        other = await ask(forwarder, "www.example.net.", "A")
        assert answer_lines(other)[0].split()[-1] == "192.0.2.20"
