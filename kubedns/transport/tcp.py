"""DNS over TCP (RFC 7766): two-byte length framing, several queries per connection, an idle
timeout and a cap on connections."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct

from kubedns import metrics
from kubedns.answer.respond import Responder
from kubedns.config import TCPConfig

log = logging.getLogger(__name__)


class TCPServer:
    """Serves one listening socket; each connection is handled by its own coroutine."""

    def __init__(self, responder: Responder, settings: TCPConfig) -> None:
        self.responder = responder
        self.settings = settings
        self.connections: set[asyncio.StreamWriter] = set()
        self.handlers: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.connections) >= self.settings.max_connections:
            log.warning("tcp: %d connections open, refusing one more", len(self.connections))
            metrics.TCP_REJECTED.inc()
            writer.close()
            return
        self.connections.add(writer)
        metrics.TCP_CONNECTIONS.set(len(self.connections))
        handler = asyncio.current_task()
        if handler is not None:
            self.handlers.add(handler)
            handler.add_done_callback(self.handlers.discard)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away or idled out: RFC 7766 lets either side close
        finally:
            self.connections.discard(writer)
            metrics.TCP_CONNECTIONS.set(len(self.connections))
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        idle = self.settings.idle_timeout
        while True:
            prefix = await asyncio.wait_for(reader.readexactly(2), idle)
            (length,) = struct.unpack("!H", prefix)
            data = await asyncio.wait_for(reader.readexactly(length), idle)
            result = self.responder.respond(data, tcp=True)
            if result is not None and not isinstance(result, bytes):
                result = await result
            if result is None:
                metrics.DNS_DROPPED.labels("tcp").inc()
                continue
            writer.write(struct.pack("!H", len(result)) + result)
            metrics.REPLIES.count("tcp", result)
            await writer.drain()

    def close_all(self) -> None:
        for writer in list(self.connections):
            writer.close()

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait for connection handlers to finish (their sockets are closed by ``close_all``);
        cancel any still stuck after ``timeout``, so shutdown never hangs."""
        if not self.handlers:
            return
        _, stuck = await asyncio.wait(list(self.handlers), timeout=timeout)
        for task in stuck:
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)
