"""The answer path through ``Responder.respond`` (the transports' seam): UDP size policy,
truncation at whole records, rotation, strict EDNS parsing, one EDNS behaviour for every
error reply, and a reply cache keyed by what shapes a reply and bounded in bytes."""

from __future__ import annotations

import os
import random
import struct
from collections import Counter

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client import REGISTRY

from kubedns.answer.cluster import ClusterZone
from kubedns.answer.respond import Responder
from kubedns.config import RepliesConfig, load
from kubedns.dns.query import udp_limit
from kubedns.index import REQUIRED_KINDS, RecordIndex
from kubedns.objects import Endpoint, EndpointPort, EndpointSlice, Service, ServicePort
from kubedns.sources.events import Replace, Upsert

BIG = "big.shop.svc.cluster.local"


def cluster(endpoints: int = 60) -> RecordIndex:
    """A synced index with ``web`` (ClusterIP) and ``big``, a headless Service whose ready
    endpoints have a named port (so SRV exists)."""
    index = RecordIndex(zone="cluster.local", serial=7)
    for kind in REQUIRED_KINDS:
        index.apply(Replace(kind, ()))
    index.apply(Upsert(Service("shop", "web", "ClusterIP", ("10.96.0.5",), ())))
    port = ServicePort("http", 80, "TCP")
    index.apply(Upsert(Service("shop", "big", "ClusterIP", (), (port,))))
    addresses = [f"10.{1 + i // 60000}.{i // 250 % 240}.{i % 250 + 1}" for i in range(endpoints)]
    slice_ = EndpointSlice(
        "shop",
        "big-1",
        "big",
        tuple(Endpoint(ip, "", True) for ip in addresses),
        (EndpointPort("http", 8080, "TCP"),),
    )
    index.apply(Upsert(slice_))
    return index


def responder(index: RecordIndex | None = None, **replies: object) -> Responder:
    index = index or cluster()
    config = RepliesConfig(**replies)  # type: ignore[arg-type]
    return Responder(ClusterZone(index, load()), replies=config)


def ask(r: Responder, query: dns.message.Message | bytes, *, tcp: bool = False) -> bytes:
    wire = query if isinstance(query, bytes) else query.to_wire()
    reply = r.respond(wire, tcp=tcp)
    assert isinstance(reply, bytes)
    return reply


def parse(wire: bytes) -> dns.message.Message:
    return dns.message.from_wire(wire)


def addresses(message: dns.message.Message) -> list[str]:
    return [rr.to_text() for rrset in message.answer for rr in rrset]


# -- size policy and truncation -----------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "limit"), [(None, 512), (100, 512), (600, 600), (1232, 1232), (65535, 1232)]
)
def test_udp_reply_never_exceeds_the_smaller_of_client_and_our_size(
    payload: int | None, limit: int
) -> None:
    r = responder(cluster(endpoints=100))
    edns = -1 if payload is None else 0
    query = dns.message.make_query(BIG, "A", use_edns=edns, payload=payload or 512)
    wire = ask(r, query)
    reply = parse(wire)
    assert len(wire) <= limit < len(wire) + 16, "as many whole records as fit, no fewer"
    assert reply.flags & dns.flags.TC
    assert 0 < len(addresses(reply)) < 100
    if payload is None:
        assert reply.edns == -1
    else:
        assert reply.edns == 0 and reply.payload == 1232, "we advertise 1232"


def test_tcp_carries_the_whole_answer() -> None:
    reply = parse(ask(responder(), dns.message.make_query(BIG, "A"), tcp=True))
    assert not reply.flags & dns.flags.TC
    assert len(addresses(reply)) == 60


def test_tcp_answer_over_65535_bytes_is_cut_at_whole_records_with_tc() -> None:
    r = responder(cluster(endpoints=5000))  # 5,000 A records: 80,000 bytes
    wire = ask(r, dns.message.make_query(BIG, "A"), tcp=True)
    reply = parse(wire)
    assert len(wire) <= 65535 < len(wire) + 16
    assert reply.flags & dns.flags.TC
    assert 4000 < len(addresses(reply)) < 5000


def test_udp_size_is_configurable() -> None:
    r = responder(udp_size=4096)
    wire = ask(r, dns.message.make_query(BIG, "SRV", use_edns=0, payload=65535))
    assert 1232 < len(wire) <= 4096
    assert parse(wire).payload == 4096


def test_no_reply_grows_past_35_times_its_query() -> None:
    """Amplification: the largest in-zone answers at the largest payload a client may ask."""
    r = responder(cluster(endpoints=2000))
    for qtype in ("A", "AAAA", "SRV", "ANY", "TXT", "PTR"):
        for payload in (None, 512, 1232, 4096, 65535):
            edns = -1 if payload is None else 0
            query = dns.message.make_query(BIG, qtype, use_edns=edns, payload=payload or 512)
            data = query.to_wire()
            wire = ask(r, data)
            assert len(wire) <= 1232
            assert len(wire) / len(data) <= 35, (qtype, payload, len(wire), len(data))


# -- rotation ------------------------------------------------------------------------------


def test_a_records_rotate_from_reply_to_reply_and_keep_the_set() -> None:
    r = responder()
    query = dns.message.make_query(BIG, "A")
    firsts: Counter[str] = Counter()
    expected = sorted(addresses(parse(ask(r, query, tcp=True))))
    for _ in range(120):
        reply = parse(ask(r, query, tcp=True))
        assert sorted(addresses(reply)) == expected
        firsts[addresses(reply)[0]] += 1
    assert len(firsts) == 60, "every endpoint comes first in turn"
    assert max(firsts.values()) == 2


def test_truncated_udp_answers_rotate_their_window() -> None:
    """A client without TCP fallback (musl < 1.2.4) sees different endpoints each time."""
    r = responder()
    seen: set[str] = set()
    for _ in range(60):
        seen.update(addresses(parse(ask(r, dns.message.make_query(BIG, "A")))))
    assert len(seen) == 60


def test_srv_of_equal_priority_rotates_and_additional_stays_valid() -> None:
    r = responder(cluster(endpoints=5))
    query = dns.message.make_query(f"_http._tcp.{BIG}", "SRV")
    firsts = set()
    for _ in range(5):
        reply = parse(ask(r, query, tcp=True))
        targets = [rr.target.to_text() for rr in reply.answer[0]]
        firsts.add(targets[0])
        glue = {rrset.name.to_text() for rrset in reply.additional}
        assert glue == set(targets), "every additional record names an SRV target"
    assert len(firsts) == 5


def test_rotation_can_be_turned_off() -> None:
    r = responder(rotate=False)
    query = dns.message.make_query(BIG, "A")
    orders = {tuple(addresses(parse(ask(r, query, tcp=True)))) for _ in range(10)}
    assert len(orders) == 1


def test_single_records_are_served_from_stored_bytes() -> None:
    r = responder()
    query = dns.message.make_query("web.shop.svc.cluster.local", "A")
    first, second = ask(r, query), ask(r, query)
    assert first == second


# -- strict EDNS and one EDNS behaviour for errors -------------------------------------------


def _with_additional(query: bytes, records: bytes, count: int, *, section: int = 3) -> bytes:
    """``query`` with raw records appended and the count of ``section`` (1 an, 2 ns, 3 ar) set."""
    out = bytearray(query + records)
    offset = 4 + 2 * section
    struct.pack_into("!H", out, offset, struct.unpack_from("!H", out, offset)[0] + count)
    return bytes(out)


OPT = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(lambda q: _with_additional(q, OPT, 1, section=1), id="OPT in the answer"),
        pytest.param(lambda q: _with_additional(q, OPT, 1, section=2), id="OPT in authority"),
        pytest.param(lambda q: _with_additional(q, OPT + OPT, 2), id="two OPTs"),
        pytest.param(
            lambda q: _with_additional(
                q, b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 8) + b"\x00\x0c\x00\x09" + b"1234", 1
            ),
            id="option overruns its record",
        ),
        pytest.param(
            lambda q: _with_additional(q, b"\x01a" + OPT[1:], 1), id="OPT not owned by the root"
        ),
    ],
)
def test_malformed_opt_is_formerr(packet: object) -> None:
    query = dns.message.make_query("web.shop.svc.cluster.local", "A").to_wire()
    data = packet(query)  # type: ignore[operator]
    reply = parse(ask(responder(), data))
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.id == struct.unpack("!H", query[:2])[0]


def _error_replies() -> list[tuple[str, bytes]]:
    base = dns.message.make_query("web.shop.svc.cluster.local", "A", use_edns=0, want_dnssec=True)
    notimp = dns.message.make_query("web.shop.svc.cluster.local", "A", use_edns=0, want_dnssec=True)
    notimp.set_opcode(dns.opcode.STATUS)
    refused = dns.message.make_query("x.example.com", "A", use_edns=0, want_dnssec=True)
    badvers = dns.message.make_query(
        "web.shop.svc.cluster.local", "A", use_edns=1, want_dnssec=True
    )
    axfr = dns.message.make_query("cluster.local", "AXFR", use_edns=0, want_dnssec=True)
    formerr = bytearray(base.to_wire())
    struct.pack_into("!H", formerr, 4, 2)  # two questions
    return [
        ("NOTIMP", notimp.to_wire()),
        ("REFUSED", refused.to_wire()),
        ("BADVERS", badvers.to_wire()),
        ("REFUSED", axfr.to_wire()),
        ("FORMERR", bytes(formerr)),
    ]


@pytest.mark.parametrize(("rcode", "data"), _error_replies(), ids=lambda v: str(v)[:12])
def test_every_error_reply_speaks_the_same_edns(rcode: str, data: bytes) -> None:
    wire = ask(responder(), data)
    reply = parse(wire)
    assert dns.rcode.to_text(reply.rcode()) == rcode
    if rcode == "FORMERR":
        return  # the OPT of a packet that does not parse is not trusted
    assert reply.edns == 0 and reply.payload == 1232
    assert reply.ednsflags & dns.flags.DO, "DO echoed"
    assert not reply.options


# -- the reply cache -----------------------------------------------------------------------


def _padded(name: str, qtype: str) -> bytes:
    options: list[dns.edns.Option] = [
        dns.edns.GenericOption(dns.edns.OptionType.PADDING, os.urandom(random.randrange(1, 200)))
    ]
    if random.random() < 0.5:
        options.append(dns.edns.GenericOption(dns.edns.OptionType.COOKIE, os.urandom(8)))
    cased = "".join(c.upper() if random.random() < 0.5 else c for c in name)
    return dns.message.make_query(cased, qtype, use_edns=0, options=options).to_wire()


def test_ignored_edns_options_and_letter_case_hit_the_cache() -> None:
    r = responder()
    ask(r, _padded(BIG, "A"))
    stored = r._zone_replies.bytes
    for _ in range(500):
        data = _padded(BIG, "A")
        reply = parse(ask(r, data))
        assert reply.question[0].name.to_text().rstrip(".") == dns.message.from_wire(data).question[
            0
        ].name.to_text().rstrip("."), "the question comes back as asked"
    assert r._zone_replies.bytes == stored, "no new entry for padding, cookies or case"


def test_reply_cache_is_bounded_in_bytes() -> None:
    r = responder(cache_bytes=200_000)
    for i in range(3000):
        ask(r, dns.message.make_query(f"n{i}.shop.svc.cluster.local", "A"))
    assert 0 < r._zone_replies.bytes <= 200_000 // 2
    assert len(r._zone_replies.entries) < 3000


def test_payload_variants_reuse_the_encoded_records() -> None:
    """A new payload size re-fits the stored template; it does not ask the zone again."""
    r = responder(cluster(endpoints=2000))
    calls = 0
    answer = r.zone.answer

    def counting(qname: str, qtype: int) -> object:
        nonlocal calls
        calls += 1
        return answer(qname, qtype)

    r.zone.answer = counting  # type: ignore[assignment, method-assign]
    for payload in range(600, 1232, 7):
        ask(r, dns.message.make_query(BIG, "SRV", use_edns=0, payload=payload))
    assert calls == 1


def test_bytearray_and_memoryview_queries_are_answered() -> None:
    r = responder()
    data = dns.message.make_query("web.shop.svc.cluster.local", "A").to_wire()
    for packet in (bytearray(data), memoryview(data)):
        reply = r.respond(packet, tcp=False)  # type: ignore[arg-type]
        assert isinstance(reply, bytes) and parse(reply).answer


@pytest.mark.parametrize(
    ("payload", "udp_size", "query_size", "limit"),
    [
        (1232, 1232, 60, 1232),  # an ordinary cluster query: the payload size rules
        (65535, 1232, 60, 1232),  # capped at ours
        (1232, 1232, 33, 35 * 33),  # a short name with EDNS: 35 times the query
        (4096, 4096, 40, 35 * 40),
        (1232, 1232, 12, 512),  # never below 512
        (100, 1232, 60, 512),  # RFC 6891 6.2.5
    ],
)
def test_udp_limit(payload: int, udp_size: int, query_size: int, limit: int) -> None:
    assert udp_limit(payload, udp_size, query_size) == limit


def test_an_internal_error_is_servfail_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    r = responder()

    def broken(qname: str, qtype: int) -> object:
        raise RuntimeError("a bug")

    r.zone.answer = broken  # type: ignore[assignment, method-assign]
    before = REGISTRY.get_sample_value("coredns_panics_total") or 0.0
    query = dns.message.make_query("web.shop.svc.cluster.local", "A", use_edns=0)
    reply = parse(ask(r, query))
    assert reply.rcode() == dns.rcode.SERVFAIL and reply.id == query.id and reply.edns == 0
    assert (REGISTRY.get_sample_value("coredns_panics_total") or 0.0) == before + 1
    assert "a bug" in caplog.text
