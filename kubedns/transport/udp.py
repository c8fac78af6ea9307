"""DNS over UDP: one datagram in, at most one datagram out."""

from __future__ import annotations

import asyncio
import logging
import typing
from typing import Any

from kubedns import metrics
from kubedns.answer.respond import Responder

log = logging.getLogger(__name__)
Address = tuple[Any, ...]


class UDPProtocol(asyncio.DatagramProtocol):
    """Answers synchronously when it can; forwarded queries become tracked tasks."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector transport does not subclass DatagramTransport, though it implements it.
        self.transport = typing.cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        result = self.responder.respond(data, tcp=False)
        if result is None:
            metrics.DNS_DROPPED.labels("udp").inc()
            return
        if isinstance(result, bytes):
            self._send(result, addr)
            return
        task = asyncio.ensure_future(self._send_later(result, addr))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _send_later(self, result: Any, addr: Address) -> None:
        reply = await result
        if reply is not None:
            self._send(reply, addr)

    def _send(self, reply: bytes, addr: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)
            metrics.REPLIES.count("udp", reply)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (the client went away) are not ours to fix.
        log.debug("udp error: %s", exc)

    async def drain(self) -> None:
        """Wait for forwarded queries still in flight (used at shutdown)."""
        if self.pending:
            await asyncio.wait(list(self.pending), timeout=5)
