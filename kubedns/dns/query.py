"""A client's query, parsed once (RFC 1035, RFC 6891) into the value every stage reads.

``parse_query`` is strict where a lenient reading could make two stages disagree: one
question, labels only (no pointers in a query's name), at most one OPT and only in the
additional section, owned by the root, with options that end exactly where its RDATA does.
Anything else is a ``QueryError`` carrying the rcode the client should see; a packet that
deserves no answer at all (a response, a runt) gives None.

``cache_key`` is the hot path's cheap look at the same packet: the case-folded question plus
only what shapes the reply (RD, CD, EDNS, DO and the size limit), never the message ID, the
name's letter case or EDNS options we ignore (padding, cookies), so those cannot defeat the
reply cache or grow it. It returns None for anything unusual, which then takes the full path.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from kubedns.dns.wire import (
    CD,
    EDNS_DO,
    FORMERR,
    HEADER,
    HEADER_SIZE,
    MAX_NAME,
    MIN_UDP_PAYLOAD,
    NOTIMP,
    OPCODE_MASK,
    QR,
    RD,
    TCP_LIMIT,
    TYPE_CLASS,
    TYPE_OPT,
    WireError,
    name_to_wire,
    opt_record,
    record_at,
    wire_to_text,
)

DEFAULT_UDP_SIZE = 1232
"""DNS Flag Day 2020: the largest UDP reply that avoids IP fragmentation on common paths."""

_SHAPE_RD, _SHAPE_CD, _SHAPE_EDNS, _SHAPE_DO, _SHAPE_TCP = 1, 2, 4, 8, 16
_PLAIN_QUERY_COUNTS = b"\x00\x01\x00\x00\x00\x00"  # QDCOUNT 1, ANCOUNT 0, NSCOUNT 0


@dataclass(frozen=True, slots=True)
class Edns:
    """The client's OPT record, as far as it shapes our reply."""

    payload: int
    """The client's UDP payload size as sent (RFC 6891 6.2.5 treats below 512 as 512)."""
    version: int
    do: bool


@dataclass(frozen=True, slots=True)
class Query:
    """One standard query, as every stage after the transport sees it."""

    id: int
    flags: int
    question: bytes
    """Name, type and class exactly as sent: the reply echoes it, letter case included."""
    qname: str
    """Lowercase presentation form without the trailing dot; the root is ``""``."""
    qtype: int
    qclass: int
    edns: Edns | None
    limit: int
    """The largest reply this client may get: 65535 over TCP, 512 over UDP without EDNS, else
    ``udp_limit``: the client's payload size capped at our UDP size and at 35 times the query
    (never below 512)."""
    key: bytes | None
    """The reply-cache key (see ``cache_key``); None when the packet's shape is unusual."""

    @property
    def qname_wire(self) -> bytes:
        return self.question[:-4]

    @property
    def folded_name(self) -> bytes:
        """The wire name case-folded (ASCII only, as DNS compares names; RFC 4343)."""
        return self.question[:-4].lower()

    @property
    def do(self) -> bool:
        return self.edns is not None and self.edns.do

    @property
    def cd(self) -> bool:
        return bool(self.flags & CD)


class QueryError(Exception):
    """A packet that gets an error reply with ``rcode``; carries what could be parsed."""

    def __init__(
        self, rcode: int, *, id: int, flags: int, question: bytes = b"", edns: Edns | None = None
    ) -> None:
        super().__init__(f"rcode {rcode}")
        self.rcode = rcode
        self.id = id
        self.flags = flags
        self.question = question
        """The question (name, type, class) when it parsed, else empty."""
        self.edns = edns
        """The query's OPT when it was sound enough to read (RFC 6891 6.1.1: an OPT in the
        request means an OPT in the response, errors included)."""


MAX_AMPLIFICATION = 35
"""A UDP reply is at most this many times its query's size (but never held below 512): a
forged source address must not turn a short query into a large reply aimed at a victim.
Only queries under 36 bytes are affected (a short name asked with EDNS); they get the whole
records that fit with TC, and the full answer over TCP."""


def udp_limit(payload: int, udp_size: int, query_size: int) -> int:
    """The largest UDP reply for an EDNS query: the client's payload size, capped at our UDP
    size and at ``MAX_AMPLIFICATION`` times the query, and never below 512 (RFC 6891 6.2.5).
    Written without builtin min/max calls: it runs for every EDNS query."""
    limit = udp_size if payload > udp_size else payload
    cap = MAX_AMPLIFICATION * query_size
    limit = cap if cap < limit else limit
    return MIN_UDP_PAYLOAD if limit < MIN_UDP_PAYLOAD else limit


def _plain_suffix(shape: int) -> bytes:
    limit = TCP_LIMIT if shape & _SHAPE_TCP else MIN_UDP_PAYLOAD
    return bytes((shape, limit >> 8, limit & 0xFF))


_PLAIN_SUFFIXES = tuple(_plain_suffix(shape) for shape in range(32))
"""The key's last three bytes for a query without EDNS, by shape (its limit is fixed)."""


def cache_key(data: bytes, tcp: bool, udp_size: int) -> tuple[bytes, int] | None:
    """The reply-cache key of a plain query and the offset where its question ends, or None.

    Plain means: a query (QR 0, opcode 0) with one question, no answer or authority records,
    and nothing in the additional section but one valid version-0 OPT. The key is the
    lowercased name, the type and class as sent, one byte of shape and two of size limit.

    The name ends at its first zero byte, found in C rather than by walking the labels: a key
    is only ever stored by ``parse_query`` after a real walk agreed with it, and a packet can
    only produce a stored key with a name that is byte for byte (up to letter case, which
    never touches a length byte) a valid one.
    """
    size = len(data)
    if size < 17 or data[2] & 0xF8 or data[4:10] != _PLAIN_QUERY_COUNTS:
        return None
    root = data.find(0, HEADER_SIZE)
    end = root + 5
    if root < 0 or root - HEADER_SIZE >= MAX_NAME or end > size:
        return None
    shape = (data[2] & 1) | (data[3] & 0x10) >> 3 | (_SHAPE_TCP if tcp else 0)
    if end == size and not data[11] and not data[10]:
        return data[HEADER_SIZE:root].lower() + data[root:end] + _PLAIN_SUFFIXES[shape], end
    if data[11] != 1 or data[10] or end + 11 > size:
        return None
    owner, rtype, payload, _ext, version, flags, rdlength = _OPT_FIXED.unpack_from(data, end)
    # Anything but version 0 gets BADVERS on the full path.
    if owner or rtype != TYPE_OPT or version or end + 11 + rdlength != size:
        return None
    if rdlength and not _options_fit(data, end + 11, size):
        return None
    shape |= _SHAPE_EDNS | (_SHAPE_DO if flags & EDNS_DO else 0)
    limit = TCP_LIMIT if tcp else udp_limit(payload, udp_size, size)
    suffix = bytes((shape, limit >> 8, limit & 0xFF))
    return data[HEADER_SIZE:root].lower() + data[root:end] + suffix, end


_OPT_FIXED = struct.Struct("!BHHBBHH")
"""An OPT record after the question: root owner, type, payload, extended rcode, version,
flags, RDLENGTH."""


def _options_fit(data: bytes, pos: int, end: int) -> bool:
    """Whether EDNS options from ``pos`` end exactly at ``end`` (each: code, length, data)."""
    while pos + 4 <= end:
        pos += 4 + (data[pos + 2] << 8 | data[pos + 3])
    return pos == end


def parse_query(
    data: bytes, *, tcp: bool = False, udp_size: int = DEFAULT_UDP_SIZE
) -> Query | None:
    """A well-formed standard query, or None to drop the packet silently.

    Raises ``QueryError`` for packets that get an error reply: FORMERR for malformed ones
    (including a question count other than one and a misplaced, repeated or overrun OPT),
    NOTIMP for opcodes other than QUERY.
    """
    if len(data) < HEADER_SIZE:
        return None  # too short to even carry an ID to answer to
    data = bytes(data)
    msg_id, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if flags & QR:
        return None  # a response: answering it could start a reflection loop
    question_end = _question_end(data) if qdcount == 1 else -1
    found = cache_key(data, tcp, udp_size)
    if found is not None and found[1] != question_end:
        found = None  # a zero byte inside a label: such a name is never kept
    question = data[HEADER_SIZE:question_end] if question_end > 0 else b""
    edns: Edns | None = None
    malformed = not question
    if question:
        try:
            edns = _find_edns(data, question_end, ancount + nscount, arcount)
        except WireError:
            malformed = True
    if flags & OPCODE_MASK:
        raise QueryError(NOTIMP, id=msg_id, flags=flags, question=question, edns=edns)
    if malformed:
        raise QueryError(FORMERR, id=msg_id, flags=flags, question=question)
    qtype, qclass = TYPE_CLASS.unpack_from(data, question_end - 4)
    if tcp:
        limit = TCP_LIMIT
    elif edns is None:
        limit = MIN_UDP_PAYLOAD
    else:
        limit = udp_limit(edns.payload, udp_size, len(data))
    return Query(
        id=msg_id,
        flags=flags,
        question=question,
        qname=wire_to_text(question[:-4]),
        qtype=qtype,
        qclass=qclass,
        edns=edns,
        limit=limit,
        key=found[0] if found else None,
    )


def _question_end(data: bytes) -> int:
    """Offset just past the question's type and class, or -1 when it is malformed."""
    pos = HEADER_SIZE
    size = len(data)
    while True:
        if pos >= size:
            return -1
        length = data[pos]
        if length == 0:
            break
        if length > 63:  # a pointer or reserved label type: nothing earlier to point to
            return -1
        pos += length + 1
    if pos + 1 - HEADER_SIZE > MAX_NAME:
        return -1
    end = pos + 5
    return end if end <= size else -1


def _find_edns(data: bytes, pos: int, skip: int, arcount: int) -> Edns | None:
    """Walk the remaining sections and return the single OPT record, if any (RFC 6891 6.1.1:
    one OPT, in the additional section, owned by the root, its options within its RDATA)."""
    for _ in range(skip):
        record = record_at(data, pos)
        if record.rtype == TYPE_OPT:
            raise WireError("OPT outside the additional section")
        pos = record.end
    edns = None
    for _ in range(arcount):
        record = record_at(data, pos)
        if record.rtype == TYPE_OPT:
            if edns is not None or data[pos] != 0:
                raise WireError("a second OPT record, or one not owned by the root")
            _check_options(data, record.rdata, record.end)
            ttl = record.ttl
            edns = Edns(payload=record.rclass, version=(ttl >> 16) & 0xFF, do=bool(ttl & EDNS_DO))
        pos = record.end
    return edns


def _check_options(data: bytes, pos: int, end: int) -> None:
    while pos < end:
        if pos + 4 > end:
            raise WireError("EDNS option header overruns the OPT record")
        pos += 4 + (data[pos + 2] << 8 | data[pos + 3])
    if pos != end:
        raise WireError("EDNS option length overruns the OPT record")


def build_query(
    question: bytes,
    *,
    qid: int,
    recursion: bool = True,
    do: bool = False,
    cd: bool = False,
    udp_size: int = 0,
) -> bytes:
    """A query for ``question`` (name, type, class in wire form) with our ID: RD as asked, CD
    and DO mirrored from the client, and an OPT advertising ``udp_size`` unless it is 0."""
    flags = (RD if recursion else 0) | (CD if cd else 0)
    if not udp_size:
        return HEADER.pack(qid, flags, 1, 0, 0, 0) + question
    return HEADER.pack(qid, flags, 1, 0, 0, 1) + question + opt_record(udp_size=udp_size, do=do)


def same_question(ours: bytes, theirs: bytes | None) -> bool:
    """The same question up to the name's letter case (upstreams may randomise it, 0x20)."""
    return (
        theirs is not None
        and len(ours) == len(theirs)
        and ours[-4:] == theirs[-4:]
        and ours[:-4].lower() == theirs[:-4].lower()
    )


def question_of(name: str, qtype: int, qclass: int = 1) -> bytes:
    """A question in wire form for a name in presentation form."""
    return name_to_wire(name) + TYPE_CLASS.pack(qtype, qclass)
