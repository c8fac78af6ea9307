"""The hand-written codec against dnslib (the library the project started with), per message.

    .venv/bin/python -m bench.codec        # prints a table, writes bench/results/codec.json

Process time per operation (best of 5 repeats), on the same messages: parsing a plain query,
answering a zone hit end to end (``Responder.respond``), and encoding a 60-record reply.
"""

from __future__ import annotations

import json
import sys
import time
import timeit
from typing import Any

import dnslib

from bench.common import RESULTS
from kubedns.answer.cluster import ClusterZone
from kubedns.answer.respond import Responder
from kubedns.config import load
from kubedns.dns.query import cache_key, parse_query
from kubedns.dns.template import RR, Reply, encode
from kubedns.index import REQUIRED_KINDS, RecordIndex
from kubedns.objects import Service
from kubedns.sources.events import Replace, Upsert

NAME = "web.shop.svc.cluster.local"


def _per_op(stmt: Any, number: int) -> float:
    """Microseconds of process time per call, best of five."""
    runs = timeit.repeat(stmt, number=number, repeat=5, timer=time.process_time)
    return min(runs) / number * 1e6


def measure(number: int = 20000) -> dict[str, Any]:
    query = dnslib.DNSRecord.question(NAME, "A").pack()
    index = RecordIndex(zone="cluster.local", serial=1)
    for kind in REQUIRED_KINDS:
        index.apply(Replace(kind, ()))
    index.apply(Upsert(Service("shop", "web", "ClusterIP", ("10.96.0.5",), ())))
    responder = Responder(ClusterZone(index, load()))
    responder.respond(query, tcp=False)
    parsed = parse_query(query)
    assert parsed is not None
    answer = [RR(NAME, 1, 5, f"10.1.0.{i}") for i in range(60)]
    reply = dnslib.DNSRecord.parse(query).reply()
    for i in range(60):
        reply.add_answer(dnslib.RR(NAME, dnslib.QTYPE.A, rdata=dnslib.A(f"10.1.0.{i}"), ttl=5))
    rows = {
        "parse a query": (
            _per_op(lambda: parse_query(query), number),
            _per_op(lambda: dnslib.DNSRecord.parse(query), number),
        ),
        "cache key of a query (the hot path's only parse)": (
            _per_op(lambda: cache_key(query, False, 1232), number),
            None,
        ),
        "zone hit, query bytes to reply bytes": (
            _per_op(lambda: responder.respond(query, tcp=False), number),
            _per_op(lambda: dnslib.DNSRecord.parse(query).reply().pack(), number),
        ),
        "encode 60 A records": (
            _per_op(lambda: encode(parsed.question, Reply(answer=answer), rotate=True), 500),
            _per_op(reply.pack, 500),
        ),
    }
    return {
        "python": sys.version.split()[0],
        "dnslib": getattr(dnslib, "version", "?"),
        "rows": {
            name: {"kubedns_us": ours, "dnslib_us": theirs} for name, (ours, theirs) in rows.items()
        },
    }


def render(results: dict[str, Any]) -> str:
    """The Markdown section for BENCHMARKS.md."""
    lines = [
        "## The codec against dnslib (`bench/codec.py`)",
        "",
        "Process time per operation, best of five, same messages. The dnslib column for a zone",
        "hit is only its parse, reply and pack of the same query: no lookup, so a lower bound.",
        "",
        "| operation | kubedns codec, us | dnslib, us | dnslib / kubedns |",
        "|---|--:|--:|--:|",
    ]
    for name, row in results["rows"].items():
        ours, theirs = row["kubedns_us"], row["dnslib_us"]
        ratio = f"{theirs / ours:.0f}x" if theirs else ""
        theirs_text = f"{theirs:.2f}" if theirs else "(none)"
        lines.append(f"| {name} | {ours:.2f} | {theirs_text} | {ratio} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    results = measure()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "codec.json").write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
