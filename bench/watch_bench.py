"""Time-to-synced, memory and change latency of ``KubeSource`` on a large cluster.

Starts the fake API server (``tests/fakeapi.py``) in a child process, serving the cluster of
``gen_cluster.py``, so this process's memory is the watcher's alone. Then:

1. runs ``KubeSource`` for Namespaces, Services and EndpointSlices into a simple dict store
   (the lead's record index replaces it later) and reports the time until every initial list
   was applied, and RSS before, after sync and at peak;
2. asks the fake to change EndpointSlices at ``--rate`` per second for ``--seconds``; each
   change carries its wall-clock time in an endpoint hostname, and the store records how long
   after that the change was applied on the event loop (p50/p99/max).

    python bench/watch_bench.py            # the issue's cluster: 10k services, 50k endpoints
    python bench/watch_bench.py --services 1000 --namespaces 100 --endpoints 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubedns.config import WatchConfig
from kubedns.objects import EndpointSlice, SlimObject
from kubedns.sources.events import Delete, Event, Replace, Upsert
from kubedns.sources.kube import KubeSource, api_client_from

KINDS = ("Namespace", "Service", "EndpointSlice")


@dataclass
class Store:
    """A stand-in consumer: a dict per kind, plus latency of stamped EndpointSlice changes."""

    objects: dict[tuple[str, str, str], SlimObject] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    def __call__(self, event: Event) -> None:
        match event:
            case Replace(kind, objects):
                for obj in objects:
                    self.objects[(kind, *obj.key)] = obj
            case Upsert(obj):
                self.objects[(type(obj).__name__, *obj.key)] = obj
                if isinstance(obj, EndpointSlice):
                    self._measure(obj)
            case Delete(kind, namespace, name):
                self.objects.pop((kind, namespace, name), None)

    def _measure(self, obj: EndpointSlice) -> None:
        hostname = obj.endpoints[0].hostname if obj.endpoints else ""
        if hostname.startswith("t") and hostname[1:].isdigit():
            self.latencies.append((time.time_ns() - int(hostname[1:])) / 1e9)


def rss_mb() -> float:
    """Current resident set size, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_fake(cluster: Path, kubeconfig: Path) -> subprocess.Popen[str]:
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakeapi",
            "--load",
            str(cluster),
            "--kubeconfig",
            str(kubeconfig),
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "serving" not in line:
        process.kill()
        raise RuntimeError(f"fake API server did not start: {line!r}")
    return process


async def measure(kubeconfig: Path, *, rate: float, seconds: float) -> dict[str, float]:
    api = api_client_from(kubeconfig, environ={})
    server = api.configuration.host
    store = Store()
    results = {"rss_before_mb": rss_mb()}
    source = KubeSource(api, kinds=KINDS, sink=store, settings=WatchConfig(sync_timeout=120))
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(source.run(stop), name="kube-source")
    if not await source.wait_synced():
        raise RuntimeError("not synced within 120 s")
    results["time_to_synced_s"] = time.perf_counter() - started
    results["objects"] = len(store.objects)
    results["rss_after_sync_mb"] = rss_mb()
    results["peak_rss_after_sync_mb"] = peak_rss_mb()
    if rate > 0 and seconds > 0:
        url = f"{server}/_fake/churn?rate={rate}&seconds={seconds}"
        request = urllib.request.Request(url, method="POST")
        reply = await asyncio.to_thread(
            lambda: urllib.request.urlopen(request, timeout=seconds + 30).read()
        )
        sent = json.loads(reply)["changes"]
        await asyncio.sleep(0.5)  # the last events are in flight
        latencies = sorted(store.latencies)
        results["changes_sent"] = sent
        results["changes_applied"] = len(latencies)
        if latencies:
            results["latency_p50_ms"] = 1000 * statistics.median(latencies)
            results["latency_p99_ms"] = 1000 * latencies[int(0.99 * (len(latencies) - 1))]
            results["latency_max_ms"] = 1000 * latencies[-1]
    results["peak_rss_mb"] = peak_rss_mb()
    stop.set()
    await task
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--namespaces", type=int, default=1000)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=200, help="changes a second")
    parser.add_argument("--seconds", type=float, default=10, help="how long to change")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        cluster, kubeconfig = Path(scratch) / "cluster.json", Path(scratch) / "kubeconfig"
        # Generated in a child process, so its memory does not count as the watcher's peak.
        shape = ["--namespaces", str(args.namespaces), "--services", str(args.services)]
        shape += ["--endpoints", str(args.endpoints), "--out", str(cluster)]
        subprocess.run(
            [sys.executable, str(Path(__file__).with_name("gen_cluster.py")), *shape], check=True
        )
        fake = start_fake(cluster, kubeconfig)
        try:
            results = asyncio.run(measure(kubeconfig, rate=args.rate, seconds=args.seconds))
        finally:
            fake.terminate()
            fake.wait(10)
    sizes = {"namespaces": args.namespaces, "services": args.services, "endpoints": args.endpoints}
    print(json.dumps({**sizes, **{k: round(v, 2) for k, v in results.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
