"""The answer path without sockets: parsing, error rcodes and the wire-bytes fast path."""

from __future__ import annotations

import random
import struct

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from kubedns.answer.cluster import ClusterZone
from kubedns.answer.respond import Responder
from kubedns.config import load
from kubedns.dns.query import QueryError, parse_query
from kubedns.index import REQUIRED_KINDS, RecordIndex
from kubedns.objects import Service, ServicePort
from kubedns.sources.events import Replace, Upsert


def make_responder() -> tuple[Responder, RecordIndex]:
    index = RecordIndex(zone="cluster.local", serial=7)
    for kind in REQUIRED_KINDS:
        index.apply(Replace(kind, ()))
    index.apply(Upsert(Service("shop", "web", "ClusterIP", ("10.96.0.5",), ())))
    return Responder(ClusterZone(index, load())), index


def ask(
    responder: Responder, query: dns.message.Message, *, tcp: bool = False
) -> dns.message.Message:
    reply = responder.respond(query.to_wire(), tcp=tcp)
    assert isinstance(reply, bytes)
    return dns.message.from_wire(reply)


def test_fast_path_echoes_id_and_case_of_each_query() -> None:
    responder, _ = make_responder()
    first = ask(responder, dns.message.make_query("web.shop.svc.cluster.local", "A"))
    query = dns.message.make_query("WEB.Shop.svc.cluster.LOCAL", "A")
    wire = responder.respond(query.to_wire(), tcp=False)
    assert isinstance(wire, bytes)
    assert wire[:2] == query.to_wire()[:2]
    second = dns.message.from_wire(wire)
    assert second.question[0].name.to_text() == "WEB.Shop.svc.cluster.LOCAL."
    assert second.answer[0].name.to_text() == "WEB.Shop.svc.cluster.LOCAL."
    assert [rr.to_text() for rr in first.answer[0]] == [rr.to_text() for rr in second.answer[0]]


def test_fast_path_forgets_answers_when_the_index_changes() -> None:
    responder, index = make_responder()
    query = dns.message.make_query("web.shop.svc.cluster.local", "A")
    assert ask(responder, query).answer[0][0].to_text() == "10.96.0.5"
    index.apply(Upsert(Service("shop", "web", "ClusterIP", ("10.96.0.9",), ())))
    assert ask(responder, query).answer[0][0].to_text() == "10.96.0.9"


def test_fast_path_keeps_types_apart_even_when_a_byte_looks_like_a_letter() -> None:
    # qtype 65 is byte 0x41 ("A"): lower-casing the whole question would alias it with 97.
    responder, _ = make_responder()
    https = ask(
        responder,
        dns.message.make_query("web.shop.svc.cluster.local", dns.rdatatype.RdataType.make(65)),
    )
    other = ask(
        responder,
        dns.message.make_query("web.shop.svc.cluster.local", dns.rdatatype.RdataType.make(97)),
    )
    assert https.question[0].rdtype == 65
    assert other.question[0].rdtype == 97


def test_udp_and_tcp_fit_differently() -> None:
    index = RecordIndex(zone="cluster.local")
    for kind in REQUIRED_KINDS:
        index.apply(Replace(kind, ()))
    ports = tuple(ServicePort(f"p{i}", 1000 + i, "TCP") for i in range(60))
    index.apply(Upsert(Service("shop", "big", "ClusterIP", ("10.96.0.8",), ports)))
    responder = Responder(ClusterZone(index, load()))
    query = dns.message.make_query("big.shop.svc.cluster.local", "SRV", use_edns=False)
    udp_wire = responder.respond(query.to_wire(), tcp=False)
    assert isinstance(udp_wire, bytes) and len(udp_wire) <= 512
    udp = dns.message.from_wire(udp_wire)
    assert udp.flags & dns.flags.TC and 0 < len(udp.answer[0]) < 60  # the whole records that fit
    tcp = ask(responder, query, tcp=True)
    assert not tcp.flags & dns.flags.TC
    assert len(tcp.answer[0]) == 60


@pytest.mark.parametrize(
    ("packet", "rcode"),
    [
        (struct.pack("!HHHHHH", 1, 0x0100, 0, 0, 0, 0), dns.rcode.FORMERR),
        (
            struct.pack("!HHHHHH", 1, 0x0100, 2, 0, 0, 0) + b"\x00\x00\x01\x00\x01" * 2,
            dns.rcode.FORMERR,
        ),
        (struct.pack("!HHHHHH", 1, 0x2100, 1, 0, 0, 0) + b"\x00\x00\x01\x00\x01", dns.rcode.NOTIMP),
        (struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x05abc", dns.rcode.FORMERR),
        (
            struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",
            dns.rcode.FORMERR,
        ),
        (
            struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 1) + b"\x00\x00\x01\x00\x01\x00\x00",
            dns.rcode.FORMERR,
        ),
    ],
    ids=[
        "no-question",
        "two-questions",
        "opcode-status",
        "cut-name",
        "pointer-in-question",
        "cut-additional",
    ],
)
def test_malformed_queries_get_their_rcode(packet: bytes, rcode: int) -> None:
    responder, _ = make_responder()
    reply = responder.respond(packet, tcp=False)
    assert isinstance(reply, bytes)
    header = struct.unpack("!HHHHHH", reply[:12])
    assert header[0] == 1
    assert header[1] & 0x8000
    assert header[1] & 0xF == rcode


@pytest.mark.parametrize(
    "packet", [b"", b"\x00" * 11, struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0)]
)
def test_short_packets_and_responses_are_dropped(packet: bytes) -> None:
    responder, _ = make_responder()
    assert responder.respond(packet, tcp=False) is None


def test_badvers_for_edns_version_one() -> None:
    responder, _ = make_responder()
    query = dns.message.make_query("web.shop.svc.cluster.local", "A", use_edns=1)
    reply = ask(responder, query)
    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.edns == 0
    assert not reply.answer


def test_unknown_edns_option_is_not_echoed_and_do_is() -> None:
    responder, _ = make_responder()
    option = dns.edns.GenericOption(dns.edns.OptionType.make(65001), b"hello")
    query = dns.message.make_query(
        "web.shop.svc.cluster.local", "A", use_edns=0, want_dnssec=True, options=[option]
    )
    reply = ask(responder, query)
    assert reply.edns == 0
    assert reply.options == ()
    assert reply.ednsflags & dns.flags.DO


def test_a_second_opt_record_is_formerr() -> None:
    query = dns.message.make_query("web.shop.svc.cluster.local", "A", use_edns=0)
    wire = bytearray(query.to_wire())
    opt = wire[-11:]
    wire[11] = 2  # ARCOUNT
    with pytest.raises(QueryError):
        parse_query(bytes(wire + opt))


def test_an_internal_error_becomes_servfail() -> None:
    responder, index = make_responder()

    def broken(name: str) -> None:
        raise RuntimeError("boom")

    index.records = broken  # type: ignore[method-assign]
    reply = ask(responder, dns.message.make_query("web.shop.svc.cluster.local", "A"))
    assert reply.rcode() == dns.rcode.SERVFAIL


def test_mutated_packets_never_raise() -> None:
    """Every flipped byte or cut of a real query gets bytes or silence, never an exception."""

    responder, _ = make_responder()
    seeds = [
        dns.message.make_query("web.shop.svc.cluster.local", "A").to_wire(),
        dns.message.make_query(
            "_http._tcp.web.shop.svc.cluster.local", "SRV", want_dnssec=True
        ).to_wire(),
        dns.message.make_query("5.0.96.10.in-addr.arpa", "PTR", use_edns=0).to_wire(),
    ]
    rng = random.Random(2308)
    for _ in range(3000):
        packet = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            packet[rng.randrange(len(packet))] = rng.randrange(256)
        if rng.random() < 0.3:
            packet = packet[: rng.randrange(len(packet))]
        for tcp in (False, True):
            reply = responder.respond(bytes(packet), tcp=tcp)
            assert reply is None or isinstance(reply, bytes)
            if isinstance(reply, bytes):
                assert reply[:2] == bytes(packet[:2])
