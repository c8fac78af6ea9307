"""One upstream resolver: the UDP/TCP exchange and its health.

Each exchange opens a fresh socket, so the kernel picks a fresh random source port, and uses a
fresh random message ID (both guard against spoofed replies, RFC 5452). A UDP socket connected
to the upstream only receives datagrams from that address; anything else that arrives on it and
is not a reply to our exact query is ignored, not trusted, and we keep waiting until the
deadline. A truncated UDP reply is retried over TCP within the same deadline.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
import time
from collections.abc import Callable
from contextlib import suppress

from kubedns import metrics
from kubedns.config import HostPort
from kubedns.dns.query import build_query, same_question
from kubedns.dns.template import Scanned, scan
from kubedns.dns.wire import CLASS_IN, TYPE_CLASS, TYPE_NS, WireError, rcode_name

log = logging.getLogger(__name__)

PROBE_QUESTION = b"\x00" + TYPE_CLASS.pack(TYPE_NS, CLASS_IN)
"""``. IN NS``, what CoreDNS probes with: any upstream can answer it (even REFUSED counts)."""


LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""Errors of our own host, not of the upstream: no descriptor or buffer for a new socket."""
for _errno in LOCAL_ERRNOS:  # every reason counted from the start: 0, not "no data"
    metrics.FORWARD_LOCAL_ERRORS.labels(errno.errorcode[_errno])
FAILURE_REASONS = ("timeout", "refused", "error")
"""Why an exchange got no valid reply (``kubedns_forward_failures_total``)."""


class ForwardError(Exception):
    """Base of the forwarder's errors."""


class UpstreamError(ForwardError):
    """An exchange with one upstream got no valid reply; ``reason`` is for metrics and logs."""

    def __init__(self, upstream: HostPort, reason: str, detail: str = "") -> None:
        super().__init__(f"upstream {upstream}: {reason}{': ' + detail if detail else ''}")
        self.upstream = upstream
        self.reason = reason


Accept = Callable[[bytes], Scanned | None]


def new_id() -> int:
    """An unpredictable 16-bit message ID (``secrets``, not ``random``: spoofing resistance)."""
    return secrets.randbelow(0x10000)


def reply_check(qid: int, question: bytes, *, on_garbage: Callable[[], None]) -> Accept:
    """A filter that returns the scanned reply to our query and None for anything else (a
    wrong ID or question, not a response, unparseable): garbage or spoofing, ignored."""

    def accept(data: bytes) -> Scanned | None:
        try:
            scanned = scan(data, rotate=True)  # the forwarder drops the group if rotation is off
        except WireError:
            on_garbage()
            return None
        if (
            scanned.id != qid
            or not scanned.is_response
            or scanned.opcode != 0
            or not same_question(question, scanned.question)
        ):
            on_garbage()
            return None
        return scanned

    return accept


class _UDPExchange(asyncio.DatagramProtocol):
    """Waits for the first datagram that ``accept`` takes; ICMP errors end the wait."""

    def __init__(self, accept: Accept, done: asyncio.Future[Scanned]) -> None:
        self._accept = accept
        self._done = done

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self._done.done():
            return
        scanned = self._accept(data)
        if scanned is not None:
            self._done.set_result(scanned)

    def error_received(self, exc: Exception) -> None:
        # ECONNREFUSED from an ICMP port unreachable: nobody listens there, fail fast.
        if not self._done.done():
            self._done.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_exception(exc or ConnectionError("socket closed"))


class Upstream:
    """An upstream address with its failure count; down after ``max_fails`` failures in a row."""

    def __init__(self, address: HostPort, *, max_fails: int) -> None:
        self.address = address
        self.label = str(address)
        self._max_fails = max_fails
        self.fails = 0
        metrics.FORWARD_UPSTREAM_UP.labels(self.label).set(1)
        # Zero from the start: "no failures" on a dashboard, not "no data".
        metrics.FORWARD_REQUESTS.labels(self.label)
        metrics.PROXY_HEALTHCHECK_FAILURES.labels(metrics.PROXY_NAME, self.label)
        metrics.FORWARD_GARBAGE.labels(self.label)
        for reason in FAILURE_REASONS:
            metrics.FORWARD_FAILURES.labels(self.label, reason)

    @property
    def is_down(self) -> bool:
        return self.fails >= self._max_fails

    def __repr__(self) -> str:
        return f"Upstream({self.label}, fails={self.fails})"

    async def exchange(self, query: bytes, accept: Accept, *, timeout: float) -> Scanned:
        """Send ``query``; UDP first, TCP when truncated. Updates health; raises UpstreamError."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                metrics.FORWARD_REQUESTS.labels(self.label).inc()
                scanned = await self._udp(query, accept)
                if scanned.is_truncated:
                    metrics.FORWARD_REQUESTS.labels(self.label).inc()
                    scanned = await self._tcp(query, accept)
        except TimeoutError:
            raise self._failed("timeout", f"no valid reply within {timeout:.3f}s") from None
        except (OSError, asyncio.IncompleteReadError) as exc:
            if isinstance(exc, OSError) and exc.errno in LOCAL_ERRNOS:
                raise self._local_error(exc) from exc
            raise self._failed(
                "refused" if isinstance(exc, ConnectionRefusedError) else "error",
                str(exc) or type(exc).__name__,
            ) from exc
        rcode = rcode_name(scanned.rcode)
        elapsed = time.monotonic() - started
        metrics.PROXY_DURATION.labels(metrics.PROXY_NAME, self.label, rcode).observe(elapsed)
        self.mark_alive()
        return scanned

    def mark_alive(self) -> None:
        if self.is_down:
            log.info("upstream %s answers again", self.label)
        self.fails = 0
        metrics.FORWARD_UPSTREAM_UP.labels(self.label).set(1)

    def _local_error(self, exc: OSError) -> UpstreamError:
        """Our own socket could not be opened (out of descriptors or buffers): the upstream
        was never asked, so its health is untouched and the failure is counted apart."""
        name = errno.errorcode.get(exc.errno or 0, "unknown")
        metrics.FORWARD_LOCAL_ERRORS.labels(name).inc()
        return UpstreamError(self.address, "local", f"cannot open a socket: {name}")

    def _failed(self, reason: str, detail: str) -> UpstreamError:
        self.fails += 1
        metrics.FORWARD_FAILURES.labels(self.label, reason).inc()
        if self.fails == self._max_fails:
            log.warning(
                "upstream %s marked down after %d failures: %s", self.label, self.fails, detail
            )
            metrics.FORWARD_UPSTREAM_UP.labels(self.label).set(0)
        return UpstreamError(self.address, reason, detail)

    def garbage(self) -> None:
        metrics.FORWARD_GARBAGE.labels(self.label).inc()

    async def _udp(self, query: bytes, accept: Accept) -> Scanned:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Scanned] = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UDPExchange(accept, done),
            remote_addr=(self.address.host, self.address.port),
        )
        try:
            transport.sendto(query)
            return await done
        finally:
            transport.close()

    async def _tcp(self, query: bytes, accept: Accept) -> Scanned:
        reader, writer = await asyncio.open_connection(self.address.host, self.address.port)
        try:
            writer.write(len(query).to_bytes(2, "big") + query)
            await writer.drain()
            while True:  # a reply that is not ours is skipped, as on UDP
                size = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(size)
                scanned = accept(data)
                if scanned is not None:
                    return scanned
        finally:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()

    async def probe(self, *, timeout: float) -> bool:
        """One health probe (``. IN NS`` over UDP, no recursion). True if it answered."""
        qid = new_id()
        query = build_query(PROBE_QUESTION, qid=qid, recursion=False)
        accept = reply_check(qid, PROBE_QUESTION, on_garbage=self.garbage)
        try:
            async with asyncio.timeout(timeout):
                await self._udp(query, accept)
        except (TimeoutError, OSError):
            metrics.PROXY_HEALTHCHECK_FAILURES.labels(metrics.PROXY_NAME, self.label).inc()
            return False
        self.mark_alive()
        return True
