"""End-to-end scale benchmark: the real ``kubedns serve`` against a large fake cluster.

Three processes, so each one's memory and CPU are its own:

- the fake API server (``tests/fakeapi.py``) in a child process, loaded with the cluster of
  ``gen_cluster.py``; the same child later drives changes into it (``--fake-child``);
- ``kubedns serve --kubeconfig ...`` in its own process (pinned to CPU 0 by default, so "one
  core" means one core), forwarding only to ``127.0.0.1:9``;
- this process: it times start to ``/ready`` 200, reads ``VmHWM``/``VmRSS`` from
  ``/proc/<pid>/status``, and runs the DNS poller (one asyncio loop, raw UDP).

Event-to-answer latency: the child commits each change to the fake's store (the moment the
watch streams are notified), notes ``time.monotonic()`` just before the commit (one clock for
all processes on Linux) and tells this process what the answer must become. The poller queries
kubedns for that name at once and then every max(1 ms, 10 % of the time so far), capped at
5 ms, until the answer matches; the latency is from the commit to the arrival of the first
matching reply. Changes, in a repeating mix of ten: four new ClusterIPs on ClusterIP Services
(A must be the new IP), two endpoints added to headless Services (the new hostname's A must be
the new IP), one endpoint removed from a headless Service (its hostname must be NXDOMAIN), two
Services created (A must appear), one created Service deleted (NXDOMAIN).

Then (``--load-seconds``, default 10; needs ``dnsperf``) the same churn again while dnsperf
sends A queries for 1,000 existing Services with 100 in flight: DNS answers per second during
churn, and the event-to-answer latency while kubedns's loop is busy answering (``load_*``).

    python bench/scale.py                       # the issue's cluster, 200 changes/s for 20 s
    make scale                                  # the same
    python bench/scale.py --services 1000 --namespaces 100 --endpoints 5000 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import ipaddress
import json
import os
import platform
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ZONE = "cluster.local"
A_TYPE, NXDOMAIN = 1, 3
FIRST_POLL_INTERVAL, MAX_POLL_INTERVAL = 0.001, 0.005
CHECK_TIMEOUT = 10.0
"""A change not answered correctly this long after its commit counts as not observed."""
MIX = ("ip", "ip", "ip", "ip", "ep-add", "ep-add", "ep-del", "create", "create", "delete")

JSON = dict[str, Any]
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"


# --- the child: fake API server and change driver ---------------------------------------------


def fake_child(args: argparse.Namespace) -> int:
    """Serve the generated cluster; on ``churn RATE SECONDS`` from stdin, drive changes and
    write one JSON line per change to stdout; exit on EOF."""
    from bench.gen_cluster import generate  # noqa: PLC0415 - only the child needs these
    from tests.fakeapi import FakeApiServer  # noqa: PLC0415

    objects = list(
        generate(namespaces=args.namespaces, services=args.services, endpoints=args.endpoints)
    )
    server = FakeApiServer()
    server.load(objects)
    driver = Driver(server, objects)
    del objects
    server.start()
    server.write_kubeconfig(args.kubeconfig)
    print(json.dumps({"serving": server.url}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if words and words[0] == "churn":
            sent = driver.churn(rate=float(words[1]), seconds=float(words[2]))
            print(json.dumps({"done": sent}), flush=True)
    server.stop()
    return 0


class Driver:
    """Changes Services and EndpointSlices through the fake; keeps its own copy of what it
    changes (it is the only writer), so no change reads the store back."""

    def __init__(self, server: Any, objects: list[JSON]) -> None:
        self.server = server
        self.namespaces = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
        services = [o for o in objects if o["kind"] == "Service"]
        self.cluster_ip = [copy.deepcopy(s) for s in services if s["spec"]["clusterIP"] != "None"]
        headless = {
            (s["metadata"]["namespace"], s["metadata"]["name"])
            for s in services
            if s["spec"]["clusterIP"] == "None"
        }
        self.headless_slices = [
            copy.deepcopy(o)
            for o in objects
            if o["kind"] == "EndpointSlice"
            and (
                o["metadata"]["namespace"],
                o["metadata"]["labels"]["kubernetes.io/service-name"],
            )
            in headless
        ]
        # Fresh addresses, outside what gen_cluster hands out.
        self.service_ips = (str(ip) for ip in ipaddress.ip_network("10.104.0.0/14").hosts())
        self.pod_ips = (str(ip) for ip in ipaddress.ip_network("10.240.0.0/12").hosts())
        self.added: deque[tuple[int, str]] = deque()
        """(slice index, hostname) of endpoints this driver added, oldest first."""
        self.created: deque[tuple[str, str]] = deque()
        self.counter = 0

    def churn(self, *, rate: float, seconds: float) -> int:
        total = int(rate * seconds)
        start = time.monotonic()
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            check = self.change(MIX[i % len(MIX)])
            sys.stdout.write(json.dumps(check) + "\n")
            sys.stdout.flush()
        return total

    def change(self, what: str) -> JSON:
        """Make one change; what the answer must become, and when it was committed."""
        self.counter += 1
        n = self.counter
        if what == "delete" and not self.created:
            what = "create"
        if what == "ep-del" and not self.added:
            what = "ep-add"
        if what == "ip" and self.cluster_ip:
            service = self.cluster_ip[n % len(self.cluster_ip)]
            ip = next(self.service_ips)
            service["spec"]["clusterIP"] = ip
            service["spec"]["clusterIPs"] = [ip]
            committed = time.monotonic()
            self.server.update(service)
            return _check(what, committed, _service_name(service), [ip])
        if what == "ep-add" and self.headless_slices:
            index = n % len(self.headless_slices)
            eps = self.headless_slices[index]
            hostname, ip = f"b{n}", next(self.pod_ips)
            eps["endpoints"].append(
                {
                    "addresses": [ip],
                    "conditions": {"ready": True, "serving": True, "terminating": False},
                    "hostname": hostname,
                    "nodeName": "node-00",
                    "zone": "zone-a",
                }
            )
            _stamp_trigger_time(eps)
            committed = time.monotonic()
            self.server.update(eps)
            self.added.append((index, hostname))
            return _check(what, committed, f"{hostname}.{_slice_service_name(eps)}", [ip])
        if what == "ep-del":
            index, hostname = self.added.popleft()
            eps = self.headless_slices[index]
            eps["endpoints"] = [e for e in eps["endpoints"] if e.get("hostname") != hostname]
            _stamp_trigger_time(eps)
            committed = time.monotonic()
            self.server.update(eps)
            return _check(what, committed, f"{hostname}.{_slice_service_name(eps)}", None)
        if what == "delete":
            namespace, name = self.created.popleft()
            committed = time.monotonic()
            self.server.delete("Service", namespace, name)
            return _check(what, committed, f"{name}.{namespace}.svc.{ZONE}", None)
        namespace = self.namespaces[n % len(self.namespaces)]
        name, ip = f"new-{n}", next(self.service_ips)
        committed = time.monotonic()
        self.server.create(_new_service(namespace, name, ip))
        self.created.append((namespace, name))
        return _check("create", committed, f"{name}.{namespace}.svc.{ZONE}", [ip])


def _check(what: str, committed: float, qname: str, ips: list[str] | None) -> JSON:
    return {"what": what, "t": committed, "q": qname, "ips": ips}


def _stamp_trigger_time(eps: JSON) -> None:
    """What the EndpointSlice controller does; kubedns's programming-duration metric reads it."""
    now = time.time_ns()
    seconds, nanos = divmod(now, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos // 1000:06d}Z"
    eps["metadata"].setdefault("annotations", {})[TRIGGER_TIME] = stamp


def _service_name(service: JSON) -> str:
    meta = service["metadata"]
    return f"{meta['name']}.{meta['namespace']}.svc.{ZONE}"


def _slice_service_name(eps: JSON) -> str:
    meta = eps["metadata"]
    return f"{meta['labels']['kubernetes.io/service-name']}.{meta['namespace']}.svc.{ZONE}"


def _new_service(namespace: str, name: str, ip: str) -> JSON:
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "uid": f"{namespace}-{name}"},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
        },
    }


# --- the DNS poller -------------------------------------------------------------------------


class DnsClient(asyncio.DatagramProtocol):
    """Raw UDP A queries on one socket; replies matched to waiters by message ID."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, asyncio.Future[tuple[int, frozenset[str], float]]] = {}
        self.ids = _ids()
        self.sent = 0
        self.answered = 0
        self.timeouts = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        arrived = time.monotonic()
        if len(data) < 12:
            return
        future = self.pending.pop(struct.unpack_from("!H", data)[0], None)
        if future is not None and not future.done():
            self.answered += 1
            rcode, ips = parse_reply(data)
            future.set_result((rcode, ips, arrived))

    async def query(
        self, qname: str, timeout: float = 0.5
    ) -> tuple[int, frozenset[str], float] | None:
        """(rcode, A addresses, arrival time), or None on a timeout."""
        assert self.transport is not None
        qid = next(self.ids)
        while qid in self.pending:
            qid = next(self.ids)
        future: asyncio.Future[tuple[int, frozenset[str], float]] = (
            asyncio.get_running_loop().create_future()
        )
        self.pending[qid] = future
        self.transport.sendto(build_query(qid, qname))
        self.sent += 1
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self.pending.pop(qid, None)
            self.timeouts += 1
            return None


def _ids() -> Iterator[int]:
    while True:
        yield from range(1, 65536)


def build_query(qid: int, qname: str, qtype: int = A_TYPE) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in qname.split(".") if p)
    return (
        struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
        + labels
        + b"\0"
        + struct.pack("!HH", qtype, 1)
    )


def parse_reply(data: bytes) -> tuple[int, frozenset[str]]:
    """The rcode and the A addresses in the answer section."""
    _, flags, qdcount, ancount = struct.unpack_from("!HHHH", data)
    offset = 12
    for _ in range(qdcount):
        offset = _skip_name(data, offset) + 4
    ips: set[str] = set()
    for _ in range(ancount):
        offset = _skip_name(data, offset)
        rtype, _, _, length = struct.unpack_from("!HHIH", data, offset)
        offset += 10
        if rtype == A_TYPE and length == 4:
            ips.add(socket.inet_ntoa(data[offset : offset + 4]))
        offset += length
    return flags & 0xF, frozenset(ips)


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += length + 1


@dataclass
class Poller:
    client: DnsClient
    latencies: dict[str, list[float]] = field(default_factory=dict)
    missed: list[JSON] = field(default_factory=list)
    polls: int = 0

    async def check(self, change: JSON) -> None:
        committed: float = change["t"]
        expected = None if change["ips"] is None else frozenset(change["ips"])
        while True:
            reply = await self.client.query(change["q"])
            self.polls += 1
            now = time.monotonic()
            if reply is not None:
                rcode, ips, arrived = reply
                ok = rcode == NXDOMAIN if expected is None else rcode == 0 and ips == expected
                if ok:
                    self.latencies.setdefault(change["what"], []).append(arrived - committed)
                    return
            elapsed = now - committed
            if elapsed > CHECK_TIMEOUT:
                self.missed.append(change)
                return
            await asyncio.sleep(min(MAX_POLL_INTERVAL, max(FIRST_POLL_INTERVAL, elapsed / 10)))


# --- the measurement ------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, float]:
    """VmHWM, VmRSS and its parts (RssAnon: heap; RssFile: mapped code) of ``pid`` in MB, and
    how often it was preempted (``nonvoluntary_ctxt_switches``, of the main thread)."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            values[key] = int(rest.split()[0]) / 1024
        elif key == "nonvoluntary_ctxt_switches":
            values[key] = int(rest)
    return values


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` (all threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (kubedns binds both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def histogram_summary(metrics_text: str, name: str) -> dict[str, float]:
    """Count and mean of a Prometheus histogram (all label sets together)."""
    total = count = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_count"):
            count += float(line.rsplit(" ", 1)[1])
    return {"count": count, "mean_ms": 1000 * total / count if count else float("nan")}


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


@dataclass
class Shape:
    namespaces: int = 1000
    services: int = 10_000
    endpoints: int = 50_000


async def measure(
    shape: Shape,
    *,
    rate: float,
    seconds: float,
    scratch: Path,
    pin: bool,
    log: Path,
    load_seconds: float = 0,
) -> JSON:
    results: JSON = {}
    kubeconfig = scratch / "kubeconfig"
    dns_port, ops_port = free_port(), free_port()
    sizes = ["--namespaces", str(shape.namespaces), "--services", str(shape.services)]
    sizes += ["--endpoints", str(shape.endpoints)]
    fake = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).resolve()),
        "--fake-child",
        "--kubeconfig",
        str(kubeconfig),
        *sizes,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 20,
    )
    assert fake.stdin is not None and fake.stdout is not None
    kubedns: asyncio.subprocess.Process | None = None
    try:
        line = await asyncio.wait_for(fake.stdout.readline(), 300)
        if b"serving" not in line:
            raise RuntimeError(f"fake API server did not start: {line!r}")
        command = [
            sys.executable,
            "-m",
            "kubedns",
            "serve",
            "--kubeconfig",
            str(kubeconfig),
            "--listen",
            f"127.0.0.1:{dns_port}",
            "--ops-listen",
            f"127.0.0.1:{ops_port}",
            "--upstream",
            "127.0.0.1:9",
            "--log-level",
            "info",
            "--log-format",
            "text",
        ]
        fake_cpu_at_start = cpu_seconds(fake.pid)
        started = time.monotonic()
        with log.open("wb") as log_file:
            kubedns = await asyncio.create_subprocess_exec(
                *command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if pin else None,
            )
        results["ready_s"] = await wait_ready(ops_port, kubedns, started, log)
        results["cpu_to_ready_s"] = cpu_seconds(kubedns.pid)
        # Below 1 with many preemptions: kubedns was runnable but other processes had its CPU.
        results["cpu_share_to_ready"] = results["cpu_to_ready_s"] / results["ready_s"]
        results["preemptions_to_ready"] = proc_status(kubedns.pid)["nonvoluntary_ctxt_switches"]
        # The fake API server's own CPU up to then (it was loaded before kubedns started, so
        # this is mostly serving the lists): tells a slow API from a slow kubedns.
        results["fake_api_cpu_to_ready_s"] = cpu_seconds(fake.pid) - fake_cpu_at_start
        await asyncio.sleep(1.0)  # let the allocator settle; RSS "after sync"
        status = proc_status(kubedns.pid)
        for key, name in (("VmRSS", "rss"), ("VmHWM", "peak_rss"), ("RssAnon", "rss_anon")):
            results[f"{name}_after_sync_mb"] = status[key]
        results["rss_file_after_sync_mb"] = status["RssFile"]
        if rate > 0 and seconds > 0:
            results.update(await churn(fake, kubedns.pid, dns_port, rate=rate, seconds=seconds))
            status = proc_status(kubedns.pid)
            results["rss_after_churn_mb"] = status["VmRSS"]
            results["peak_rss_after_churn_mb"] = status["VmHWM"]
            results.update(await scrape_metrics(ops_port))
        if rate > 0 and load_seconds > 0:
            results.update(
                await churn_under_load(
                    fake,
                    kubedns.pid,
                    dns_port,
                    shape,
                    rate=rate,
                    seconds=load_seconds,
                    scratch=scratch,
                )
            )
    finally:
        if kubedns is not None and kubedns.returncode is None:
            kubedns.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(kubedns.wait(), 10)
            if kubedns.returncode is None:
                kubedns.kill()
                await kubedns.wait()
        fake.stdin.close()
        try:
            await asyncio.wait_for(fake.wait(), 10)
        except TimeoutError:
            fake.kill()
            await fake.wait()
    return results


async def scrape_metrics(ops_port: int) -> JSON:
    """kubedns's own view of the same changes: read-to-applied and trigger-to-applied."""
    results: JSON = {}
    _, metrics_text = await http_get(ops_port, "/metrics")
    for name in (
        "kubedns_kubernetes_event_delivery_seconds",
        "coredns_kubernetes_dns_programming_duration_seconds",
    ):
        summary = histogram_summary(metrics_text, name)
        results[f"{name}_count"] = summary["count"]
        results[f"{name}_mean_ms"] = summary["mean_ms"]
    return results


async def wait_ready(
    ops_port: int, process: asyncio.subprocess.Process, started: float, log: Path
) -> float:
    """Seconds from process start to the first ``/ready`` 200 (polled every 20 ms)."""
    while True:
        if process.returncode is not None:
            raise RuntimeError(f"kubedns exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError, IndexError, ValueError):
            status, _ = await http_get(ops_port, "/ready")
            if status == 200:
                return time.monotonic() - started
        if time.monotonic() - started > 300:
            raise RuntimeError("kubedns not ready after 300 s")
        await asyncio.sleep(0.02)


async def churn(
    fake: asyncio.subprocess.Process, pid: int, dns_port: int, *, rate: float, seconds: float
) -> JSON:
    assert fake.stdin is not None and fake.stdout is not None
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        DnsClient, remote_addr=("127.0.0.1", dns_port)
    )
    poller = Poller(client)
    checks: list[asyncio.Task[None]] = []
    cpu_before = cpu_seconds(pid)
    began = time.monotonic()
    fake.stdin.write(f"churn {rate} {seconds}\n".encode())
    await fake.stdin.drain()
    sent = 0
    while True:
        line = await fake.stdout.readline()
        if not line:
            raise RuntimeError("the fake API server child went away")
        change = json.loads(line)
        if "done" in change:
            sent = int(change["done"])
            break
        checks.append(asyncio.create_task(poller.check(change)))
    driven = time.monotonic() - began
    await asyncio.gather(*checks)
    elapsed = time.monotonic() - began
    cpu = cpu_seconds(pid) - cpu_before
    transport.close()
    every = sorted(x for values in poller.latencies.values() for x in values)
    results: JSON = {
        "rate": rate,
        "seconds": seconds,
        "changes_sent": sent,
        "changes_observed": len(every),
        "changes_missed": len(poller.missed),
        "achieved_rate": sent / driven,
        "polls": poller.polls,
        "poll_timeouts": client.timeouts,
        "answers_per_s_during_churn": client.answered / elapsed,
        "kubedns_cpu_during_churn": cpu / elapsed,
    }
    if every:
        results["latency_p50_ms"] = 1000 * statistics.median(every)
        results["latency_p99_ms"] = 1000 * percentile(every, 0.99)
        results["latency_max_ms"] = 1000 * every[-1]
    for what, values in sorted(poller.latencies.items()):
        values.sort()
        results[f"latency_{what}_p50_ms"] = 1000 * statistics.median(values)
        results[f"latency_{what}_p99_ms"] = 1000 * percentile(values, 0.99)
    return results


async def churn_under_load(
    fake: asyncio.subprocess.Process,
    pid: int,
    dns_port: int,
    shape: Shape,
    *,
    rate: float,
    seconds: float,
    scratch: Path,
) -> JSON:
    """The churn again, while dnsperf queries existing Service names as fast as kubedns
    answers (100 in flight): DNS throughput during churn, and event-to-answer latency when
    the loop is busy answering. Skipped (with a note) when dnsperf is not installed."""
    dnsperf = shutil.which("dnsperf")
    if dnsperf is None:
        return {"load_phase": "skipped: dnsperf not installed"}
    queries = scratch / "queries.txt"
    names = [
        f"svc-{s:05d}.ns-{s % shape.namespaces:04d}.svc.{ZONE} A"
        for s in range(0, shape.services, max(1, shape.services // 1000))
    ]
    queries.write_text("\n".join(names) + "\n")
    command = [dnsperf, "-s", "127.0.0.1", "-p", str(dns_port), "-d", str(queries)]
    command += ["-l", f"{seconds + 2:g}", "-q", "100", "-c", "1", "-T", "1", "-t", "2"]
    load = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=subprocess.STDOUT
    )
    await asyncio.sleep(1.0)  # dnsperf at full speed before the changes start
    measured = await churn(fake, pid, dns_port, rate=rate, seconds=seconds)
    output, _ = await load.communicate()
    text = output.decode(errors="replace")
    results: JSON = {f"load_{k}": v for k, v in measured.items() if k not in ("rate", "seconds")}
    for key, pattern in (
        ("load_dnsperf_qps", r"Queries per second:\s+([\d.]+)"),
        ("load_dnsperf_avg_latency_ms", r"Average Latency \(s\):\s+([\d.]+)"),
        ("load_dnsperf_lost_percent", r"Queries lost:\s+\d+ \(([\d.]+)%\)"),
    ):
        match = re.search(pattern, text)
        if match:
            value = float(match.group(1))
            results[key] = value * 1000 if key.endswith("_ms") else value
    return results


def run_scale(
    shape: Shape,
    *,
    rate: float,
    seconds: float,
    pin: bool = True,
    log: Path | None = None,
    load_seconds: float = 0,
) -> JSON:
    """Run the whole benchmark once; the figures as a flat dict. kubedns logs (at info: a
    line per initial list) go to ``log``, else to a scratch file."""
    cpus = os.sched_getaffinity(0)
    pin = pin and 0 in cpus and len(cpus) > 1
    if pin:
        # kubedns gets CPU 0 to itself; this process and the fake share the rest.
        os.sched_setaffinity(0, cpus - {0})
    with tempfile.TemporaryDirectory() as scratch:
        try:
            results = asyncio.run(
                measure(
                    shape,
                    rate=rate,
                    seconds=seconds,
                    scratch=Path(scratch),
                    pin=pin,
                    log=log or Path(scratch) / "kubedns.log",
                    load_seconds=load_seconds,
                )
            )
        finally:
            os.sched_setaffinity(0, cpus)
    return {
        "namespaces": shape.namespaces,
        "services": shape.services,
        "endpoints": shape.endpoints,
        "kubedns_pinned_to_one_cpu": pin,
        **results,
    }


def machine() -> JSON:
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1m_before": float(Path("/proc/loadavg").read_text().split()[0]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--namespaces", type=int, default=1000)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=200, help="changes a second")
    parser.add_argument("--seconds", type=float, default=20, help="how long to change")
    parser.add_argument(
        "--load-seconds",
        type=float,
        default=10,
        help="then churn this long again under dnsperf load (0: skip)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin kubedns to CPU 0")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    parser.add_argument("--fake-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fake_child:
        return fake_child(args)
    shape = Shape(args.namespaces, args.services, args.endpoints)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = args.out.with_suffix(".kubedns.log")
    results = {
        **machine(),
        **run_scale(
            shape,
            rate=args.rate,
            seconds=args.seconds,
            pin=not args.no_pin,
            log=log,
            load_seconds=args.load_seconds,
        ),
    }
    results["loadavg_1m_after"] = float(Path("/proc/loadavg").read_text().split()[0])
    rounded = {k: round(v, 2) if isinstance(v, float) else v for k, v in results.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rounded, indent=2) + "\n")
    print(json.dumps(rounded, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
