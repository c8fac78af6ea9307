"""DNS over TCP (RFC 7766): two-byte length framing, pipelined queries answered concurrently
and as they complete (section 6.2.1.1), an idle timeout and caps on connections and on what one
connection may hold.

Each connection is an ``asyncio.Protocol`` over one receive buffer, not a pair of streams: a
stream costs several coroutine steps per message. A reply the responder has at once (the
cluster zone, a cache hit, an error) is written inside ``data_received``, with no task; a
forwarded query becomes a tracked task whose reply is written when it completes, so a slow
upstream never holds back the answers queued behind it. Replies leave in completion order;
their message IDs tell the client which is which.

What a client can make the server hold is bounded (DESIGN rule 14). No further query is taken
from the buffer, and the socket is not read, while ``MAX_PENDING`` forwarded queries of the
connection are unanswered or while the transport's write buffer is over its high-water mark
(a client that pipelines and never reads). Reading resumes when both clear. The receive buffer
then holds at most one read's worth plus a partial frame, and the write buffer at most the
high-water mark plus one batch of replies.

Slots are shared fairly (RFC 7766 sections 6.2.3 and 6.2.4). One source address holds at most
``max_connections_per_client``; at that cap, or at ``max_connections``, the idlest connection
with no query in flight (of that client, or of all) is closed to make room, so a new client
always gets in however many idle connections others keep. A connection is closed after
``idle_timeout`` without a query and, however busy, stops taking queries after
``max_lifetime``; one whose replies cannot be flushed for ``write_timeout`` (a client that does
not read) is aborted.
"""

from __future__ import annotations

import asyncio
import logging
import time
import typing
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol

from kubedns import metrics, sockets
from kubedns.config import TCPConfig
from kubedns.metrics import Tally
from kubedns.transport.querylog import QueryLog

log = logging.getLogger(__name__)

MAX_PENDING = 16
"""Forwarded queries one connection may have unanswered before it is no longer read. Enough
for a stub resolver's pipelined burst (NodeLocal DNSCache keeps few connections, each busy);
small enough that ``max_connections`` times this bounds the tasks TCP clients can start."""

BATCH_BYTES = 16 * 1024
"""Replies to the queries of one read are joined into writes of about this size: one system
call for many replies, and a bound on how far one read overshoots the write high-water mark."""


class Answerer(Protocol):
    """The answer path as the transport sees it (``kubedns.answer.respond.Responder``)."""

    def respond(self, data: bytes, *, tcp: bool) -> bytes | Awaitable[bytes | None] | None:
        """Reply bytes now, None to send nothing, or an awaitable for a forwarded query."""


def _respond_safely(
    respond: Callable[..., bytes | Awaitable[bytes | None] | None], query: bytes
) -> bytes | Awaitable[bytes | None] | None:
    try:
        return respond(query, tcp=True)
    except Exception:
        # The responder turns errors into SERVFAIL; should one escape it, only this query goes
        # unanswered, not the others in the buffer or in flight.
        metrics.PANICS.inc()
        log.exception("tcp: unexpected error answering a query; sending nothing")
        return None


class TCPServer:
    """The connections of one listener: the protocol factory, the connection cap, and shutdown.

    A connection holds its slot (and counts in ``kubedns_tcp_connections``) until its socket is
    closed and its last forwarded query has finished, so clients that open connections, send
    slow queries and leave cannot pile up tasks beyond ``max_connections * MAX_PENDING``.
    """

    def __init__(
        self,
        responder: Answerer,
        settings: TCPConfig,
        *,
        tally: Tally | None = None,
        query_log: QueryLog | None = None,
    ) -> None:
        self.responder = responder
        self.settings = settings
        self.tally = tally
        self.query_log = query_log
        """The per-query log: checked once per read; on, each query is timed and logged."""
        """DNS request metrics: each read's replies are settled as one batch (udp.py)."""
        self.connections: OrderedDict[TCPConnection, None] = OrderedDict()
        """Every connection holding a slot, least recently active first."""
        self.clients: dict[str, OrderedDict[TCPConnection, None]] = {}
        """The same connections by source address, least recently active first."""
        self.shutting_down = False
        self.dropped = metrics.DNS_DROPPED.labels("tcp")

    def __call__(self) -> TCPConnection:
        """A protocol for one accepted connection (``loop.create_server``'s factory)."""
        return TCPConnection(self)

    def admit(self, connection: TCPConnection) -> bool:
        """Give ``connection`` a slot, closing the idlest connection of its client (at the
        per-client cap) or of all (at the global cap) to make room; False if none is idle."""
        if self.shutting_down:
            return False
        settings = self.settings
        group = self.clients.get(connection.client)
        if group is not None and len(group) >= settings.max_connections_per_client:
            full, reason = group, "client_limit"
        elif len(self.connections) >= settings.max_connections:
            full, reason = self.connections, "evicted"
        else:
            full = None
        if full is not None and not self._evict_idlest(full, reason):
            log.warning(
                "tcp: %d connections open (%d from %s), all busy: refusing one more",
                len(self.connections),
                len(group or ()),
                connection.client,
            )
            metrics.TCP_REJECTED.inc()
            return False
        self.connections[connection] = None
        self.clients.setdefault(connection.client, OrderedDict())[connection] = None
        metrics.TCP_CONNECTIONS.set(len(self.connections))
        return True

    @staticmethod
    def _evict_idlest(group: OrderedDict[TCPConnection, None], reason: str) -> bool:
        """Close the least recently active connection of ``group`` with no query in flight
        (its client must reconnect, as RFC 7766 clients are prepared to); False if none."""
        for candidate in group:
            if not candidate.pending:
                candidate.evict(reason)
                return True
        return False

    def touch(self, connection: TCPConnection) -> None:
        """``connection`` was just active: it becomes the last to be evicted."""
        if connection in self.connections:
            self.connections.move_to_end(connection)
            self.clients[connection.client].move_to_end(connection)

    def release(self, connection: TCPConnection) -> None:
        if connection in self.connections:
            del self.connections[connection]
            group = self.clients[connection.client]
            del group[connection]
            if not group:
                del self.clients[connection.client]
        metrics.TCP_CONNECTIONS.set(len(self.connections))

    def close_all(self) -> None:
        """Read no more queries; close each connection once its forwarded queries are answered
        (``drain`` bounds the wait)."""
        self.shutting_down = True
        for connection in list(self.connections):
            connection.shut()

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait for the connections ``close_all`` is closing to finish their in-flight replies;
        after ``timeout``, cancel what is left and abort their sockets, so shutdown never
        hangs (on a slow upstream, or on a client that does not read its replies)."""
        waiting = [connection.done for connection in self.connections]
        if not waiting:
            return
        _, stuck = await asyncio.wait(waiting, timeout=timeout)
        if not stuck:
            return
        log.warning("tcp: %d connections still busy at shutdown, aborting them", len(stuck))
        for connection in list(self.connections):
            connection.abort()
        await asyncio.wait(stuck, timeout=1.0)


class TCPConnection(asyncio.Protocol):
    """One client connection: frames in, replies out as they are ready."""

    def __init__(self, server: TCPServer) -> None:
        self.server = server
        self.respond = server.responder.respond
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        """Bytes read but not yet answered: a partial frame, or frames held back while the
        connection is blocked."""
        self.pending: set[asyncio.Future[bytes | None]] = set()
        self.reading = True
        self.writing_paused = False
        self.eof = False
        """The client half-closed: answer what it sent, then close."""
        self.shutting = False
        """Shutdown or idle: take no more queries, close once the pending are answered."""
        self.lost = False
        self.client = ""
        """The source address (IPv4 unmapped): the unit of ``max_connections_per_client``."""
        self.family = 0
        """The metrics family index of the client: 0 IPv4 (v4-mapped too), 1 IPv6."""
        self.peer: tuple[str, int] = ("", 0)
        self.opened = self.last_active = self.loop.time()
        self.timer: asyncio.TimerHandle | None = None
        """The idle and lifetime check."""
        self.write_timer: asyncio.TimerHandle | None = None
        """Armed while replies cannot be flushed: ``write_timeout`` then aborts."""
        self.done: asyncio.Future[None] = self.loop.create_future()
        """Resolved when the socket is closed and no forwarded query is pending."""

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        # An IPv4 client of a dual-stack listener is the same client however it arrives.
        self.client = sockets.unmapped(str(peer[0])) if isinstance(peer, tuple) and peer else ""
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = (self.client, int(peer[1]))
        self.family = 1 if ":" in self.client else 0
        if not self.server.admit(self):
            self.shutting = True
            self.lost = True  # never admitted: nothing to release
            self.transport.close()
            return
        settings = self.server.settings
        self.timer = self.loop.call_later(
            min(settings.idle_timeout, settings.max_lifetime), self._check_idle
        )

    def data_received(self, data: bytes) -> None:
        if self.shutting:
            return
        if self.buffer:
            self.buffer += data
            self._answer_buffered()
        else:
            self._answer(data)

    def eof_received(self) -> bool:
        self.eof = True
        self._finish_if_idle()
        return True  # keep the socket open for the replies still to come; closed above

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._arm_write_timer()
        self._update_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None
        self._resume()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self.timer, self.write_timer):
            if timer is not None:
                timer.cancel()
        self.timer = self.write_timer = None
        self.buffer.clear()
        if self.lost:  # refused at connection_made
            self._set_done()
            return
        self.lost = True
        self._release_if_done()

    # -- answering ---------------------------------------------------------------------------

    def _is_blocked(self) -> bool:
        return self.writing_paused or len(self.pending) >= MAX_PENDING or self.shutting

    def _answer_buffered(self) -> None:
        buffer = self.buffer
        if len(buffer) < 2 or len(buffer) < 2 + (buffer[0] << 8 | buffer[1]):
            return  # no whole frame yet: wait for more without copying what is there
        data = bytes(buffer)
        buffer.clear()
        self._answer(data)

    def _answer(self, data: bytes) -> None:
        """Answer the whole frames in ``data`` while the connection is not blocked; keep the
        rest (a partial frame, or frames held back) in the buffer."""
        tally = self.server.tally
        if tally is None:
            self._answer_frames(data)
            return
        tally.family = self.family
        started = time.perf_counter()
        queries = self._answer_frames(data)
        tally.settle(time.perf_counter() - started, queries)

    def _answer_frames(self, data: bytes) -> int:
        """``_answer``'s work; returns how many queries it answered."""
        respond = self.respond
        queries = 0
        query_log = self.server.query_log
        if query_log is not None and not query_log.enabled:
            query_log = None
        started = 0.0
        batch: list[bytes] = []
        batched = 0
        offset = 0
        end = len(data)
        while end - offset >= 2:
            stop = offset + 2 + (data[offset] << 8 | data[offset + 1])
            if stop > end or self.writing_paused or self.shutting:
                break
            if len(self.pending) >= MAX_PENDING:
                break
            if query_log is not None:
                started = time.perf_counter()
            result = _respond_safely(respond, data[offset + 2 : stop])
            query_at, offset = offset + 2, stop
            queries += 1
            if result is None:
                self.server.dropped.inc()
            elif isinstance(result, bytes):
                batch.append(len(result).to_bytes(2, "big"))
                batch.append(result)
                batched += len(result)
                if query_log is not None:
                    seconds = time.perf_counter() - started
                    query_log.write(
                        self.peer, data[query_at:stop], result, tcp=True, seconds=seconds
                    )
                if batched >= BATCH_BYTES:
                    self._write(b"".join(batch))  # may pause writing: checked above
                    batch.clear()
                    batched = 0
            elif query_log is not None:
                self._track(
                    query_log.later(result, self.peer, data[query_at:stop], started=started)
                )
            else:
                self._track(result)
        if batch:
            self._write(b"".join(batch))
        if offset:
            # Only whole queries count as activity: a client trickling a frame byte by byte
            # is idle, and cannot hold its connection past the timeout that way.
            self.last_active = self.loop.time()
            self.server.touch(self)
        if offset < end:
            self.buffer += memoryview(data)[offset:]
        self._update_reading()
        return queries

    def _track(self, awaitable: Awaitable[bytes | None]) -> None:
        task = asyncio.ensure_future(awaitable)
        self.pending.add(task)
        task.add_done_callback(self._completed)

    def _completed(self, task: asyncio.Future[bytes | None]) -> None:
        self.pending.discard(task)
        reply = None
        if not task.cancelled():
            error = task.exception()
            if error is not None:
                # The responder turns errors into SERVFAIL; this one escaped it. Only this
                # query goes unanswered: the connection and its other queries carry on.
                log.error("tcp: a forwarded query failed", exc_info=error)
            else:
                reply = task.result()
        if reply is None:
            self.server.dropped.inc()
        elif not self.lost:
            self._write(len(reply).to_bytes(2, "big") + reply)
        self.last_active = self.loop.time()
        self.server.touch(self)
        if self.lost:
            self._release_if_done()
        else:
            self._resume()

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _resume(self) -> None:
        """After a reply was written or the write buffer drained: answer what was held back,
        read again if nothing blocks, and close if the connection is finishing."""
        if self.buffer and not self._is_blocked():
            self._answer_buffered()
        self._update_reading()
        self._finish_if_idle()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self.lost or self.eof or transport.is_closing():
            return
        if self._is_blocked():
            if self.reading:
                transport.pause_reading()
                self.reading = False
        elif not self.reading:
            transport.resume_reading()
            self.reading = True

    # -- closing -----------------------------------------------------------------------------

    def shut(self) -> None:
        """Take no more queries (shutdown); close once the pending ones are answered."""
        self.shutting = True
        self.buffer.clear()
        self._update_reading()
        self._finish_if_idle()

    def abort(self) -> None:
        """Give up on everything (shutdown past its deadline)."""
        for task in list(self.pending):
            task.cancel()
        if self.transport is not None:
            self.transport.abort()

    def _has_whole_frame(self) -> bool:
        buffer = self.buffer
        return len(buffer) >= 2 and len(buffer) >= 2 + (buffer[0] << 8 | buffer[1])

    def _finish_if_idle(self) -> None:
        """Close (after the write buffer is flushed) a connection that is ending once nothing
        it owes remains: shutting down or idle and nothing pending, or half-closed and every
        query it sent answered."""
        transport = self.transport
        if transport is None or self.lost or transport.is_closing() or self.pending:
            return
        if self.shutting or (self.eof and not self._has_whole_frame()):
            self._close()

    def _close(self) -> None:
        """Close after the write buffer is flushed, but abort if that takes ``write_timeout``
        (closing alone would wait forever on a client that does not read)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.close()
        if transport.get_write_buffer_size():
            self._arm_write_timer()

    def _arm_write_timer(self) -> None:
        if self.write_timer is None:
            timeout = self.server.settings.write_timeout
            self.write_timer = self.loop.call_later(timeout, self._write_timed_out)

    def _write_timed_out(self) -> None:
        self.write_timer = None
        if self.transport is None or self.lost:
            return
        metrics.TCP_CLOSED.labels("write_timeout").inc()
        self.shutting = True
        self.buffer.clear()
        self.transport.abort()  # the forwarded queries still pending finish and are dropped

    def evict(self, reason: str) -> None:
        """Close now to give the slot to a new connection (``TCPServer.admit``); the slot is
        free at once, the descriptor once the event loop closes the socket."""
        metrics.TCP_CLOSED.labels(reason).inc()
        self.shutting = True
        self.buffer.clear()
        self.server.release(self)
        transport = self.transport
        if transport is None:
            return
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

    def _check_idle(self) -> None:
        """The idle timeout and the lifetime. A connection with nothing pending and no query
        for ``idle_timeout`` seconds is closed. One open for ``max_lifetime`` takes no more
        queries and is closed once its pending ones are answered, so a trickle of queries
        cannot keep it forever. Closing waits ``write_timeout`` at most for the flush."""
        self.timer = None
        transport = self.transport
        if transport is None or self.lost or self.shutting:
            return
        settings = self.server.settings
        now = self.loop.time()
        end_of_life = self.opened + settings.max_lifetime
        if now >= end_of_life:
            reason = "lifetime"
        else:
            # A query in flight is activity: look again later rather than close.
            since = now if self.pending else self.last_active
            due = min(since + settings.idle_timeout, end_of_life)
            if now < due:
                self.timer = self.loop.call_at(due, self._check_idle)
                return
            reason = "idle"
        metrics.TCP_CLOSED.labels(reason).inc()
        self.shutting = True
        self.buffer.clear()
        self._update_reading()
        self._finish_if_idle()

    def _release_if_done(self) -> None:
        if not self.pending:
            self.server.release(self)
            self._set_done()

    def _set_done(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
