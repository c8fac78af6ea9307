"""Amplification: the largest UDP reply and the largest reply/query byte ratio kubedns can be
made to send (target 4 of issue 8: no UDP reply over 1232 bytes, at most 35 bytes out per
byte in).

    .venv/bin/python -m bench.amplification [--services 1000] [--namespaces 100]

kubedns serves the attack benchmark's cluster (``bench.attack``: the zone benchmark's cluster
plus ``big.attack``, a headless Service with 2,000 ready endpoints and named ports) and forwards
everything else to an origin dnsmasq that holds large answers: ``many.example.org`` (100 A
records, 1.6 kB), ``m.io`` (the same 100 A records under the shortest realistic name: an
attacker picks a short name of a domain they control), ``txt.example.org`` (one TXT of 12
strings, 1.6 kB) and ``*.example.com`` (one A, one AAAA). nsd serves the same cluster
records, for reference.

Every question of ``questions()`` is asked once per EDNS shape: no EDNS, and EDNS with UDP
payload 512, 1232, 4096 and 65535, each with DO clear and set. Queries are what a stub sends
(header, question, an OPT record without options): nothing is padded, so the ratio is the
one an attacker spoofing a victim's address would get. Each reply is read whole
(``recvfrom(65535)``). Writes ``bench/results/amplification.json``.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import attack, gen_cluster, zone
from bench.common import (
    RESULTS,
    Peer,
    dnsmasq_argv,
    free_port,
    kubedns_argv,
    need,
    start,
)

MAX_UDP = 1232
MAX_RATIO = 35.0
MANY_A = 100
TXT_STRINGS = 12
ORIGIN_TTL = 300

PAYLOADS: tuple[int | None, ...] = (None, 512, 1232, 4096, 65535)


def questions(services: int, namespaces: int) -> list[tuple[str, str, str]]:
    """(name, qtype, what it is): the worst cases the zone and the forwarder can be asked."""
    plans = gen_cluster.shapes(services=services, namespaces=namespaces, endpoints=3 * services)
    clusterip = next(p for p in plans if not p.headless)
    svc = f"{clusterip.name}.{clusterip.namespace}.svc.{zone.ZONE}"
    big, srv = attack.BIG_NAME, attack.BIG_SRV
    first_ip = str(gen_cluster.POD_CIDR[attack.BIG_POD_OFFSET])
    ptr = ".".join(reversed(first_ip.split("."))) + ".in-addr.arpa"
    out = [(big, t, "2,000-endpoint headless Service") for t in ("A", "AAAA", "ANY", "TXT")]
    out += [(big, "SRV", "2,000-endpoint headless Service, SRV of every port")]
    out += [(srv, t, "2,000-endpoint headless Service, one port") for t in ("SRV", "ANY")]
    out += [(svc, t, "ClusterIP Service") for t in ("A", "SRV", "ANY")]
    out += [(zone.ZONE, t, "zone apex") for t in ("SOA", "NS", "ANY")]
    out += [(f"dns-version.{zone.ZONE}", "TXT", "schema version")]
    out += [(f"nope.{zone.ZONE}", "A", "NXDOMAIN with SOA")]
    out += [(ptr, "PTR", "PTR of an endpoint"), ("10.in-addr.arpa", "ANY", "reverse apex")]
    out += [("many.example.org", t, f"forwarded, {MANY_A} A records") for t in ("A", "ANY")]
    out += [("m.io", t, f"forwarded, short name, {MANY_A} A records") for t in ("A", "ANY")]
    out += [("txt.example.org", t, "forwarded, 1.6 kB TXT") for t in ("TXT", "ANY")]
    out += [("host0.example.com", "A", "forwarded, one A")]
    return out


def shapes() -> list[tuple[int | None, bool]]:
    return [(None, False)] + [(p, do) for p in PAYLOADS if p is not None for do in (False, True)]


def ask(port: int, packet: bytes, *, timeout: float = 2.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, ("127.0.0.1", port))
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            return None
    return data


def probe(
    peer: Peer, asked: Sequence[tuple[str, str, str]], *, timeout: float = 2.0
) -> list[dict[str, Any]]:
    rows = []
    for n, (name, qtype, what) in enumerate(asked):
        for payload, do in shapes():
            packet = attack.query_wire(0x4000 + n, name, qtype, payload=payload, do=do)
            reply = ask(peer.port, packet, timeout=timeout)
            row: dict[str, Any] = {
                "name": name,
                "qtype": qtype,
                "what": what,
                "payload": payload,
                "do": do,
                "query_bytes": len(packet),
                "reply_bytes": len(reply) if reply else 0,
                "answered": reply is not None,
            }
            if reply is not None and len(reply) >= 12:
                _, flags, _, ancount = struct.unpack_from("!HHHH", reply)
                row |= {"tc": bool(flags & 0x0200), "rcode": flags & 0xF, "answers": ancount}
            row["ratio"] = round(row["reply_bytes"] / row["query_bytes"], 2)
            rows.append(row)
    return rows


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    answered = [r for r in rows if r["answered"]]
    largest = max(answered, key=lambda r: r["reply_bytes"], default=None)
    steepest = max(answered, key=lambda r: r["ratio"], default=None)
    return {
        "queries": len(rows),
        "answered": len(answered),
        "max_reply_bytes": largest["reply_bytes"] if largest else 0,
        "max_reply": largest,
        "max_ratio": steepest["ratio"] if steepest else 0.0,
        "max_ratio_query": steepest,
        "over_1232": sum(r["reply_bytes"] > MAX_UDP for r in answered),
        "over_ratio": sum(r["ratio"] > MAX_RATIO for r in answered),
        "offenders": sorted(
            {
                f"{r['name']} {r['qtype']}"
                for r in answered
                if r["reply_bytes"] > MAX_UDP or r["ratio"] > MAX_RATIO
            }
        ),
    }


def origin_argv(port: int) -> list[str]:
    many = [
        f"--host-record={name},192.0.2.{i + 1}"
        for name in ("many.example.org", "m.io")
        for i in range(MANY_A)
    ]
    strings = ",".join(f'"{f"t{i:02d}" * 33}"' for i in range(TXT_STRINGS))
    return dnsmasq_argv(
        port,
        *many,
        f"--txt-record=txt.example.org,{strings}",
        "--address=/example.com/192.0.2.1",
        "--address=/example.com/2001:db8::1",
        f"--local-ttl={ORIGIN_TTL}",
    )


def run(
    *,
    services: int = 1000,
    namespaces: int = 100,
    endpoints: int = attack.BIG_ENDPOINTS,
    peers: Sequence[str] = ("nsd",),
    workdir: Path | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kubedns-bench-amplification-") as tmp:
        work = workdir or Path(tmp)
        snapshot = attack.write_cluster(
            work / "cluster.json", services=services, namespaces=namespaces, endpoints=endpoints
        )
        asked = questions(services, namespaces)
        started: list[Peer] = []
        results: dict[str, list[dict[str, Any]]] = {}
        try:
            origin_port = free_port()
            started.append(
                start(
                    "origin-dnsmasq",
                    origin_argv(origin_port),
                    port=origin_port,
                    workdir=work,
                    probe="example.com",
                )
            )
            port = free_port()
            argv = kubedns_argv(snapshot, port=port, upstream_port=origin_port)
            kubedns = start("kubedns", argv, port=port, workdir=work)
            started.append(kubedns)
            # Forwarded names twice: the first asks fill the cache, the rows come from hits.
            probe(kubedns, [q for q in asked if not q[0].endswith(zone.ZONE)])
            results["kubedns"] = probe(kubedns, asked)
            if "nsd" in peers:
                by_zone = zone.records(zone.load_index(snapshot))
                port = free_port()
                conf = zone.nsd_conf(work, port=port, zones=zone.nsd_zone_files(by_zone, work))
                nsd = start("nsd", [need("nsd"), "-d", "-c", str(conf)], port=port, workdir=work)
                started.append(nsd)
                in_zone = [q for q in asked if q[0].endswith((zone.ZONE, ".arpa"))]
                results["nsd"] = probe(nsd, in_zone)
        finally:
            for peer in reversed(started):
                peer.stop()
    return {
        "services": services,
        "namespaces": namespaces,
        "big_endpoints": endpoints,
        "payloads": ["none" if p is None else p for p in PAYLOADS],
        "questions": len(asked),
        "limits": {"max_udp_bytes": MAX_UDP, "max_ratio": MAX_RATIO},
        "summary": {server: summary(rows) for server, rows in results.items()},
        "rows": results,
    }


def _shape(r: dict[str, Any]) -> str:
    if r["payload"] is None:
        return "no EDNS"
    return f"EDNS {r['payload']}{' DO' if r['do'] else ''}"


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The worst EDNS shape of every question (largest reply, then largest ratio)."""
    head = (
        "| question | what | worst shape | query bytes | reply bytes | TC | answers | "
        "ratio | largest reply over all shapes |\n|---|---|---|--:|--:|--:|--:|--:|--:|\n"
    )
    worst: dict[tuple[str, str], dict[str, Any]] = {}
    largest: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["name"], r["qtype"])
        largest[key] = max(largest.get(key, 0), r["reply_bytes"])
        if key not in worst or r["ratio"] > worst[key]["ratio"]:
            worst[key] = r
    lines = []
    for key, r in worst.items():
        flag = " **over**" if largest[key] > MAX_UDP or r["ratio"] > MAX_RATIO else ""
        lines.append(
            f"| `{r['name']} {r['qtype']}` | {r['what']} | {_shape(r)} | {r['query_bytes']} | "
            f"{r['reply_bytes']} | {'TC' if r.get('tc') else ''} | {r.get('answers', '-')} | "
            f"{r['ratio']:.1f} | {largest[key]:,}{flag} |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--endpoints", type=int, default=attack.BIG_ENDPOINTS)
    parser.add_argument("--peers", default="nsd", help="comma-separated peers beside kubedns")
    args = parser.parse_args(argv)
    result = run(
        services=args.services,
        namespaces=args.namespaces,
        endpoints=args.endpoints,
        peers=[p for p in args.peers.split(",") if p],
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "amplification.json").write_text(json.dumps(result, indent=2) + "\n")
    for server, rows in result["rows"].items():
        print(f"**{server}**\n\n{table(rows)}")
    print(json.dumps({s: {k: v for k, v in m.items() if k in ("max_reply_bytes", "max_ratio",
          "over_1232", "over_ratio", "offenders")} for s, m in result["summary"].items()},
          indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
