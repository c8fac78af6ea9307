"""The UDP listeners over real sockets: the batching one (recvmmsg/sendmmsg) and the asyncio
datagram fallback, through the real server where the point is end to end, and alone with a
stub responder where a condition (a full send buffer, too many forwarded queries) has to be
produced on purpose. No test waits on a timer for a result: every wait is for a datagram or
for the event loop to have run."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import dns.message
import dns.rcode
import pytest
from prometheus_client import REGISTRY

from kubedns.answer.respond import Responder
from kubedns.app import Server
from kubedns.config import load
from kubedns.transport import mmsg, udp
from tests.forward.fakes import FakeUpstream, answer_a
from tests.zone.dnsclient import udp_silent

DEMO = Path(__file__).resolve().parent.parent.parent / "config" / "demo-cluster.yaml"
CLIENTS = 8
QUERIES_PER_CLIENT = 60
needs_mmsg = pytest.mark.skipif(not mmsg.is_available(), reason="recvmmsg/sendmmsg: Linux only")


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def dropped(reason: str) -> float:
    value = REGISTRY.get_sample_value("kubedns_udp_dropped_total", {"reason": reason})
    return value or 0.0


@contextlib.asynccontextmanager
async def serving(host: str, *, batch: bool) -> AsyncIterator[tuple[Server, FakeUpstream]]:
    """The real server on the demo cluster, forwarding to a fake upstream."""
    async with FakeUpstream(answer_a("192.0.2.7")) as upstream:
        settings = {
            "snapshot": str(DEMO),
            "listen": f"[{host}]:0" if ":" in host else f"{host}:0",
            "forward.upstreams": [str(upstream.address)],
            "udp.batch": batch,
        }
        server = Server(load(None, settings))
        server.load_sources()
        await server.start()
        try:
            yield server, upstream
        finally:
            await server.stop()


def burst(address: tuple[str, int]) -> dict[int, list[tuple[bytes, bytes]]]:
    """From each of ``CLIENTS`` sockets, send ``QUERIES_PER_CLIENT`` queries at once (cluster
    names, names the forwarder sends upstream, some of them asked twice), then read every
    reply. Returns, per client, (query, reply) pairs matched by ID; raises on a time-out."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sockets = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(CLIENTS)]
    try:
        sent: dict[int, dict[int, bytes]] = {}
        for k, sock in enumerate(sockets):
            sock.settimeout(5)
            sent[k] = {}
            for j in range(QUERIES_PER_CLIENT):
                qid = k * 1000 + j  # disjoint per client: a reply to the wrong one shows
                name = (
                    "web.shop.svc.cluster.local"
                    if j % 3 == 0
                    else f"c{k}-q{j}.example.org"
                    if j % 3 == 1
                    else f"nothing-{k}-{j}.shop.svc.cluster.local"
                )
                query = dns.message.make_query(name, "A")
                query.id = qid
                sent[k][qid] = query.to_wire()
        for j in range(QUERIES_PER_CLIENT):  # interleaved, so one batch holds many clients
            for k, sock in enumerate(sockets):
                sock.sendto(sent[k][k * 1000 + j], address)
        received: dict[int, list[tuple[bytes, bytes]]] = {}
        for k, sock in enumerate(sockets):
            received[k] = []
            for _ in range(QUERIES_PER_CLIENT):
                data, _ = sock.recvfrom(65535)
                (qid,) = struct.unpack("!H", data[:2])
                assert qid in sent[k], f"client {k} got a reply with id {qid}"
                received[k].append((sent[k].pop(qid), data))
        return received
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("batch", [True, False], ids=["batch", "datagram"])
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
async def test_burst_from_many_clients_is_answered_to_each(host: str, batch: bool) -> None:
    if ":" in host and not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    async with serving(host, batch=batch) as (server, upstream):
        expected = udp.BatchListener if batch and mmsg.is_available() else udp.DatagramListener
        assert isinstance(server._udp, expected)
        address = (server.address.host, server.address.port)
        received = await asyncio.to_thread(burst, address)
    assert sorted(received) == list(range(CLIENTS))
    for pairs in received.values():
        assert len(pairs) == QUERIES_PER_CLIENT
        for wire, data in pairs:
            query, reply = dns.message.from_wire(wire), dns.message.from_wire(data)
            assert reply.question == query.question
            name = query.question[0].name.to_text()
            if name.endswith(".example.org."):  # forwarded: the upstream's answer
                assert [rrset.to_text() for rrset in reply.answer] == [f"{name} 300 IN A 192.0.2.7"]
            elif name.startswith("nothing-"):
                assert reply.rcode() == dns.rcode.NXDOMAIN
            else:
                assert reply.rcode() == dns.rcode.NOERROR and reply.answer
    assert upstream.count("udp") >= CLIENTS * QUERIES_PER_CLIENT // 3


@needs_mmsg
async def test_oversized_datagram_is_dropped_not_parsed_cut_short() -> None:
    """A valid query padded past the receive slot: answering its first 4 KiB would answer
    something the client never sent whole. It is dropped and counted; the server goes on."""
    async with serving("127.0.0.1", batch=True) as (server, _):
        query = dns.message.make_query("web.shop.svc.cluster.local", "A").to_wire()
        oversized = query + bytes(udp.SLOT_SIZE + 100 - len(query))
        probe = dns.message.make_query("web.shop.svc.cluster.local", "AAAA").to_wire()
        before = dropped("oversized")
        address = (server.address.host, server.address.port)
        assert await asyncio.to_thread(udp_silent, address, oversized, probe)
        assert dropped("oversized") == before + 1


class StubResponder:
    """Replies ``reply_size`` bytes starting with the query's ID, or, with ``hold`` set,
    returns an awaitable that answers once ``hold`` is set."""

    def __init__(self, *, reply_size: int = 200, hold: asyncio.Event | None = None) -> None:
        self.reply_size = reply_size
        self.hold = hold
        self.calls = 0

    def respond(self, data: bytes, *, tcp: bool) -> bytes | Awaitable[bytes | None]:
        self.calls += 1
        reply = data[:2] + b"\x80" + bytes(self.reply_size - 3)
        if self.hold is None:
            return reply
        return self._later(reply, self.hold)

    @staticmethod
    async def _later(reply: bytes, hold: asyncio.Event) -> bytes:
        await hold.wait()
        return reply


def as_responder(stub: StubResponder) -> Responder:
    return typing.cast(Responder, stub)


async def until(condition: Callable[[], bool], *, turns: int = 10_000) -> None:
    """Let the event loop run until ``condition`` holds (bounded in loop turns, not time)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


@needs_mmsg
async def test_send_queue_is_bounded_and_drains_when_writable() -> None:
    """The client stops reading: the kernel refuses replies, the listener queues them up to
    its bound and drops (and counts) the rest; once the client reads, the queue empties."""
    server_sock, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setblocking(False)
    bound = 10 * 200
    stub = StubResponder()
    listener = udp.BatchListener(
        as_responder(stub), server_sock, max_pending=1, send_queue_bytes=bound
    )
    before = dropped("send_queue")
    queries = 300
    try:
        sent = 0
        for _ in range(100_000):  # the listener reads between our sends; bounded in turns
            if sent == queries:
                break
            try:
                client.send(struct.pack("!H", sent) + bytes(20))
                sent += 1
            except BlockingIOError:
                pass
            assert listener._queued <= bound
            await asyncio.sleep(0)
        await until(lambda: stub.calls == queries)
        lost = dropped("send_queue") - before
        assert lost > 0 and listener._queued <= bound
        got = 0
        for _ in range(100_000):
            try:
                assert len(client.recv(1000)) == 200
                got += 1
            except BlockingIOError:
                if not listener._queue:
                    break
            await asyncio.sleep(0)
        assert got + lost == queries
    finally:
        listener.close()
        await listener.drain()
        client.close()


@pytest.mark.parametrize("batch", [True, False], ids=["batch", "datagram"])
async def test_forwarded_queries_in_flight_are_bounded(batch: bool) -> None:
    """Past ``max_pending`` awaitables in flight a query is dropped and counted; the ones held
    are answered when their result comes."""
    hold = asyncio.Event()
    stub = StubResponder(hold=hold)
    listener = await udp.listen(as_responder(stub), "127.0.0.1", 0, batch=batch, max_pending=3)
    address = listener.socket.getsockname()
    before = dropped("pending")
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setblocking(False)
    try:
        for qid in range(5):
            client.sendto(struct.pack("!H", qid) + bytes(20), address)
        await until(lambda: stub.calls == 5)
        assert dropped("pending") == before + 2
        hold.set()
        ids = []
        for _ in range(3):
            data = await asyncio.get_running_loop().sock_recv(client, 1000)  # uvloop: no recvfrom
            ids.append(struct.unpack("!H", data[:2])[0])
        assert sorted(ids) == [0, 1, 2]
    finally:
        listener.close()
        await listener.drain()
        client.close()


@needs_mmsg
async def test_drain_sends_forwarded_replies_still_in_flight() -> None:
    """At shutdown the batching listener stops reading but keeps its socket until forwarded
    replies in flight are sent."""
    hold = asyncio.Event()
    stub = StubResponder(hold=hold)
    listener = await udp.listen(as_responder(stub), "127.0.0.1", 0, batch=True, max_pending=10)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setblocking(False)
    try:
        client.sendto(struct.pack("!H", 7) + bytes(20), listener.socket.getsockname())
        await until(lambda: stub.calls == 1)
        listener.close()
        draining = asyncio.create_task(listener.drain())
        hold.set()
        data = await asyncio.get_running_loop().sock_recv(client, 1000)  # uvloop: no recvfrom
        assert data[:2] == struct.pack("!H", 7)
        await draining
        assert listener.socket.fileno() == -1
    finally:
        client.close()
