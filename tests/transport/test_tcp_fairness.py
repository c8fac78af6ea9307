"""Fair TCP slots (RFC 7766 sections 6.2.3 and 6.2.4), through real sockets on loopback.

Idle connections cannot lock a new client out, one source address cannot take every slot, a
client that does not read loses its connection, and a trickle of queries cannot keep one
forever. Every wait is bounded by a generous ``WAIT``; nothing is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from kubedns import sockets
from kubedns.config import HostPort, TCPConfig
from kubedns.transport.tcp import TCPServer
from tests.test_request_metrics import has_ipv6
from tests.transport.test_tcp import (
    MANY,
    WAIT,
    WEB,
    WEB_A,
    Client,
    FakeAnswers,
    addresses,
    frame,
    query,
    serving,
    until,
)


def closed(reason: str) -> float:
    return (
        REGISTRY.get_sample_value("kubedns_tcp_connections_closed_total", {"reason": reason}) or 0.0
    )


@contextlib.asynccontextmanager
async def listening(
    settings: TCPConfig, answers: FakeAnswers | None = None, *, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[TCPServer, HostPort]]:
    handler = TCPServer(answers or FakeAnswers(), settings)
    sock = sockets.stream_listener(host, 0)  # as the app makes it: dual-stack on "::"
    listener = await asyncio.get_running_loop().create_server(handler, sock=sock)
    try:
        yield handler, HostPort(host, listener.sockets[0].getsockname()[1])
    finally:
        listener.close()
        handler.close_all()
        await handler.drain(timeout=0.1)


async def connect_from(source: str, address: HostPort) -> Client:
    reader, writer = await asyncio.open_connection(
        address.host, address.port, local_addr=(source, 0)
    )
    return Client(reader, writer)


async def answered(client: Client, qid: int) -> bool:
    client.send(query("fine", qid))
    return (await client.reply()).id == qid


async def test_idle_connections_cannot_lock_a_new_client_out() -> None:
    """The issue's probe: 1,100 idle connections (from 11 addresses, 100 each, so the
    per-client cap does not decide) against the default cap of 1,000. The new client gets in
    and is answered; the idlest connections made room, and the slots stay within the cap."""
    async with serving() as (server, _, _):
        assert server._tcp_handler is not None
        handler = server._tcp_handler
        cap = handler.settings.max_connections
        evicted_before = closed("evicted")
        idle: list[Client] = []
        for source in range(2, 13):
            for _ in range(100):
                idle.append(await connect_from(f"127.0.0.{source}", server.address))
        await until(lambda: closed("evicted") - evicted_before >= len(idle) - cap)
        newcomer = await Client.connect(server.address)
        newcomer.send(query(WEB, 7))
        reply = await newcomer.reply()
        assert (reply.id, addresses(reply)) == (7, [WEB_A])
        assert len(handler.connections) <= cap
        # The oldest idle connections were the ones closed.
        assert await idle[0].is_closed_by_server()
        for client in [*idle, newcomer]:
            client.close()


async def test_past_the_cap_the_idlest_connection_makes_room() -> None:
    async with listening(TCPConfig(max_connections=3)) as (handler, address):
        a, b, c = [await Client.connect(address) for _ in range(3)]
        for qid, client in enumerate((b, a, c)):  # b is now the least recently active
            assert await answered(client, qid)
        d = await Client.connect(address)
        assert await answered(d, 10)
        assert await b.is_closed_by_server()
        for client in (a, c):
            assert await answered(client, 11)
        assert len(handler.connections) == 3
        for client in (a, b, c, d):
            client.close()


async def test_one_client_cannot_take_the_slots_of_others() -> None:
    """At its own cap a client's idlest connection makes room for its next; when all of its
    connections are busy its next is refused, while another address still gets in."""
    answers = FakeAnswers()
    settings = TCPConfig(max_connections=10, max_connections_per_client=2)
    async with listening(settings, answers) as (handler, address):
        first = await connect_from("127.0.0.1", address)
        second = await connect_from("127.0.0.1", address)
        assert await answered(first, 1)
        assert await answered(second, 2)
        third = await connect_from("127.0.0.1", address)
        assert await answered(third, 3)
        assert await first.is_closed_by_server()  # its own idlest
        for client in (second, third):
            client.send(query("never", 4))  # both busy now
        await until(lambda: len(answers.never) == 2)
        fourth = await connect_from("127.0.0.1", address)
        assert await fourth.is_closed_by_server()
        other = await connect_from("127.0.0.2", address)
        assert await answered(other, 5)
        assert len(handler.clients["127.0.0.1"]) == 2
        for client in (first, second, third, fourth, other):
            client.close()


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")
async def test_an_ipv4_client_of_a_dual_stack_listener_is_one_client_by_its_ipv4_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its connections arrive v4-mapped (``::ffff:127.0.0.1``) and count, and are named, as
    127.0.0.1: the address an IPv4 listener, the query log and CoreDNS know it by."""
    answers = FakeAnswers()
    settings = TCPConfig(max_connections=10, max_connections_per_client=1)
    async with listening(settings, answers, host="::") as (handler, address):
        first = await connect_from("127.0.0.1", HostPort("127.0.0.1", address.port))
        first.send(query("never", 1))  # busy: it cannot make room
        await until(lambda: len(answers.never) == 1)
        assert list(handler.clients) == ["127.0.0.1"]
        second = await connect_from("127.0.0.1", HostPort("127.0.0.1", address.port))
        assert await second.is_closed_by_server()
        assert "(1 from 127.0.0.1), all busy" in caplog.text
        other = await connect_from("::1", HostPort("::1", address.port))
        assert await answered(other, 2)
        for client in (first, second, other):
            client.close()


async def test_a_client_that_does_not_read_loses_its_connection() -> None:
    """It pipelines queries for kilobyte replies and reads nothing: once the server cannot
    flush for ``write_timeout`` the connection is aborted and its slot freed (the idle timeout
    is set far beyond the test, so only the write timeout can do it)."""
    overrides = {"tcp.write_timeout": 0.3, "tcp.idle_timeout": 600.0, "tcp.max_lifetime": 600.0}
    async with serving(**overrides) as (server, _, _):
        assert server._tcp_handler is not None
        handler = server._tcp_handler
        before = closed("write_timeout")
        sock = socket.create_connection((server.address.host, server.address.port))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        chunk = frame(query(MANY, 5).to_wire()) * 256
        await until(lambda: bool(handler.connections))
        async with asyncio.timeout(WAIT):
            while handler.connections:
                with contextlib.suppress(BlockingIOError, ConnectionError):
                    sock.send(chunk)
                await asyncio.sleep(0.01)
        assert closed("write_timeout") == before + 1
        sock.close()


async def test_a_trickle_of_queries_cannot_keep_a_connection_forever() -> None:
    """One query per half idle timeout keeps a connection active, yet it is closed once
    ``max_lifetime`` is over; every query it sent before that was answered."""
    overrides = {"tcp.idle_timeout": 0.4, "tcp.max_lifetime": 1.0}
    async with serving(**overrides) as (server, _, _):
        client = await Client.connect(server.address)
        before = closed("lifetime")
        answers = 0
        async with asyncio.timeout(WAIT):
            while True:
                client.send(query(WEB, answers))
                try:
                    reply = await client.reply()
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                assert reply.id == answers
                answers += 1
                await asyncio.sleep(0.2)
        assert answers >= 1
        assert closed("lifetime") == before + 1
        client.close()
