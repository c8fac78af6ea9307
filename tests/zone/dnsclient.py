"""A small DNS client for the zone tests: raw bytes over UDP/TCP, replies parsed by dnspython.

Replies are kept as raw bytes too, so tests can read the header counts (dnspython silently merges
duplicate records) and the exact bytes of the echoed question.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

TIMEOUT = 2.0
Address = tuple[str, int]


def udp_exchange(address: Address, wire: bytes, *, timeout: float = TIMEOUT) -> bytes:
    """One datagram out, one back; raises TimeoutError when the server stays silent."""
    with socket.socket(_family(address), socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(wire, address)
        data, _ = sock.recvfrom(65535)  # socket.timeout is TimeoutError since Python 3.10
        return data


def _family(address: Address) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address[0] else socket.AF_INET


def udp_silent(address: Address, wire: bytes, probe: bytes) -> bool:
    """True when the server answers nothing to ``wire``: it is sent first, then ``probe`` (a
    good query) from the same socket, and the first datagram back must be the probe's reply.
    The server reads one socket in order, so a reply to ``wire`` would have come first; no
    waiting on a timer is needed."""
    with socket.socket(_family(address), socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(wire, address)
        sock.sendto(probe, address)
        data, _ = sock.recvfrom(65535)
        return data[:2] == probe[:2] and len(data) >= len(probe) and data[2] & 0x80 != 0


def tcp_frame(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


def tcp_read(sock: socket.socket) -> bytes:
    prefix = _read_exactly(sock, 2)
    (length,) = struct.unpack("!H", prefix)
    return _read_exactly(sock, length)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def tcp_connect(address: Address) -> socket.socket:
    sock = socket.create_connection(address, timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    return sock


def tcp_exchange(address: Address, wire: bytes) -> bytes:
    with tcp_connect(address) as sock:
        sock.sendall(tcp_frame(wire))
        return tcp_read(sock)


@dataclass(frozen=True)
class Counts:
    qd: int
    an: int
    ns: int
    ar: int


@dataclass(frozen=True)
class Reply:
    """One reply: raw bytes, the parsed message, and normalised section lines."""

    raw: bytes
    msg: dns.message.Message

    @property
    def rcode(self) -> int:
        return int(self.msg.rcode())

    @property
    def rcode_text(self) -> str:
        return dns.rcode.to_text(self.msg.rcode())

    @property
    def flags(self) -> int:
        return int(self.msg.flags)

    @property
    def aa(self) -> bool:
        return bool(self.msg.flags & dns.flags.AA)

    @property
    def tc(self) -> bool:
        return bool(self.msg.flags & dns.flags.TC)

    @property
    def counts(self) -> Counts:
        _id, _flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", self.raw)
        return Counts(qd, an, ns, ar)

    @property
    def answer(self) -> list[str]:
        return lines(self.msg.answer)

    @property
    def authority(self) -> list[str]:
        return lines(self.msg.authority)

    @property
    def additional(self) -> list[str]:
        return lines(self.msg.additional)

    @property
    def authority_types(self) -> list[str]:
        return [dns.rdatatype.to_text(rrset.rdtype) for rrset in self.msg.authority]


def lines(section: list[dns.rrset.RRset]) -> list[str]:
    """``name ttl class type rdata`` per record, lowercase; SRV rdata is ``port target`` (the
    priority and weight are the implementation's choice, RFC 2782 and the schema leave them
    open)."""
    out = []
    for rrset in section:
        for rdata in rrset:
            if rrset.rdtype == dns.rdatatype.SRV:
                text = f"{rdata.port} {rdata.target}"
            else:
                text = rdata.to_text()
            rtype = dns.rdatatype.to_text(rrset.rdtype)
            out.append(f"{rrset.name} {rrset.ttl} IN {rtype} {text}".lower())
    return sorted(out)


def make_query(
    qname: str,
    qtype: str | int,  # an int for types dnspython has no name for (RFC 3597)
    *,
    edns: int | None = None,
    payload: int = 1232,
    dnssec: bool = False,
    rd: bool = True,
    rdclass: str = "IN",
) -> dns.message.QueryMessage:
    message = dns.message.make_query(
        qname,
        dns.rdatatype.RdataType.make(qtype),
        rdclass=rdclass,
        use_edns=edns if edns is not None else (0 if dnssec else False),
        payload=payload,
        want_dnssec=dnssec,
    )
    if not rd:
        message.flags &= ~dns.flags.RD
    return message


def parse(raw: bytes) -> Reply:
    return Reply(raw, dns.message.from_wire(raw))


def ask(
    address: Address,
    qname: str,
    qtype: str | int = "A",
    *,
    tcp: bool = False,
    edns: int | None = None,
    payload: int = 1232,
    dnssec: bool = False,
    rdclass: str = "IN",
    timeout: float = TIMEOUT,
) -> Reply:
    """Send one query and return the checked reply (same ID, QR set)."""
    query = make_query(qname, qtype, edns=edns, payload=payload, dnssec=dnssec, rdclass=rdclass)
    wire = query.to_wire()
    raw = tcp_exchange(address, wire) if tcp else udp_exchange(address, wire, timeout=timeout)
    reply = parse(raw)
    assert reply.msg.id == query.id
    assert reply.flags & dns.flags.QR
    return reply


def raw_query(
    qname_wire: bytes,
    qtype: int = 1,
    *,
    msg_id: int = 0x1234,
    flags: int = 0x0100,
    qdcount: int = 1,
    qclass: int = 1,
    tail: bytes = b"",
    arcount: int = 0,
) -> bytes:
    """A hand-built query: header, one question with ``qname_wire`` taken verbatim, then
    ``tail`` (for example an OPT record, counted by ``arcount``)."""
    header = struct.pack("!HHHHHH", msg_id, flags, qdcount, 0, 0, arcount)
    return header + qname_wire + struct.pack("!HH", qtype, qclass) + tail


def wire_name(text: str) -> bytes:
    """``Web.Shop.`` -> length-prefixed labels, letter case kept."""
    out = b""
    for label in text.rstrip(".").split("."):
        encoded = label.encode("ascii")
        out += bytes((len(encoded),)) + encoded
    return out + b"\x00"


def opt_record(
    *, payload: int = 1232, version: int = 0, do: bool = False, options: bytes = b"", flags: int = 0
) -> bytes:
    """An OPT pseudo-record (RFC 6891) with raw option bytes."""
    ttl = (version << 16) | (0x8000 if do else 0) | flags
    return b"\x00" + struct.pack("!HHIH", 41, payload, ttl, len(options)) + options


def absolute(name: str) -> dns.name.Name:
    return dns.name.from_text(name)
