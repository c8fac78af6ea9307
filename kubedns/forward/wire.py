"""Just enough DNS wire format to relay messages faithfully, without I/O.

The forwarder never re-encodes an upstream's reply: it walks the bytes once (``scan``) to learn
the header, the question and where every TTL sits, then patches in place (message ID, AA bit,
the client's letter case in the question, decremented TTLs). Re-encoding through a full DNS
library would risk changing what the upstream said (record order, unknown types, EDNS options),
and relaying faithfully is the contract. Anything that does not walk cleanly is ``WireError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER_SIZE = 12
TYPE_SOA = 6
TYPE_NS = 2
TYPE_OPT = 41
CLASS_IN = 1

NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
REFUSED = 5

_RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}

_QR = 0x8000
_AA = 0x0400
_TC = 0x0200
_RD = 0x0100
_RA = 0x0080
_CD = 0x0010
_DO = 0x8000  # in the OPT record's TTL field (RFC 3225)
_EDNS_PAYLOAD = 1232  # the DNS flag day 2020 size: avoids IP fragmentation on common paths

SECTION_ANSWER = 1
SECTION_AUTHORITY = 2
SECTION_ADDITIONAL = 3


def rcode_name(rcode: int) -> str:
    """``NOERROR``, ``NXDOMAIN``...: the spelling CoreDNS uses in metric labels."""
    return _RCODE_NAMES.get(rcode, str(rcode))


class WireError(ValueError):
    """The bytes are not a DNS message we can walk."""


@dataclass(frozen=True, slots=True)
class Question:
    """The question as it appeared on the wire; ``name`` keeps the asker's letter case."""

    name: bytes
    qtype: int
    qclass: int

    @property
    def folded(self) -> bytes:
        """The name case-folded (ASCII only, as DNS compares names; RFC 4343)."""
        return self.name.lower()

    def matches(self, other: Question) -> bool:
        """Same question, ignoring letter case (upstreams may randomise it, 0x20 encoding)."""
        return (self.folded, self.qtype, self.qclass) == (other.folded, other.qtype, other.qclass)

    def to_wire(self) -> bytes:
        return self.name + struct.pack("!HH", self.qtype, self.qclass)

    def to_text(self) -> str:
        """The name in presentation form with a trailing dot (``www.example.com.``)."""
        labels, pos = [], 0
        while self.name[pos]:
            length = self.name[pos]
            labels.append(self.name[pos + 1 : pos + 1 + length].decode("ascii", "replace"))
            pos += 1 + length
        return ".".join(labels) + "."


@dataclass(frozen=True, slots=True)
class Record:
    """Where one resource record sits in a message; enough to rewrite its TTL."""

    section: int
    rtype: int
    ttl: int
    ttl_offset: int
    rdata_start: int
    rdata_end: int


@dataclass(frozen=True, slots=True)
class Message:
    """The parts of a message the forwarder reasons about; offsets point into the scanned bytes."""

    id: int
    flags: int
    question: Question | None
    question_end: int
    records: tuple[Record, ...]
    opt: Record | None

    @property
    def is_response(self) -> bool:
        return bool(self.flags & _QR)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def rcode(self) -> int:
        """The 4-bit header rcode (extended rcodes in OPT are relayed untouched, not read)."""
        return self.flags & 0xF

    @property
    def is_truncated(self) -> bool:
        return bool(self.flags & _TC)

    @property
    def wants_recursion(self) -> bool:
        return bool(self.flags & _RD)

    @property
    def checking_disabled(self) -> bool:
        return bool(self.flags & _CD)

    @property
    def has_edns(self) -> bool:
        return self.opt is not None

    @property
    def dnssec_ok(self) -> bool:
        return self.opt is not None and bool(self.opt.ttl & _DO)

    def section(self, section: int) -> tuple[Record, ...]:
        return tuple(r for r in self.records if r.section == section)


def scan(data: bytes) -> Message:
    """Walk a whole message; raise ``WireError`` if any part runs past the end or is malformed."""
    if len(data) < HEADER_SIZE:
        raise WireError(f"{len(data)} bytes is shorter than a DNS header")
    qid, flags, qdcount, ancount, nscount, arcount = struct.unpack_from("!HHHHHH", data)
    if qdcount > 1:
        raise WireError(f"QDCOUNT is {qdcount}; only one question is supported")
    question, pos = (None, HEADER_SIZE)
    if qdcount == 1:
        question, pos = _read_question(data, HEADER_SIZE)
    question_end = pos
    records: list[Record] = []
    opt: Record | None = None
    sections = (
        [SECTION_ANSWER] * ancount + [SECTION_AUTHORITY] * nscount + [SECTION_ADDITIONAL] * arcount
    )
    for section in sections:
        record, pos = _read_record(data, pos, section)
        if record.rtype == TYPE_OPT:
            if opt is not None or section != SECTION_ADDITIONAL:
                raise WireError("OPT record misplaced or repeated (RFC 6891 section 6.1.1)")
            opt = record
        else:
            records.append(record)
    return Message(qid, flags, question, question_end, tuple(records), opt)


def _read_question(data: bytes, pos: int) -> tuple[Question, int]:
    start = pos
    while True:
        if pos >= len(data):
            raise WireError("question name runs past the end")
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length & 0xC0:
            # The first name of a message has nothing earlier to point to.
            raise WireError("compressed or extended label in the question")
        pos += 1 + length
    if pos - start > 255:
        raise WireError("question name longer than 255 bytes")
    if pos + 4 > len(data):
        raise WireError("question type and class run past the end")
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    return Question(bytes(data[start:pos]), qtype, qclass), pos + 4


def _skip_name(data: bytes, pos: int) -> int:
    while True:
        if pos >= len(data):
            raise WireError("name runs past the end")
        length = data[pos]
        if length & 0xC0 == 0xC0:
            if pos + 2 > len(data):
                raise WireError("compression pointer runs past the end")
            return pos + 2
        if length & 0xC0:
            raise WireError("unknown label type")
        if length == 0:
            return pos + 1
        pos += 1 + length


def _read_record(data: bytes, pos: int, section: int) -> tuple[Record, int]:
    pos = _skip_name(data, pos)
    if pos + 10 > len(data):
        raise WireError("record header runs past the end")
    rtype, _rclass, ttl, rdlength = struct.unpack_from("!HHIH", data, pos)
    rdata_start = pos + 10
    rdata_end = rdata_start + rdlength
    if rdata_end > len(data):
        raise WireError("record data runs past the end")
    return Record(section, rtype, ttl, pos + 4, rdata_start, rdata_end), rdata_end


def build_query(question: Question, *, qid: int, template: Message) -> bytes:
    """A query for ``question`` with our ID, mirroring the client's RD, CD, EDNS and DO.

    The client's own EDNS options (cookies, client subnet) are not passed on: they belong to
    its conversation with us, and a cached answer must not depend on one client's options.
    """
    flags = template.flags & (_RD | _CD)
    arcount = 1 if template.has_edns else 0
    header = struct.pack("!HHHHHH", qid, flags, 1, 0, 0, arcount)
    opt = b""
    if template.has_edns:
        opt = b"\x00" + struct.pack(
            "!HHIH", TYPE_OPT, _EDNS_PAYLOAD, _DO if template.dnssec_ok else 0, 0
        )
    return header + question.to_wire() + opt


def build_probe(question: Question, *, qid: int) -> bytes:
    """A plain non-recursive query without EDNS (health checks, loop probes)."""
    return struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0) + question.to_wire()


def is_reply_to(reply: Message, *, qid: int, question: Question) -> bool:
    """Does ``reply`` answer our query? Anything else is ignored as garbage or spoofing."""
    return (
        reply.id == qid
        and reply.is_response
        and reply.opcode == 0
        and reply.question is not None
        and reply.question.matches(question)
    )


def to_client(reply: bytes, scanned: Message, *, qid: int, question: Question) -> bytearray:
    """The upstream's reply with the client's ID and question letter case, AA cleared.

    The question is spliced byte for byte; it has the same length because it matched
    case-insensitively, so compression pointers into it stay valid (and now carry the client's
    case too). AA is cleared because we are not the authority for a forwarded name.
    """
    out = bytearray(reply)
    struct.pack_into("!HH", out, 0, qid, scanned.flags & ~_AA)
    out[HEADER_SIZE : scanned.question_end] = question.to_wire()
    return out


def set_ttls(out: bytearray, records: tuple[Record, ...], ttls: list[int]) -> None:
    """Overwrite each record's TTL in place (OPT is never in ``records``)."""
    for record, ttl in zip(records, ttls, strict=True):
        struct.pack_into("!I", out, record.ttl_offset, max(0, ttl))


def soa_minimum(data: bytes, record: Record) -> int:
    """The SOA MINIMUM field: the last 32 bits of the RDATA, after two names and four counters."""
    if record.rdata_end - record.rdata_start < 22:
        raise WireError("SOA record too short")
    (minimum,) = struct.unpack_from("!I", data, record.rdata_end - 4)
    return int(minimum)


def error_reply(query: Message, *, rcode: int) -> bytes:
    """A reply carrying only ``rcode`` for a query we will not or cannot answer.

    Echoes ID, question and RD/CD; RA set (we do recurse for clients); an OPT record when the
    client sent one, because an EDNS query must get an EDNS answer (RFC 6891 section 7).
    """
    flags = _QR | _RA | (query.flags & (_RD | _CD)) | (rcode & 0xF)
    qd = 1 if query.question is not None else 0
    ar = 1 if query.has_edns else 0
    out = struct.pack("!HHHHHH", query.id, flags, qd, 0, 0, ar)
    if query.question is not None:
        out += query.question.to_wire()
    if query.has_edns:
        out += b"\x00" + struct.pack("!HHIH", TYPE_OPT, _EDNS_PAYLOAD, 0, 0)
    return out


def name_to_wire(name: str) -> bytes:
    """``www.example.com`` (trailing dot optional) -> uncompressed wire name."""
    labels = [label for label in name.rstrip(".").split(".") if label] if name != "." else []
    out = bytearray()
    for label in labels:
        raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
        if not 0 < len(raw) <= 63:
            raise WireError(f"label {label!r} in {name!r} is empty or longer than 63 bytes")
        out += bytes([len(raw)]) + raw
    out += b"\x00"
    if len(out) > 255:
        raise WireError(f"{name!r} is longer than 255 bytes")
    return bytes(out)


def fit_udp(reply: bytes, scanned: Message, *, limit: int) -> bytes:
    """Cut a reply that does not fit a UDP client down to header, question and OPT, with TC.

    The client then retries over TCP and gets it whole (RFC 1035 4.2.1, RFC 7766). For the
    transport's use; a partial answer section would only tempt clients to use it.
    """
    if len(reply) <= limit:
        return reply
    qd = 1 if scanned.question is not None else 0
    ar = 1 if scanned.opt is not None else 0
    header = struct.pack("!HHHHHH", scanned.id, scanned.flags | _TC, qd, 0, 0, ar)
    opt = b""
    if scanned.opt is not None:
        start = scanned.opt.ttl_offset - 5  # root name (1 byte), type (2), class (2), then TTL
        opt = reply[start : scanned.opt.rdata_start - 2] + b"\x00\x00"
    return header + reply[HEADER_SIZE : scanned.question_end] + opt
