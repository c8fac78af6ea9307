"""DNS over TCP with pipelining (RFC 7766 section 6.2.1.1), through real sockets on loopback.

Most tests run the real server on the zone tests' cluster, forwarding to a fake upstream that
holds back every name starting with ``slow`` until the test opens its gate: so "a slow query does
not hold back the others" is asserted as an order of arrival, never as a time. The last tests
put ``TCPServer`` in front of a fake answer path to reach what the real one never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import dns.message
import dns.rcode
import dnslib
import pytest

from kubedns.app import Server
from kubedns.config import HostPort, TCPConfig, load
from kubedns.transport.tcp import BATCH_BYTES, MAX_PENDING, TCPConnection, TCPServer
from tests.forward.fakes import FakeUpstream, reply_to
from tests.zone.server import CLUSTER

WEB = "web.shop.svc.cluster.local"
WEB_A = "10.96.1.10"
MANY = "many.big.svc.cluster.local"
"""60 A records: a reply of about a kilobyte."""
FORWARDED_A = "192.0.2.99"
WAIT = 10.0
"""Seconds any single wait may take before the test fails: generous, never a measurement."""


class Gate:
    """An upstream handler: every A query gets ``FORWARDED_A``; names starting with ``slow``
    only once ``open()`` was called."""

    def __init__(self) -> None:
        self._open = asyncio.Event()

    def open(self) -> None:
        self._open.set()

    async def handler(self, data: bytes, _proto: str) -> list[bytes]:
        reply = reply_to(data)
        name = str(reply.q.qname)
        if name.startswith("slow"):
            await self._open.wait()
        reply.add_answer(*dnslib.RR.fromZone(f"{name} 60 IN A {FORWARDED_A}"))
        return [reply.pack()]


def held_names(upstream: FakeUpstream) -> set[str]:
    """The ``slow`` names the upstream has been asked (retries counted once)."""
    names = {str(dnslib.DNSRecord.parse(data).q.qname) for _, data in upstream.queries}
    return {name for name in names if name.startswith("slow")}


async def started(upstream: FakeUpstream, **overrides: object) -> Server:
    settings = {
        "snapshot": str(CLUSTER),
        "listen": "127.0.0.1:0",
        "forward.upstreams": [str(upstream.address)],
        "forward.timeout": 30.0,  # the gate decides when slow names are answered
        **overrides,
    }
    server = Server(load(None, settings))
    server.load_sources()
    await server.start()
    return server


@contextlib.asynccontextmanager
async def serving(**overrides: object) -> AsyncIterator[tuple[Server, FakeUpstream, Gate]]:
    gate = Gate()
    async with FakeUpstream(gate.handler) as upstream:
        server = await started(upstream, **overrides)
        try:
            yield server, upstream, gate
        finally:
            gate.open()
            await server.stop()


def query(name: str, qid: int, rdtype: str = "A") -> dns.message.Message:
    message = dns.message.make_query(name, rdtype)
    message.id = qid
    return message


def frame(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


class Client:
    """A DNS-over-TCP client that pipelines: send any number of queries, read replies as they
    come."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, address: HostPort) -> Client:
        reader, writer = await asyncio.open_connection(address.host, address.port)
        return cls(reader, writer)

    def send(self, *messages: dns.message.Message) -> None:
        self.send_raw(b"".join(frame(m.to_wire()) for m in messages))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def reply(self) -> dns.message.Message:
        prefix = await asyncio.wait_for(self.reader.readexactly(2), WAIT)
        data = await asyncio.wait_for(self.reader.readexactly(int.from_bytes(prefix)), WAIT)
        return dns.message.from_wire(data)

    async def is_closed_by_server(self) -> bool:
        try:
            return await asyncio.wait_for(self.reader.read(1), WAIT) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.writer.close()


async def until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` (checked every few milliseconds), failing after ``WAIT``."""
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.005)


def only_connection(server: Server) -> TCPConnection:
    assert server._tcp_handler is not None
    (connection,) = server._tcp_handler.connections
    return connection


def addresses(reply: dns.message.Message) -> list[str]:
    return sorted(rdata.to_text() for rrset in reply.answer for rdata in rrset)


# -- pipelining --------------------------------------------------------------------------------


async def test_pipelined_zone_queries_all_get_their_answers() -> None:
    async with serving() as (server, _, _):
        client = await Client.connect(server.address)
        names = [WEB, MANY, "nothing.shop.svc.cluster.local"] * 50
        queries = [query(name, 1000 + i) for i, name in enumerate(names)]
        client.send(*queries)
        replies = {}
        for _ in queries:
            reply = await client.reply()
            replies[reply.id] = reply
        assert set(replies) == {q.id for q in queries}
        for q in queries:
            assert replies[q.id].question == q.question
        assert addresses(replies[1000]) == [WEB_A]
        assert len(addresses(replies[1001])) == 60
        assert replies[1002].rcode() == dns.rcode.NXDOMAIN
        client.close()


async def test_slow_forwarded_query_does_not_hold_back_zone_answers() -> None:
    async with serving() as (server, _, gate):
        client = await Client.connect(server.address)
        slow = query("slow.example.com", 1)
        zone = [query(WEB, 2), query(MANY, 3), query("db.shop.svc.cluster.local", 4, "AAAA")]
        client.send(slow, *zone)
        # Sent last, answered first: the gate is still shut, so these cannot wait for it.
        assert [(await client.reply()).id for _ in zone] == [2, 3, 4]
        gate.open()
        reply = await client.reply()
        assert reply.id == 1
        assert addresses(reply) == [FORWARDED_A]
        client.close()


async def test_forwarded_replies_come_as_they_complete_matched_by_id() -> None:
    async with serving() as (server, _, gate):
        client = await Client.connect(server.address)
        client.send(query("slow-a.example.com", 7), query("fast.example.com", 8))
        fast = await client.reply()
        assert fast.id == 8
        assert str(fast.question[0].name) == "fast.example.com."
        gate.open()
        slow = await client.reply()
        assert slow.id == 7
        assert str(slow.question[0].name) == "slow-a.example.com."
        client.close()


# -- bounds ------------------------------------------------------------------------------------


async def test_in_flight_bound_pauses_reading_until_replies_complete() -> None:
    async with serving() as (server, upstream, gate):
        client = await Client.connect(server.address)
        slow = [query(f"slow{i}.example.com", 100 + i) for i in range(MAX_PENDING + 4)]
        client.send(*slow, query(WEB, 99))
        await until(lambda: len(held_names(upstream)) >= MAX_PENDING)
        connection = only_connection(server)
        assert len(connection.pending) == MAX_PENDING
        assert connection.transport is not None
        assert not connection.transport.is_reading()
        assert connection.buffer  # the queries past the bound wait there, unanswered
        assert held_names(upstream) == {f"slow{i}.example.com." for i in range(MAX_PENDING)}
        gate.open()
        ids = {(await client.reply()).id for _ in range(len(slow) + 1)}
        assert ids == {q.id for q in slow} | {99}
        assert connection.transport.is_reading()
        client.close()


async def test_client_that_never_reads_is_bounded() -> None:
    """A client pipelines queries for kilobyte replies and reads nothing: the server stops
    reading once its write buffer is full, so what it holds stays bounded however much the
    client tries to send. Once the client reads, every query it got through is answered."""
    # A write timeout longer than the test: this client reads late, but it does read.
    async with serving(**{"tcp.write_timeout": 600.0}) as (server, _, _):
        loop = asyncio.get_running_loop()
        sock = socket.create_connection((server.address.host, server.address.port))
        sock.setblocking(False)
        one = frame(query(MANY, 5).to_wire())
        chunk = one * 256
        sent = 0
        refused_in_a_row = 0
        while refused_in_a_row < 20:  # the kernel's buffers and ours all full, for a while
            try:
                sent += sock.send(chunk[sent % len(one) :])
                refused_in_a_row = 0
            except BlockingIOError:
                refused_in_a_row += 1
                await asyncio.sleep(0.02)
            assert sent < 1 << 30, "the server kept reading from a client that never reads"
        connection = only_connection(server)
        assert connection.transport is not None
        assert not connection.transport.is_reading()
        _, high = connection.transport.get_write_buffer_limits()
        assert connection.transport.get_write_buffer_size() <= high + BATCH_BYTES + 65537
        assert len(connection.buffer) <= (256 << 10) + 65537
        # Now read: the server resumes, and every query sent is answered (the last one, cut
        # short, is completed meanwhile: sending waits until reading has made room).
        expected = -(-sent // len(one))
        reading = asyncio.create_task(_read_frames(sock, expected))
        partial = sent % len(one)
        if partial:
            await asyncio.wait_for(loop.sock_sendall(sock, one[partial:]), WAIT * 3)
        assert await asyncio.wait_for(reading, WAIT * 3) == expected
        sock.close()


async def _read_frames(sock: socket.socket, expected: int) -> int:
    """Read until ``expected`` whole replies arrived; return how many did."""
    loop = asyncio.get_running_loop()
    pending = bytearray()
    count = 0
    while count < expected:
        data = await loop.sock_recv(sock, 1 << 16)
        assert data, "the server closed the connection"
        pending += data
        offset = 0
        while offset + 2 <= len(pending):
            end = offset + 2 + int.from_bytes(pending[offset : offset + 2])
            if end > len(pending):
                break
            count += 1
            offset = end
        del pending[:offset]
    return count


async def test_idle_connection_is_closed_but_not_while_a_query_is_pending() -> None:
    async with serving(**{"tcp.idle_timeout": 0.2}) as (server, upstream, gate):
        client = await Client.connect(server.address)
        client.send(query("slow.example.com", 1))
        await until(lambda: bool(held_names(upstream)))
        await asyncio.sleep(0.6)  # three idle timeouts pass with the query pending
        gate.open()
        assert (await client.reply()).id == 1
        # Then nothing more: the server closes the connection.
        assert await client.is_closed_by_server()
        await until(lambda: server._tcp_handler is not None and not server._tcp_handler.connections)


async def test_a_frame_trickled_byte_by_byte_does_not_keep_the_connection() -> None:
    """Only whole queries count as activity: bytes dribbling in slower than a query per idle
    timeout do not hold a connection open (as the stream server's per-read timeout did not)."""
    async with serving(**{"tcp.idle_timeout": 0.2}) as (server, _, _):
        client = await Client.connect(server.address)
        framed = frame(query(WEB, 1).to_wire()) * 20
        with contextlib.suppress(ConnectionError):
            for byte in framed:
                client.send_raw(bytes((byte,)))
                await asyncio.sleep(0.01)
                if client.writer.is_closing() or client.reader.at_eof():
                    break
        assert client.reader.at_eof() or await client.is_closed_by_server()


# -- frames the server must survive ---------------------------------------------------------


async def test_zero_length_and_garbled_frames_leave_the_connection_working() -> None:
    async with serving() as (server, _, _):
        client = await Client.connect(server.address)
        garbled = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\xff" * 65523
        header_only = struct.pack("!HHHHHH", 0x5678, 0x0100, 1, 0, 0, 0)  # no question after
        client.send_raw(frame(b"") + frame(garbled) + frame(header_only))
        client.send(query(WEB, 42))
        replies = [await client.reply()]
        while replies[-1].id != 42:
            replies.append(await client.reply())
        assert addresses(replies[-1]) == [WEB_A]
        # The empty frame is dropped; the other two get FORMERR, in order.
        assert [(r.id, r.rcode()) for r in replies[:-1]] == [
            (0x1234, dns.rcode.FORMERR),
            (0x5678, dns.rcode.FORMERR),
        ]
        client.close()


async def test_half_closed_client_still_gets_every_reply() -> None:
    """A client may send its queries and shut its sending side (RFC 7766 section 6.2.1); the
    server answers them all, the slow one too, and only then closes."""
    async with serving() as (server, _, gate):
        client = await Client.connect(server.address)
        client.send(query("slow.example.com", 1), query(WEB, 2))
        client.writer.write_eof()
        assert (await client.reply()).id == 2
        gate.open()
        assert (await client.reply()).id == 1
        assert await client.is_closed_by_server()


# -- shutdown --------------------------------------------------------------------------------


async def test_shutdown_delivers_the_forwarded_reply_in_flight() -> None:
    gate = Gate()
    async with FakeUpstream(gate.handler) as upstream:
        server = await started(upstream)
        client = await Client.connect(server.address)
        client.send(query("slow.example.com", 1))
        await until(lambda: bool(held_names(upstream)))
        stopping = asyncio.create_task(server.stop())
        await until(lambda: server._tcp_handler is not None and server._tcp_handler.shutting_down)
        gate.open()
        reply = await client.reply()
        assert reply.id == 1
        assert addresses(reply) == [FORWARDED_A]
        assert await client.is_closed_by_server()
        await asyncio.wait_for(stopping, WAIT)


# -- against a fake answer path ---------------------------------------------------------------


def answer(data: bytes) -> bytes:
    reply = dns.message.make_response(dns.message.from_wire(data))
    return reply.to_wire()


class FakeAnswers:
    """Names decide: ``boom.`` fails inside its awaitable, ``after-boom.`` completes once that
    failure has been handled, ``never.`` never completes, anything else is answered now."""

    def __init__(self) -> None:
        self.failed = asyncio.Event()
        self.never: list[asyncio.Future[bytes | None]] = []

    def respond(self, data: bytes, *, tcp: bool) -> bytes | Awaitable[bytes | None] | None:
        name = str(dns.message.from_wire(data).question[0].name)
        if name == "boom.":
            return self._boom()
        if name == "after-boom.":
            return self._after_boom(data)
        if name == "never.":
            future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
            self.never.append(future)
            return future
        return answer(data)

    async def _boom(self) -> bytes:
        self.failed.set()
        raise RuntimeError("injected fault")

    async def _after_boom(self, data: bytes) -> bytes:
        await self.failed.wait()
        await asyncio.sleep(0)  # the failed task's completion runs first
        return answer(data)


@contextlib.asynccontextmanager
async def fake_server(answers: FakeAnswers) -> AsyncIterator[tuple[TCPServer, HostPort]]:
    handler = TCPServer(answers, TCPConfig())
    listener = await asyncio.get_running_loop().create_server(handler, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield handler, HostPort("127.0.0.1", port)
    finally:
        listener.close()
        handler.close_all()
        await handler.drain(timeout=1.0)


async def test_a_failing_forwarded_query_costs_only_its_own_reply(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with fake_server(FakeAnswers()) as (_, address):
        client = await Client.connect(address)
        client.send(query("boom", 1), query("after-boom", 2))
        assert (await client.reply()).id == 2  # and nothing for 1, which came first
        client.send(query("fine", 3))
        assert (await client.reply()).id == 3
        client.close()
    assert "injected fault" in caplog.text


async def test_drain_gives_up_on_replies_that_never_come() -> None:
    answers = FakeAnswers()
    async with fake_server(answers) as (handler, address):
        client = await Client.connect(address)
        client.send(query("never", 1))
        await until(lambda: bool(answers.never))
        handler.close_all()
        await asyncio.wait_for(handler.drain(timeout=0.1), WAIT)
        assert answers.never[0].cancelled()
        assert not handler.connections
        assert await client.is_closed_by_server()


async def test_connections_past_the_cap_are_refused_only_when_all_are_busy() -> None:
    """At the cap a new connection is refused only if no connection is idle: here the one
    slot holds a query that never completes (tests/transport/test_tcp_fairness.py has the
    idle case, where the idlest makes room)."""
    answers = FakeAnswers()
    handler = TCPServer(answers, TCPConfig(max_connections=1))
    listener = await asyncio.get_running_loop().create_server(handler, "127.0.0.1", 0)
    address = HostPort("127.0.0.1", listener.sockets[0].getsockname()[1])
    first = await Client.connect(address)
    first.send(query("never", 1), query("fine", 2))
    assert (await first.reply()).id == 2
    second = await Client.connect(address)
    assert await second.is_closed_by_server()
    first.send(query("fine", 3))
    assert (await first.reply()).id == 3
    first.close()
    handler.close_all()
    await handler.drain(timeout=0.1)
    await until(lambda: not handler.connections)
    listener.close()
