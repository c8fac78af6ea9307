"""What every benchmark here shares: peers on loopback, dnsperf, and process measurements.

Every server runs on 127.0.0.1 on an ephemeral port with config files in a temporary directory,
never as a system service. With ``taskset`` available, servers are pinned to the last CPU and
dnsperf to the first, so the client and the server under test never fight over a core (the
benchmark machine has two).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dnslib import QTYPE, DNSRecord

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
KUBEDNS = Path(sys.executable).parent / "kubedns"


class BenchError(RuntimeError):
    """A peer did not start, or dnsperf produced nothing to read."""


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (kubedns binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise BenchError("no free port on 127.0.0.1")


def find(name: str) -> str | None:
    """The path of a tool, looking in /usr/sbin too (not on a normal user's PATH)."""
    found = shutil.which(name)
    if found:
        return found
    sbin = Path("/usr/sbin") / name
    return str(sbin) if sbin.exists() else None


def need(name: str) -> str:
    found = find(name)
    if found is None:
        raise BenchError(f"{name} is not installed (apt-get install {name})")
    return found


def cpus() -> tuple[int, int] | None:
    """(client CPU, server CPU) when there are two or more CPUs and taskset exists."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2 or find("taskset") is None:
        return None
    return available[0], available[-1]


def pinned(argv: Sequence[str], *, role: str) -> list[str]:
    """``argv`` under ``taskset`` on the CPU for ``role`` ("client" or "server")."""
    pair = cpus()
    if pair is None:
        return list(argv)
    cpu = pair[0] if role == "client" else pair[1]
    return ["taskset", "-c", str(cpu), *argv]


@dataclass
class Peer:
    """One server process started for a run."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start(
    name: str, argv: Sequence[str], *, port: int, workdir: Path, probe: str = "cluster.local"
) -> Peer:
    """Start ``argv`` pinned to the server CPU; return once it answers ``probe`` SOA."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            pinned(argv, role="server"), stdout=out, stderr=subprocess.STDOUT, cwd=workdir
        )
    peer = Peer(name, port, process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{name} exited with {process.returncode}:\n{log.read_text()}")
        if query(port, probe, "SOA", timeout=0.3) is not None:
            return peer
        time.sleep(0.1)
    peer.stop()
    raise BenchError(f"{name} did not answer on port {port} within 60 s:\n{log.read_text()}")


def query(port: int, name: str, qtype: str, *, timeout: float = 2.0) -> DNSRecord | None:
    """One UDP query to 127.0.0.1:port, or None on time-out."""
    packet = DNSRecord.question(name, qtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet.pack(), ("127.0.0.1", port))
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            return None
    return DNSRecord.parse(data)


def answer_summary(reply: DNSRecord | None) -> tuple[str, tuple[str, ...]]:
    """(rcode, sorted answer records without TTLs): what two servers must agree on."""
    if reply is None:
        return ("TIMEOUT", ())
    from dnslib import RCODE  # noqa: PLC0415

    records = sorted(
        f"{str(rr.rname).lower()} {QTYPE[rr.rtype]} {str(rr.rdata).lower()}" for rr in reply.rr
    )
    return (RCODE[reply.header.rcode], tuple(records))


# -- processes -----------------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (nsd forks a server child and xfrd)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def _status_kib(pid: int, key: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _pss_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the whole process tree."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


@dataclass(frozen=True)
class Memory:
    """Memory of a server's process tree, in MiB. ``rss`` sums VmRSS over the tree (shared pages
    counted once per process); ``pss`` shares them out (the fair total); ``hwm`` is the largest
    VmHWM (peak RSS) of any one process in the tree."""

    rss: float
    pss: float
    hwm: float
    processes: int


def memory(pid: int) -> Memory:
    tree = process_tree(pid)
    mib = 1024.0
    return Memory(
        rss=sum(_status_kib(p, "VmRSS") for p in tree) / mib,
        pss=sum(_pss_kib(p) for p in tree) / mib,
        hwm=max((_status_kib(p, "VmHWM") for p in tree), default=0) / mib,
        processes=len(tree),
    )


# -- dnsperf -------------------------------------------------------------------------------------


@dataclass
class PerfResult:
    """What one dnsperf run reports (latencies in milliseconds), plus what we measured around
    it: CPU used by the server's process tree and by dnsperf, and datagrams the kernel dropped
    because a receive buffer was full (``RcvbufErrors``, machine-wide: on loopback these are the
    server's, as dnsperf's own buffers are larger)."""

    qps: float
    sent: int
    completed: int
    lost: int
    avg_ms: float
    max_ms: float
    stddev_ms: float
    rcodes: dict[str, int] = field(default_factory=dict)
    response_bytes: float = 0.0
    """Average reply size: a check that the servers send comparable answers."""
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    rcvbuf_drops: int = 0

    @property
    def server_cpu_percent(self) -> float:
        return 100.0 * self.server_cpu_s / self.seconds if self.seconds else 0.0

    @property
    def qps_per_cpu(self) -> float:
        """Answers per second of server CPU: throughput normalised by what the server could
        use, so a server starved by the client (or by other work on the machine) still
        compares fairly."""
        return self.completed / self.server_cpu_s if self.server_cpu_s else 0.0

    @property
    def client_cpu_percent(self) -> float:
        return 100.0 * self.client_cpu_s / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "server_cpu_percent": round(self.server_cpu_percent, 1),
            "client_cpu_percent": round(self.client_cpu_percent, 1),
            "qps_per_cpu": round(self.qps_per_cpu),
        }


@dataclass(frozen=True)
class Load:
    """A dnsperf client shape: ``clients`` sockets, ``outstanding`` queries in flight at most."""

    name: str
    clients: int
    outstanding: int
    threads: int = 1

    def argv(self) -> list[str]:
        return ["-c", str(self.clients), "-T", str(self.threads), "-q", str(self.outstanding)]

    def describe(self) -> str:
        return " ".join(self.argv())


SINGLE = Load("single", clients=1, outstanding=1)
"""One query in flight: round-trip latency; qps is 1 / latency."""
LOADED = Load("loaded", clients=4, outstanding=100)
"""400 in flight: saturates a single-threaded server from one client core without overflowing
its socket receive buffer."""
BURST = Load("burst", clients=8, outstanding=500)
"""4,000 in flight: more than a default-sized UDP receive buffer holds, so a server that drains
its socket too slowly loses queries to kernel drops (counted in ``rcvbuf_drops``)."""


def dnsperf_argv(port: int, datafile: Path, *, seconds: float, load: Load) -> list[str]:
    return [
        need("dnsperf"), "-s", "127.0.0.1", "-p", str(port), "-d", str(datafile),
        "-l", f"{seconds:g}", "-t", "2", *load.argv(),
    ]  # fmt: skip


def command_line(argv: Sequence[str]) -> str:
    """A dnsperf command line as the docs show it (tool by name, port 0 as PORT)."""
    words = [Path(argv[0]).name, *argv[1:]]
    return " ".join("PORT" if words[i - 1] == "-p" else w for i, w in enumerate(words))


def rcvbuf_errors() -> int:
    """The kernel's UDP ``RcvbufErrors`` counter (all sockets)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    udp = [line for line in lines if line and line[0] == "Udp:"]
    if len(udp) < 2:
        return 0
    return int(udp[1][udp[0].index("RcvbufErrors")])


def dnsperf(
    peer: Peer, datafile: Path, *, seconds: float, load: Load, log: Path | None = None
) -> PerfResult:
    """Replay ``datafile`` against ``peer`` for ``seconds``; measure CPU and drops meanwhile."""
    argv = pinned(dnsperf_argv(peer.port, datafile, seconds=seconds, load=load), role="client")
    out_path = log or datafile.with_suffix(".dnsperf.log")
    cpu_before = cpu_seconds(peer.process.pid)
    drops_before = rcvbuf_errors()
    started = time.monotonic()
    with out_path.open("w+b") as out:
        client = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        _, _, usage = os.wait4(client.pid, 0)
        client.returncode = 0
        elapsed = time.monotonic() - started
        cpu_after = cpu_seconds(peer.process.pid)
        out.seek(0)
        output = out.read().decode(errors="replace")
    result = parse_dnsperf(output)
    result.seconds = elapsed
    result.server_cpu_s = cpu_after - cpu_before
    result.client_cpu_s = usage.ru_utime + usage.ru_stime
    result.rcvbuf_drops = rcvbuf_errors() - drops_before
    return result


def parse_dnsperf(output: str) -> PerfResult:
    def number(pattern: str) -> float:
        match = re.search(pattern, output)
        if match is None:
            raise BenchError(f"dnsperf output lacks {pattern!r}:\n{output}")
        return float(match.group(1))

    rcodes: dict[str, int] = {}
    line = re.search(r"Response codes:\s+(.*)", output)
    if line is not None:
        for code, count in re.findall(r"([A-Z]+) (\d+)", line.group(1)):
            rcodes[code] = int(count)
    return PerfResult(
        qps=number(r"Queries per second:\s+([\d.]+)"),
        sent=int(number(r"Queries sent:\s+(\d+)")),
        completed=int(number(r"Queries completed:\s+(\d+)")),
        lost=int(number(r"Queries lost:\s+(\d+)")),
        avg_ms=number(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
        max_ms=number(r"Average Latency \(s\):.*max ([\d.]+)") * 1000,
        stddev_ms=number(r"Latency StdDev \(s\):\s+([\d.]+)") * 1000,
        rcodes=rcodes,
        response_bytes=number(r"Average packet size:.*response (\d+)"),
    )


def kubedns_argv(snapshot: Path, *, port: int, upstream_port: int) -> list[str]:
    """The real server, as shipped (uvloop on), forwarding only to a loopback dnsmasq."""
    if not KUBEDNS.exists():
        raise BenchError(f"{KUBEDNS} missing: run `make venv` and use .venv/bin/python")
    return [
        str(KUBEDNS), "serve", "--snapshot", str(snapshot), "--listen", f"127.0.0.1:{port}",
        "--upstream", f"127.0.0.1:{upstream_port}", "--log-level", "warning",
    ]  # fmt: skip


def dnsmasq_argv(port: int, *extra: str) -> list[str]:
    return [
        need("dnsmasq"), "--keep-in-foreground", "--no-resolv", "--no-hosts",
        "--conf-file=/dev/null", f"--port={port}", "--listen-address=127.0.0.1",
        "--bind-interfaces", "--pid-file=", "--user=root", "--group=root", *extra,
    ]  # fmt: skip


def machine() -> dict[str, Any]:
    """The facts a reader needs to compare figures across machines."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"^model name\s*:\s*(.*)$", cpuinfo.read_text(), re.MULTILINE)
        model = match.group(1).strip() if match else ""
    versions = {}
    for tool, flag in (("dnsperf", "-h"), ("nsd", "-v"), ("unbound", "-V"), ("dnsmasq", "-v")):
        path = find(tool)
        if path is None:
            continue
        out = subprocess.run([path, flag], capture_output=True, check=False)
        text = (out.stdout + out.stderr).decode(errors="replace")
        match = re.search(r"[Vv]ersion:?\s+([\w.]+)", text)
        versions[tool] = match.group(1) if match else "?"
    pair = cpus()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "pinning": f"taskset: dnsperf on CPU {pair[0]}, server on CPU {pair[1]}"
        if pair
        else "none",
        "versions": versions,
    }


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def measure(
    servers: Sequence[Peer],
    datafile: Path,
    *,
    loads: Sequence[Load],
    seconds: float,
    repeats: int,
    workdir: Path,
    label: str = "",
) -> dict[str, dict[str, Any]]:
    """dnsperf every server under every load, ``repeats`` rounds interleaved (so a burst of
    background load hits every server alike), and keep the best (highest-qps) run of each: on a
    shared machine other work only ever takes throughput away, so the best run is the closest
    to what the server can do.

    Returns ``{load: {server: {...best run..., "qps_runs": [...], "memory_mib": {...}}}}``.
    """
    runs: dict[str, dict[str, list[PerfResult]]] = {
        load.name: {peer.name: [] for peer in servers} for load in loads
    }
    for load in loads:
        for round_ in range(repeats):
            for peer in servers:
                log = workdir / f"dnsperf-{label}{peer.name}-{load.name}-{round_}.log"
                runs[load.name][peer.name].append(
                    dnsperf(peer, datafile, seconds=seconds, load=load, log=log)
                )
    summary: dict[str, dict[str, Any]] = {}
    for load in loads:
        summary[load.name] = {}
        for peer in servers:
            measured = sorted(runs[load.name][peer.name], key=lambda r: r.qps)
            best = measured[-1]
            summary[load.name][peer.name] = {
                **best.as_dict(),
                "qps_runs": [round(r.qps) for r in runs[load.name][peer.name]],
                "memory_mib": asdict(memory(peer.process.pid)),
            }
    return summary


def table(results: dict[str, dict[str, Any]], *, reference: str = "kubedns") -> str:
    """Markdown, one row per (load, server); ``kubedns/peer`` is the ratio of best qps,
    ``per CPU`` the same ratio for answers per server CPU-second."""
    head = (
        "| load | server | qps (best) | qps runs | kubedns/peer | answers per CPU-s | "
        "kubedns/peer per CPU | avg ms | stddev ms | lost | rcvbuf drops | reply bytes | "
        "server CPU % | dnsperf CPU % | RSS MiB | PSS MiB |\n"
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    )
    rows = []
    for load, servers in results.items():
        ours = servers[reference]["qps"]
        ours_cpu = servers[reference]["qps_per_cpu"]
        for name, r in servers.items():
            ratio = "" if name == reference else f"{ours / r['qps']:.2f}" if r["qps"] else "-"
            ratio_cpu = (
                "" if name == reference else f"{ours_cpu / r['qps_per_cpu']:.2f}"
                if r["qps_per_cpu"] else "-"
            )  # fmt: skip
            mem = r["memory_mib"]
            spread = "/".join(f"{q / 1000:.1f}k" for q in r["qps_runs"])
            rows.append(
                f"| {load} | {name} | {r['qps']:,.0f} | {spread} | {ratio} | "
                f"{r['qps_per_cpu']:,.0f} | {ratio_cpu} | {r['avg_ms']:.3f} | "
                f"{r['stddev_ms']:.3f} | {r['lost']} | {r['rcvbuf_drops']} | "
                f"{r['response_bytes']:.0f} | "
                f"{r['server_cpu_percent']:.0f} | {r['client_cpu_percent']:.0f} | "
                f"{mem['rss']:.1f} | {mem['pss']:.1f} |"
            )
    return head + "\n".join(rows) + "\n"
