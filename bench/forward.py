"""Forwarded-name benchmark: kubedns's forwarder against a caching dnsmasq doing the same job.

    .venv/bin/python -m bench.forward [--seconds 10] [--repeats 3]

Needs ``dnsmasq`` and ``dnsperf``. Three servers on loopback, nothing leaves 127.0.0.1:

* an *origin* dnsmasq with fixed local data (``*.example.com``: A 192.0.2.1, AAAA 2001:db8::1,
  TTL 300 s), standing in for the node's resolver;
* kubedns, the real server (``kubedns serve --snapshot <generated cluster> --upstream <origin>``,
  uvloop on, its answer cache on with default settings): cluster names are answered from the
  zone, everything else is forwarded to the origin and cached;
* a caching dnsmasq forwarding to the origin (``--cache-size=10000``), with
  ``--local=/cluster.local/`` so search-path expansions get an immediate NXDOMAIN without
  upstream traffic, as kubedns's zone gives them (dnsmasq's NXDOMAIN carries no SOA).

Two query files, each replayed by dnsperf in a loop after one warm-up pass (so every timed
forwarded query is a cache hit: this measures the cache path, not the origin):

* ``cache-hit``: 1,000 external names, A and AAAA;
* ``ndots5``: a pod in namespace ``<ns>`` resolving ``api<i>.example.com`` with ``ndots:5``
  walks ``.<ns>.svc.cluster.local``, ``.svc.cluster.local``, ``.cluster.local``, then the name
  itself, for A and AAAA: eight queries, six of them in-zone NXDOMAINs, two cache hits.

Writes ``bench/results/forward.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import gen_cluster
from bench.common import (
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
    pinned,
    query,
    start,
    table,
)

ORIGIN_TTL = 300
"""Longer than any run, so the cache never expires mid-measurement."""
SEARCH = ("{ns}.svc.cluster.local", "svc.cluster.local", "cluster.local")


def write_mixes(directory: Path, namespaces: Sequence[str], *, seed: int = 1) -> dict[str, Path]:
    rng = random.Random(seed)
    hits = directory / "cache-hit.txt"
    hits.write_text(
        "".join(f"host{i}.example.com {t}\n" for i in range(1000) for t in ("A", "AAAA"))
    )
    walk = directory / "ndots5.txt"
    lines = []
    for i in range(500):
        name = f"api{i}.example.com"
        namespace = rng.choice(namespaces)
        for suffix in (*(s.format(ns=namespace) for s in SEARCH), ""):
            qname = f"{name}.{suffix}" if suffix else name
            lines += [f"{qname} A\n", f"{qname} AAAA\n"]
    walk.write_text("".join(lines))
    return {"cache-hit": hits, "ndots5": walk}


def start_peers(snapshot: Path, workdir: Path) -> tuple[Peer, list[Peer]]:
    """(origin, [kubedns, dnsmasq]), each answering before this returns."""
    started: list[Peer] = []
    try:
        origin_port = free_port()
        origin = start(
            "origin-dnsmasq",
            dnsmasq_argv(
                origin_port,
                "--address=/example.com/192.0.2.1",
                "--address=/example.com/2001:db8::1",
                f"--local-ttl={ORIGIN_TTL}",
            ),
            port=origin_port,
            workdir=workdir,
            probe="example.com",
        )
        started.append(origin)
        port = free_port()
        argv = kubedns_argv(snapshot, port=port, upstream_port=origin_port)
        started.append(start("kubedns", argv, port=port, workdir=workdir))
        port = free_port()
        rival = dnsmasq_argv(
            port,
            f"--server=127.0.0.1#{origin_port}",
            "--cache-size=10000",
            "--local=/cluster.local/",
        )
        started.append(start("dnsmasq", rival, port=port, workdir=workdir, probe="example.com"))
    except BaseException:
        for peer in started:
            peer.stop()
        raise
    return started[0], started[1:]


def warm(servers: Sequence[Peer], mixes: dict[str, Path]) -> None:
    """One pass of every file through every server, so the timed runs are all cache hits."""
    for peer in servers:
        for path in mixes.values():
            argv = [
                need("dnsperf"), "-s", "127.0.0.1", "-p", str(peer.port), "-d", str(path),
                "-n", "1", "-q", "20", "-t", "2",
            ]  # fmt: skip
            subprocess.run(pinned(argv, role="client"), capture_output=True, check=True)


def cross_check(servers: Sequence[Peer], mixes: dict[str, Path]) -> dict[str, Any]:
    """kubedns and dnsmasq must agree (rcode, answer records) on a sample of each file."""
    differences: list[str] = []
    asked = 0
    for path in mixes.values():
        lines = path.read_text().splitlines()
        for line in lines[:: max(1, len(lines) // 100)]:
            name, qtype = line.split()
            asked += 1
            ours = answer_summary(query(servers[0].port, name, qtype))
            theirs = answer_summary(query(servers[1].port, name, qtype))
            if ours != theirs:
                differences.append(f"{name} {qtype}: kubedns {ours} / dnsmasq {theirs}")
    return {"queries": asked, "differences": len(differences), "examples": differences[:3]}


def run(
    *,
    seconds: float = 10.0,
    repeats: int = 3,
    loads: Sequence[Load] = (SINGLE, LOADED),
    workdir: Path | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kubedns-bench-forward-") as tmp:
        work = workdir or Path(tmp)
        snapshot = gen_cluster.write_snapshot(
            work / "cluster.json", gen_cluster.generate(services=100, namespaces=10)
        )
        namespaces = [gen_cluster.namespace_name(j) for j in range(10)]
        mixes = write_mixes(work, namespaces)
        origin, servers = start_peers(snapshot, work)
        try:
            warm(servers, mixes)
            check = cross_check(servers, mixes)
            before = loadavg()
            results = {
                mix: measure(
                    servers,
                    path,
                    loads=loads,
                    seconds=seconds,
                    repeats=repeats,
                    workdir=work,
                    label=f"{mix}-",
                )
                for mix, path in mixes.items()
            }
            after = loadavg()
        finally:
            for peer in (*servers, origin):
                peer.stop()
    return {
        "seconds": seconds,
        "repeats": repeats,
        "loads": {
            load.name: command_line(dnsperf_argv(0, Path("MIX.txt"), seconds=seconds, load=load))
            for load in loads
        },
        "mixes": {
            "cache-hit": "1,000 external names x A/AAAA, all cache hits after the warm-up",
            "ndots5": "500 walks x 4 names x A/AAAA: 6 in-zone NXDOMAIN + 2 cache hits each",
        },
        "loadavg_before_after": [before, after],
        "cross_check": check,
        "results": results,
    }


def tables(result: dict[str, Any]) -> str:
    return "\n".join(
        f"**{mix}**\n\n" + table(by_load) for mix, by_load in result["results"].items()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="dnsperf -l per run")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per server, mix and load")
    args = parser.parse_args(argv)
    result = run(seconds=args.seconds, repeats=args.repeats)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "forward.json").write_text(json.dumps(result, indent=2) + "\n")
    print(tables(result))
    print("cross-check:", json.dumps(result["cross_check"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
