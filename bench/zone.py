"""Cluster-zone benchmark: kubedns against nsd and unbound serving the same records, one run.

    .venv/bin/python -m bench.zone [--services 1000] [--namespaces 100] [--seconds 10] [--tcp]

A synthetic cluster (``bench.gen_cluster``) is loaded into a ``RecordIndex`` exactly as
``kubedns serve`` loads it, and every owned name is exported: to an nsd zone file per zone
(the cluster zone and the reverse zones, each with SOA and NS) and to unbound
``local-zone: static`` / ``local-data``. The three servers then answer the same names with the
same records; a sample of the query file is cross-checked (rcode and answer records) before
any timing. Each server is run single-threaded (nsd ``server-count: 1``, unbound
``num-threads: 1``), as kubedns is one asyncio thread.

The query file models pods with ``ndots:5`` and the usual search path
``<ns>.svc.cluster.local svc.cluster.local cluster.local``; glibc sends A and AAAA together:

* same-namespace short name of a ClusterIP Service (``svc``): A, AAAA (NODATA unless dual-stack)
* cross-namespace name (``svc.ns``): first ``svc.ns.<own ns>.svc.cluster.local`` (NXDOMAIN),
  then ``svc.ns.svc.cluster.local``, A and AAAA each
* headless Service by short name (A: every ready endpoint; AAAA: NODATA) and StatefulSet peers
  ``<pod>.<svc>``
* SRV by full name ``_http._tcp.<svc>.<ns>.svc.cluster.local`` and a few PTRs of ClusterIPs
* an external name (``api<k>.example.com``): three in-zone search-path expansions, NXDOMAIN, A and
  AAAA each (the fourth, upstream step is ``bench.forward``'s business)

Most of the queries are NXDOMAIN, as in real clusters. Writes ``bench/results/zone.json``; with
``--tcp`` dnsperf sends every query over TCP (``-m tcp``: ``-c`` connections, the ``-q`` queries
in flight pipelined over them, as NodeLocal DNSCache's ``force_tcp`` does) and the results go to
``bench/results/zone-tcp.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import tempfile
import tracemalloc
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import gen_cluster
from bench.common import (
    BURST,
    LOADED,
    RESULTS,
    SINGLE,
    Load,
    Peer,
    answer_summary,
    command_line,
    dnsmasq_argv,
    dnsperf_argv,
    free_port,
    kubedns_argv,
    loadavg,
    measure,
    need,
    query,
    start,
    table,
)
from kubedns.app import Server
from kubedns.config import load as load_config
from kubedns.dns.template import Srv
from kubedns.index import RecordIndex
from kubedns.records import AAAA, PTR, SRV, TXT, A

ZONE = "cluster.local"
SEARCH = ("{ns}.svc." + ZONE, "svc." + ZONE, ZONE)
TTL = 5
"""kubedns's default record TTL and SOA minimum (config ``ttl.records``/``ttl.negative``)."""
DNS_VERSION_TTL = 28800
TYPE_NAMES = {A: "A", AAAA: "AAAA", SRV: "SRV", PTR: "PTR", TXT: "TXT", 5: "CNAME"}


# -- the records kubedns serves ---------------------------------------------------------------


def load_index(snapshot: Path) -> RecordIndex:
    """The index ``kubedns serve --snapshot`` builds (same config path, same loader)."""
    # Forwarding off: only the index is wanted, and no resolver should be consulted.
    config = load_config(None, {"snapshot": snapshot, "forward.enabled": False})
    server = Server(config)
    server.load_sources()
    return server.index


def traced_load(snapshot: Path) -> tuple[RecordIndex, dict[str, float]]:
    """``load_index`` under tracemalloc: the Python heap the loaded index keeps, and the peak
    while the snapshot was parsed (which the process's RSS keeps long after: CPython seldom
    hands freed arenas back to the OS)."""
    gc.collect()
    tracemalloc.start()
    try:
        index = load_index(snapshot)
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    mib = 2.0**20
    return index, {"index_heap_mib": round(current / mib, 1), "load_peak_mib": round(peak / mib, 1)}


def reverse_zone_of(name: str) -> str:
    """The reverse zone an exported PTR goes into: ``<a>.in-addr.arpa`` (one per /8) or the
    ``/8`` of ip6.arpa (``d.f.ip6.arpa``)."""
    labels = name.split(".")
    keep = 3 if name.endswith(".in-addr.arpa") else 4
    return ".".join(labels[-keep:])


def zone_of(name: str) -> str:
    if name == ZONE or name.endswith("." + ZONE):
        return ZONE
    return reverse_zone_of(name)


def _rdata_text(qtype: int, rdata: Any) -> str:
    if qtype == SRV:
        assert isinstance(rdata, Srv)
        return f"{rdata.priority} {rdata.weight} {rdata.port} {rdata.target}."
    if qtype in (PTR, 5):
        return f"{rdata}."
    if qtype == TXT:
        return f'"{rdata}"'
    return str(rdata)


def records(index: RecordIndex) -> dict[str, list[str]]:
    """Every resource record kubedns serves, as master-file lines, grouped by zone: SOA and NS
    at each apex (as kubedns answers them, serial aside), ``dns-version`` TXT, then every owner."""
    nameserver = index.names.nameserver
    by_zone: dict[str, list[str]] = {}
    owned = list(index.owners())
    zones = {ZONE} | {zone_of(name) for name, _ in owned}
    for zone in sorted(zones):
        by_zone[zone] = [
            f"{zone}. {TTL} IN SOA {nameserver}. hostmaster.{ZONE}. "
            f"{index.serial & 0xFFFFFFFF} 7200 1800 86400 {TTL}",
            f"{zone}. {TTL} IN NS {nameserver}.",
        ]
    by_zone[ZONE].append(f'dns-version.{ZONE}. {DNS_VERSION_TTL} IN TXT "1.1.0"')
    for name, rrsets in owned:
        lines = by_zone[zone_of(name)]
        for qtype, rdatas in rrsets.items():
            kind = TYPE_NAMES[qtype]
            lines += [f"{name}. {TTL} IN {kind} {_rdata_text(qtype, r)}" for r in rdatas]
    return by_zone


def nsd_zone_files(by_zone: dict[str, list[str]], directory: Path) -> dict[str, Path]:
    files = {}
    for zone, lines in by_zone.items():
        path = directory / f"{zone}.zone"
        path.write_text(f"$ORIGIN {zone}.\n$TTL {TTL}\n" + "\n".join(lines) + "\n")
        files[zone] = path
    return files


def nsd_conf(directory: Path, *, port: int, zones: dict[str, Path]) -> Path:
    """nsd in the foreground, one server process, no rate limiting (RRL would throttle the
    repeated NXDOMAINs: rrl-ratelimit 0), no database (zones read from text at start), and
    minimal responses (no NS and glue added to positive answers, as kubedns adds none)."""
    conf = directory / "nsd.conf"
    zone_blocks = "".join(f"zone:\n  name: {z}\n  zonefile: {p}\n" for z, p in zones.items())
    conf.write_text(
        f"""server:
  ip-address: 127.0.0.1@{port}
  port: {port}
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "{directory}"
  database: ""
  zonelistfile: "{directory}/zone.list"
  xfrdfile: "{directory}/xfrd.state"
  xfrdir: "{directory}"
  pidfile: "{directory}/nsd.pid"
  logfile: "{directory}/nsd.log"
  verbosity: 0
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
  minimal-responses: yes
  refuse-any: no
  do-ip6: no
remote-control:
  control-enable: no
{zone_blocks}"""
    )
    return conf


def unbound_conf(directory: Path, *, port: int, by_zone: dict[str, list[str]]) -> Path:
    """unbound answering only from local data: ``static`` zones give NXDOMAIN/NODATA with the
    SOA, as an authoritative server would; no recursion happens for these names."""
    conf = directory / "unbound.conf"
    lines = [
        "server:",
        f"  interface: 127.0.0.1@{port}",
        f"  port: {port}",
        "  num-threads: 1",
        "  do-daemonize: no",
        '  chroot: ""',
        '  username: ""',
        f'  directory: "{directory}"',
        '  pidfile: ""',
        "  use-syslog: no",
        '  logfile: ""',
        "  verbosity: 0",
        "  do-ip6: no",
        "  access-control: 127.0.0.0/8 allow",
        '  module-config: "iterator"',
    ]
    for zone, records_ in by_zone.items():
        lines.append(f'  local-zone: "{zone}." static')
        lines += ["  local-data: '" + r + "'" for r in records_]
    lines += ["remote-control:", "  control-enable: no", ""]
    conf.write_text("\n".join(lines))
    return conf


# -- the query mix ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """One thing a pod resolves, with its share of lookups (not of queries)."""

    kind: str
    share: float


LOOKUPS = (
    Lookup("same-namespace service", 0.35),
    Lookup("cross-namespace service", 0.15),
    Lookup("headless service", 0.10),
    Lookup("statefulset peer", 0.03),
    Lookup("SRV", 0.05),
    Lookup("PTR", 0.02),
    Lookup("external name (search path)", 0.30),
)


def query_mix(
    plans: Sequence[gen_cluster.ServiceShape], *, lookups: int = 10_000, seed: int = 1
) -> list[tuple[str, str, str]]:
    """(qname, qtype, lookup kind) for ``lookups`` pod lookups, deterministic for a seed."""
    rng = random.Random(seed)
    clusterip = [p for p in plans if not p.headless]
    headless = [p for p in plans if p.headless and p.published]
    peers = [p for p in headless if p.hostnames]
    kinds = [lookup.kind for lookup in LOOKUPS]
    weights = [lookup.share for lookup in LOOKUPS]
    namespaces = sorted({p.namespace for p in plans})
    out: list[tuple[str, str, str]] = []

    def both(name: str, kind: str) -> None:
        out.extend([(name, "A", kind), (name, "AAAA", kind)])

    for _ in range(lookups):
        kind = rng.choices(kinds, weights)[0]
        if kind == "same-namespace service":
            svc = rng.choice(clusterip)
            both(f"{svc.name}.{svc.namespace}.svc.{ZONE}", kind)
        elif kind == "cross-namespace service":
            svc = rng.choice(clusterip)
            own = rng.choice([ns for ns in namespaces if ns != svc.namespace] or namespaces)
            both(f"{svc.name}.{svc.namespace}.{own}.svc.{ZONE}", kind)
            both(f"{svc.name}.{svc.namespace}.svc.{ZONE}", kind)
        elif kind == "headless service":
            svc = rng.choice(headless)
            both(f"{svc.name}.{svc.namespace}.svc.{ZONE}", kind)
        elif kind == "statefulset peer" and peers:
            svc = rng.choice(peers)
            host = rng.choice([h for _, h in svc.published])
            both(f"{host}.{svc.name}.{svc.namespace}.svc.{ZONE}", kind)
        elif kind == "SRV":
            svc = rng.choice(plans)
            out.append((f"_http._tcp.{svc.name}.{svc.namespace}.svc.{ZONE}", "SRV", kind))
        elif kind == "PTR":
            svc = rng.choice(clusterip)
            ip = svc.cluster_ips[0].split(".")
            out.append((".".join(reversed(ip)) + ".in-addr.arpa", "PTR", kind))
        else:
            name = f"api{rng.randrange(200)}.example.com"
            own = rng.choice(namespaces)
            for suffix in SEARCH:
                both(f"{name}.{suffix.format(ns=own)}", "external name (search path)")
    return out


def a_only(
    queries: Sequence[tuple[str, str, str]], index: RecordIndex
) -> list[tuple[str, str, str]]:
    """The mix's A queries whose name has A records (ClusterIP, headless and StatefulSet-peer
    names): what the "A" half of target 1 asks about, without the NXDOMAIN expansions, AAAA
    NODATA, SRV and PTR that dominate the ndots:5 mix."""
    out = []
    for name, qtype, kind in queries:
        if qtype != "A":
            continue
        rrsets = index.records(name)
        if rrsets is not None and A in rrsets:
            out.append((name, qtype, kind))
    return out


def write_queries(queries: Iterable[tuple[str, str, str]], path: Path) -> Path:
    path.write_text("".join(f"{name} {qtype}\n" for name, qtype, _ in queries))
    return path


# -- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TCPLoad(Load):
    """A load whose queries all go over TCP (dnsperf ``-m tcp``)."""

    def argv(self) -> list[str]:
        return [*super().argv(), "-m", "tcp"]


def over_tcp(loads: Sequence[Load]) -> tuple[Load, ...]:
    return tuple(TCPLoad(load.name, load.clients, load.outstanding, load.threads) for load in loads)


@dataclass
class Peers:
    servers: list[Peer]
    helpers: list[Peer]

    def stop(self) -> None:
        for peer in [*self.servers, *self.helpers]:
            peer.stop()


def start_peers(
    snapshot: Path,
    by_zone: dict[str, list[str]],
    workdir: Path,
    *,
    peers: Sequence[str] = ("nsd", "unbound"),
    dgram: bool = False,
) -> Peers:
    """kubedns first (the reference), then ``peers``; with ``dgram`` also kubedns on asyncio's
    datagram transport (``udp.batch: false``) as ``kubedns-dgram``, for an A/B in one run."""
    helpers: list[Peer] = []
    servers: list[Peer] = []
    try:
        origin_port = free_port()
        # kubedns must not forward anything off loopback: its upstream is a dnsmasq with no
        # servers (the zone mix forwards nothing; the loop probe at start lands here).
        helpers.append(
            start(
                "origin-dnsmasq",
                dnsmasq_argv(origin_port, "--local=/#/"),
                port=origin_port,
                workdir=workdir,
                probe="localhost",
            )
        )
        port = free_port()
        argv = kubedns_argv(snapshot, port=port, upstream_port=origin_port)
        servers.append(start("kubedns", argv, port=port, workdir=workdir))
        if dgram:
            port = free_port()
            conf = workdir / "kubedns-dgram.yaml"
            conf.write_text("udp:\n  batch: false\n")
            argv = [*kubedns_argv(snapshot, port=port, upstream_port=origin_port)]
            argv += ["--config", str(conf)]
            servers.append(start("kubedns-dgram", argv, port=port, workdir=workdir))
        if "nsd" in peers:
            port = free_port()
            conf = nsd_conf(workdir, port=port, zones=nsd_zone_files(by_zone, workdir))
            servers.append(
                start("nsd", [need("nsd"), "-d", "-c", str(conf)], port=port, workdir=workdir)
            )
        if "unbound" in peers:
            port = free_port()
            conf = unbound_conf(workdir, port=port, by_zone=by_zone)
            argv = [need("unbound"), "-d", "-c", str(conf)]
            servers.append(start("unbound", argv, port=port, workdir=workdir))
    except BaseException:
        Peers(servers, helpers).stop()
        raise
    return Peers(servers, helpers)


def cross_check(
    servers: Sequence[Peer], queries: Sequence[tuple[str, str, str]], *, sample: int = 300
) -> dict[str, Any]:
    """Ask every server the same sample; count where a peer's (rcode, answer) differs from
    kubedns's. The benchmark compares like with like only if this is (close to) zero."""
    step = max(1, len(queries) // sample)
    picked = list(dict.fromkeys((n, t) for n, t, _ in queries[::step]))
    differences: dict[str, list[str]] = {}
    for name, qtype in picked:
        reference = answer_summary(query(servers[0].port, name, qtype))
        for peer in servers[1:]:
            got = answer_summary(query(peer.port, name, qtype))
            if got != reference:
                differences.setdefault(peer.name, []).append(
                    f"{name} {qtype}: kubedns {reference} / {peer.name} {got}"
                )
    return {
        "queries": len(picked),
        "differences": {peer: len(found) for peer, found in differences.items()},
        "examples": {peer: found[:3] for peer, found in differences.items()},
    }


def run(
    *,
    services: int = 1000,
    namespaces: int = 100,
    seconds: float = 10.0,
    loads: Sequence[Load] = (SINGLE, LOADED, BURST),
    repeats: int = 3,
    workdir: Path | None = None,
    peers: Sequence[str] = ("nsd", "unbound"),
    dgram: bool = False,
    a_loads: Sequence[Load] = (),
    tcp_loads: Sequence[Load] = (),
) -> dict[str, Any]:
    """Generate, export, start all three, cross-check, then dnsperf each server per load.

    ``a_loads`` also replays the A-only file (``a_only``) under those loads (``results_a``);
    ``tcp_loads`` (``over_tcp`` loads) replays the ndots:5 mix over TCP (``results_tcp``), all
    against the same server processes."""
    with tempfile.TemporaryDirectory(prefix="kubedns-bench-zone-") as tmp:
        work = workdir or Path(tmp)
        snapshot = gen_cluster.write_snapshot(
            work / "cluster.json",
            gen_cluster.generate(services=services, namespaces=namespaces),
        )
        plans = gen_cluster.shapes(services=services, namespaces=namespaces, endpoints=3 * services)
        queries = query_mix(plans)
        datafile = write_queries(queries, work / "queries.txt")
        index, heap = traced_load(snapshot)
        by_zone = records(index)
        a_queries = a_only(queries, index)
        a_file = write_queries(a_queries, work / "queries-a.txt")
        started = start_peers(snapshot, by_zone, work, peers=peers, dgram=dgram)
        try:
            check = cross_check(started.servers, queries)
            before = loadavg()
            results = measure(
                started.servers, datafile, loads=loads, seconds=seconds, repeats=repeats,
                workdir=work,
            )  # fmt: skip
            extra: dict[str, Any] = {}
            if a_loads:
                extra["results_a"] = measure(
                    started.servers, a_file, loads=a_loads, seconds=seconds, repeats=repeats,
                    workdir=work, label="a-",
                )  # fmt: skip
            if tcp_loads:
                extra["results_tcp"] = measure(
                    started.servers, datafile, loads=tcp_loads, seconds=seconds,
                    repeats=repeats, workdir=work, label="tcp-",
                )  # fmt: skip
            after = loadavg()
        finally:
            started.stop()
        mix = Counter(kind for _, _, kind in queries)
        qtypes = Counter(qtype for _, qtype, _ in queries)
        return {
            "cluster": {
                "services": services,
                "namespaces": namespaces,
                "endpoints": 3 * services,
                "records": sum(len(lines) for lines in by_zone.values()),
                "zones": sorted(by_zone),
                "snapshot_bytes": snapshot.stat().st_size,
                **heap,
            },
            "queries": {
                "count": len(queries),
                "by_lookup": dict(mix.most_common()),
                "by_qtype": dict(qtypes.most_common()),
                "a_only": len(a_queries),
                "a_only_by_lookup": dict(Counter(k for _, _, k in a_queries).most_common()),
            },
            "seconds": seconds,
            "loads": {
                load.name: command_line(
                    dnsperf_argv(0, Path("queries.txt"), seconds=seconds, load=load)
                )
                for load in loads
            },
            "a_loads": {
                load.name: command_line(
                    dnsperf_argv(0, Path("queries-a.txt"), seconds=seconds, load=load)
                )
                for load in a_loads
            },
            "tcp_loads": {
                load.name: command_line(
                    dnsperf_argv(0, Path("queries.txt"), seconds=seconds, load=load)
                )
                for load in tcp_loads
            },
            "repeats": repeats,
            "loadavg_before_after": [before, after],
            "cross_check": check,
            "results": results,
            **extra,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0, help="dnsperf -l per run")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per server and load")
    parser.add_argument("--tcp", action="store_true", help="every query over TCP (-m tcp)")
    parser.add_argument(
        "--loads", default="single,loaded,burst", help="comma-separated subset of the loads"
    )
    parser.add_argument(
        "--peers", default="nsd,unbound", help="comma-separated peers to run beside kubedns"
    )
    parser.add_argument(
        "--dgram",
        action="store_true",
        help="also run kubedns with udp.batch off (asyncio's datagram transport)",
    )
    args = parser.parse_args(argv)
    by_name = {load.name: load for load in (SINGLE, LOADED, BURST)}
    loads = [by_name[name] for name in args.loads.split(",")]
    result = run(
        services=args.services,
        namespaces=args.namespaces,
        seconds=args.seconds,
        loads=over_tcp(loads) if args.tcp else loads,
        repeats=args.repeats,
        peers=[name for name in args.peers.split(",") if name],
        dgram=args.dgram,
    )
    RESULTS.mkdir(exist_ok=True)
    name = "zone-tcp.json" if args.tcp else "zone.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(table(result["results"]))
    print("cross-check:", json.dumps(result["cross_check"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
