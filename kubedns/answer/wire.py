"""Encode replies to wire format with name compression, without I/O.

The question is copied byte for byte from the query, so the reply echoes the client's letter
case; owner names equal to the question name are written as a pointer to it, which echoes the
case in the answer section too (as most authoritative servers do).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from kubedns.answer.query import AA, CD, EDNS_DO, HEADER, OPCODE_MASK, QR, RD, TC, Edns, Query
from kubedns.records import (
    AAAA,
    CNAME,
    NS,
    OPT,
    PTR,
    SOA,
    SRV,
    TXT,
    A,
    Srv,
)

RR_HEADER = struct.Struct("!HHIH")
EDNS_PAYLOAD = 4096
"""The UDP payload size we advertise: what we accept, not what we send (that is the client's)."""
CLASS_IN = 1


class Soa(NamedTuple):
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


WireRdata = str | Srv | Soa


class RR(NamedTuple):
    name: str
    rtype: int
    ttl: int
    rdata: WireRdata


@dataclass(slots=True)
class Reply:
    """One reply before encoding: the sections, the flags we decide, and EDNS to send."""

    rcode: int = 0
    authoritative: bool = False
    answer: Sequence[RR] = ()
    authority: Sequence[RR] = ()
    additional: Sequence[RR] = ()
    truncated: bool = False
    extra_flags: int = 0
    """Flags the reply adds beyond those derived from the query (RA)."""


def encode(query: Query, reply: Reply) -> bytes:
    """The full reply to ``query``; an OPT record is added when the query had one."""
    writer = _Writer()
    flags = QR | (query.flags & (OPCODE_MASK | RD | CD)) | reply.extra_flags | (reply.rcode & 0xF)
    if reply.authoritative:
        flags |= AA
    if reply.truncated:
        flags |= TC
    arcount = len(reply.additional) + (1 if query.edns else 0)
    counts = (1, len(reply.answer), len(reply.authority), arcount)
    writer.out += HEADER.pack(query.id, flags, *counts)
    writer.question(query)
    for section in (reply.answer, reply.authority, reply.additional):
        for rr in section:
            writer.record(rr)
    if query.edns:
        writer.opt(payload=EDNS_PAYLOAD, extended_rcode=reply.rcode >> 4, do=query.edns.do)
    return bytes(writer.out)


def encode_error(
    msg_id: int, flags: int, rcode: int, question: bytes, *, edns: Edns | None = None
) -> bytes:
    """A bare error reply (FORMERR, NOTIMP, SERVFAIL) echoing the question when there was one,
    with an OPT record when the query carried one."""
    reply_flags = QR | (flags & (OPCODE_MASK | RD | CD)) | rcode
    header = HEADER.pack(msg_id, reply_flags, 1 if question else 0, 0, 0, 1 if edns else 0)
    opt = b""
    if edns is not None:
        opt = b"\x00" + RR_HEADER.pack(OPT, EDNS_PAYLOAD, EDNS_DO if edns.do else 0, 0)
    return header + question + opt


class _Writer:
    def __init__(self) -> None:
        self.out = bytearray()
        self.offsets: dict[str, int] = {}

    def question(self, query: Query) -> None:
        # Register every suffix of the question name so owner names point into it.
        start = len(self.out)
        labels = query.qname.split(".") if query.qname else []
        if "\\" not in query.qname:  # escaped labels: text and wire labels do not line up
            pos = 0
            for i in range(len(labels)):
                self.offsets[".".join(labels[i:])] = start + pos
                pos += query.qname_wire[pos] + 1
        self.out += query.qname_wire
        self.out += struct.pack("!HH", query.qtype, query.qclass)

    def name(self, name: str, *, compress: bool = True) -> None:
        """Write ``name`` using a pointer to the longest suffix written before."""
        while name:
            pointer = self.offsets.get(name) if compress else None
            if pointer is not None:
                self.out += struct.pack("!H", 0xC000 | pointer)
                return
            if len(self.out) < 0x4000:
                self.offsets[name] = len(self.out)
            label, _, name = name.partition(".")
            encoded = label.encode("latin-1")
            self.out += bytes((len(encoded),)) + encoded
        self.out += b"\x00"

    def record(self, rr: RR) -> None:
        self.name(rr.name)
        start = len(self.out)
        self.out += RR_HEADER.pack(rr.rtype, CLASS_IN, rr.ttl, 0)
        rdata_start = len(self.out)
        self.rdata(rr.rtype, rr.rdata)
        struct.pack_into("!H", self.out, start + 8, len(self.out) - rdata_start)

    def rdata(self, rtype: int, rdata: WireRdata) -> None:
        match rdata:
            case str() if rtype in (A, AAAA):
                self.out += ipaddress.ip_address(rdata).packed
            case str() if rtype in (CNAME, PTR, NS):
                self.name(rdata)
            case str() if rtype == TXT:
                encoded = rdata.encode()
                for i in range(0, max(len(encoded), 1), 255):
                    chunk = encoded[i : i + 255]
                    self.out += bytes((len(chunk),)) + chunk
            case Srv(priority, weight, port, target) if rtype == SRV:
                self.out += struct.pack("!HHH", priority, weight, port)
                self.name(target, compress=False)  # RFC 2782: the target is never compressed
            case Soa() if rtype == SOA:
                self.name(rdata.mname)
                self.name(rdata.rname)
                self.out += struct.pack("!IIIII", *rdata[2:])
            case _:
                raise TypeError(f"cannot encode {rdata!r} as type {rtype}")

    def opt(self, *, payload: int, extended_rcode: int, do: bool) -> None:
        """Our OPT: version 0, no options (unknown client options are never echoed)."""
        ttl = (extended_rcode << 24) | (0x8000 if do else 0)
        self.out += b"\x00" + RR_HEADER.pack(OPT, payload, ttl, 0)
