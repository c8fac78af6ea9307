"""Parse a DNS query from wire format (RFC 1035, RFC 6891), without I/O.

Hand-written rather than dnslib because every query passes through here: it reads only the
header, the one question and the OPT record, and rejects the malformed with the rcode a client
should see. ``parse_query`` returns None for packets that deserve no answer at all.
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16
HEADER = struct.Struct("!HHHHHH")
QR, AA, TC, RD, RA, AD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0020, 0x0010
OPCODE_MASK = 0x7800
EDNS_DO = 0x8000
MIN_UDP_PAYLOAD = 512
OPT_TYPE = 41
CLASS_IN = 1


@dataclass(frozen=True, slots=True)
class Edns:
    payload: int
    """The client's UDP payload size, never below 512 (RFC 6891 section 6.2.5)."""
    version: int
    do: bool


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    flags: int
    qname_wire: bytes
    """The question name exactly as sent (with its root label), so the reply echoes its case."""
    qname: str
    """Lowercase, without the trailing dot; the root is ``""``."""
    qtype: int
    qclass: int
    edns: Edns | None

    @property
    def udp_limit(self) -> int:
        return max(self.edns.payload, MIN_UDP_PAYLOAD) if self.edns else MIN_UDP_PAYLOAD


class QueryError(Exception):
    """The packet is a query we must refuse with ``rcode``; carries what could be parsed."""

    def __init__(
        self,
        rcode: int,
        *,
        id: int,
        flags: int,
        question: bytes = b"",
        edns: Edns | None = None,
    ) -> None:
        super().__init__(f"rcode {rcode}")
        self.rcode = rcode
        self.id = id
        self.flags = flags
        self.question = question
        """The raw question (name, type, class) when it parsed, else empty."""
        self.edns = edns
        """The query's OPT when the packet was sound enough to read it (RFC 6891 6.1.1: an
        OPT in the request means an OPT in the response, errors included)."""


def parse_query(data: bytes) -> Query | None:
    """A well-formed standard query, or None to drop the packet silently.

    Raises ``QueryError`` for packets that get an error reply: FORMERR for malformed ones and
    a question count other than one, NOTIMP for opcodes other than QUERY.
    """
    if len(data) < HEADER.size:
        return None  # too short to even carry an ID to answer to
    msg_id, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if flags & QR:
        return None  # a response: answering it could start a reflection loop
    question_end = _question_end(data) if qdcount == 1 else -1
    question = data[HEADER.size : question_end] if question_end > 0 else b""
    if flags & OPCODE_MASK:
        edns = None
        if question_end > 0:
            with contextlib.suppress(ValueError):
                edns = _find_edns(data, question_end, ancount + nscount, arcount)
        raise QueryError(NOTIMP, id=msg_id, flags=flags, question=question, edns=edns)
    if qdcount != 1 or question_end < 0:
        raise QueryError(FORMERR, id=msg_id, flags=flags)
    try:
        edns = _find_edns(data, question_end, ancount + nscount, arcount)
    except ValueError:
        raise QueryError(FORMERR, id=msg_id, flags=flags, question=question) from None
    name_end = question_end - 4
    qtype, qclass = struct.unpack_from("!HH", data, name_end)
    qname_wire = data[HEADER.size : name_end]
    return Query(msg_id, flags, qname_wire, _to_text(qname_wire), qtype, qclass, edns)


def _question_end(data: bytes) -> int:
    """Offset just past the question's type and class, or -1 when it is malformed."""
    pos = HEADER.size
    total = 0
    while True:
        if pos >= len(data):
            return -1
        length = data[pos]
        if length == 0:
            break
        if length > 63:  # a compression pointer or reserved label type: no valid target here
            return -1
        total += length + 1
        pos += length + 1
    if total > 254:
        return -1  # over 255 octets in wire form (RFC 1035 section 3.1)
    end = pos + 5
    return end if end <= len(data) else -1


def _to_text(qname_wire: bytes) -> str:
    """Presentation form, lowercased. A dot or backslash inside a label is escaped (RFC 4343),
    so ``web\\.shop`` stays one label and can never match the two-label ``web.shop``."""
    labels = []
    pos = 0
    while qname_wire[pos]:
        length = qname_wire[pos]
        label = qname_wire[pos + 1 : pos + 1 + length].decode("latin-1")
        if "." in label or "\\" in label:
            label = label.replace("\\", "\\\\").replace(".", "\\.")
        labels.append(label)
        pos += length + 1
    return ".".join(labels).lower()


def _find_edns(data: bytes, pos: int, skip: int, arcount: int) -> Edns | None:
    """Walk the remaining sections and return the single OPT record, if any."""
    for _ in range(skip):
        pos, _rtype, _rclass, _ttl = _skip_record(data, pos)
    edns = None
    for _ in range(arcount):
        start = pos
        pos, rtype, rclass, ttl = _skip_record(data, pos)
        if rtype != OPT_TYPE:
            continue
        if edns is not None or data[start] != 0:
            raise ValueError("a second OPT record, or one not owned by the root")
        edns = Edns(payload=rclass, version=(ttl >> 16) & 0xFF, do=bool(ttl & EDNS_DO))
    return edns


def _skip_record(data: bytes, pos: int) -> tuple[int, int, int, int]:
    pos = _skip_name(data, pos)
    if pos + 10 > len(data):
        raise ValueError("record header past the end")
    rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", data, pos)
    pos += 10 + rdlength
    if pos > len(data):
        raise ValueError("rdata past the end")
    return pos, rtype, rclass, ttl


def _skip_name(data: bytes, pos: int) -> int:
    while True:
        if pos >= len(data):
            raise ValueError("name past the end")
        length = data[pos]
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length > 63:
            raise ValueError("reserved label type")
        if length == 0:
            return pos + 1
        pos += length + 1
