"""The per-query log (``logging.queries``): one line per query in the format of CoreDNS's
``log`` plugin, its CommonLogFormat::

    {remote}:{port} - {id} "{type} {class} {name} {proto} {size} {do} {bufsize}"
        {rcode} {rflags} {rsize} {duration}

(one line, wrapped here);

for example ``10.0.0.1:53114 - 31337 "A IN web.default.svc.cluster.local. udp 74 false 1232"
NOERROR qr,aa,rd 118 0.000061s``. As CoreDNS writes them: an IPv6 client in brackets; the name
lowercased with a trailing dot; ``bufsize`` the client's EDNS size (512 without EDNS, 65535
over TCP); ``rflags`` the reply's header flags in the order qr,aa,tc,rd,ra,z,ad,cd; the
duration in seconds from the query's arrival to its reply being ready.

Only the transports know the client, so they write the lines, and only when the log is on:
they check ``enabled`` once per batch and answer through a separate, slower path then, so the
fast path pays nothing while it is off. Lines go to the ``kubedns.queries`` logger at info
level (so ``logging.format`` applies; the JSON format also writes each field as a key). A
line is bounded: a name is at most 255 bytes and every byte outside printable ASCII is written
as ``\\DDD`` (RFC 1035 presentation format), so no client can forge or break a line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable

from kubedns import sockets
from kubedns.dns.query import Edns, QueryError, parse_query
from kubedns.dns.wire import (
    HEADER_SIZE,
    MAX_NAME,
    MIN_UDP_PAYLOAD,
    RCODE_NAMES,
    TCP_LIMIT,
    TYPE_CLASS,
    TYPE_OPT,
    class_name,
    type_name,
)

log = logging.getLogger("kubedns.queries")

Client = tuple[str, int]
"""The client's address and port."""

_FLAGS = (
    (0x8000, "qr"), (0x0400, "aa"), (0x0200, "tc"), (0x0100, "rd"),
    (0x0080, "ra"), (0x0040, "z"), (0x0020, "ad"), (0x0010, "cd"),
)  # fmt: skip
_SPECIAL = frozenset(b".;()\"\\@' ")
"""Printable bytes that presentation format escapes with a backslash."""


class QueryLog:
    """The switch and the writer of the per-query log; ``enabled`` may change at any time
    (a reloaded config), and takes effect from the next batch."""

    def __init__(self, *, enabled: bool = False) -> None:
        self.enabled = enabled

    def write(
        self, client: Client, query: bytes, reply: bytes, *, tcp: bool, seconds: float
    ) -> None:
        message, fields = describe(client, query, reply, tcp=tcp, seconds=seconds)
        log.info("%s", message, extra={"fields": fields})

    async def later(
        self, result: Awaitable[bytes | None], client: Client, query: bytes, *, started: float
    ) -> bytes | None:
        """Await a TCP reply that waits on an upstream, and log it once it is ready."""
        reply = await result
        if reply is not None:
            self.write(client, query, reply, tcp=True, seconds=time.perf_counter() - started)
        return reply


def describe(
    client: Client, query: bytes, reply: bytes, *, tcp: bool, seconds: float
) -> tuple[str, dict[str, object]]:
    """The line for one query and its reply, and its fields for structured formats."""
    host, port = client
    host = sockets.unmapped(host)  # an IPv4 client of a dual-stack socket, as CoreDNS logs it
    remote = f"[{host}]" if ":" in host else host
    msg_id = int.from_bytes(query[:2], "big")
    name, qtype, qclass = _question(query)
    edns = _edns(query, tcp=tcp)
    do = edns is not None and edns.do
    if tcp:
        bufsize = TCP_LIMIT
    else:
        bufsize = edns.payload if edns is not None and edns.payload > MIN_UDP_PAYLOAD else 512
    rcode = _rcode(reply)
    flags = ",".join(text for bit, text in _FLAGS if int.from_bytes(reply[2:4], "big") & bit)
    proto = "tcp" if tcp else "udp"
    duration = f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"
    fields: dict[str, object] = {
        "remote": host, "port": port, "id": msg_id, "type": qtype, "class": qclass,
        "name": name, "proto": proto, "size": len(query), "do": do, "bufsize": bufsize,
        "rcode": rcode, "rflags": flags, "rsize": len(reply), "duration": seconds,
    }  # fmt: skip
    message = (
        f'{remote}:{port} - {msg_id} "{qtype} {qclass} {name} {proto} {len(query)} '
        f'{str(do).lower()} {bufsize}" {rcode} {flags or "-"} {len(reply)} {duration}'
    )
    return message, fields


def _question(query: bytes) -> tuple[str, str, str]:
    """Name, type and class of the first question as written, or ``-`` where unreadable."""
    labels: list[str] = []
    pos = HEADER_SIZE
    if len(query) < HEADER_SIZE or query[4:6] == b"\x00\x00":
        return "-", "-", "-"
    while pos < len(query) and pos - HEADER_SIZE < MAX_NAME:
        length = query[pos]
        if length == 0:
            if pos + 5 > len(query):
                break
            qtype, qclass = TYPE_CLASS.unpack_from(query, pos + 1)
            name = ".".join(labels) + "."
            return name, type_name(qtype), class_name(qclass)
        if length > 63:
            break
        labels.append(_label_text(query[pos + 1 : pos + 1 + length].lower()))
        pos += length + 1
    return "-", "-", "-"


def _label_text(label: bytes) -> str:
    out = []
    for byte in label:
        if byte in _SPECIAL:
            out.append("\\" + chr(byte))
        elif 0x21 <= byte <= 0x7E:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


def _edns(query: bytes, *, tcp: bool) -> Edns | None:
    try:
        parsed = parse_query(query, tcp=tcp)
    except QueryError as error:
        return error.edns
    return parsed.edns if parsed is not None else None


def _rcode(reply: bytes) -> str:
    """The reply's rcode name, the OPT's upper bits included (our OPT is the last record,
    eleven bytes, no options)."""
    rcode = reply[3] & 0x0F
    arcount = int.from_bytes(reply[10:12], "big")
    tail = reply[-11:]
    if (
        arcount
        and len(tail) == 11
        and tail[0] == 0
        and int.from_bytes(tail[1:3], "big") == TYPE_OPT
    ):
        rcode |= tail[5] << 4
    return RCODE_NAMES.get(rcode) or str(rcode)
