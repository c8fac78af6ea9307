"""Small real DNS servers for fault tests: asyncio UDP and TCP on 127.0.0.1, ephemeral port.

A fake's behaviour is a handler: query bytes and transport in, the datagrams (or TCP messages)
to send back out. An empty list is a black hole. Handlers may await, to be slow on demand.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import dns.message
import dnslib
from prometheus_client import REGISTRY

from kubedns.config import ForwardConfig, HostPort
from kubedns.forward import Forwarder

Handler = Callable[[bytes, str], Awaitable[list[bytes]]]


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for UDP and TCP on ``host`` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port found")


def closed_port() -> HostPort:
    """An address where nothing listens: UDP gets an ICMP port unreachable."""
    return HostPort("127.0.0.1", free_port())


def reply_to(data: bytes, *, rcode: int = 0) -> dnslib.DNSRecord:
    query = dnslib.DNSRecord.parse(data)
    reply = query.reply()
    reply.header.rcode = rcode
    return reply


def answer_a(ip: str, *, ttl: int = 300) -> Handler:
    async def handle(data: bytes, _proto: str) -> list[bytes]:
        reply = reply_to(data)
        reply.add_answer(dnslib.RR(reply.q.qname, dnslib.QTYPE.A, rdata=dnslib.A(ip), ttl=ttl))
        return [reply.pack()]

    return handle


def rcode_only(rcode: int) -> Handler:
    async def handle(data: bytes, _proto: str) -> list[bytes]:
        return [reply_to(data, rcode=rcode).pack()]

    return handle


async def black_hole(_data: bytes, _proto: str) -> list[bytes]:
    return []


class FakeUpstream:
    """A DNS server on loopback (UDP and TCP, same port) driven by a handler."""

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self.host = host
        self.queries: list[tuple[str, bytes]] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.address = HostPort("127.0.0.1", 0)

    async def __aenter__(self) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        for attempt in range(20):  # a port free for UDP may be taken for TCP: pick again
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _UDP(self), local_addr=(self.host, 0)
            )
            port = int(self._udp.get_extra_info("sockname")[1])
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
                break
            except OSError:
                self._udp.close()
                if attempt == 19:
                    raise
        self.address = HostPort(self.host, port)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def count(self, proto: str | None = None) -> int:
        return sum(1 for p, _ in self.queries if proto is None or p == proto)

    def received_udp(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queries.append(("udp", data))
        task = asyncio.get_running_loop().create_task(self._answer_udp(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_udp(self, data: bytes, addr: tuple[str, int]) -> None:
        for datagram in await self.handler(data, "udp"):
            if self._udp is not None and not self._udp.is_closing():
                self._udp.sendto(datagram, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(size)
                self.queries.append(("tcp", data))
                for message in await self.handler(data, "tcp"):
                    writer.write(struct.pack("!H", len(message)) + message)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, owner: FakeUpstream) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._owner.received_udp(data, (str(addr[0]), int(addr[1])))


def forward_config(*upstreams: HostPort, **settings: Any) -> ForwardConfig:
    """Settings for tests: sequential by default so the order of attempts is known."""
    settings.setdefault("policy", "sequential")
    settings.setdefault("timeout", 2.0)
    return ForwardConfig(upstreams=tuple(upstreams), **settings)


async def ask(
    forwarder: Forwarder, name: str, rdtype: str = "A", **query_args: Any
) -> dns.message.Message:
    """Send a dnspython query through ``forwarder.resolve`` and parse the reply."""
    query = dns.message.make_query(name, rdtype, **query_args)
    reply = dns.message.from_wire(await forwarder.resolve(query.to_wire()))
    assert reply.id == query.id
    return reply


def answer_lines(reply: dns.message.Message) -> list[str]:
    """Every answer record in presentation form, sorted (``name ttl IN A 192.0.2.1``)."""
    return sorted(line for rrset in reply.answer for line in rrset.to_text().splitlines())


def metric_sum(name: str, **labels: str) -> float:
    """The sum of the registry's ``name`` samples that carry ``labels`` (the rest, such as the
    ``server`` of whichever listener was bound last in this process, may be anything)."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )
