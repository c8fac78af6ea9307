"""Property tests of the DNS codec (hypothesis): every client is a stranger, so the parser and
the encoder are checked against whatever bytes and values hypothesis can think of, and against
dnspython as the independent reading of the wire.

* ``parse_query``: any bytes give None, a ``Query`` or a ``QueryError``, nothing else; a query
  dnspython builds parses into the fields dnspython put there.
* ``encode`` then ``render``: dnspython reads back the same records, in order (up to rotation),
  the reply never exceeds the query's limit, and TC is set exactly when an answer or authority
  record was left out.
* ``scan``: any bytes give a ``Scanned`` or a ``WireError``.

Examples are bounded (``make test`` stays within seconds), derandomised (the same inputs on
every run, so a failure is reproducible) and never timed. Inputs that once found a bug stay
as explicit ``@example``s: the saved corpus. ``fuzz/`` holds the coverage-guided version.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections import Counter
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from kubedns.dns.query import MAX_AMPLIFICATION, Query, QueryError, parse_query
from kubedns.dns.render import render
from kubedns.dns.template import (
    RR,
    TYPE_SRV,
    TYPE_TXT,
    Reply,
    Soa,
    Srv,
    encode,
    scan,
)
from kubedns.dns.wire import (
    MIN_UDP_PAYLOAD,
    TCP_LIMIT,
    TYPE_A,
    TYPE_AAAA,
    TYPE_CNAME,
    TYPE_PTR,
    TYPE_SOA,
    WireError,
)

BOUNDED = settings(
    max_examples=150,
    deadline=None,  # no timed assertions: a slow CI machine is not a bug
    derandomize=True,
    database=None,  # nothing written into the worktree; the corpus is the @examples below
    suppress_health_check=[HealthCheck.too_slow],
)

# -- strategies ----------------------------------------------------------------------------------

LABEL_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_"
labels = st.text(LABEL_CHARS, min_size=1, max_size=63)
"""Labels as the answer path writes them: lower case, letters, digits, hyphen, underscore."""
raw_labels = st.binary(min_size=1, max_size=63)
"""Labels as a client may send them: any bytes, dots, backslashes and zeros included."""


def wire_length(parts: list[bytes]) -> int:
    return sum(len(p) + 1 for p in parts) + 1


def fits(parts: list[bytes]) -> bool:
    return wire_length(parts) <= 255


names = st.lists(labels, max_size=6).map(lambda ls: [x.encode() for x in ls]).filter(fits)
raw_names = st.lists(raw_labels, max_size=8).filter(fits)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
ttls = st.integers(0, 0x7FFF_FFFF)
"""RFC 2181 8: a TTL with the top bit set reads as 0; the answer path never writes one."""


def wire_name(parts: list[bytes]) -> bytes:
    return b"".join(bytes([len(p)]) + p for p in parts) + b"\x00"


def text_of(parts: list[bytes]) -> str:
    return ".".join(p.decode() for p in parts)


def expected_qname(parts: list[bytes]) -> str:
    """The presentation form ``Query.qname`` promises: ASCII letters folded (RFC 4343: DNS
    compares names ASCII-case-insensitively and nothing else), dot and backslash inside a
    label escaped, other bytes as latin-1, no trailing dot."""
    out = []
    for part in parts:
        label = part.lower().decode("latin-1")
        out.append(label.replace("\\", "\\\\").replace(".", "\\."))
    return ".".join(out)


# -- parse_query ---------------------------------------------------------------------------------


@BOUNDED
@given(data=st.binary(max_size=600), tcp=st.booleans(), udp_size=st.integers(512, 4096))
@example(data=b"\x00" * 12, tcp=False, udp_size=1232)
@example(
    data=b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01\x00\x00\x01\x00\x01",
    tcp=False,
    udp_size=512,
)
def test_parse_query_on_any_bytes_gives_a_query_none_or_query_error(
    data: bytes, tcp: bool, udp_size: int
) -> None:
    try:
        query = parse_query(data, tcp=tcp, udp_size=udp_size)
    except QueryError:
        return
    assert query is None or isinstance(query, Query)
    if query is not None and tcp:
        assert query.limit == TCP_LIMIT
    elif query is not None:
        assert MIN_UDP_PAYLOAD <= query.limit <= udp_size


options = st.lists(
    st.builds(dns.edns.GenericOption, st.integers(1, 0xFFFF), st.binary(max_size=40)),
    max_size=3,
)


@BOUNDED
@given(
    parts=raw_names,
    qtype=st.one_of(st.sampled_from([1, 28, 33, 12, 6, 255, 5, 16, 41]), u16),
    qclass=st.sampled_from([1, 1, 1, 3, 255, 254]),
    edns=st.booleans(),
    payload=u16,
    do=st.booleans(),
    opts=options,
    qid=u16,
    rd=st.booleans(),
    tcp=st.booleans(),
    udp_size=st.integers(512, 4096),
)
@example(  # found a bug: a latin-1 capital was folded, only ASCII letters are (RFC 4343)
    parts=[b"\xc0"],
    qtype=1,
    qclass=1,
    edns=False,
    payload=0,
    do=False,
    opts=[],
    qid=0,
    rd=True,
    tcp=False,
    udp_size=1232,
)
def test_a_query_dnspython_builds_parses_into_its_fields(  # noqa: PLR0917 (hypothesis)
    parts: list[bytes],
    qtype: int,
    qclass: int,
    edns: bool,
    payload: int,
    do: bool,
    opts: list[dns.edns.Option],
    qid: int,
    rd: bool,
    tcp: bool,
    udp_size: int,
) -> None:
    name = dns.name.Name([*parts, b""])
    message = dns.message.make_query(
        name,
        dns.rdatatype.RdataType.make(qtype),
        dns.rdataclass.RdataClass.make(qclass),
        use_edns=0 if edns else None,
        want_dnssec=do and edns,
        payload=payload if edns else None,
        options=opts if edns else None,
        id=qid,
        flags=dns.flags.RD if rd else 0,
    )
    wire = message.to_wire()
    query = parse_query(wire, tcp=tcp, udp_size=udp_size)
    assert query is not None
    assert query.id == qid
    assert query.flags == message.flags
    assert query.qtype == qtype and query.qclass == qclass
    assert query.question == wire[12 : 12 + len(wire_name(parts)) + 4]
    assert query.qname_wire == wire_name(parts)
    assert query.qname == expected_qname(parts)
    assert query.folded_name == wire_name(parts).lower()
    # A plain query takes the fast path, keyed by the folded question; a zero byte inside a
    # label (which the key's C-speed scan would take for the root) never does.
    if any(0 in part for part in parts):
        assert query.key is None
    else:
        assert query.key is not None
        assert query.key[:-3] == query.folded_name + query.question[-4:]
    if edns:
        assert query.edns is not None
        assert (query.edns.payload, query.edns.version, query.edns.do) == (payload, 0, do)
    else:
        assert query.edns is None
    if tcp:
        assert query.limit == TCP_LIMIT
    elif not edns:
        assert query.limit == MIN_UDP_PAYLOAD
    else:
        cap = min(payload, udp_size, MAX_AMPLIFICATION * len(wire))
        assert query.limit == max(MIN_UDP_PAYLOAD, cap)


def test_only_ascii_letters_are_folded_in_a_qname() -> None:
    """RFC 4343: DNS names compare case-insensitively for ASCII letters only. ``\\xc0`` and
    ``\\xe0`` are different labels; folding them (as ``str.lower`` on latin-1 did) made the
    stages that read ``qname`` see one name where the reply cache's key sees two."""
    upper, lower = (
        parse_query(dns.message.make_query(dns.name.Name([label, b"Ex", b""]), "A").to_wire())
        for label in (b"\xc0", b"\xe0")
    )
    assert upper is not None and lower is not None
    assert (upper.qname, lower.qname) == ("\xc0.ex", "\xe0.ex")
    assert upper.key != lower.key


# -- encode and render ---------------------------------------------------------------------------


def rdata_for(rtype: int) -> st.SearchStrategy[Any]:
    match rtype:
        case 1:
            return st.ip_addresses(v=4).map(str)
        case 28:
            return st.ip_addresses(v=6).map(str)
        case 5 | 12:
            return names.map(text_of)
        case 33:
            return st.builds(Srv, u16, u16, u16, names.map(text_of))
        case 16:
            return st.text(max_size=700)
        case _:
            return st.builds(Soa, names.map(text_of), names.map(text_of), u32, u32, u32, u32, u32)


RTYPES = [TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_SRV, TYPE_TXT, TYPE_PTR, TYPE_SOA]


@st.composite
def records(draw: st.DrawFn, question: list[bytes]) -> RR:
    """A record owned by a random name, the question's name or a name under it (which the
    encoder compresses against the question)."""
    owner = draw(
        st.one_of(
            names,
            st.just(question),
            names.map(lambda p: [*p, *question]).filter(fits),
        )
    )
    rtype = draw(st.sampled_from(RTYPES))
    return RR(text_of(owner).lower(), rtype, draw(ttls), draw(rdata_for(rtype)))


@st.composite
def replies(draw: st.DrawFn, question: list[bytes]) -> Reply:
    section = st.lists(records(question), max_size=12)
    answer = draw(section)
    if draw(st.booleans()) and answer:  # an RRset of several records: the rotation group
        last = answer[-1]
        more = st.lists(rdata_for(last.rtype), max_size=40)
        answer += [last._replace(rdata=rdata) for rdata in draw(more)]
    return Reply(
        rcode=draw(st.sampled_from([0, 0, 1, 2, 3, 4, 5])),
        authoritative=draw(st.booleans()),
        answer=answer,
        authority=draw(st.lists(records(question), max_size=3)),
        additional=draw(st.lists(records(question), max_size=6)),
        recursion_available=draw(st.booleans()),
    )


def comparable(rr: RR) -> tuple[str, int, int, Any]:
    rdata: Any = rr.rdata
    if rr.rtype in (TYPE_A, TYPE_AAAA):
        rdata = str(ipaddress.ip_address(rdata))
    elif rr.rtype == TYPE_TXT:
        rdata = str(rdata).encode()
    return (rr.name, rr.rtype, rr.ttl, rdata)


def text(name: dns.name.Name) -> str:
    return b".".join(name.labels[:-1]).decode("latin-1").lower()


def read_back(rrset: Any) -> tuple[str, int, int, Any]:
    (rd,) = rrset
    rdata: Any
    match rrset.rdtype:
        case dns.rdatatype.A | dns.rdatatype.AAAA:
            rdata = str(ipaddress.ip_address(rd.address))
        case dns.rdatatype.CNAME | dns.rdatatype.PTR:
            rdata = text(rd.target)
        case dns.rdatatype.SRV:
            rdata = Srv(rd.priority, rd.weight, rd.port, text(rd.target))
        case dns.rdatatype.TXT:
            rdata = b"".join(rd.strings)
        case _:
            rdata = Soa(
                text(rd.mname), text(rd.rname), rd.serial, rd.refresh, rd.retry, rd.expire,
                rd.minimum,
            )  # fmt: skip
    return (text(rrset.name), int(rrset.rdtype), rrset.ttl, rdata)


@st.composite
def exchanges(draw: st.DrawFn) -> tuple[bytes, Reply]:
    question = draw(names)
    qtype = draw(st.sampled_from([1, 28, 33, 12, 6, 16, 255]))
    edns = draw(st.booleans())
    message = dns.message.make_query(
        dns.name.Name([*question, b""]),
        dns.rdatatype.RdataType.make(qtype),
        use_edns=0 if edns else None,
        payload=draw(st.integers(0, 8192)) if edns else None,
        want_dnssec=edns and draw(st.booleans()),
    )
    return message.to_wire(), draw(replies(question))


@settings(BOUNDED, max_examples=80)
@given(
    exchange=exchanges(), tcp=st.booleans(), udp_size=st.integers(512, 4096), rotate=st.booleans()
)
def test_an_encoded_reply_reads_back_within_the_limit_with_tc_exactly_when_records_were_cut(
    exchange: tuple[bytes, Reply], tcp: bool, udp_size: int, rotate: bool
) -> None:
    wire, reply = exchange
    query = parse_query(wire, tcp=tcp, udp_size=udp_size)
    assert query is not None
    out = render(encode(query.question, reply, rotate=rotate), query, udp_size=udp_size)
    assert len(out) <= query.limit

    message = dns.message.from_wire(out, one_rr_per_rrset=True)
    assert message.id == query.id
    assert out[12 : 12 + len(query.question)] == query.question  # echoed as sent
    assert message.rcode() == reply.rcode
    assert bool(message.flags & dns.flags.AA) == reply.authoritative
    assert bool(message.flags & dns.flags.RA) == reply.recursion_available
    assert message.edns == (0 if query.edns else -1)
    if query.edns:
        assert message.payload == udp_size
        assert bool(message.ednsflags & dns.flags.DO) == query.do

    sent = [reply.answer, reply.authority, reply.additional]
    got = [[read_back(r) for r in section] for section in message.sections[1:]]
    want = [[comparable(rr) for rr in section] for section in sent]
    cut = len(got[0]) + len(got[1]) < len(want[0]) + len(want[1])
    event("records cut (TC)" if cut else "whole answer")
    assert bool(message.flags & dns.flags.TC) == cut
    if not rotate:  # a prefix, in order
        flat_got = [r for s in got for r in s]
        assert flat_got == [r for s in want for r in s][: len(flat_got)]
    for section_got, section_want in zip(got, want, strict=True):
        assert not Counter(section_got) - Counter(section_want)  # rotated, but the same records
    if not cut:
        assert Counter(got[0]) == Counter(want[0]) and Counter(got[1]) == Counter(want[1])
    if not cut and len(out) + 600 < query.limit:  # room to spare: nothing was left out at all
        assert Counter(got[2]) == Counter(want[2])

    # Our own scanner reads our replies: the same records, OPT dropped.
    scanned = scan(out)
    assert scanned.template.counts == tuple(len(s) for s in got)


# -- scan ----------------------------------------------------------------------------------------


@BOUNDED
@given(data=st.binary(max_size=600), rotate=st.booleans())
@example(data=b"\x00" * 11, rotate=False)
def test_scan_on_any_bytes_gives_a_message_or_wire_error(data: bytes, rotate: bool) -> None:
    try:
        scanned = scan(data, rotate=rotate)
    except WireError:
        return
    assert len(scanned.template.records) == sum(scanned.template.counts)


@BOUNDED
@given(
    records=st.lists(st.tuples(raw_names, u16, u32, st.binary(max_size=30)), max_size=6),
    counts=st.tuples(st.integers(0, 7), st.integers(0, 7), st.integers(0, 7)),
    rotate=st.booleans(),
)
def test_scan_on_near_messages_gives_a_message_or_wire_error(
    records: list[tuple[list[bytes], int, int, bytes]],
    counts: tuple[int, int, int],
    rotate: bool,
) -> None:
    """Messages that are almost right (random records, counts that may lie) reach deeper into
    the walk than random bytes do."""
    body = b"".join(
        wire_name(parts)
        + rtype.to_bytes(2, "big")
        + b"\x00\x01"
        + ttl.to_bytes(4, "big")
        + len(rdata).to_bytes(2, "big")
        + rdata
        for parts, rtype, ttl, rdata in records
    )
    data = b"\x12\x34\x81\x80\x00\x00" + b"".join(c.to_bytes(2, "big") for c in counts) + body
    with contextlib.suppress(WireError):
        scan(data, rotate=rotate)


@pytest.mark.parametrize("size", [0, 1, 11])
def test_runts_are_wire_errors(size: int) -> None:
    with pytest.raises(WireError):
        scan(b"\x00" * size)
