"""Cache-busting attack: ordinary queries' latency while an attacker asks for a huge headless
Service with a fresh EDNS shape every time (target 3 of issue 8).

    .venv/bin/python -m bench.attack [--seconds 10] [--rate 2000] [--attack-rate 100]

The served cluster is the zone benchmark's (``bench.gen_cluster``, 1,000 Services) plus one
headless Service ``big.attack.svc.cluster.local`` with 2,000 ready endpoints and two named
ports (``http``, ``grpc``), so ``A`` has 2,000 records and ``_http._tcp.big...`` ``SRV`` 2,000.
kubedns serves it with ``kubedns serve --snapshot``; nsd, for reference, serves the same records
exported by ``bench.zone`` (nsd has no cache to bust: it shows the cost of the big answers).

Two client processes' worth of work run in one child process pinned to the client CPU (the
server gets the other):

* ordinary clients: ``--rate`` queries a second, paced, from the zone benchmark's ndots:5 query
  file, over a few UDP sockets; each query's latency is taken from its own send timestamp
  (looked up by socket and ID), and a query with no reply within ``--timeout`` is lost;
* the attacker (``--attack-rate`` a second, on its own socket): SRV and A of the big Service in
  turn, each with a random ID, random letter case, a random EDNS payload size in 512..65535 and
  one random EDNS option (padding of random length, or a random client cookie). Before issue 8
  every one of these missed the reply cache and rebuilt a 2,000-record answer.

Each server is measured without and with the attacker, ``--repeats`` rounds interleaved; the
run with the lowest p99 of each (server, condition) is kept (other work on the machine only
adds latency), with every run's p99 and losses listed. Writes ``bench/results/attack.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import gen_cluster, zone
from bench.common import (
    RESULTS,
    BenchError,
    Peer,
    cpu_seconds,
    loadavg,
    pinned,
)

BIG_NAMESPACE = "attack"
BIG_SERVICE = "big"
BIG_ENDPOINTS = 2000
BIG_NAME = f"{BIG_SERVICE}.{BIG_NAMESPACE}.svc.{zone.ZONE}"
BIG_SRV = f"_http._tcp.{BIG_NAME}"
BIG_POD_OFFSET = 1_000_000
"""The big Service's pod IPs start here in 10.128.0.0/9, far above the generated cluster's."""

TYPES = {"A": 1, "NS": 2, "SOA": 6, "PTR": 12, "TXT": 16, "AAAA": 28, "SRV": 33, "ANY": 255}
OPT = 41
OPTION_COOKIE = 10
OPTION_PADDING = 12


# -- the cluster --------------------------------------------------------------------------------


def big_service(endpoints: int = BIG_ENDPOINTS) -> list[gen_cluster.RawObject]:
    """Namespace, headless Service and EndpointSlices of ``big.attack``: every endpoint ready,
    no hostnames (so A has one record per endpoint), ports ``http`` and ``grpc``."""
    plan = gen_cluster.ServiceShape(
        namespace=BIG_NAMESPACE,
        name=BIG_SERVICE,
        headless=True,
        cluster_ips=(),
        ports=(("http", 80), ("grpc", 9090)),
        hostnames=False,
        endpoints=tuple(
            (str(gen_cluster.POD_CIDR[BIG_POD_OFFSET + k]), "", True, False)
            for k in range(endpoints)
        ),
    )
    return [
        # the generator's own object shapes, so the big Service looks like the others
        gen_cluster._namespace(BIG_NAMESPACE),
        gen_cluster._service(BIG_NAMESPACE, BIG_SERVICE, (), plan.ports),
        *gen_cluster._slices(plan),
    ]


def write_cluster(
    path: Path, *, services: int, namespaces: int, endpoints: int = BIG_ENDPOINTS
) -> Path:
    objects = gen_cluster.generate(services=services, namespaces=namespaces)
    return gen_cluster.write_snapshot(path, [*objects, *big_service(endpoints)])


# -- queries on the wire ------------------------------------------------------------------------


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        out += bytes([len(raw)]) + raw
    return bytes(out) + b"\x00"


def query_wire(
    qid: int,
    name: str,
    qtype: str,
    *,
    payload: int | None = None,
    do: bool = False,
    options: bytes = b"",
) -> bytes:
    """A standard query with RD set, as a stub resolver sends it; with ``payload`` an OPT
    record (that UDP size, DO if ``do``, ``options`` as its RDATA)."""
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0 if payload is None else 1)
    question = encode_name(name) + struct.pack("!HH", TYPES[qtype], 1)
    if payload is None:
        return header + question
    flags = 0x8000 if do else 0
    opt = b"\x00" + struct.pack("!HHHHH", OPT, payload, 0, flags, len(options)) + options
    return header + question + opt


def random_case(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in name)


def busting_query(n: int, rng: random.Random) -> bytes:
    """The ``n``-th attack query: SRV and A of the big Service in turn, each shaped afresh."""
    name, qtype = (BIG_SRV, "SRV") if n % 2 == 0 else (BIG_NAME, "A")
    if rng.random() < 0.5:
        option = struct.pack("!HH", OPTION_PADDING, length := rng.randrange(1, 128))
        option += bytes(length)
    else:
        option = struct.pack("!HH", OPTION_COOKIE, 8) + rng.randbytes(8)
    return query_wire(
        rng.randrange(0x10000),
        random_case(name, rng),
        qtype,
        payload=rng.randrange(512, 65536),
        options=option,
    )


def reply_header(data: bytes) -> tuple[int, int, bool]:
    """(ID, rcode, TC) of a reply."""
    qid, flags = struct.unpack_from("!HH", data)
    return qid, flags & 0x000F, bool(flags & 0x0200)


# -- the client (runs in a child process on the client CPU) ------------------------------------


class _Socket(asyncio.DatagramProtocol):
    """One UDP socket's queries in flight, by ID, with their send times."""

    def __init__(self, stats: dict[str, Any]) -> None:
        self.pending: dict[int, float] = {}
        self.stats = stats
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        now = time.perf_counter()
        if len(data) < 12:
            return
        qid, rcode, tc = reply_header(data)
        sent = self.pending.pop(qid, None)
        stats = self.stats
        if sent is None:
            stats["stray"] += 1
            return
        stats["latencies"].append(now - sent)
        stats["rcodes"][rcode] = stats["rcodes"].get(rcode, 0) + 1
        stats["truncated"] += tc
        stats["max_reply_bytes"] = max(stats["max_reply_bytes"], len(data))

    def send(self, qid: int, packet: bytes) -> None:
        assert self.transport is not None
        self.pending[qid] = time.perf_counter()
        self.transport.sendto(packet)


def _stats() -> dict[str, Any]:
    return {
        "sent": 0,
        "latencies": [],
        "rcodes": {},
        "truncated": 0,
        "stray": 0,
        "max_reply_bytes": 0,
    }


async def _paced(rate: float, seconds: float, send: Any) -> None:
    """Call ``send(n)`` ``rate`` times a second for ``seconds``, on an absolute schedule."""
    if rate <= 0:
        return
    started = time.perf_counter()
    total = int(rate * seconds)
    n = 0
    while n < total:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        while n < due:
            send(n)
            n += 1
        await asyncio.sleep(0.002)


async def client(
    port: int,
    questions: Sequence[tuple[str, str]],
    *,
    rate: float,
    attack_rate: float,
    seconds: float,
    timeout: float = 2.0,
    sockets: int = 4,
    seed: int = 1,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    ordinary, attack = _stats(), _stats()
    socks: list[_Socket] = []
    for _ in range(sockets):
        transport, proto = await loop.create_datagram_endpoint(
            lambda: _Socket(ordinary), remote_addr=("127.0.0.1", port)
        )
        proto.transport = transport  # uvloop calls connection_made a little later
        socks.append(proto)
    transport, attacker = await loop.create_datagram_endpoint(
        lambda: _Socket(attack), remote_addr=("127.0.0.1", port)
    )
    attacker.transport = transport
    # No EDNS, as glibc and musl send by default (dnsperf sends none either); ID patched in.
    packets = [query_wire(0, name, qtype) for name, qtype in questions]

    def send_ordinary(n: int) -> None:
        qid = (n // sockets) & 0xFFFF
        packet = packets[n % len(packets)]
        socks[n % sockets].send(qid, struct.pack("!H", qid) + packet[2:])
        ordinary["sent"] += 1

    rng = random.Random(seed)

    def send_attack(n: int) -> None:
        packet = busting_query(n, rng)
        attacker.send(struct.unpack_from("!H", packet)[0], packet)
        attack["sent"] += 1

    await asyncio.gather(
        _paced(rate, seconds, send_ordinary), _paced(attack_rate, seconds, send_attack)
    )
    await asyncio.sleep(timeout)
    return {"ordinary": _summary(ordinary, timeout), "attack": _summary(attack, timeout)}


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _summary(stats: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Latencies in ms; a reply later than ``timeout`` counts as lost, as a stub gives up."""
    ordered = sorted(x for x in stats["latencies"] if x <= timeout)
    ms = 1000.0
    return {
        "sent": stats["sent"],
        "answered": len(ordered),
        "lost": stats["sent"] - len(ordered),
        "p50_ms": round(_percentile(ordered, 0.50) * ms, 3),
        "p99_ms": round(_percentile(ordered, 0.99) * ms, 3),
        "p999_ms": round(_percentile(ordered, 0.999) * ms, 3),
        "max_ms": round((ordered[-1] if ordered else 0.0) * ms, 3),
        "truncated": stats["truncated"],
        "max_reply_bytes": stats["max_reply_bytes"],
        "rcodes": {str(k): v for k, v in sorted(stats["rcodes"].items())},
    }


def _client_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attack client")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--attack-rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    questions = [
        (parts[0], parts[1])
        for parts in (line.split() for line in args.queries.read_text().splitlines())
        if parts
    ]
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415

        uvloop.install()
    result = asyncio.run(
        client(
            args.port,
            questions,
            rate=args.rate,
            attack_rate=args.attack_rate,
            seconds=args.seconds,
            timeout=args.timeout,
        )
    )
    json.dump(result, sys.stdout)
    return 0


# -- the run ------------------------------------------------------------------------------------


def measure_once(
    peer: Peer,
    queries: Path,
    *,
    rate: float,
    attack_rate: float,
    seconds: float,
    timeout: float,
) -> dict[str, Any]:
    """One client run against ``peer``; the server's CPU over the sending time and the drain."""
    argv = [
        sys.executable, "-m", "bench.attack", "client", "--port", str(peer.port),
        "--queries", str(queries), "--rate", f"{rate:g}", "--attack-rate", f"{attack_rate:g}",
        "--seconds", f"{seconds:g}", "--timeout", f"{timeout:g}",
    ]  # fmt: skip
    cpu_before = cpu_seconds(peer.process.pid)
    started = time.monotonic()
    done = subprocess.run(
        pinned(argv, role="client"),
        capture_output=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(peer.process.pid) - cpu_before
    if done.returncode != 0:
        raise BenchError(f"attack client failed:\n{done.stderr.decode(errors='replace')}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["server_cpu_s"] = round(cpu, 2)
    result["server_cpu_percent"] = round(100.0 * cpu / elapsed, 1) if elapsed else 0.0
    result["server_cpu_percent_while_sending"] = round(100.0 * cpu / seconds, 1)
    return result


def start_servers(snapshot: Path, workdir: Path, *, peers: Sequence[str]) -> zone.Peers:
    index = zone.load_index(snapshot)
    return zone.start_peers(snapshot, zone.records(index), workdir, peers=peers)


def run(
    *,
    services: int = 1000,
    namespaces: int = 100,
    endpoints: int = BIG_ENDPOINTS,
    seconds: float = 10.0,
    rate: float = 2000,
    attack_rate: float = 100,
    timeout: float = 2.0,
    repeats: int = 3,
    peers: Sequence[str] = ("nsd",),
    workdir: Path | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kubedns-bench-attack-") as tmp:
        work = workdir or Path(tmp)
        snapshot = write_cluster(
            work / "cluster.json", services=services, namespaces=namespaces, endpoints=endpoints
        )
        plans = gen_cluster.shapes(services=services, namespaces=namespaces, endpoints=3 * services)
        mix = zone.query_mix(plans)
        queries = zone.write_queries(mix, work / "queries.txt")
        started = start_servers(snapshot, work, peers=peers)
        before = loadavg()
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        try:
            for _ in range(repeats):
                for condition, arate in (("quiet", 0.0), ("attack", attack_rate)):
                    for peer in started.servers:
                        runs.setdefault(peer.name, {}).setdefault(condition, []).append(
                            measure_once(
                                peer, queries, rate=rate, attack_rate=arate, seconds=seconds,
                                timeout=timeout,
                            )
                        )  # fmt: skip
        finally:
            started.stop()
        after = loadavg()
    results: dict[str, dict[str, Any]] = {}
    for server, conditions in runs.items():
        results[server] = {}
        for condition, measured in conditions.items():
            best = min(measured, key=lambda r: r["ordinary"]["p99_ms"])
            results[server][condition] = {
                **best,
                "p99_runs": [r["ordinary"]["p99_ms"] for r in measured],
                "lost_runs": [r["ordinary"]["lost"] for r in measured],
            }
    return {
        "services": services,
        "namespaces": namespaces,
        "big_endpoints": endpoints,
        "big_name": BIG_NAME,
        "seconds": seconds,
        "rate": rate,
        "attack_rate": attack_rate,
        "timeout": timeout,
        "repeats": repeats,
        "loadavg_before_after": [before, after],
        "results": results,
    }


def table(result: dict[str, Any]) -> str:
    head = (
        "| server | attacker | ordinary sent | lost | p50 ms | p99 ms | p99.9 ms | max ms | "
        "p99 runs | attack sent / answered / TC | attack max reply | server CPU % |\n"
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    )
    rows = []
    for server, conditions in result["results"].items():
        for condition, r in conditions.items():
            o, a = r["ordinary"], r["attack"]
            attack = f"{a['sent']:,} / {a['answered']:,} / {a['truncated']:,}" if a["sent"] else "-"
            rows.append(
                f"| {server} | {'yes' if condition == 'attack' else 'no'} | {o['sent']:,} | "
                f"{o['lost']} | {o['p50_ms']:.2f} | {o['p99_ms']:.2f} | {o['p999_ms']:.2f} | "
                f"{o['max_ms']:.1f} | {'/'.join(f'{p:.1f}' for p in r['p99_runs'])} | {attack} | "
                f"{a['max_reply_bytes'] or '-'} | {r['server_cpu_percent_while_sending']:.0f} |"
            )
    return head + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["client"]:
        return _client_main(argv[1:])
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--endpoints", type=int, default=BIG_ENDPOINTS)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=2000, help="ordinary queries a second")
    parser.add_argument("--attack-rate", type=float, default=100, help="attack queries a second")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peers", default="nsd", help="comma-separated peers beside kubedns")
    args = parser.parse_args(argv)
    result = run(
        services=args.services,
        namespaces=args.namespaces,
        endpoints=args.endpoints,
        seconds=args.seconds,
        rate=args.rate,
        attack_rate=args.attack_rate,
        repeats=args.repeats,
        peers=[p for p in args.peers.split(",") if p],
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "attack.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
