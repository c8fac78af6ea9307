"""Run every benchmark and regenerate BENCHMARKS.md at the repository root.

    make bench                                  # = .venv/bin/python -m bench
    .venv/bin/python -m bench --seconds 10 --repeats 3
    .venv/bin/python -m bench --quick           # 2 s runs, one round: a smoke test, not figures

Results also land in ``bench/results/zone.json`` and ``bench/results/forward.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from typing import Any

from bench import forward, zone
from bench.common import REPO, RESULTS, machine, table

BENCHMARKS = REPO / "BENCHMARKS.md"


def _ratio(results: dict[str, Any], load: str, peer: str, key: str = "qps") -> float:
    servers = results[load]
    return float(servers["kubedns"][key]) / float(servers[peer][key] or 1)


def _ratios(results: dict[str, Any], load: str, peer: str) -> str:
    return (
        f"{_ratio(results, load, peer):.2f}x {peer} "
        f"({_ratio(results, load, peer, 'qps_per_cpu'):.2f}x per CPU-second)"
    )


def _reading(zone_result: dict[str, Any], forward_result: dict[str, Any]) -> str:
    """A short reading of the figures, computed from them (so it stays true on a rerun)."""
    z = zone_result["results"]
    lines = []
    if "loaded" in z:
        k = z["loaded"]["kubedns"]
        lines.append(
            f"* **Cluster zone, loaded.** kubedns answered {k['qps']:,.0f} qps, "
            f"{_ratios(z, 'loaded', 'nsd')} and {_ratios(z, 'loaded', 'unbound')}, "
            f"at {k['server_cpu_percent']:.0f}% of its one core; "
            f"nsd used {z['loaded']['nsd']['server_cpu_percent']:.0f}% and unbound "
            f"{z['loaded']['unbound']['server_cpu_percent']:.0f}%. A server under 100% CPU was "
            "held back by the single dnsperf core or by other work on the shared machine, so "
            "its qps is a lower bound; answers per CPU-second is the fairer comparison, and "
            "the one that says what kubedns costs: one core of kubedns does the work of about "
            f"{_ratio(z, 'loaded', 'nsd', 'qps_per_cpu'):.1f} of nsd's."
        )
    if "single" in z:
        k = z["single"]["kubedns"]
        lines.append(
            f"* **Cluster zone, one query in flight.** Average latency "
            f"{k['avg_ms']:.3f} ms for kubedns against {z['single']['nsd']['avg_ms']:.3f} ms "
            f"(nsd) and {z['single']['unbound']['avg_ms']:.3f} ms (unbound): at this load "
            "the loopback round trip and dnsperf dominate, and the three are close."
        )
    memory = {name: r["memory_mib"] for name, r in next(iter(z.values())).items()}
    cluster = zone_result["cluster"]
    lines.append(
        "* **Memory** (after load, whole process tree): "
        + ", ".join(
            f"{name} PSS {m['pss']:.1f} MiB (peak RSS of its largest process {m['hwm']:.1f})"
            for name, m in memory.items()
        )
        + f". kubedns's index of this zone holds {cluster['index_heap_mib']} MiB of Python heap "
        f"(tracemalloc), but parsing the {cluster['snapshot_bytes'] / 2**20:.1f} MB snapshot "
        f"peaks at {cluster['load_peak_mib']} MiB, and CPython keeps most of that high-water mark "
        "as RSS; the rest is the interpreter and its imports (about 30 MiB before any data)."
    )
    loaded_lost = sum(r["lost"] for r in z.get("loaded", {}).values())
    burst = {
        name: (r["lost"], r["rcvbuf_drops"], r["sent"]) for name, r in z.get("burst", {}).items()
    }
    if burst:
        lines.append(
            "* **Burst (4,000 queries in flight).** Lost / kernel receive-buffer drops / sent: "
            + ", ".join(f"{name} {a:,} / {d:,} / {s:,}" for name, (a, d, s) in burst.items())
            + ". What dnsperf counts as lost matches the kernel's `RcvbufErrors`: datagrams "
            "dropped at a full socket buffer while the server was busy, not queries the server "
            "saw and ignored. nsd reads and writes in batches (`recvmmsg`/`sendmmsg`); kubedns "
            "(through uvloop and libuv) makes one receive and one send system call per datagram. A "
            "larger `SO_RCVBUF` would absorb such bursts. "
            f"Lost in the loaded runs (400 in flight), all servers together: {loaded_lost}."
        )
    f = forward_result["results"]
    for mix in f:
        if "loaded" in f[mix]:
            k = f[mix]["loaded"]["kubedns"]
            lines.append(
                f"* **Forwarding, {mix}, loaded.** kubedns {k['qps']:,.0f} qps, "
                f"{_ratios(f[mix], 'loaded', 'dnsmasq')} "
                f"(kubedns at {k['server_cpu_percent']:.0f}% CPU, dnsmasq at "
                f"{f[mix]['loaded']['dnsmasq']['server_cpu_percent']:.0f}%)."
            )
    check = zone_result["cross_check"]
    lines.append(
        f"* **Same answers.** Before timing, {check['queries']} sampled zone queries were asked "
        "of all three servers and compared (rcode and answer records): differences "
        f"{check['differences'] or 'none'}; forwarding: "
        f"{forward_result['cross_check']['differences'] or 'none'} in "
        f"{forward_result['cross_check']['queries']}."
    )
    return "\n".join(lines)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def render(
    zone_result: dict[str, Any], forward_result: dict[str, Any], facts: dict[str, Any]
) -> str:
    when = zone_result.get("run_at") or _now()
    load = zone_result["loadavg_before_after"]
    versions = ", ".join(f"{tool} {v}" for tool, v in facts["versions"].items())
    cluster = zone_result["cluster"]
    queries = zone_result["queries"]
    mix = ", ".join(f"{kind} {n}" for kind, n in queries["by_lookup"].items())
    qtypes = ", ".join(f"{t} {n}" for t, n in queries["by_qtype"].items())
    loads = "\n".join(f"    {cmd}" for cmd in zone_result["loads"].values())
    forward_loads = "\n".join(f"    {cmd}" for cmd in forward_result["loads"].values())
    forward_tables = "\n".join(
        f"**{mix_name}** ({forward_result['mixes'][mix_name]})\n\n{table(by_load)}"
        for mix_name, by_load in forward_result["results"].items()
    )
    return f"""# Benchmarks

Generated by `make bench` (`bench/run.py`) on {when}; do not edit by hand, rerun it.
Figures are from one machine and one run: compare ratios within a table, not absolute numbers
across machines.

## Machine

* {facts["nproc"]} CPUs, {facts["cpu_model"] or "unknown CPU"}, Linux {facts["kernel"]},
  Python {facts["python"]}
* {versions}
* CPU pinning: {facts["pinning"]}. Each server runs single-threaded (kubedns is one asyncio
  thread on uvloop; nsd `server-count: 1`; unbound `num-threads: 1`; dnsmasq is
  single-threaded), so every server gets one core and dnsperf the other. One dnsperf core
  saturates near 150k qps on this machine, so a server that stays under 100% CPU in a
  loaded run was held back by the client, or by other work on the machine.
* The machine is shared with other work (1-minute load average {load[0][0]} before the zone
  runs, {load[1][0]} after, on {facts["nproc"]} CPUs), so figures move between runs. Each row is
  the best of {zone_result["repeats"]} runs taken in interleaved rounds (every server, then
  again): other work only ever takes throughput away, so the best run is the closest to a
  server's capacity. The "qps runs" column shows the spread, and "answers per CPU-s" (answers
  over the server's own CPU time) is the comparison least disturbed by the neighbours.

## How to run

    make venv && make bench                     # everything, then rewrites this file
    .venv/bin/python -m bench.zone              # cluster zone only -> bench/results/zone.json
    .venv/bin/python -m bench.forward           # forwarding only -> bench/results/forward.json
    .venv/bin/python -m bench.gen_cluster --services 10000 --namespaces 1000 \\
        --endpoints 50000 -o cluster.json       # the generator alone

Needs the Debian packages `dnsperf nsd unbound dnsmasq` (`.ci/run` installs them). Every server
is started by the benchmark on 127.0.0.1 on an ephemeral port with its own config in a temporary
directory; kubedns always gets `--upstream` pointing at a loopback dnsmasq, so nothing leaves
the machine.

## Cluster zone: kubedns vs nsd vs unbound (`bench/zone.py`)

The cluster: {cluster["services"]:,} Services in {cluster["namespaces"]} Namespaces (a quarter
headless, some StatefulSet-style with hostnames, a fifth of endpoints not ready), plus
`kubernetes` and `kube-dns`; {cluster["endpoints"]:,} endpoints; exported to
{cluster["records"]:,} resource records in the zones {", ".join(cluster["zones"])}.
`bench/gen_cluster.py` generates it; kubedns loads it with `kubedns serve --snapshot`; its
`RecordIndex.owners()` is exported to an nsd zone file per zone (SOA, NS, then every record)
and to unbound `local-zone: static` + `local-data`, so all three serve the same records.
nsd runs with `rrl-ratelimit: 0` (otherwise it throttles the repeated NXDOMAINs).

The query file ({queries["count"]:,} queries, replayed in a loop) models pods with `ndots:5`
and the search path `<ns>.svc.cluster.local svc.cluster.local cluster.local`, A and AAAA
together as glibc sends them. Queries by lookup kind: {mix}. By type: {qtypes}. The external
names' three in-zone expansions are NXDOMAIN, so most queries are negative, as in real clusters.

dnsperf command lines (`PORT` is each server's; `-l` seconds per run):

{loads}

{table(zone_result["results"])}
Columns: "kubedns/peer" is kubedns's best qps over the peer's (above 1: kubedns faster);
"lost" is dnsperf's count of unanswered queries; "rcvbuf drops" is the rise of the kernel's
UDP `RcvbufErrors` during the run; CPU % is CPU time of the process tree over wall time; RSS
sums VmRSS over the process tree (nsd forks a server and xfrd, so shared pages count twice) and
PSS shares them out, read from /proc after the loaded runs.

## Forwarding: kubedns vs a caching dnsmasq (`bench/forward.py`)

Both forward to the same origin dnsmasq (fixed data for `*.example.com`, TTL 300 s) and are
warmed with one pass of each file first, so the timed forwarded queries are cache hits. dnsmasq
gets `--cache-size=10000 --local=/cluster.local/` (search-path expansions NXDOMAIN at once).
kubedns's NXDOMAINs carry the zone SOA (RFC 2308) and dnsmasq's `--local` ones do not, hence
the larger average reply in `ndots5`.

{forward_loads}

{forward_tables}
## Reading

{_reading(zone_result, forward_result)}

## What the profiles say (py-spy, loaded runs; see the notes below to reproduce)

* Cluster zone: kubedns's fast path (wire bytes cached per lowercased question, see DESIGN.md)
  leaves little Python work per query. About two thirds of the samples sit in
  `UDPProtocol._send`, i.e. the `sendto` system call (on loopback it also runs the receiver's
  network stack), and most of the rest in uvloop's receive loop; `Responder.respond` is under
  a fifth. Going much faster needs fewer system calls per reply (batching with
  `recvmmsg`/`sendmmsg`, or more processes on `SO_REUSEPORT`), not leaner Python.
* Forwarded cache hits cost far more Python per query than zone hits. In the zone profile
  `Responder.respond` is under a fifth of the samples; in the `cache-hit` profile the responder
  and the forwarder take about half, at well under half the throughput: roughly ten times the
  Python time per query. The packet misses the responder's wire cache (forwarded replies are
  not kept there), is parsed in full by `parse_query` (about 11% of samples), scanned again by
  the forwarder's `wire.scan` (about 10%), looked up under a `CacheKey` dataclass in a
  `TLRUCache`, has its TTLs rewritten by `set_ttls`, and bumps Prometheus counters under a
  lock. That is why `cache-hit` trails dnsmasq much more than the zone mix trails nsd.
* Start-up: snapshots used to go through PyYAML's pure-Python loader (9.9 s for the
  1,000-Service dump, and a heap peak RSS kept). JSON dumps now take `json.loads` (0.7 s for
  the 10,000-Service, 50,000-endpoint cluster) and YAML takes libyaml's loader when built.

To profile: `pip install py-spy` in a throwaway venv, start the benchmark's kubedns, then
`py-spy record -p PID -d 8 -r 200 --format raw -o out.raw` while dnsperf runs.
"""


def _scale_section() -> str:
    """The informer scale run (``make scale``, minutes of its own) writes bench/SCALE.md by
    hand-checked reading; it is appended so BENCHMARKS.md holds every figure in one place."""
    scale = Path(__file__).with_name("SCALE.md")
    return "\n" + scale.read_text(encoding="utf-8") if scale.exists() else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="dnsperf -l per run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per server")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="2 s runs, one round")
    parser.add_argument(
        "--output", type=Path, default=BENCHMARKS, help="where to write the markdown"
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the markdown from bench/results/*.json without running anything",
    )
    args = parser.parse_args(argv)
    if args.render_only:
        zone_result = json.loads((RESULTS / "zone.json").read_text())
        forward_result = json.loads((RESULTS / "forward.json").read_text())
        args.output.write_text(
            render(zone_result, forward_result, zone_result["machine"]) + _scale_section()
        )
        return 0
    seconds, repeats = (2.0, 1) if args.quick else (args.seconds, args.repeats)
    facts = machine()
    run_at = _now()
    zone_result = zone.run(
        services=args.services, namespaces=args.namespaces, seconds=seconds, repeats=repeats
    )
    forward_result = forward.run(seconds=seconds, repeats=repeats)
    RESULTS.mkdir(exist_ok=True)
    zone_result = {**zone_result, "machine": facts, "run_at": run_at}
    (RESULTS / "zone.json").write_text(json.dumps(zone_result, indent=2))
    (RESULTS / "forward.json").write_text(
        json.dumps({**forward_result, "machine": facts}, indent=2)
    )
    args.output.write_text(render(zone_result, forward_result, facts) + _scale_section())
    print(args.output.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
