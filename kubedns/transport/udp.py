"""DNS over UDP: one datagram in, at most one datagram out.

Two listeners behind one interface (``UDPListener``), chosen by ``listen()``:

* ``BatchListener`` (Linux, the default): reads up to ``SLOTS`` datagrams per ``recvmmsg``,
  answers each, and sends every ready reply with one ``sendmmsg``. With the cluster zone's
  replies cached as wire bytes, the system calls were two thirds of the server's time at one
  per datagram each way (BENCHMARKS.md); batching shares each call among many datagrams.
* ``DatagramListener``: asyncio's datagram transport (one ``recvfrom`` and one ``sendto`` per
  datagram), for other platforms and for ``udp.batch: false``.

Both answer synchronously when ``Responder.respond`` can, and turn forwarded queries into
tracked tasks, at most ``max_pending`` of them: beyond that the query is dropped and counted
(``kubedns_udp_dropped_total{reason="pending"}``). The forwarder itself answers REFUSED once
``forward.max_concurrent`` queries wait on upstreams (followers of an identical query in
flight and CNAME chases included), so the bound the app passes (twice that) leaves room for
replies finishing; a client retries a dropped query, and nothing is built for it.

With DNS request metrics on (a ``Tally``), the answering of each wake-up's batches (up to
``ROUNDS`` of them) is timed and settled once at its end (``Tally.settle``: fewer settles,
less work per query under load), with the client family of the socket: 1 for an IPv4 socket,
2 for an IPv6 one, and for a dual-stack one (``::`` without IPV6_V6ONLY) by each sender,
settling early whenever it changes.

With the query log on (``QueryLog.enabled``, checked once per batch), datagrams are answered
one by one, each timed and logged with its sender; replies still go out with ``sendto``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
import typing
from collections.abc import Awaitable
from typing import Any, Protocol

from kubedns import metrics, sockets
from kubedns.answer.respond import Responder
from kubedns.metrics import Tally
from kubedns.transport import mmsg
from kubedns.transport.querylog import QueryLog

log = logging.getLogger(__name__)
Address = tuple[Any, ...]

SLOTS = 64
"""Datagrams per ``recvmmsg``/``sendmmsg``. nsd uses 100; past a few dozen the call's cost is
already spread thin, and each slot costs two buffers."""
SLOT_SIZE = 4096
"""Bytes per receive and send buffer. A longer query is no useful DNS query: it is dropped and
counted (the kernel flags it truncated, so it is never parsed cut short). A longer reply (an
EDNS client asking for more than 4 KiB) is sent on its own with ``sendto``."""
ROUNDS = 4
"""Batches read per wake-up before the event loop gets a turn (TCP, the API watch, forwarded
replies): at most ``ROUNDS * SLOTS`` datagrams answered in one go."""
SEND_QUEUE_BYTES = 1 << 20
"""Bytes of replies held while the kernel's send buffer is full; replies beyond are dropped
and counted (``kubedns_udp_dropped_total{reason="send_queue"}``), as the kernel would."""
DRAIN_TIMEOUT = 5.0
"""Seconds ``drain()`` waits at shutdown for forwarded replies still in flight."""


class UDPListener(Protocol):
    """What the app holds of a UDP listener."""

    max_pending: int
    """Forwarded queries awaited at once; past it a query is dropped (a reload may change it)."""

    @property
    def socket(self) -> socket.socket:
        """The bound socket (for its address and buffer sizes)."""

    def close(self) -> None:
        """Stop reading queries; the socket stays open for the replies still in flight (it is
        closed at once if there are none)."""

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Wait up to ``timeout`` seconds for forwarded replies still in flight and send them,
        then let go of the socket."""


async def listen(
    responder: Responder,
    host: str,
    port: int,
    *,
    batch: bool,
    max_pending: int,
    tally: Tally | None = None,
    query_log: QueryLog | None = None,
) -> UDPListener:
    """Bind ``host:port`` (dual-stack on ``::``, see kubedns.sockets) and start answering;
    ``batch`` asks for the batching listener, used where the platform has
    ``recvmmsg``/``sendmmsg``."""
    sock = sockets.datagram_socket(host, port)
    try:
        if batch and mmsg.is_available():
            return BatchListener(
                responder, sock, max_pending=max_pending, tally=tally, query_log=query_log
            )
        if batch:
            log.info("udp.batch: no recvmmsg/sendmmsg here, one system call per datagram")
        loop = asyncio.get_running_loop()
        protocol = UDPProtocol(responder, max_pending=max_pending, tally=tally, query_log=query_log)
        transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
    except BaseException:
        sock.close()
        raise
    return DatagramListener(transport, protocol)


def socket_family(sock: socket.socket) -> int | None:
    """The metrics family index of a listening socket's clients: 0 (label "1") for IPv4, 1
    (label "2") for IPv6, None for a dual-stack socket, whose IPv4 clients arrive v4-mapped."""
    if sock.family != socket.AF_INET6:
        return 0
    host = str(sock.getsockname()[0])
    if host.startswith("::ffff:"):
        return 0
    try:
        v6only = sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
    except OSError:
        v6only = 1
    return None if host == "::" and not v6only else 1


def address_family(address: Address) -> int:
    """The metrics family index of a client address as asyncio reports it."""
    return 0 if len(address) == 2 or str(address[0]).startswith("::ffff:") else 1


Logged = tuple[QueryLog, bytes, float]
"""What logging a reply that waits on an upstream needs: the log, the query, its arrival."""


def _drop_pending(result: Awaitable[bytes | None]) -> None:
    metrics.UDP_DROPPED.labels("pending").inc()
    close = getattr(result, "close", None)
    if close is not None:
        close()  # a coroutine never started: close it, so it is not reported as never awaited


class BatchListener:
    """``recvmmsg`` into preallocated slots, ``Responder.respond`` per datagram, one
    ``sendmmsg`` for the ready replies, each sent to the raw ``sockaddr`` it came from.

    Readable: read batches until the socket is empty (a batch comes back short) or ``ROUNDS``
    batches were answered. A reply the kernel cannot take now (its send buffer is full) waits
    in a queue bounded by ``SEND_QUEUE_BYTES`` and goes out when the socket is writable.
    Forwarded replies are sent one by one as they complete.
    """

    def __init__(
        self,
        responder: Responder,
        sock: socket.socket,
        *,
        max_pending: int,
        slots: int = SLOTS,
        slot_size: int = SLOT_SIZE,
        send_queue_bytes: int = SEND_QUEUE_BYTES,
        tally: Tally | None = None,
        query_log: QueryLog | None = None,
    ) -> None:
        sock.setblocking(False)
        self.responder = responder
        self.tally = tally
        self.query_log = query_log
        family = socket_family(sock)
        self._family = family or 0
        self._dual_stack = family is None
        self._since = 0.0
        """When the batch (or its part of one family) being answered started."""
        self._first = 0
        """Its first datagram."""
        self._elapsed = 0.0
        self._queries = 0
        """Seconds spent answering, and queries answered, since the last settle."""
        self._socket = sock
        self._fd = sock.fileno()
        self.vectors = mmsg.Vectors(self._fd, family=sock.family, slots=slots, slot_size=slot_size)
        self.max_pending = max_pending
        self.pending: set[asyncio.Task[None]] = set()
        self.send_queue_bytes = send_queue_bytes
        self._queue: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._queued = 0
        self._reading = True
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._on_readable)

    @property
    def socket(self) -> socket.socket:
        return self._socket

    def _on_readable(self) -> None:
        try:
            self._read_rounds()
        finally:
            self._settle()

    def _read_rounds(self) -> None:
        vectors = self.vectors
        for _ in range(ROUNDS):
            try:
                count = vectors.recv()
            except mmsg.MmsgError as exc:
                # A queued ICMP error for an earlier reply (the client went away): not ours.
                log.debug("udp error: %s", exc)
                return
            if count:
                self._answer(count)
            if count < vectors.slots or not self._reading:
                return

    def _settle(self) -> None:
        """Settle the replies answered since the last settle: ``_elapsed`` seconds of
        answering for ``_queries`` queries."""
        tally = self.tally
        if tally is not None and self._queries:
            tally.settle(self._elapsed, self._queries)
            self._elapsed = 0.0
            self._queries = 0

    def _answer(self, count: int) -> None:
        """Answer datagrams 0..count-1: ready replies in one batch, the rest one by one."""
        query_log = self.query_log
        if query_log is not None and query_log.enabled:
            self._answer_logged(count, query_log)
            return
        vectors = self.vectors
        tally = self.tally
        if tally is None:
            others = vectors.answer(count, self.responder.respond)
        else:
            if not self._queries:
                tally.family = self._family
            self._since = time.perf_counter()
            self._first = 0
            before = self._switch_family if self._dual_stack else None
            others = vectors.answer(count, self.responder.respond, before)
            self._elapsed += time.perf_counter() - self._since
            self._queries += count - self._first
        if vectors.ready:
            self._send_batch(vectors.ready)
        for result, address in others:
            if result is mmsg.TRUNCATED:
                metrics.UDP_DROPPED.labels("oversized").inc()
            elif result is None:
                metrics.DNS_DROPPED.labels("udp").inc()
            elif isinstance(result, bytes):
                self._send(result, address)
            else:
                self._track(typing.cast(Awaitable[bytes | None], result), address)

    def _answer_logged(self, count: int, query_log: QueryLog) -> None:
        """The query log's path: each datagram answered, timed and logged on its own."""
        self._settle()  # replies of earlier batches take their own time, not this path's
        vectors, tally, respond = self.vectors, self.tally, self.responder.respond
        for i in range(count):
            data = vectors.datagram(i)
            if data is None:
                metrics.UDP_DROPPED.labels("oversized").inc()
                continue
            address = vectors.address(i)
            if tally is not None:
                tally.family = (
                    (0 if vectors.is_mapped(i) else 1) if self._dual_stack else self._family
                )
            started = time.perf_counter()
            result = respond(data, tcp=False)
            elapsed = time.perf_counter() - started
            if tally is not None:
                tally.settle(elapsed, 1)
            if result is None:
                metrics.DNS_DROPPED.labels("udp").inc()
            elif isinstance(result, bytes):
                self._send(result, address)
                query_log.write(
                    mmsg.sockaddr_text(address), data, result, tcp=False, seconds=elapsed
                )
            else:
                self._track(result, address, logged=(query_log, data, started))

    def _switch_family(self, i: int) -> None:
        """Dual-stack only: settle what was answered so far when datagram ``i``'s family
        differs, so each reply is counted with its own client's family."""
        tally = self.tally
        assert tally is not None
        family = 0 if self.vectors.is_mapped(i) else 1
        if family != tally.family:
            now = time.perf_counter()
            self._elapsed += now - self._since
            self._queries += i - self._first
            self._settle()
            self._since = now
            self._first = i
            tally.family = family

    def _send_batch(self, count: int) -> None:
        vectors = self.vectors
        start = 0
        while start < count:
            if self._queue:
                sent = 0  # keep the queue's order; the kernel was full a moment ago
            else:
                try:
                    sent = vectors.send(start, count - start)
                except mmsg.MmsgError as exc:
                    log.debug("udp error: %s", exc)
                    start += 1  # that reply is lost, as asyncio's error_received would have it
                    continue
            if sent == 0:
                for j in range(start, count):
                    self._enqueue(vectors.reply(j), vectors.address(j))
                return
            start += sent

    def _send(self, reply: bytes, address: bytes) -> None:
        if self._closed:
            return
        if self._queue:
            self._enqueue(reply, address)
            return
        try:
            if not self.vectors.sendto(reply, address):
                self._enqueue(reply, address)
        except mmsg.MmsgError as exc:
            log.debug("udp error: %s", exc)

    def _enqueue(self, reply: bytes, address: bytes) -> None:
        if self._queued + len(reply) > self.send_queue_bytes:
            metrics.UDP_DROPPED.labels("send_queue").inc()
            return
        if not self._queue:
            self._loop.add_writer(self._fd, self._on_writable)
        self._queue.append((reply, address))
        self._queued += len(reply)

    def _on_writable(self) -> None:
        queue = self._queue
        while queue:
            reply, address = queue[0]
            try:
                if not self.vectors.sendto(reply, address):
                    return
            except mmsg.MmsgError as exc:
                log.debug("udp error: %s", exc)
            queue.popleft()
            self._queued -= len(reply)
        self._loop.remove_writer(self._fd)

    def _track(
        self, result: Awaitable[bytes | None], address: bytes, *, logged: Logged | None = None
    ) -> None:
        if len(self.pending) >= self.max_pending:
            _drop_pending(result)
            return
        task = asyncio.ensure_future(self._send_later(result, address, logged))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _send_later(
        self, result: Awaitable[bytes | None], address: bytes, logged: Logged | None
    ) -> None:
        reply = await result
        if reply is not None:
            self._send(reply, address)
            if logged is not None:
                query_log, data, started = logged
                seconds = time.perf_counter() - started
                client = mmsg.sockaddr_text(address)
                query_log.write(client, data, reply, tcp=False, seconds=seconds)

    def close(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)
        if not self.pending:
            self._close_socket()

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        if self.pending:
            await asyncio.wait(list(self.pending), timeout=timeout)
        if self._queue:
            self._on_writable()  # one last try; whatever the kernel does not take is lost
        self._close_socket()

    def _close_socket(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._queue:
            self._loop.remove_writer(self._fd)
            self._queue.clear()
            self._queued = 0
        self._socket.close()


class DatagramListener:
    """asyncio's datagram transport with ``UDPProtocol``, as a ``UDPListener``."""

    def __init__(self, transport: asyncio.DatagramTransport, protocol: UDPProtocol) -> None:
        self.transport = transport
        self.protocol = protocol

    @property
    def socket(self) -> socket.socket:
        sock: socket.socket = self.transport.get_extra_info("socket")
        return sock

    @property
    def max_pending(self) -> int:
        return self.protocol.max_pending

    @max_pending.setter
    def max_pending(self, limit: int) -> None:
        self.protocol.max_pending = limit

    def close(self) -> None:
        # Closing the transport now would throw away the replies still in flight (asyncio
        # sends nothing on a closing transport): stop taking queries, close after the drain.
        self.protocol.stop_reading()
        if not self.protocol.pending:
            self.transport.close()

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        await self.protocol.drain(timeout)
        self.transport.close()


class UDPProtocol(asyncio.DatagramProtocol):
    """Answers synchronously when it can; forwarded queries become tracked tasks."""

    def __init__(
        self,
        responder: Responder,
        *,
        max_pending: int,
        tally: Tally | None = None,
        query_log: QueryLog | None = None,
    ) -> None:
        self.responder = responder
        self.tally = tally
        self.query_log = query_log
        self.max_pending = max_pending
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: set[asyncio.Task[None]] = set()
        self.reading = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector transport does not subclass DatagramTransport, though it implements it.
        self.transport = typing.cast(asyncio.DatagramTransport, transport)

    def stop_reading(self) -> None:
        """Take no more queries (shutdown). asyncio's selector transport can stop reading the
        socket; uvloop's cannot, so what it still reads is dropped unanswered here."""
        self.reading = False
        pause = getattr(self.transport, "pause_reading", None)
        if pause is not None:
            pause()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if not self.reading:
            return
        tally = self.tally
        query_log = self.query_log
        if query_log is not None and not query_log.enabled:
            query_log = None
        started = elapsed = 0.0
        if tally is None and query_log is None:
            result = self.responder.respond(data, tcp=False)
        else:
            if tally is not None:
                tally.family = address_family(addr)
            started = time.perf_counter()
            result = self.responder.respond(data, tcp=False)
            elapsed = time.perf_counter() - started
            if tally is not None:
                tally.settle(elapsed, 1)
        if result is None:
            metrics.DNS_DROPPED.labels("udp").inc()
            return
        if isinstance(result, bytes):
            self._send(result, addr)
            if query_log is not None:
                client = (str(addr[0]), int(addr[1]))
                query_log.write(client, data, result, tcp=False, seconds=elapsed)
            return
        if len(self.pending) >= self.max_pending:
            _drop_pending(result)
            return
        logged = (query_log, data, started) if query_log is not None else None
        task = asyncio.ensure_future(self._send_later(result, addr, logged))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _send_later(
        self, result: Awaitable[bytes | None], addr: Address, logged: Logged | None
    ) -> None:
        reply = await result
        if reply is not None:
            self._send(reply, addr)
            if logged is not None:
                query_log, data, started = logged
                client = (str(addr[0]), int(addr[1]))
                seconds = time.perf_counter() - started
                query_log.write(client, data, reply, tcp=False, seconds=seconds)

    def _send(self, reply: bytes, addr: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (the client went away) are not ours to fix.
        log.debug("udp error: %s", exc)

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Wait for forwarded queries still in flight (used at shutdown)."""
        if self.pending:
            await asyncio.wait(list(self.pending), timeout=timeout)
