"""Replies before they meet a query: records in wire form, made once, rendered many times.

A ``Template`` holds every record of a reply as complete wire bytes, in order, with the
section counts and the flags the reply decides; the header, the question and the OPT record
are added when it meets a query (``render``). Two producers:

* ``encode`` builds one from the answer path's values (``Reply``), compressing names as
  they will sit in the message. Pointers only ever point backwards, so any prefix of the
  records is a valid message (truncation), and nothing points into a rotation group (a run
  of A/AAAA records behind one pointer, or SRV records whose targets are not pointed to), so
  the group may be served in any rotation: both work on stored bytes without encoding again.
* ``scan`` takes an upstream's reply. Its records may point anywhere earlier in the message,
  so only a prefix of them is ever kept (pointers point backwards) and only a run of
  same-sized records that nothing points into may be reordered. The upstream's OPT is dropped
  (we speak EDNS for ourselves) together with any record after it.

Sans-I/O: values in, bytes out.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from kubedns.dns.wire import (
    AA,
    AD,
    EDNS_DO,
    HEADER,
    HEADER_SIZE,
    RA,
    RR_HEADER,
    TC,
    TYPE_A,
    TYPE_AAAA,
    TYPE_CNAME,
    TYPE_NS,
    TYPE_OPT,
    TYPE_PTR,
    TYPE_SOA,
    WireError,
    read_name,
    record_at,
    skip_name,
    wire_to_text,
)

TYPE_TXT, TYPE_SRV = 16, 33
MAX_SUFFIX_LABELS = 40
"""Question suffixes offered for compression: more labels than any name the cluster zone or
the reverse zones own (an ip6.arpa name has 34)."""
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_SRV_FIXED = struct.Struct("!HHH")
_SOA_TIMERS = struct.Struct("!IIIII")


class Srv(NamedTuple):
    priority: int
    weight: int
    port: int
    target: str


class Soa(NamedTuple):
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


Rdata = str | Srv | Soa
"""A, AAAA: address text; CNAME, PTR, NS: a name; TXT: the text; SRV: ``Srv``; SOA: ``Soa``."""


class RR(NamedTuple):
    """One record as the answer path builds it: lowercase name without the trailing dot."""

    name: str
    rtype: int
    ttl: int
    rdata: Rdata


@dataclass(slots=True)
class Reply:
    """One reply as the answer path decides it, before encoding."""

    rcode: int = 0
    authoritative: bool = False
    answer: Sequence[RR] = ()
    authority: Sequence[RR] = ()
    additional: Sequence[RR] = ()
    recursion_available: bool = False


@dataclass(frozen=True, slots=True)
class Template:
    """A reply's records in wire form, ready to meet any query with the same question."""

    flags: int
    """Header bits the reply decides (AA, RA, AD, TC and the low four rcode bits); QR, the
    opcode, RD and CD come from the query when rendered."""
    ext_rcode: int = 0
    """The upper eight bits of the rcode, carried in the OPT record (BADVERS)."""
    records: tuple[bytes, ...] = ()
    counts: tuple[int, int, int] = (0, 0, 0)
    """Records in the answer, authority and additional sections, in that order."""
    group: tuple[int, int] = (0, 0)
    """``(first, count)``: records that may be served in any rotation (load spreading)."""
    ttls: tuple[int, ...] = ()
    """Each record's TTL as stored (forwarded replies, aged when served)."""
    ttl_at: tuple[int, ...] = ()
    """Where each record's TTL sits within its bytes."""
    size: int = field(init=False)
    """Bytes of all records together."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", sum(map(len, self.records)))

    @property
    def rcode(self) -> int:
        return (self.ext_rcode << 4) | (self.flags & 0xF)

    @property
    def answer_count(self) -> int:
        return self.counts[0]

    def aged(self, *, seconds: int = 0, fixed: int | None = None) -> Template:
        """The same reply with every TTL lowered by ``seconds`` (never below 0), or set to
        ``fixed`` (serve-stale's short TTL)."""
        records = []
        for record, ttl, at in zip(self.records, self.ttls, self.ttl_at, strict=True):
            out = bytearray(record)
            _U32.pack_into(out, at, fixed if fixed is not None else max(0, ttl - seconds))
            records.append(bytes(out))
        return replace(self, records=tuple(records))


def error_template(rcode: int, *, recursion_available: bool = False) -> Template:
    """A reply carrying only ``rcode``: FORMERR, NOTIMP, REFUSED, SERVFAIL or BADVERS.

    One object per rcode and RA (templates are frozen), so ``is_local_error`` can tell an
    error we made from the same rcode relayed from an upstream."""
    return _error_template(rcode, bool(recursion_available))


@functools.cache
def _error_template(rcode: int, recursion_available: bool) -> Template:
    return Template(flags=(RA if recursion_available else 0) | (rcode & 0xF), ext_rcode=rcode >> 4)


def is_local_error(template: Template) -> bool:
    """Whether ``template`` is one of ours from ``error_template``, not an upstream's reply."""
    ra = bool(template.flags & RA)
    return template is error_template(template.rcode, recursion_available=ra)


# -- encoding the answer path's replies ---------------------------------------------------------


def encode(question: bytes, reply: Reply, *, rotate: bool) -> Template:
    """``reply`` in wire form for a question whose name is ``question`` (wire form, any case).

    Names are compressed against the question and every name written before them, except
    inside an SRV rotation group: additional records must not point into SRV records that
    change places, so they point into the question instead. With ``rotate``, a final answer
    RRset of several A, AAAA or equal-priority SRV records becomes the rotation group."""
    rrs = [*reply.answer, *reply.authority, *reply.additional]
    first, count = _rotation_group(reply.answer) if rotate else (0, 0)
    srv_group = range(first, first + count) if count and rrs[first].rtype == TYPE_SRV else range(0)
    encoder = _Encoder(question)
    records = tuple(encoder.record(rr, register=i not in srv_group) for i, rr in enumerate(rrs))
    owners = {record[:2] for record in records[first : first + count]}
    if len(owners) != 1 or owners.pop()[0] < 0xC0:
        first, count = 0, 0  # the first record spells out a name the others point to
    flags = (AA if reply.authoritative else 0) | (RA if reply.recursion_available else 0)
    return Template(
        flags=flags | (reply.rcode & 0xF),
        ext_rcode=reply.rcode >> 4,
        records=records,
        counts=(len(reply.answer), len(reply.authority), len(reply.additional)),
        group=(first, count),
    )


def _rotation_group(answer: Sequence[RR]) -> tuple[int, int]:
    """The trailing run of answer records of one name and rotatable type, if longer than one."""
    if len(answer) < 2:
        return (0, 0)
    last = answer[-1]
    if last.rtype not in (TYPE_A, TYPE_AAAA, TYPE_SRV):
        return (0, 0)
    first = len(answer) - 1
    while first > 0 and answer[first - 1][:2] == last[:2]:  # the same name and type
        first -= 1
    run = answer[first:]
    priorities = {rr.rdata[0] for rr in run if isinstance(rr.rdata, Srv)}
    if last.rtype == TYPE_SRV and len(priorities) != 1:
        return (0, 0)  # RFC 2782: only records of equal priority may trade places
    return (first, len(run)) if len(run) > 1 else (0, 0)


class _Encoder:
    """Writes records one after another, as they will sit in the message (after the header
    and the question), compressing names against what was written before."""

    def __init__(self, question: bytes) -> None:
        starts = []
        pos = 0
        while question[pos]:
            starts.append(pos)
            pos += question[pos] + 1
        text = wire_to_text(question[: pos + 1])
        # Every suffix of up to MAX_SUFFIX_LABELS labels, and the whole name: deeper suffixes
        # of a long name can never equal a name we write, and mapping all 127 suffixes of a
        # hostile name would cost time quadratic in its length. (Escaped labels hold dots.)
        self.offsets: dict[str, int] = {}
        if starts and "\\" not in text:
            # Without escapes, label i starts at the same index in the text as in the wire.
            self.offsets[text] = HEADER_SIZE
            for start in starts[-MAX_SUFFIX_LABELS:]:
                self.offsets[text[start:]] = HEADER_SIZE + start
        self.position = HEADER_SIZE + len(question)

    def record(self, rr: RR, *, register: bool) -> bytes:
        out = bytearray()
        self._name(out, rr.name, register=register)
        header = len(out)
        out += RR_HEADER.pack(rr.rtype, 1, rr.ttl, 0)
        self._rdata(out, rr.rtype, rr.rdata, register=register)
        _U16.pack_into(out, header + 8, len(out) - header - RR_HEADER.size)
        self.position += len(out)
        return bytes(out)

    def _name(self, out: bytearray, name: str, *, register: bool, compress: bool = True) -> None:
        """``name`` with a pointer to the longest suffix written before, if any."""
        while name:
            pointer = self.offsets.get(name) if compress else None
            if pointer is not None:
                out += _U16.pack(0xC000 | pointer)
                return
            where = self.position + len(out)
            if register and where < 0x4000:
                self.offsets[name] = where
            label, _, name = name.partition(".")
            encoded = label.encode("latin-1")
            if not 0 < len(encoded) <= 63:
                raise WireError(f"label {label!r} cannot be encoded")
            out.append(len(encoded))
            out += encoded
        out.append(0)

    def _rdata(self, out: bytearray, rtype: int, rdata: Rdata, *, register: bool) -> None:
        match rdata:
            case str() if rtype in (TYPE_A, TYPE_AAAA):
                out += _packed_address(rdata)
            case str() if rtype in (TYPE_CNAME, TYPE_PTR, TYPE_NS):
                self._name(out, rdata, register=register)
            case str() if rtype == TYPE_TXT:
                encoded = rdata.encode()
                for i in range(0, max(len(encoded), 1), 255):
                    chunk = encoded[i : i + 255]
                    out.append(len(chunk))
                    out += chunk
            case Srv(priority, weight, port, target) if rtype == TYPE_SRV:
                out += _SRV_FIXED.pack(priority, weight, port)
                # RFC 2782: the target is never compressed (others may point into it).
                self._name(out, target, register=register, compress=False)
            case Soa() if rtype == TYPE_SOA:
                self._name(out, rdata.mname, register=register)
                self._name(out, rdata.rname, register=register)
                out += _SOA_TIMERS.pack(*rdata[2:])
            case _:
                raise TypeError(f"cannot encode {rdata!r} as type {rtype}")


@functools.lru_cache(maxsize=65536)
def _packed_address(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


# -- scanning upstream replies ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scanned:
    """An upstream's message, walked once: what matching, caching and relaying need."""

    id: int
    flags: int
    question: bytes | None
    """Name, type and class as the upstream wrote them (any letter case)."""
    template: Template
    types: tuple[int, ...]
    """Each kept record's type, in order."""
    soa_minimum: int | None
    """The smaller of the first authority SOA's TTL and MINIMUM (RFC 2308), if there is one."""
    do: bool

    @property
    def is_response(self) -> bool:
        return bool(self.flags & 0x8000)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def rcode(self) -> int:
        return self.template.rcode

    @property
    def is_truncated(self) -> bool:
        return bool(self.flags & TC)


def scan(data: bytes, *, rotate: bool = False) -> Scanned:
    """Walk a whole message; ``WireError`` if any part runs past the end or is malformed."""
    if len(data) < HEADER_SIZE:
        raise WireError(f"{len(data)} bytes is shorter than a DNS header")
    msg_id, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if qdcount > 1:
        raise WireError(f"QDCOUNT is {qdcount}; only one question is supported")
    pos = HEADER_SIZE
    question = None
    if qdcount == 1:
        pos = skip_name(data, pos)
        if data[HEADER_SIZE] >= 0xC0 or pos + 4 > len(data):
            raise WireError("malformed question")
        pos += 4
        question = bytes(data[HEADER_SIZE:pos])
    walk = _Walk(data, pos)
    walk.section(ancount, 0)
    walk.section(nscount, 1)
    walk.section(arcount, 2)
    template = Template(
        flags=flags & (RA | AD | TC) | (flags & 0xF),
        ext_rcode=walk.ext_rcode,
        records=tuple(walk.records),
        counts=(walk.counts[0], walk.counts[1], walk.counts[2]),
        group=walk.rotation_group() if rotate else (0, 0),
        ttls=tuple(walk.ttls),
        ttl_at=tuple(walk.ttl_at),
    )
    return Scanned(msg_id, flags, question, template, tuple(walk.types), walk.soa_minimum, walk.do)


class _Walk:
    """The record walk of ``scan``: one pass, bytes sliced at record boundaries."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos
        self.records: list[bytes] = []
        self.types: list[int] = []
        self.ttls: list[int] = []
        self.ttl_at: list[int] = []
        self.starts: list[int] = []
        self.owners: list[bytes] = []
        self.pointers: list[int] = []
        self.counts = [0, 0, 0]
        self.ext_rcode = 0
        self.do = False
        self.soa_minimum: int | None = None
        self.after_opt = False
        self.mangled = False
        self.section_now = 0
        self.ttl_now = 0

    def section(self, count: int, section: int) -> None:
        data = self.data
        for _ in range(count):
            start = self.pos
            owner_end, rtype, _rclass, ttl, rdata, end = record_at(data, start, self.pointers)
            self.pos = end
            if rtype == TYPE_OPT:
                if section != 2 or self.after_opt or data[start] != 0:
                    raise WireError("OPT record misplaced or repeated (RFC 6891 section 6.1.1)")
                self.after_opt = True
                self.ext_rcode = ttl >> 24
                self.do = bool(ttl & EDNS_DO)
                continue
            if self.after_opt:
                continue  # dropped with the OPT: removing it would shift what they point to
            self.section_now, self.ttl_now = section, owner_end + 4
            self._names_in_rdata(rtype, rdata, end)
            self.records.append(bytes(data[start:end]))
            self.types.append(rtype)
            self.ttls.append(ttl)
            self.ttl_at.append(owner_end - start + 4)
            self.starts.append(start)
            self.owners.append(bytes(data[start:owner_end]))
            self.counts[section] += 1

    def _names_in_rdata(self, rtype: int, rdata: int, end: int) -> None:
        """Note where names inside RDATA point (rotation must not move their targets), and
        read the SOA's MINIMUM. A mangled name here is relayed as sent, never read again:
        such a reply is not cached (no SOA minimum) and has no rotation group."""
        data = self.data
        try:
            if rtype in (TYPE_CNAME, TYPE_NS, TYPE_PTR):
                skip_name(data, rdata, self.pointers)
            elif rtype == TYPE_SOA:
                after = skip_name(data, skip_name(data, rdata, self.pointers), self.pointers)
                if after + 20 != end:
                    raise WireError("SOA record of the wrong length")
                if self.section_now == 1 and self.soa_minimum is None:
                    ttl = _U32.unpack_from(data, self.ttl_now)[0]
                    self.soa_minimum = min(ttl, _U32.unpack_from(data, end - 4)[0])
        except WireError:
            self.mangled = True

    def rotation_group(self) -> tuple[int, int]:
        """The trailing run of answer A or AAAA records with the same compressed owner, if
        nothing points into it: such records may trade places without moving anything else."""
        answers = self.counts[0]
        if answers < 2:
            return (0, 0)
        last = answers - 1
        rtype, owner, size = self.types[last], self.owners[last], len(self.records[last])
        if rtype not in (TYPE_A, TYPE_AAAA) or len(owner) != 2 or owner[0] < 0xC0:
            return (0, 0)
        first = last
        while (
            first > 0
            and self.types[first - 1] == rtype
            and self.owners[first - 1] == owner
            and len(self.records[first - 1]) == size
        ):
            first -= 1
        region = range(self.starts[first], self.starts[last] + size)
        if last == first or self.mangled or any(t in region for t in self.pointers):
            return (0, 0)
        return (first, last - first + 1)


# -- reading records back (the ExternalName chase) -----------------------------------------------


def answer_records(template: Template, question: bytes) -> list[RR]:
    """The CNAME, A and AAAA records of the answer section as values (names decompressed)."""
    message = bytes(HEADER_SIZE) + question + b"".join(template.records[: template.counts[0]])
    pos = HEADER_SIZE + len(question)
    found = []
    for record in template.records[: template.counts[0]]:
        owner, owner_end = read_name(message, pos)
        rtype, _rclass, ttl, _rdlength = RR_HEADER.unpack_from(message, owner_end)
        rdata = owner_end + RR_HEADER.size
        name = wire_to_text(owner)
        if rtype == TYPE_CNAME:
            found.append(RR(name, rtype, ttl, wire_to_text(read_name(message, rdata)[0])))
        elif rtype in (TYPE_A, TYPE_AAAA) and pos + len(record) - rdata in (4, 16):
            address = ipaddress.ip_address(message[rdata : pos + len(record)])
            found.append(RR(name, rtype, ttl, str(address)))
        pos += len(record)
    return found
