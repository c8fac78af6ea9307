"""Coverage-guided fuzzing of the DNS codec (atheris): the same properties as
``tests/dns/test_properties.py``, run for as long as you like. See ``fuzz/README.md``.

Each input is one packet, read three ways:

* as a client's query: ``parse_query`` returns None or a ``Query``, or raises ``QueryError``;
  a query then gets a reply (records chosen from the input's tail) that must fit its limit,
  set TC exactly when answer or authority records were cut, and read back with dnspython;
  an error reply (``render_error``) must read back too;
* as an upstream's reply: ``scan`` returns a ``Scanned`` or raises ``WireError``, and a
  scanned template rendered against a plain query must read back with dnspython.

Anything else (another exception, an oversized reply, a reply dnspython cannot read) is a
crash that atheris reports with the input that caused it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import dns.exception
    import dns.flags
    import dns.message

    from kubedns.dns.query import QueryError, parse_query
    from kubedns.dns.render import render, render_error
    from kubedns.dns.template import RR, Reply, Soa, Srv, encode, scan
    from kubedns.dns.wire import OPCODE_MASK, WireError

TYPES = (1, 28, 5, 33, 16, 12, 6)
SUFFIXES = ("", "svc.cluster.local", "cluster.local", "a", "b.c")


def _reply_for(fdp: atheris.FuzzedDataProvider, qname: str) -> Reply:
    """Records owned by names near the query's (so compression against it is exercised)."""

    def name() -> str:
        head = fdp.ConsumeUnicodeNoSurrogates(8).encode("ascii", "ignore").decode()
        label = "".join(c for c in head.lower() if c.isalnum() or c in "-_")[:63]
        tail = str(fdp.PickValueInList([*SUFFIXES, qname]))
        if len(label) + len(tail) > 250:  # the answer path never writes a name over 255 bytes
            return tail
        return ".".join(p for p in (label, tail) if p)

    def record() -> RR:
        rtype = fdp.PickValueInList(list(TYPES))
        ttl = fdp.ConsumeIntInRange(0, 0x7FFF_FFFF)
        rdata: str | Srv | Soa
        match rtype:
            case 1:
                rdata = ".".join(str(fdp.ConsumeIntInRange(0, 255)) for _ in range(4))
            case 28:
                rdata = f"fd00::{fdp.ConsumeIntInRange(0, 0xFFFF):x}"
            case 5 | 12:
                rdata = name()
            case 33:
                priority, weight, port = (fdp.ConsumeIntInRange(0, 0xFFFF) for _ in range(3))
                rdata = Srv(priority, weight, port, name())
            case 16:
                rdata = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 600))
            case _:
                rdata = Soa(name(), name(), *(fdp.ConsumeIntInRange(0, 2**32 - 1) for _ in "12345"))
        return RR(name(), rtype, ttl, rdata)

    def section(most: int) -> list[RR]:
        return [record() for _ in range(fdp.ConsumeIntInRange(0, most))]

    answer = section(30)
    if answer and fdp.ConsumeBool():  # a long RRset: the rotation group
        answer += [answer[-1]] * fdp.ConsumeIntInRange(0, 60)
    return Reply(
        rcode=fdp.ConsumeIntInRange(0, 5),
        authoritative=fdp.ConsumeBool(),
        answer=answer,
        authority=section(3),
        additional=section(6),
    )


def _read_back(wire: bytes) -> dns.message.Message:
    try:
        return dns.message.from_wire(wire, one_rr_per_rrset=True)
    except dns.exception.DNSException as exc:
        raise AssertionError(f"dnspython cannot read our reply {wire!r}: {exc!r}") from exc


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    tcp = fdp.ConsumeBool()
    udp_size = fdp.ConsumeIntInRange(512, 4096)
    rotate = fdp.ConsumeBool()
    packet = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 700))

    try:
        query = parse_query(packet, tcp=tcp, udp_size=udp_size)
    except QueryError as error:
        out = render_error(error, udp_size=udp_size, recursion_available=True)
        if not error.flags & OPCODE_MASK:  # dnspython reads an UPDATE's sections by other rules
            _read_back(out)
        query = None
    if query is not None:
        reply = _reply_for(fdp, query.qname if "\\" not in query.qname else "")
        out = render(encode(query.question, reply, rotate=rotate), query, udp_size=udp_size)
        assert len(out) <= query.limit, (len(out), query.limit)
        message = _read_back(out)
        kept = len(message.answer) + len(message.authority)
        cut = kept < len(reply.answer) + len(reply.authority)
        assert bool(message.flags & dns.flags.TC) == cut, (message.flags, cut)

    try:
        scanned = scan(packet, rotate=rotate)
    except WireError:
        return
    if scanned.question is not None and query is not None and not scanned.template.ext_rcode:
        out = render(scanned.template, query, udp_size=udp_size)
        assert len(out) <= query.limit, (len(out), query.limit)


def write_seeds(directory: Path) -> None:
    """A starting corpus: ordinary queries and replies as dnspython writes them."""
    directory.mkdir(parents=True, exist_ok=True)
    queries = [
        dns.message.make_query("web.shop.svc.cluster.local", "A"),
        dns.message.make_query("_http._tcp.web.shop.svc.cluster.local", "SRV", use_edns=0),
        dns.message.make_query("example.com", "AAAA", use_edns=0, payload=4096, want_dnssec=True),
        dns.message.make_query("10.0.96.10.in-addr.arpa", "PTR", use_edns=0, pad=128),
    ]
    for i, query in enumerate(queries):
        reply = dns.message.make_response(query)
        for n, message in enumerate((query, reply)):
            # A few bytes for the flags and sizes the data provider reads first, then the packet.
            (directory / f"seed-{i}-{n}").write_bytes(bytes(8) + message.to_wire())


def main() -> None:
    if sys.argv[1:2] == ["--write-seeds"]:
        write_seeds(Path(sys.argv[2]))
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
