"""Forwarded-name benchmark: kubedns's forwarder against dnsmasq doing the same job, same run.

    .venv/bin/python -m bench.forward [--seconds 5]

Needs ``dnsmasq`` and ``dnsperf`` (``.ci/run`` installs both). Three servers on loopback:

* an *origin* dnsmasq with fixed local data (``*.example.com``), standing in for the upstream;
* kubedns: a ``Forwarder`` (cache on) behind a minimal UDP listener, forwarding to the origin.
  ``cluster.local`` is in ``never_forward``, so search-path expansions are answered at once
  without upstream traffic, as the cluster zone will answer them (NXDOMAIN) once the answer
  path is wired in front; replace the listener by the real server when ``app.py`` lands;
* a caching dnsmasq forwarding to the origin, with ``--local=/cluster.local/``: the same job.

Two query mixes, each replayed by dnsperf in a loop:

* ``cache-hit``: 1,000 external names, A, all answered from the cache after the first pass;
* ``ndots5``: a pod resolving ``api<i>.example.com`` with ``ndots:5`` walks
  ``.<ns>.svc.cluster.local``, ``.svc.cluster.local``, ``.cluster.local``, then the name
  itself, for A and AAAA: eight queries, six of them search-path misses.

Prints queries per second for each server and mix; writes ``bench/results/forward.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import typing
from contextlib import suppress
from pathlib import Path

from kubedns.config import CacheConfig, ForwardConfig, HostPort
from kubedns.forward import Forwarder

RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        return int(udp.getsockname()[1])


def find(name: str) -> str:
    found = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else ""
    )
    if not found:
        sys.exit(f"{name} is not installed (apt-get install {name})")
    return found


def start_dnsmasq(port: int, *extra: str) -> subprocess.Popen[bytes]:
    argv = [
        find("dnsmasq"), "--no-daemon", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
        f"--port={port}", "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
        "--user=root", "--group=root", *extra,
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def write_mixes(directory: Path) -> dict[str, Path]:
    hits = directory / "cache-hit.txt"
    hits.write_text("".join(f"host{i}.example.com A\n" for i in range(1000)))
    walk = directory / "ndots5.txt"
    lines = []
    for i in range(100):
        name = f"api{i}.example.com"
        for suffix in (".default.svc.cluster.local", ".svc.cluster.local", ".cluster.local", ""):
            lines += [f"{name}{suffix} A\n", f"{name}{suffix} AAAA\n"]
    walk.write_text("".join(lines))
    return {"cache-hit": hits, "ndots5": walk}


class Listener(asyncio.DatagramProtocol):
    """The smallest UDP front for the forwarder (the real transport lives in transport/)."""

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector datagram transport does not subclass DatagramTransport.
        self.transport = typing.cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        with suppress(ValueError):
            reply = self.forwarder.answer_now(data, udp_limit=1232)
            if reply is not None and self.transport is not None:
                self.transport.sendto(reply, addr)
                return
        task = asyncio.get_running_loop().create_task(self.answer(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def answer(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        with suppress(ValueError):
            reply = await self.forwarder.resolve(data, udp_limit=1232)
            if self.transport is not None:
                self.transport.sendto(reply, addr)


async def dnsperf(port: int, mix: Path, seconds: float) -> float:
    process = await asyncio.create_subprocess_exec(
        find("dnsperf"), "-s", "127.0.0.1", "-p", str(port), "-d", str(mix),
        "-l", str(seconds), "-c", "4", "-q", "200", "-t", "2",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    match = re.search(r"Queries per second:\s+([\d.]+)", output.decode())
    if match is None:
        raise RuntimeError("dnsperf printed no rate:\n" + output.decode())
    return float(match.group(1))


async def run(seconds: float) -> dict[str, dict[str, float]]:
    origin_port, kubedns_port, dnsmasq_port = free_port(), free_port(), free_port()
    origin = start_dnsmasq(origin_port, "--address=/example.com/192.0.2.1", "--local-ttl=300")
    rival = start_dnsmasq(
        dnsmasq_port, f"--server=127.0.0.1#{origin_port}", "--cache-size=10000",
        "--local=/cluster.local/",
    )  # fmt: skip
    forwarder = Forwarder(
        ForwardConfig(upstreams=(HostPort("127.0.0.1", origin_port),)),
        CacheConfig(),
        listen=[HostPort("127.0.0.1", kubedns_port)],
        never_forward=["cluster.local"],
    )
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: Listener(forwarder), local_addr=("127.0.0.1", kubedns_port)
    )
    results: dict[str, dict[str, float]] = {}
    try:
        await asyncio.sleep(0.5)  # let dnsmasq bind
        with tempfile.TemporaryDirectory() as tmp:
            for mix, path in write_mixes(Path(tmp)).items():
                results[mix] = {
                    "kubedns": await dnsperf(kubedns_port, path, seconds),
                    "dnsmasq": await dnsperf(dnsmasq_port, path, seconds),
                }
    finally:
        transport.close()
        for process in (origin, rival):
            process.terminate()
            process.wait(timeout=5)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="dnsperf run per mix and server")
    args = parser.parse_args()
    try:  # the server will run on uvloop where available; measure what will ship
        import uvloop  # noqa: PLC0415

        results = uvloop.run(run(args.seconds))
    except ImportError:
        results = asyncio.run(run(args.seconds))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "forward.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'mix':<12}{'kubedns qps':>14}{'dnsmasq qps':>14}")
    for mix, rates in results.items():
        print(f"{mix:<12}{rates['kubedns']:>14.0f}{rates['dnsmasq']:>14.0f}")


if __name__ == "__main__":
    main()
