"""Issue 2 section 5, the protocol hardened: letter case, truncation, TCP, EDNS, opcodes and
malformed packets. Malformed and unusual packets are built byte by byte and sent on raw
sockets; replies are parsed by dnspython."""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.opcode
import dns.rcode
import pytest

from tests.zone.dnsclient import (
    Address,
    ask,
    make_query,
    opt_record,
    parse,
    raw_query,
    tcp_connect,
    tcp_exchange,
    tcp_frame,
    tcp_read,
    udp_exchange,
    udp_silent,
    wire_name,
)
from tests.zone.test_answers import WEB, Z

MANY = f"many.big.svc.{Z}"
MANY_SRV = f"_http._tcp.{MANY}"
MANY_A = {f"{MANY}. 5 in a 10.50.0.{n}" for n in range(1, 61)}
HEADER_LEN = 12


def assert_alive(addr: Address) -> None:
    """The server still answers a plain query after whatever the test sent."""
    reply = ask(addr, WEB, "A")
    assert reply.answer == [f"{WEB}. 5 in a 10.96.1.10"]


# -- letter case -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "qtype"),
    [
        ("Web.SHOP.svc.Cluster.LOCAL", 1),
        ("wEb.ShOp.SvC.cLuStEr.LoCaL", 28),
        ("_HTTP._Tcp.WEB.shop.SVC.cluster.local", 33),
        ("NoThInG.shop.svc.cluster.local", 1),
        ("DNS-Version.Cluster.Local", 16),
        ("10.1.96.10.IN-ADDR.ARPA", 12),
        ("Example.COM", 1),
    ],
)
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_question_echoed_byte_for_byte(addr: Address, asked: str, qtype: int, tcp: bool) -> None:
    """Matching is case-insensitive; the reply's question is the query's, exactly as sent.
    Each name is asked lower case first, so a reply cache keyed on the lowered name is hit."""
    for name in (asked.lower(), asked):
        query = raw_query(wire_name(name), qtype, msg_id=0x4242)
        raw = tcp_exchange(addr, query) if tcp else udp_exchange(addr, query)
        question = query[HEADER_LEN:]
        assert raw[:2] == b"\x42\x42"
        assert raw[HEADER_LEN : HEADER_LEN + len(question)] == question
        reply = parse(raw)
        for rrset in reply.msg.answer:
            if rrset.name.to_text().lower() == f"{asked.lower()}.":
                # Owner names are case-insensitive; most servers echo the asked case.
                assert rrset.name.to_text().lower() == f"{name.lower()}."


def test_case_insensitive_answers_equal(addr: Address) -> None:
    lower = ask(addr, f"_http._tcp.{WEB}", "SRV")
    upper = ask(addr, f"_http._tcp.{WEB}".upper(), "SRV")
    assert lower.answer == upper.answer
    assert lower.additional == upper.additional


# -- truncation and TCP ------------------------------------------------------------------------


def test_udp_without_edns_truncates_at_512(addr: Address) -> None:
    reply = ask(addr, MANY, "A")
    assert len(reply.raw) <= 512
    assert reply.tc
    assert reply.aa
    assert reply.rcode_text == "NOERROR"
    assert reply.msg.question[0].name.to_text().lower() == f"{MANY}."
    # As many whole records as fit (CoreDNS's Truncate), TC set so that a client that can
    # retries over TCP; one that cannot (musl before 1.2.4) still gets addresses.
    assert 0 < len(reply.answer) < 60
    assert len(reply.raw) + 16 > 512, "another record would have fitted"


@pytest.mark.parametrize("payload", [600, 1000])
def test_udp_truncates_at_edns_payload(addr: Address, payload: int) -> None:
    reply = ask(addr, MANY, "A", edns=0, payload=payload)
    assert len(reply.raw) <= payload
    assert reply.tc
    assert reply.msg.edns == 0, "a truncated EDNS reply still carries OPT"


def test_udp_edns_payload_below_512_means_512(addr: Address) -> None:
    """RFC 6891 6.2.5: values below 512 are treated as 512."""
    reply = ask(addr, MANY, "A", edns=0, payload=100)
    assert len(reply.raw) <= 512
    assert reply.tc
    small = ask(addr, f"_http._tcp.{WEB}", "SRV", edns=0, payload=100)
    assert not small.tc
    assert len(small.answer) == 1


def test_udp_edns_large_payload_carries_everything(addr: Address) -> None:
    reply = ask(addr, MANY, "A", edns=0, payload=4096)
    assert not reply.tc
    assert set(reply.answer) == MANY_A
    assert reply.counts.an == 60


def test_tcp_carries_the_full_answer(addr: Address) -> None:
    reply = ask(addr, MANY, "A", tcp=True)
    assert not reply.tc
    assert set(reply.answer) == MANY_A
    assert reply.counts.an == 60


def test_tcp_carries_srv_with_all_additional(addr: Address) -> None:
    reply = ask(addr, MANY_SRV, "SRV", tcp=True)
    assert not reply.tc
    assert reply.counts.an == 60
    assert set(reply.additional) == {
        f"10-50-0-{n}.{MANY}. 5 in a 10.50.0.{n}" for n in range(1, 61)
    }


def test_udp_srv_trims_additional_before_truncating(addr: Address) -> None:
    """Additional records are optional: dropping them fits 60 SRV in 4096 bytes without TC;
    whatever comes back fits the payload and never holds a partial answer RRset."""
    reply = ask(addr, MANY_SRV, "SRV", edns=0, payload=4096)
    assert len(reply.raw) <= 1232, "the client's 4096 is capped at our UDP size"
    assert reply.tc and 0 < reply.counts.an < 60 and reply.counts.ar == 1  # only the OPT
    udp512 = ask(addr, MANY_SRV, "SRV")
    assert udp512.tc and 0 < udp512.counts.an < reply.counts.an
    assert len(udp512.raw) <= 512


def test_udp_drops_optional_additional_without_tc(addr: Address) -> None:
    """RFC 2181 9: leaving out additional records does not need TC; the answer stays whole."""
    reply = ask(addr, f"_postgres._tcp.db.data.svc.{Z}", "SRV")
    assert len(reply.raw) <= 512
    assert not reply.tc
    assert reply.counts.an == 5
    full = ask(addr, f"_postgres._tcp.db.data.svc.{Z}", "SRV", tcp=True)
    assert set(reply.additional) <= set(full.additional)
    assert len(full.additional) == 7


def test_tcp_several_queries_on_one_connection(addr: Address) -> None:
    with tcp_connect(addr) as sock:
        for index, (qname, qtype) in enumerate(
            [(WEB, "A"), (WEB, "AAAA"), (MANY, "A"), (f"nothing.{Z}", "A"), ("example.com", "A")]
        ):
            query = make_query(qname, qtype)
            query.id = 1000 + index
            sock.sendall(tcp_frame(query.to_wire()))
            reply = parse(tcp_read(sock))
            assert reply.msg.id == 1000 + index
            assert reply.msg.question[0].name.to_text().lower() == f"{qname.lower()}."


def test_tcp_pipelined_queries(addr: Address) -> None:
    """RFC 7766 6.2.1: a client may send several queries without waiting; each gets its reply."""
    queries = []
    for index, (qname, qtype) in enumerate(
        [(WEB, "A"), (MANY, "A"), (f"_http._tcp.{WEB}", "SRV"), (f"db.data.svc.{Z}", "AAAA")]
    ):
        query = make_query(qname, qtype)
        query.id = 2000 + index
        queries.append(query)
    with tcp_connect(addr) as sock:
        sock.sendall(b"".join(tcp_frame(q.to_wire()) for q in queries))
        replies = {parse(tcp_read(sock)).msg.id: None for _ in queries}
    assert set(replies) == {q.id for q in queries}


def test_tcp_frame_split_across_segments(addr: Address) -> None:
    wire = make_query(WEB, "A").to_wire()
    framed = tcp_frame(wire)
    with tcp_connect(addr) as sock:
        sock.sendall(framed[:1])
        sock.sendall(framed[1:7])
        sock.sendall(framed[7:])
        reply = parse(tcp_read(sock))
    assert reply.answer == [f"{WEB}. 5 in a 10.96.1.10"]


def test_tcp_client_leaving_mid_frame_does_not_hurt(addr: Address) -> None:
    with tcp_connect(addr) as sock:
        sock.sendall(b"\x00\x40abc")
    assert_alive(addr)


# -- EDNS (RFC 6891) ---------------------------------------------------------------------------


def test_no_opt_unless_asked(addr: Address) -> None:
    for qname, qtype in ((WEB, "A"), (f"nothing.{Z}", "A"), ("example.com", "A")):
        reply = ask(addr, qname, qtype)
        assert reply.msg.edns == -1
        assert reply.counts.ar == len(reply.additional)


def test_opt_when_asked(addr: Address) -> None:
    for qname, qtype in ((WEB, "A"), (f"nothing.{Z}", "A"), ("example.com", "A")):
        reply = ask(addr, qname, qtype, edns=0)
        assert reply.msg.edns == 0
        assert reply.msg.payload >= 512
        assert not reply.msg.ednsflags & dns.flags.DO


def test_edns_version_1_is_badvers(addr: Address) -> None:
    query = raw_query(wire_name(WEB), arcount=1, tail=opt_record(version=1))
    reply = parse(udp_exchange(addr, query))
    assert reply.msg.rcode() == dns.rcode.BADVERS
    assert reply.msg.edns == 0, "BADVERS names the highest version we do speak"
    assert reply.msg.answer == []


def test_edns_unknown_option_is_not_echoed(addr: Address) -> None:
    option = struct.pack("!HH", 65001, 4) + b"\xde\xad\xbe\xef"
    query = raw_query(wire_name(WEB), arcount=1, tail=opt_record(options=option))
    reply = parse(udp_exchange(addr, query))
    assert reply.rcode_text == "NOERROR"
    assert reply.answer == [f"{WEB}. 5 in a 10.96.1.10"]
    assert reply.msg.edns == 0
    assert not reply.msg.options


def test_edns_version_1_with_unknown_option(addr: Address) -> None:
    option = struct.pack("!HH", 65001, 1) + b"\x00"
    query = raw_query(wire_name(WEB), arcount=1, tail=opt_record(version=1, options=option))
    reply = parse(udp_exchange(addr, query))
    assert reply.msg.rcode() == dns.rcode.BADVERS
    assert not reply.msg.options


def test_edns_do_bit_echoed(addr: Address) -> None:
    reply = ask(addr, WEB, "A", dnssec=True)
    assert reply.msg.edns == 0
    assert reply.msg.ednsflags & dns.flags.DO
    assert reply.answer == [f"{WEB}. 5 in a 10.96.1.10"]


def test_edns_unknown_flags_not_echoed(addr: Address) -> None:
    query = raw_query(wire_name(WEB), arcount=1, tail=opt_record(flags=0x4000))
    reply = parse(udp_exchange(addr, query))
    assert reply.rcode_text == "NOERROR"
    assert reply.msg.ednsflags & 0x7FFF == 0


def test_two_opt_records_are_formerr(addr: Address) -> None:
    query = raw_query(wire_name(WEB), arcount=2, tail=opt_record() + opt_record())
    reply = parse(udp_exchange(addr, query))
    assert reply.rcode_text == "FORMERR"


def test_header_flags(addr: Address) -> None:
    """QR and AA set; RD and CD copied; Z and AD (not validated) clear; RA clear (no
    recursion yet)."""
    query = raw_query(wire_name(WEB), flags=0x0100 | 0x0040 | 0x0020 | 0x0010)
    reply = parse(udp_exchange(addr, query))
    assert reply.flags & dns.flags.QR
    assert reply.flags & dns.flags.AA
    assert reply.flags & dns.flags.RD
    assert reply.flags & dns.flags.CD
    assert not reply.flags & (0x0040 | dns.flags.AD | dns.flags.RA | dns.flags.TC)
    plain = parse(udp_exchange(addr, raw_query(wire_name(WEB), flags=0)))
    assert not plain.flags & dns.flags.RD


# -- opcodes, counts, malformed packets --------------------------------------------------------


@pytest.mark.parametrize("opcode", [1, 2, 4, 5, 15])
def test_other_opcodes_are_notimp(addr: Address, opcode: int) -> None:
    query = raw_query(wire_name(WEB), flags=opcode << 11, msg_id=0x7777)
    raw = udp_exchange(addr, query)
    # Read the header by hand: dnspython parses UPDATE (5) replies by UPDATE's own rules.
    msg_id, flags = struct.unpack_from("!HH", raw)
    assert msg_id == 0x7777
    assert flags & dns.flags.QR
    assert flags & 0x000F == dns.rcode.NOTIMP
    assert (flags >> 11) & 0xF == opcode
    assert not flags & dns.flags.AA


def test_qdcount_zero_is_formerr(addr: Address) -> None:
    header = struct.pack("!HHHHHH", 0x1111, 0x0100, 0, 0, 0, 0)
    reply = parse(udp_exchange(addr, header))
    assert reply.msg.id == 0x1111
    assert reply.rcode_text == "FORMERR"
    assert reply.flags & dns.flags.QR


def test_qdcount_two_is_formerr(addr: Address) -> None:
    question = wire_name(WEB) + b"\x00\x01\x00\x01"
    packet = struct.pack("!HHHHHH", 0x2222, 0x0100, 2, 0, 0, 0) + question + question
    raw = udp_exchange(addr, packet)
    assert raw[:2] == b"\x22\x22"
    assert raw[2] & 0x80
    assert raw[3] & 0x0F == dns.rcode.FORMERR


@pytest.mark.parametrize("size", [0, 1, 2, 11])
def test_too_short_for_a_header_is_dropped(addr: Address, size: int) -> None:
    probe = raw_query(wire_name(WEB), msg_id=0xCAFE)
    assert udp_silent(addr, b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00"[:size], probe)
    assert_alive(addr)


def test_udp_silent_notices_a_reply(addr: Address) -> None:
    """The helper itself: a packet that is answered is not taken for silence."""
    probe = raw_query(wire_name(WEB), msg_id=0xCAFE)
    assert not udp_silent(addr, raw_query(wire_name(WEB), msg_id=0xBEEF), probe)


def test_response_packets_are_dropped(addr: Address) -> None:
    packet = raw_query(wire_name(WEB), flags=0x8100, msg_id=0xBEEF)
    assert udp_silent(addr, packet, raw_query(wire_name(WEB), msg_id=0xCAFE))
    assert_alive(addr)


@pytest.mark.parametrize(
    "body",
    [
        b"\x03web",  # name runs off the end
        b"\x03web\x00\x00",  # type and class cut short
        b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",  # reserved label type 0x40
        b"\xc0\x0c\x00\x01\x00\x01",  # compression pointer in the question, pointing at itself
        (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",  # name longer than 255 octets
        b"\xff" * 40,
    ],
    ids=["name-cut", "type-cut", "label-0x40", "pointer-loop", "name-too-long", "garbage"],
)
def test_malformed_is_formerr(addr: Address, body: bytes) -> None:
    packet = struct.pack("!HHHHHH", 0x3333, 0x0100, 1, 0, 0, 0) + body
    raw = udp_exchange(addr, packet)
    assert raw[:2] == b"\x33\x33"
    assert raw[2] & 0x80
    assert raw[3] & 0x0F == dns.rcode.FORMERR
    assert_alive(addr)


def test_record_counts_past_the_end_are_formerr(addr: Address) -> None:
    question = wire_name(WEB) + b"\x00\x01\x00\x01"
    packet = struct.pack("!HHHHHH", 0x4444, 0x0100, 1, 0, 0, 2) + question + opt_record()
    reply = parse(udp_exchange(addr, packet))
    assert reply.rcode_text == "FORMERR"


def test_garbage_over_tcp_is_formerr_and_connection_survives(addr: Address) -> None:
    packet = struct.pack("!HHHHHH", 0x5555, 0x0100, 1, 0, 0, 0) + b"\x05ab"
    with tcp_connect(addr) as sock:
        sock.sendall(tcp_frame(packet))
        raw = tcp_read(sock)
        assert raw[3] & 0x0F == dns.rcode.FORMERR
        sock.sendall(tcp_frame(make_query(WEB, "A").to_wire()))
        assert parse(tcp_read(sock)).answer == [f"{WEB}. 5 in a 10.96.1.10"]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("qtype", ["AXFR", "IXFR"])
def test_zone_transfer_refused(addr: Address, qtype: str, tcp: bool) -> None:
    reply = ask(addr, Z, qtype, tcp=tcp)
    assert reply.rcode_text == "REFUSED"
    assert reply.msg.answer == []


@pytest.mark.parametrize(
    ("qname", "qtype", "rdclass"),
    [("version.bind", "TXT", "CH"), (WEB, "A", "CH"), (Z, "SOA", "HS"), (WEB, "A", "ANY")],
)
def test_other_classes_refused(addr: Address, qname: str, qtype: str, rdclass: str) -> None:
    reply = ask(addr, qname, qtype, rdclass=rdclass)
    assert reply.rcode_text == "REFUSED"
    assert reply.msg.answer == []


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_reply_cache_respects_flags_and_edns(addr: Address, tcp: bool) -> None:
    """The same name asked with different RD/CD, EDNS and DO, alternately: each reply matches
    its own query (a reply cache keyed too loosely would mix them up)."""
    name = wire_name(f"v6only.shop.svc.{Z}")
    variants = [
        (0x0100, b"", 0),
        (0x0000, b"", 0),
        (0x0110, b"", 0),
        (0x0100, opt_record(), 1),
        (0x0100, opt_record(do=True), 1),
        (0x0000, opt_record(payload=512), 1),
    ]
    for _ in range(2):
        for flags, tail, arcount in variants:
            packet = raw_query(name, 28, flags=flags, tail=tail, arcount=arcount)
            raw = tcp_exchange(addr, packet) if tcp else udp_exchange(addr, packet)
            reply = parse(raw)
            assert reply.flags & 0x0110 == flags & 0x0110
            assert (reply.msg.edns == 0) is bool(tail)
            if tail:
                assert bool(reply.msg.ednsflags & dns.flags.DO) is (tail[7] & 0x80 != 0)
            assert reply.answer == [f"v6only.shop.svc.{Z}. 5 in aaaa fd00:96::20"]


def test_query_id_and_opcode_echoed(addr: Address) -> None:
    for msg_id in (0, 1, 0xFFFF):
        raw = udp_exchange(addr, raw_query(wire_name(WEB), msg_id=msg_id))
        reply = parse(raw)
        assert reply.msg.id == msg_id
        assert reply.msg.opcode() == dns.opcode.QUERY


def test_unknown_qtype_is_nodata(addr: Address) -> None:
    """An unknown type (RFC 3597) at an existing name: NOERROR, no answer, SOA."""
    for qtype in (666, 65280):
        reply = parse(udp_exchange(addr, raw_query(wire_name(WEB), qtype)))
        assert reply.rcode_text == "NOERROR"
        assert reply.aa
        assert reply.msg.answer == []
        assert reply.authority_types == ["SOA"]


def test_edns_query_for_refused_name_keeps_opt(addr: Address) -> None:
    reply = ask(addr, "example.com", "A", edns=0)
    assert reply.rcode_text == "REFUSED"
    assert reply.msg.edns == 0


def test_many_udp_queries_in_a_row(addr: Address) -> None:
    """A burst through the reply cache: each reply carries its own ID and case."""
    for index in range(200):
        name = WEB.upper() if index % 2 else WEB
        raw = udp_exchange(addr, raw_query(wire_name(name), msg_id=index))
        assert raw[:2] == struct.pack("!H", index)
        assert raw[HEADER_LEN : HEADER_LEN + len(wire_name(name))] == wire_name(name)


def test_edns_module_is_real(addr: Address) -> None:
    """dnspython's own EDNS option object round-trips through the server untouched."""
    query = make_query(WEB, "A", edns=0)
    query.use_edns(0, options=[dns.edns.GenericOption(dns.edns.OptionType.make(65002), b"x")])
    reply = parse(udp_exchange(addr, query.to_wire()))
    assert not reply.msg.options
