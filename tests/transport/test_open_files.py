"""The open-files limit, through a real ``kubedns serve`` started under ``prlimit``.

The issue's probe: under the common limit of 1,024 descriptors, 1,000 idle TCP connections
plus 100 forwarded queries gave 92 SERVFAILs (``EMFILE``) and marked a healthy upstream down.
Now the TCP cap is fitted under the limit with room for the forwarder, and a socket that cannot
be opened locally is never held against the upstream. Waits are bounded by ``WAIT``; nothing
is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import dns.message
import dns.rcode
import pytest
import yaml

from kubedns.config import HostPort
from tests.forward.fakes import FakeUpstream, free_port
from tests.transport.test_tcp import (
    FORWARDED_A,
    WAIT,
    WEB,
    WEB_A,
    Client,
    Gate,
    addresses,
    held_names,
    query,
    until,
)
from tests.zone.server import CLUSTER
from tests.zone.test_serve_cli import COMMAND

pytestmark = pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit")


class UDPClient(asyncio.DatagramProtocol):
    """Sends queries and keeps every reply by message ID."""

    def __init__(self) -> None:
        self.replies: dict[int, dns.message.Message] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = dns.message.from_wire(data)
        self.replies[reply.id] = reply

    def send(self, message: dns.message.Message) -> None:
        assert self.transport is not None
        self.transport.sendto(message.to_wire())


@contextlib.asynccontextmanager
async def kubedns_under(
    open_files: int, upstream: FakeUpstream, tmp_path: Path
) -> AsyncIterator[tuple[HostPort, HostPort, subprocess.Popen[str]]]:
    """``kubedns serve`` with soft and hard open-files limits of ``open_files``, forwarding to
    ``upstream``; yields the DNS address, the ops address and the process."""
    address = HostPort("127.0.0.1", free_port())
    ops = HostPort("127.0.0.1", free_port())
    config = tmp_path / "kubedns.yaml"
    config.write_text(
        yaml.safe_dump({"forward": {"upstreams": [str(upstream.address)], "timeout": 4 * WAIT}})
    )
    command = [
        "prlimit",
        f"--nofile={open_files}:{open_files}",
        *COMMAND,
        "serve",
        "--config",
        str(config),
        "--snapshot",
        str(CLUSTER),
        "--listen",
        str(address),
        "--ops-listen",
        str(ops),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await _wait_until_serving(process, address)
        yield address, ops, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.communicate, timeout=WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


async def _wait_until_serving(process: subprocess.Popen[str], address: HostPort) -> None:
    async with asyncio.timeout(WAIT * 3):
        while True:
            if process.poll() is not None:
                _out, err = process.communicate()
                raise AssertionError(f"kubedns exited with {process.returncode}: {err}")
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
                client = await Client.connect(address)
                client.send(query(WEB, 1))
                async with asyncio.timeout(0.5):
                    reply = await client.reply()
                client.close()
                if addresses(reply) == [WEB_A]:
                    return
            await asyncio.sleep(0.05)


async def scrape(ops: HostPort) -> dict[str, float]:
    """The process's metrics, as {'name{labels}': value}."""
    url = f"http://{ops}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=WAIT).read())
    samples = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def forward_held(
    address: HostPort, upstream: FakeUpstream, gate: Gate, count: int
) -> tuple[UDPClient, int]:
    """Send ``count`` forwarded queries the upstream holds until ``gate`` opens; wait until
    each is either held there or already answered; return the client and how many were held."""
    loop = asyncio.get_running_loop()
    _, client = await loop.create_datagram_endpoint(
        UDPClient, remote_addr=(address.host, address.port)
    )
    for i in range(count):
        client.send(query(f"slow{i}.example.com", 1000 + i))
    await until(lambda: len(held_names(upstream)) + len(client.replies) >= count)
    return client, len(held_names(upstream))


async def open_idle(address: HostPort, count: int) -> list[Client]:
    """``count`` idle connections from 127.0.0.2 and up, 100 each (the per-client cap's
    default), so the cap per client does not limit them."""
    clients = []
    for i in range(count):
        try:
            reader, writer = await asyncio.open_connection(
                address.host, address.port, local_addr=(f"127.0.0.{2 + i // 100}", 0)
            )
        except OSError:
            break  # the listener's backlog, if the server is slow to accept: enough
        clients.append(Client(reader, writer))
    return clients


async def test_idle_connections_leave_descriptors_for_forwarded_queries(
    tmp_path: Path,
) -> None:
    """The issue's probe, at its size: limit 1,024, 1,000 idle TCP connections, then 100
    forwarded queries in flight at once. Every one is answered by the upstream."""
    gate = Gate()
    async with (
        FakeUpstream(gate.handler) as upstream,
        kubedns_under(1024, upstream, tmp_path) as (address, ops, _),
    ):
        idle = await open_idle(address, 1000)
        client, held = await forward_held(address, upstream, gate, 100)
        assert held == 100, {r.rcode() for r in client.replies.values()}
        gate.open()
        await until(lambda: len(client.replies) == 100)
        assert all(addresses(r) == [FORWARDED_A] for r in client.replies.values())
        # A new TCP client still gets in, and the upstream was never held responsible.
        newcomer = await Client.connect(address)
        newcomer.send(query(WEB, 7))
        assert addresses(await newcomer.reply()) == [WEB_A]
        metrics = await scrape(ops)
        assert metrics[f'kubedns_forward_upstream_up{{to="{upstream.address}"}}'] == 1
        assert metrics["kubedns_tcp_connections"] <= 1024
        for each in [*idle, newcomer]:
            each.close()
        assert client.transport is not None
        client.transport.close()


async def test_a_local_socket_error_is_not_an_upstream_failure(tmp_path: Path) -> None:
    """More forwarded queries at once than descriptors: those that cannot get a socket are
    answered SERVFAIL and counted as local errors; the upstream stays up and answers all the
    others."""
    gate = Gate()
    async with (
        FakeUpstream(gate.handler) as upstream,
        kubedns_under(200, upstream, tmp_path) as (address, ops, _),
    ):
        client, held = await forward_held(address, upstream, gate, 300)
        failed = dict(client.replies)
        assert failed, "every query got a socket: the limit was not reached"
        assert {r.rcode() for r in failed.values()} == {dns.rcode.SERVFAIL}
        gate.open()
        await until(lambda: len(client.replies) == 300)
        answered = [r for r in client.replies.values() if r.id not in failed]
        assert len(answered) == held
        assert all(addresses(r) == [FORWARDED_A] for r in answered)
        metrics = await scrape(ops)
        label = f'{{to="{upstream.address}"}}'
        failures = [
            name
            for name, value in metrics.items()
            if name.startswith("kubedns_forward_failures_total") and value  # each starts at 0
        ]
        assert failures == [], "a local error was held against the upstream"
        assert metrics[f"kubedns_forward_upstream_up{label}"] == 1
        assert metrics['kubedns_forward_local_errors_total{reason="EMFILE"}'] >= len(failed)
        assert client.transport is not None
        client.transport.close()
