"""Memory under hostile clients (issue 9): forward cache growth, in-flight sharing, webhook bombs.

    .venv/bin/python -m bench.hostile             # full size, writes bench/results/hostile.json
    .venv/bin/python -m bench.hostile --names 500 --rate 200 --seconds 1 --containers 50 \\
        --big-containers 200                      # tiny, as the smoke test runs it

Each part runs the real program (``kubedns serve --snapshot config/demo-cluster.yaml``, or
``kubedns webhook`` with throwaway certificates) on 127.0.0.1 and reads its VmRSS and VmHWM from
/proc before and after. The upstream is a fake DNS server on loopback, in a thread of this
process: for the cache part it answers every name with about 26 KB of TXT records (truncated
over UDP, whole over TCP); for the in-flight part it never answers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import datetime
import http.client
import ipaddress
import json
import os
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, cast

from bench.common import KUBEDNS, REPO, RESULTS, BenchError, Peer, free_port, machine, start

DEMO = REPO / "config" / "demo-cluster.yaml"
TXT_RECORDS = 100
TXT_BYTES = 250
"""100 TXT records of one 249-byte string each: an answer of about 26 KB."""
RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


def _status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key.lower()] = round(int(value.split()[0]) / 1024, 1)
    return out


# -- the fake upstream ---------------------------------------------------------------------------


def _question_end(query: bytes) -> int:
    at = 12
    while query[at]:
        at += query[at] + 1
    return at + 5


def big_answer(query: bytes, *, records: int = TXT_RECORDS) -> bytes:
    """A reply to ``query`` with ``records`` TXT records of ``TXT_BYTES`` bytes each."""
    end = _question_end(query)
    flags = 0x8180 | (struct.unpack_from("!H", query, 2)[0] & 0x0100)
    header = struct.pack("!HHHHHH", struct.unpack_from("!H", query)[0], flags, 1, records, 0, 0)
    text = bytes([TXT_BYTES - 1]) + b"x" * (TXT_BYTES - 1)
    record = struct.pack("!HHHIH", 0xC00C, 16, 1, 300, len(text)) + text
    return header + query[12:end] + record * records


def truncated(query: bytes) -> bytes:
    end = _question_end(query)
    ident, flags = struct.unpack_from("!HH", query)
    return struct.pack("!HHHHHH", ident, 0x8380 | (flags & 0x0100), 1, 0, 0, 0) + query[12:end]


class _UDP(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and len(data) > 17:
            self.transport.sendto(truncated(data), addr)


async def _tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with suppress(ConnectionError, asyncio.IncompleteReadError):
        while True:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            reply = big_answer(await reader.readexactly(size))
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
    writer.close()


def _socket_pair() -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same free port on 127.0.0.1."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        return udp, tcp
    raise BenchError("no port free for both UDP and TCP on 127.0.0.1")


@contextmanager
def big_upstream() -> Iterator[int]:
    """A DNS server on 127.0.0.1 (UDP: TC, TCP: ~26 KB of TXT) in a thread; yields its port."""
    loop = asyncio.new_event_loop()
    udp, tcp = _socket_pair()
    port = int(udp.getsockname()[1])
    ready = threading.Event()

    async def serve() -> None:
        await loop.create_datagram_endpoint(_UDP, sock=udp)
        await asyncio.start_server(_tcp, sock=tcp, backlog=1024)
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop)
    if not ready.wait(10):
        raise BenchError("fake upstream did not start")
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@contextmanager
def silent_upstream() -> Iterator[int]:
    """A UDP socket nobody reads and a TCP listener nobody accepts on: an upstream that never
    answers."""
    udp, tcp = _socket_pair()
    with udp, tcp:
        tcp.listen(1)
        yield int(udp.getsockname()[1])


# -- clients -------------------------------------------------------------------------------------


def query_wire(ident: int, name: str, qtype: int = 16) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return (
        struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
        + labels
        + b"\0"
        + struct.pack("!HH", qtype, 1)
    )


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.rcodes: collections.Counter[str] = collections.Counter()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        ident, flags = struct.unpack_from("!HH", data)
        self.rcodes[RCODES.get(flags & 0xF, str(flags & 0xF))] += 1
        future = self.waiting.pop(ident, None)
        if future is not None and not future.done():
            future.set_result(data)


async def ask_all(port: int, names: list[str], *, window: int, timeout: float) -> dict[str, int]:
    """Ask TXT for every name over UDP, ``window`` in flight; count rcodes and time-outs."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        _Client, remote_addr=("127.0.0.1", port)
    )
    free = list(range(1, window + 1))
    lost = 0

    async def one(name: str) -> None:
        nonlocal lost
        ident = free.pop()
        future: asyncio.Future[bytes] = loop.create_future()
        client.waiting[ident] = future
        transport.sendto(query_wire(ident, name))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            client.waiting.pop(ident, None)
            lost += 1
        free.append(ident)

    pending: set[asyncio.Task[None]] = set()
    for name in names:
        if len(pending) >= window:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        pending.add(asyncio.create_task(one(name)))
    if pending:
        await asyncio.wait(pending)
    transport.close()
    return {**client.rcodes, "lost": lost}


async def flood(
    port: int, name: str, *, rate: float, seconds: float, wait: float
) -> dict[str, Any]:
    """Send ``name`` at ``rate`` per second for ``seconds`` over UDP, then wait ``wait`` s."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        _Client, remote_addr=("127.0.0.1", port)
    )
    sent, started = 0, time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate)
        while sent < due:
            transport.sendto(query_wire(sent & 0xFFFF, name, 1))
            sent += 1
        await asyncio.sleep(0.002)
    sending = time.monotonic() - started
    await asyncio.sleep(wait)
    transport.close()
    answered = sum(client.rcodes.values())
    return {"sent": sent, "sending_s": round(sending, 2), "answered": answered,
            "unanswered": sent - answered, "rcodes": dict(client.rcodes)}  # fmt: skip


def metric(url: str, name: str) -> float:
    total = 0.0
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
    return total


def _serve(work: Path, upstream: int, extra_config: str = "") -> tuple[Peer, str]:
    port, metrics = free_port(), free_port()
    config = work / "kubedns.yaml"
    config.write_text(extra_config or "{}\n")
    argv = [
        str(KUBEDNS), "serve", "--snapshot", str(DEMO), "--config", str(config),
        "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{upstream}",
        "--ops-listen", f"127.0.0.1:{metrics}", "--log-level", "error",
    ]  # fmt: skip
    return start("kubedns", argv, port=port, workdir=work), f"http://127.0.0.1:{metrics}/metrics"


def cache_growth(work: Path, *, names: int, window: int = 200) -> dict[str, Any]:
    with big_upstream() as upstream:
        peer, metrics = _serve(work, upstream)
        try:
            before = _status(peer.process.pid)
            started = time.monotonic()
            asked = [f"n{i}.cache-bust.example" for i in range(names)]
            rcodes = asyncio.run(ask_all(peer.port, asked, window=window, timeout=6.0))
            seconds = time.monotonic() - started
            after = _status(peer.process.pid)
            entries = metric(metrics, "coredns_cache_entries")
            size = metric(metrics, "kubedns_cache_bytes")
        finally:
            peer.stop()
    return {"names": names, "answer_bytes": len(big_answer(query_wire(0, asked[0]))),
            "seconds": round(seconds, 1), "rcodes": rcodes, "cache_entries": int(entries),
            "cache_bytes": int(size), "before": before, "after": after}  # fmt: skip


def inflight(work: Path, *, rate: float, seconds: float) -> dict[str, Any]:
    with silent_upstream() as upstream:
        peer, _ = _serve(work, upstream)
        try:
            before = _status(peer.process.pid)
            # Forward timeout is 5 s: wait for every shared query to give up.
            counts = asyncio.run(
                flood(peer.port, "silent.example.org", rate=rate, seconds=seconds, wait=6.5)
            )
            after = _status(peer.process.pid)
        finally:
            peer.stop()
    return {"rate": rate, "seconds": seconds, **counts, "before": before, "after": after}


# -- the webhook ---------------------------------------------------------------------------------


def _certificate(cert: Path, key: Path) -> None:
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubedns-bench")])
    now = datetime.datetime.now(datetime.UTC)
    built = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(private.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(private, hashes.SHA256())
    )  # fmt: skip
    key.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip
    cert.write_bytes(built.public_bytes(serialization.Encoding.PEM))


def webhook_cluster(services: int, namespace: str = "bomb") -> dict[str, Any]:
    items = [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"namespace": namespace, "name": f"svc-{i}"},
         "spec": {"type": "ClusterIP", "clusterIP": f"10.97.{i // 250}.{i % 250 + 1}",
                  "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                            {"name": "grpc", "port": 9090, "protocol": "TCP"}]}}
        for i in range(services)
    ]  # fmt: skip
    return {"apiVersion": "v1", "kind": "List", "items": items}


def review(containers: int, namespace: str = "bomb") -> bytes:
    pod = {
        "metadata": {"name": "bomb", "namespace": namespace},
        "spec": {"dnsPolicy": "ClusterFirst",
                 "containers": [{"name": f"c{i}"} for i in range(containers)]},
    }  # fmt: skip
    return json.dumps({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": f"bomb-{containers}", "kind": {"group": "", "version": "v1",
                    "kind": "Pod"}, "namespace": namespace, "operation": "CREATE",
                    "object": pod},
    }).encode()  # fmt: skip


def _https(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=120, context=context)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _one_review(port: int, pid: int, containers: int) -> dict[str, Any]:
    body = review(containers)
    outcome: dict[str, Any] = {}

    def post() -> None:
        started = time.monotonic()
        try:
            status, data = _https(port, "POST", "/mutate", body)
        except OSError as error:
            outcome.update(status=None, error=str(error))
            return
        outcome.update(status=status, seconds=round(time.monotonic() - started, 3))
        with suppress(ValueError, KeyError):
            answer = json.loads(data)["response"]
            patch = base64.b64decode(answer.get("patch", ""))
            outcome.update(allowed=answer.get("allowed"), patch_bytes=len(patch),
                           warnings=answer.get("warnings", []))  # fmt: skip
        outcome["response_bytes"] = len(data)

    thread = threading.Thread(target=post)
    thread.start()
    time.sleep(0.05)
    started = time.monotonic()
    health, _ = _https(port, "GET", "/healthz")
    health_ms = round((time.monotonic() - started) * 1000, 1)
    thread.join()
    return {"containers": containers, "request_bytes": len(body), **outcome,
            "healthz_during_ms": health_ms, "healthz_status": health,
            "memory_after": _status(pid)}  # fmt: skip


def webhook(work: Path, *, services: int, containers: int, big_containers: int) -> dict[str, Any]:
    cert, key, snapshot = work / "tls.crt", work / "tls.key", work / "services.json"
    _certificate(cert, key)
    snapshot.write_text(json.dumps(webhook_cluster(services)))
    port = free_port()
    argv = [
        str(KUBEDNS), "webhook", f"--listen=127.0.0.1:{port}", f"--tls-cert={cert}",
        f"--tls-key={key}", f"--snapshot={snapshot}", "--cluster-domain=cluster.local",
        "--cluster-dns=10.96.0.10", "--node-resolv-conf=",
    ]  # fmt: skip
    log = work / "webhook.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=work)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise BenchError(f"webhook exited with {process.returncode}:\n{log.read_text()}")
            with suppress(OSError):
                if _https(port, "GET", "/readyz")[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"webhook not ready in 60 s:\n{log.read_text()}")
            time.sleep(0.1)
        before = _status(process.pid)
        pods = [_one_review(port, process.pid, n) for n in (containers, big_containers)]
        alive = process.poll() is None
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=15)
    return {"services": services, "before": before, "pods": pods, "alive_after": alive}


# -- the whole run -------------------------------------------------------------------------------


def run(
    *,
    names: int = 42_000,
    rate: float = 4000,
    seconds: float = 5.0,
    services: int = 200,
    containers: int = 1000,
    big_containers: int = 30_000,
    workdir: Path | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kubedns-bench-hostile-") as tmp:
        work = workdir or Path(tmp)
        return {
            "cache": cache_growth(work, names=names),
            "inflight": inflight(work, rate=rate, seconds=seconds),
            "webhook": webhook(
                work, services=services, containers=containers, big_containers=big_containers
            ),
        }


def _mem(m: dict[str, float]) -> str:
    return f"{m.get('vmrss', 0):.0f} MiB (peak {m.get('vmhwm', 0):.0f})"


def render(result: dict[str, Any]) -> str:
    """The Markdown section of BENCHMARKS.md."""
    c, f, w = result["cache"], result["inflight"], result["webhook"]
    codes = ", ".join(f"{k} {v:,}" for k, v in sorted(f["rcodes"].items()))
    cache_codes = ", ".join(f"{k} {v:,}" for k, v in sorted(c["rcodes"].items()))
    pods = "\n".join(
        f"| {p['containers']:,} | {p['request_bytes']:,} | {p.get('status')} | "
        f"{p.get('patch_bytes', 0):,} | {p.get('seconds', 0):.2f} s | "
        f"{p['healthz_during_ms']:.0f} ms | {_mem(p['memory_after'])} | "
        f"{'yes' if p.get('warnings') else 'no'} |"
        for p in w["pods"]
    )
    return f"""## Hostile clients: memory (`bench/hostile.py`, issue 9)

Each against the real program on loopback, VmRSS (and VmHWM, the peak) read from /proc.
`kubedns serve --snapshot config/demo-cluster.yaml`, default settings, forwarding to a fake
upstream in the benchmark process.

**Forward cache growth.** {c["names"]:,} distinct names asked for TXT over UDP, 200 in flight;
the upstream answers each with {c["answer_bytes"]:,} bytes of TXT (truncated over UDP, so
kubedns fetches it over TCP). Replies: {cache_codes}. After {c["seconds"]:g} s the cache
holds {c["cache_entries"]:,} entries ({c["cache_bytes"] / 2**20:.1f} MiB of answers, bounded
by `cache.max_bytes`, 16 MiB by default); RSS {_mem(c["before"])} before, {_mem(c["after"])}
after. Before the byte bound: 98 -> 431 MB (issue 9).

**In-flight sharing.** One name (`silent.example.org A`) at {f["rate"]:,.0f} queries/s for
{f["seconds"]:g} s ({f["sent"]:,} sent) while the upstream never answers, then 6.5 s for the
forward time-out: replies {codes}; {f["unanswered"]:,} unanswered. RSS {_mem(f["before"])}
before, {_mem(f["after"])} after. Before every waiting query counted against
`forward.max_concurrent`: 73 -> 237 MB at 8k qps (issue 9).

**Webhook.** `kubedns webhook` (default limits) with a namespace of {w["services"]} Services
(two ports each); RSS {_mem(w["before"])} once ready. A pod with many containers is posted,
and `/healthz` is asked 50 ms later (while it is worked on, if it takes that long). Before the
patch budget: 1,000 containers gave a 206 MB patch after 4.9 s, RSS 563 MB and `/healthz` blocked for 4 s; 30,000
containers drove it to 24 GB and the OOM killer (issue 9).

| containers | request bytes | HTTP | patch bytes | response time | `/healthz` during | RSS after | budget warning |
|--:|--:|--:|--:|--:|--:|--:|--|
{pods}

Webhook still serving after both: {"yes" if w["alive_after"] else "**no**"}.
"""  # noqa: E501


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--names", type=int, default=42_000)
    parser.add_argument("--rate", type=float, default=4000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--containers", type=int, default=1000)
    parser.add_argument("--big-containers", type=int, default=30_000)
    args = parser.parse_args(argv)
    result = run(
        names=args.names, rate=args.rate, seconds=args.seconds, services=args.services,
        containers=args.containers, big_containers=args.big_containers,
    )  # fmt: skip
    result["machine"] = machine()
    result["nproc"] = os.cpu_count()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hostile.json").write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
