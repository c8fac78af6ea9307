"""Wire-format constants and the name helpers every part of the codec shares (RFC 1035)."""

from __future__ import annotations

import struct
from typing import NamedTuple

HEADER = struct.Struct("!HHHHHH")
RR_HEADER = struct.Struct("!HHIH")
"""type, class, TTL, RDLENGTH: what follows every owner name."""
TYPE_CLASS = struct.Struct("!HH")
HEADER_SIZE = 12

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16
QR, AA, TC, RD, RA, AD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0020, 0x0010
OPCODE_MASK = 0x7800
EDNS_DO = 0x8000
"""The DO bit, in the OPT record's TTL field (RFC 3225)."""
CLASS_IN = 1
TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, TYPE_PTR, TYPE_AAAA, TYPE_OPT = 1, 2, 5, 6, 12, 28, 41

MIN_UDP_PAYLOAD = 512
"""What every client takes, with or without EDNS (RFC 1035 4.2.1, RFC 6891 6.2.5)."""
TCP_LIMIT = 65535
"""A TCP message's two-byte length prefix caps it here (RFC 1035 4.2.2)."""
MAX_NAME = 255
MAX_POINTERS = 64
"""Compression pointers followed in one name before it counts as a loop."""

RCODE_NAMES = {
    NOERROR: "NOERROR",
    FORMERR: "FORMERR",
    SERVFAIL: "SERVFAIL",
    NXDOMAIN: "NXDOMAIN",
    NOTIMP: "NOTIMP",
    REFUSED: "REFUSED",
    BADVERS: "BADVERS",
}


TYPE_NAMES = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT",
    28: "AAAA", 33: "SRV", 35: "NAPTR", 39: "DNAME", 41: "OPT", 43: "DS", 46: "RRSIG",
    47: "NSEC", 48: "DNSKEY", 50: "NSEC3", 52: "TLSA", 64: "SVCB", 65: "HTTPS", 99: "SPF",
    251: "IXFR", 252: "AXFR", 255: "ANY", 257: "CAA",
}  # fmt: skip
CLASS_NAMES = {1: "IN", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}


def type_name(qtype: int) -> str:
    """``A``, ``AAAA``... or ``TYPE65000`` (RFC 3597), as dig and CoreDNS's logs write it."""
    return TYPE_NAMES.get(qtype) or f"TYPE{qtype}"


def class_name(qclass: int) -> str:
    return CLASS_NAMES.get(qclass) or f"CLASS{qclass}"


class WireError(ValueError):
    """The bytes are not a DNS message this codec can walk; the message says where."""


def rcode_name(rcode: int) -> str:
    """``NOERROR``, ``NXDOMAIN``...: the spelling CoreDNS uses in metric labels."""
    return RCODE_NAMES.get(rcode, str(rcode))


def name_to_wire(name: str) -> bytes:
    """``www.example.com`` (trailing dot optional; the root is ``""`` or ``.``) in wire form,
    uncompressed. Raises ``WireError`` for an empty or over-long label or name."""
    stripped = name.rstrip(".")
    out = bytearray()
    for label in stripped.split(".") if stripped else ():
        raw = label.encode("ascii") if label.isascii() else label.encode("idna")
        if not 0 < len(raw) <= 63:
            raise WireError(f"label {label!r} in {name!r} is empty or longer than 63 bytes")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > MAX_NAME:
        raise WireError(f"{name!r} is longer than {MAX_NAME} bytes")
    return bytes(out)


def wire_to_text(name: bytes) -> str:
    """An uncompressed wire name in presentation form, lowercased, without the trailing dot (the
    root is ``""``). A dot or backslash inside a label is escaped (RFC 4343), so ``web\\.shop``
    stays one label and can never match the two-label ``web.shop``; other bytes pass as
    latin-1, so no input can fail to convert. Only ASCII letters are lowercased (RFC 4343)."""
    if b"." in name or b"\\" in name:
        return _escaped_text(name)
    # No byte needs escaping: overwrite each length byte with a dot and decode once, rather
    # than slicing and decoding label by label (a 127-label name costs 127 of those).
    out = bytearray(name)
    pos = 0
    while out[pos]:
        length = out[pos]
        out[pos] = 0x2E
        pos += length + 1
    # bytes.lower() folds ASCII letters only, as DNS does (RFC 4343); str.lower() would also
    # fold latin-1 capitals and make two different names one.
    return out[1:pos].lower().decode("latin-1")


def _escaped_text(name: bytes) -> str:
    labels = []
    pos = 0
    while name[pos]:
        length = name[pos]
        label = name[pos + 1 : pos + 1 + length].lower().decode("latin-1")
        if "." in label or "\\" in label:
            label = label.replace("\\", "\\\\").replace(".", "\\.")
        labels.append(label)
        pos += length + 1
    return ".".join(labels)


def read_name(data: bytes, pos: int) -> tuple[bytes, int]:
    """The name at ``pos`` decompressed into wire form, and the offset just past it where it
    sits. Pointers must point backwards (RFC 1035 4.1.4: to a prior occurrence), which also
    rules out loops; raises ``WireError`` for anything that runs off the end."""
    out = bytearray()
    end = -1
    jumps = 0
    size = len(data)
    while True:
        if pos >= size:
            raise WireError("name runs past the end")
        length = data[pos]
        if length >= 0xC0:
            if pos + 2 > size:
                raise WireError("compression pointer runs past the end")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= pos or jumps >= MAX_POINTERS:
                raise WireError("compression pointer does not point backwards")
            if end < 0:
                end = pos + 2
            jumps += 1
            pos = target
            continue
        if length > 63:
            raise WireError("reserved label type")
        if length == 0:
            out.append(0)
            if len(out) > MAX_NAME:
                raise WireError("name longer than 255 bytes")
            return bytes(out), (end if end >= 0 else pos + 1)
        out += data[pos : pos + 1 + length]
        pos += length + 1
        if pos > size:
            raise WireError("label runs past the end")


def skip_name(data: bytes, pos: int, pointers: list[int] | None = None) -> int:
    """The offset just past the name at ``pos`` without decompressing it; checks the labels
    and that a pointer points backwards, and notes pointer targets in ``pointers`` if given."""
    size = len(data)
    while True:
        if pos >= size:
            raise WireError("name runs past the end")
        length = data[pos]
        if length >= 0xC0:
            if pos + 2 > size:
                raise WireError("compression pointer runs past the end")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= pos:
                raise WireError("compression pointer does not point backwards")
            if pointers is not None:
                pointers.append(target)
            return pos + 2
        if length > 63:
            raise WireError("reserved label type")
        if length == 0:
            return pos + 1
        pos += length + 1


class RecordAt(NamedTuple):
    """Where the parts of one resource record sit in a message."""

    owner_end: int
    rtype: int
    rclass: int
    ttl: int
    rdata: int
    end: int


def record_at(data: bytes, pos: int, pointers: list[int] | None = None) -> RecordAt:
    """The record at ``pos``, its name walked (``skip_name``) and its RDATA within ``data``."""
    owner_end = skip_name(data, pos, pointers)
    if owner_end + RR_HEADER.size > len(data):
        raise WireError("record header runs past the end")
    rtype, rclass, ttl, rdlength = RR_HEADER.unpack_from(data, owner_end)
    rdata = owner_end + RR_HEADER.size
    end = rdata + rdlength
    if end > len(data):
        raise WireError("record data runs past the end")
    return RecordAt(owner_end, rtype, rclass, ttl, rdata, end)


def opt_record(*, udp_size: int, do: bool, ext_rcode: int = 0) -> bytes:
    """Our OPT record, in queries to upstreams and in every reply: version 0, no options
    (a client's options are never echoed), the DO bit and the upper rcode bits as given."""
    ttl = (ext_rcode << 24) | (EDNS_DO if do else 0)
    return b"\x00" + RR_HEADER.pack(TYPE_OPT, udp_size, ttl, 0)
