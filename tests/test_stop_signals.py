"""``kubedns serve`` as a real process: SIGTERM loses no reply already in flight (forwarded
ones included) and exits 0; SIGHUP without a config file reloads nothing and keeps serving
(``test_reload.py`` reloads files); a client's name cannot forge a log line in either log
format.

The upstream is a fake in this test's event loop that holds every query until the test lets
it go, so "in flight" is a state the test waits for, never a guess about timing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import dns.message
import dns.name
import dns.rcode
import pytest

from kubedns.config import HostPort
from tests.forward.fakes import FakeUpstream, answer_a, closed_port
from tests.zone.server import CLUSTER

KUBEDNS = Path(sys.executable).parent / "kubedns"
COMMAND = [str(KUBEDNS)] if KUBEDNS.exists() else [sys.executable, "-m", "kubedns"]
IN_FLIGHT = 20
WAIT = 30.0
"""Seconds before a readiness wait gives up: a bound on a hang, not a timed assertion."""


class Held:
    """An upstream handler that answers only once ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.answer = answer_a("192.0.2.7")

    async def __call__(self, data: bytes, proto: str) -> list[bytes]:
        await self.release.wait()
        return await self.answer(data, proto)


class Kubedns:
    """A ``kubedns serve`` process; its stderr is read line by line as it comes."""

    def __init__(self, process: asyncio.subprocess.Process, address: HostPort) -> None:
        self.process = process
        self.address = address
        self.lines: list[str] = []
        self._new_line = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw.decode(errors="replace"))
            self._new_line.set()
        self._new_line.set()

    async def wait_for_line(self, text: str) -> str:
        async with asyncio.timeout(WAIT):
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                if self._reader.done():
                    raise AssertionError(f"no line with {text!r} in {self.lines}")
                self._new_line.clear()
                await self._new_line.wait()

    async def wait_exit(self) -> int:
        async with asyncio.timeout(WAIT):
            code = await self.process.wait()
            await self._reader
        return code


BOUND = re.compile(
    r"(?:serving DNS on |http://)(\[[0-9a-f:.]+\]|[0-9.]+):(\d+)"
    r"|serving HTTPS on ([0-9a-f:.]+) port (\d+)"
)
"""The address in kubedns's "serving DNS on ...", "serving /metrics ... on http://..." and the
webhook's "serving HTTPS on HOST port PORT" lines, text or JSON."""


def bound_address(line: str) -> HostPort:
    """The address a listener bound, from its log line: with port 0 the kernel picked the port
    at the bind, so no other process can take it between a pick and the server's start (as
    with a port picked by the test beforehand)."""
    found = BOUND.search(line)
    assert found is not None, line
    host, port = (found[1], found[2]) if found[1] else (found[3], found[4])
    return HostPort(host.strip("[]"), int(port))


@asynccontextmanager
async def kubedns_serve(
    *args: str, log_format: str = "text", listen: str = "127.0.0.1:0"
) -> AsyncIterator[Kubedns]:
    """``kubedns serve`` of the test cluster on ``listen``; ``address`` is the bound one."""
    process = await asyncio.create_subprocess_exec(
        *COMMAND,
        "serve",
        "--snapshot",
        str(CLUSTER),
        "--listen",
        listen,
        "--log-format",
        log_format,
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    server = Kubedns(process, HostPort("", 0))
    try:
        server.address = bound_address(await server.wait_for_line("serving DNS on"))
        yield server
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        with suppress(BaseException):
            await server._reader


class Client:
    """One UDP socket sending queries to kubedns and collecting the replies."""

    def __init__(self, address: HostPort) -> None:
        self.address = (address.host, address.port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.connect(self.address)

    def send(self, name: str | dns.name.Name) -> int:
        query = dns.message.make_query(name, "A")
        self.sock.send(query.to_wire())
        return query.id

    async def receive(self) -> dns.message.Message:
        data = await asyncio.get_running_loop().sock_recv(self.sock, 65535)
        return dns.message.from_wire(data)

    def received(self) -> list[dns.message.Message]:
        """The replies already here, without waiting."""
        replies = []
        while True:
            try:
                replies.append(dns.message.from_wire(self.sock.recv(65535)))
            except (BlockingIOError, ConnectionRefusedError):
                return replies

    def close(self) -> None:
        self.sock.close()


def asked(upstream: FakeUpstream) -> set[str]:
    """The names the upstream was asked for."""
    return {
        dns.message.from_wire(data).question[0].name.to_text(omit_final_dot=True)
        for _proto, data in upstream.queries
    }


async def wait_until(predicate: object) -> None:
    async with asyncio.timeout(WAIT):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("batch", [True, False], ids=["batch", "datagram"])
async def test_sigterm_answers_every_forwarded_query_in_flight_then_exits_0(
    batch: bool, tmp_path: Path
) -> None:
    config = tmp_path / "kubedns.yaml"
    config.write_text(json.dumps({"udp": {"batch": batch}}))
    held = Held()
    async with (
        FakeUpstream(held) as upstream,
        kubedns_serve("--config", str(config), "--upstream", str(upstream.address)) as server,
    ):
        client = Client(server.address)
        try:
            # Distinct names, and pairs of the same name, so shared exchanges are in flight too.
            names = [f"q{i % (IN_FLIGHT // 2 + 5)}.example.com" for i in range(IN_FLIGHT)]
            ids = [client.send(name) for name in names]
            await wait_until(lambda: asked(upstream) >= set(names))
            os.kill(server.process.pid, signal.SIGTERM)
            await server.wait_for_line("taking no more queries")
            late = Client(server.address)  # a query after SIGTERM is not taken any more
            late.send("late.example.com")
            held.release.set()
            assert await server.wait_exit() == 0
            replies = client.received()  # every reply was sent before the process exited
            assert sorted(reply.id for reply in replies) == sorted(ids)
            assert all(reply.rcode() == dns.rcode.NOERROR for reply in replies)
            assert all(reply.answer for reply in replies)
            assert "late.example.com" not in asked(upstream)
            assert late.received() == []
            late.close()
        finally:
            client.close()


async def test_sigterm_answers_forwarded_queries_in_flight_over_tcp() -> None:
    held = Held()
    async with (
        FakeUpstream(held) as upstream,
        kubedns_serve("--upstream", str(upstream.address)) as server,
    ):
        reader, writer = await asyncio.open_connection(server.address.host, server.address.port)
        queries = [dns.message.make_query(f"t{i}.example.com", "A") for i in range(5)]
        for query in queries:
            wire = query.to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
        await writer.drain()
        names = {f"t{i}.example.com" for i in range(5)}
        await wait_until(lambda: asked(upstream) >= names)
        os.kill(server.process.pid, signal.SIGTERM)
        await server.wait_for_line("taking no more queries")
        held.release.set()
        assert await server.wait_exit() == 0
        replies = []
        async with asyncio.timeout(WAIT):  # all sent before the exit: already here
            for _ in queries:
                size = int.from_bytes(await reader.readexactly(2), "big")
                replies.append(dns.message.from_wire(await reader.readexactly(size)))
        writer.close()
        assert sorted(r.id for r in replies) == sorted(q.id for q in queries)
        assert all(r.rcode() == dns.rcode.NOERROR and r.answer for r in replies)


async def test_sighup_without_a_config_file_keeps_serving() -> None:
    async with kubedns_serve("--no-forward") as server:
        os.kill(server.process.pid, signal.SIGHUP)
        await server.wait_for_line("no config file (--config) to reload")
        client = Client(server.address)
        try:
            client.send("cluster.local")  # still serving after the signal
            reply = await asyncio.wait_for(client.receive(), WAIT)
            assert reply.rcode() == dns.rcode.NOERROR
        finally:
            client.close()
        assert server.process.returncode is None
        os.kill(server.process.pid, signal.SIGTERM)
        assert await server.wait_exit() == 0


FORGED = b"x\n2026-01-01 00:00:00,000 ERROR kubedns.app: forged\r\x1b[2J"
"""A label that, written raw, would end the line and start a forged one (and clear a screen)."""
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ kubedns[.a-z_]*: ")


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_forwarded_name_cannot_forge_a_log_line(log_format: str) -> None:
    upstream = str(closed_port())
    async with kubedns_serve(
        "--upstream", upstream, "--log-level", "debug", log_format=log_format
    ) as server:
        client = Client(server.address)
        try:
            client.send(dns.name.Name([FORGED, b"example", b"com", b""]))
            reply = await asyncio.wait_for(client.receive(), WAIT)
            assert reply.rcode() == dns.rcode.SERVFAIL
        finally:
            client.close()
        os.kill(server.process.pid, signal.SIGTERM)
        assert await server.wait_exit() == 0
    logged = [line for line in server.lines if "forged" in line]
    assert logged, "the failure was not logged"
    for line in server.lines:
        assert line.endswith("\n") and "\r" not in line and "\x1b" not in line
        if log_format == "json":
            assert json.loads(line)["logger"].startswith("kubedns")
        elif not line.startswith(("Traceback", " ")):
            assert TEXT_LINE.match(line), line
    for line in logged:
        message = json.loads(line)["msg"] if log_format == "json" else line
        assert r"x\x0a2026-01-01" in message and r"\x0d\x1b[2j" in message
