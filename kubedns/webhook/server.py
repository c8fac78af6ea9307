"""The HTTPS side of the webhook: ``POST /mutate``, ``GET /healthz`` and ``GET /readyz``.

Two promises shape this module. A malformed or non-v1 AdmissionReview gets HTTP 400 with a
message saying what is wrong. Anything else that goes wrong inside allows the pod unchanged,
logs the exception and counts it: the webhook must never be the reason a pod cannot start.

Every client is a stranger (anyone who may create a pod chooses the body), so what one can
cost is bounded: open connections (``max_connections``, TLS handshakes included), the time to
finish a handshake and to send a body, the body's size (413), its type (415 unless JSON).
Decoding and mutating run on a small thread pool, never on the event loop, so ``/healthz``
answers while a big pod is being worked on; a client that goes away mid-request is let go
without a traceback.

The certificate and key are re-read when their files change (cert-manager rotates them by
swapping a symlink): every TLS handshake first checks the files' identity, and a changed pair
is loaded into a fresh ``SSLContext`` that new connections then use. A pair that fails to load
(say, caught half-written) keeps the previous one serving and is retried on the next handshake.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from kubedns import sockets
from kubedns.webhook import metrics
from kubedns.webhook.metrics import Outcome
from kubedns.webhook.mutate import MutateSettings, Mutation, mutate
from kubedns.webhook.review import (
    AdmissionRequest,
    ReviewError,
    encode_patch,
    parse_review,
    review_bytes,
    to_review,
)
from kubedns.webhook.store import ServiceCatalog

log = logging.getLogger(__name__)

_FileIdentity = tuple[tuple[int, int, int, int], ...]


class CertificateError(RuntimeError):
    """The serving certificate or key cannot be loaded at start-up."""


class ListenError(RuntimeError):
    """The listening socket cannot be bound (address in use, no permission)."""


class CertificateReloader:
    """Serves the newest loadable certificate pair to every new TLS connection."""

    def __init__(self, cert: Path, key: Path) -> None:
        self._cert = cert
        self._key = key
        try:
            self._identity = self._stat()
            self._current = self._load()
        except (OSError, ssl.SSLError) as exc:
            raise CertificateError(f"cannot load TLS pair {cert}, {key}: {exc}") from exc
        self._failed_identity: _FileIdentity = ()
        self.server_context = self._current
        # The listening socket keeps this first context for ever; the callback, run during
        # each handshake, moves the connection to the newest context.
        self.server_context.sni_callback = self._on_handshake

    def refresh(self) -> None:
        """Load the pair again if either file changed since the last successful load."""
        try:
            identity = self._stat()
        except OSError as exc:
            log.warning("cannot stat the TLS files, keeping the current pair: %s", exc)
            return
        if identity in (self._identity, self._failed_identity):
            return
        try:
            self._current = self._load()
        except (OSError, ssl.SSLError) as exc:
            # Remembered so a broken pair is reported once, not on every handshake; any new
            # change to either file (the missing half of a rotation) is tried again.
            self._failed_identity = identity
            metrics.CERT_RELOADS.labels("failed").inc()
            log.warning("cannot load the changed TLS pair, keeping the current one: %s", exc)
            return
        self._identity = identity
        metrics.CERT_RELOADS.labels("loaded").inc()
        log.info("loaded the changed TLS certificate %s", self._cert)

    def _on_handshake(self, conn: ssl.SSLObject, _server_name: str | None, _ctx: Any) -> None:
        self.refresh()
        if conn.context is not self._current:
            conn.context = self._current

    def _stat(self) -> _FileIdentity:
        stats = (os.stat(self._cert), os.stat(self._key))
        return tuple((s.st_ino, s.st_dev, s.st_mtime_ns, s.st_size) for s in stats)

    def _load(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self._cert, self._key)
        return context


JSON_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class ReviewHandler:
    """Answers AdmissionReviews from the catalogue; holds no state of its own."""

    catalog: ServiceCatalog
    settings: MutateSettings
    executor: Executor | None = None
    """Where decoding and mutating run; None is the loop's default pool."""
    body_timeout: float = 10.0
    """Seconds a client has to send the whole body."""
    slots: asyncio.Semaphore | None = None
    """Reviews read and worked on at once; None is no limit. Others wait with their bodies
    unread, so bodies in memory stay within ``slots`` times the body limit."""

    async def mutate(self, request: web.Request) -> web.StreamResponse:
        if self.slots is None:
            return await self._timed_review(request)
        metrics.REVIEWS_WAITING.inc()
        try:
            await self.slots.acquire()
        finally:
            metrics.REVIEWS_WAITING.dec()
        try:
            return await self._timed_review(request)
        finally:
            self.slots.release()

    async def _timed_review(self, request: web.Request) -> web.StreamResponse:
        """Answer one review and write the answer here rather than after returning (where
        aiohttp would write it), so the duration covers writing a large patch too."""
        start = time.monotonic()
        response = await self._review(request)
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionError:
            # The client left while the answer was written; aiohttp lets it go quietly too.
            log.debug("client %s went away before its answer was written", request.remote)
        metrics.REVIEW_DURATION.observe(time.monotonic() - start)
        return response

    async def _review(self, request: web.Request) -> web.Response:
        if request.content_type != JSON_TYPE:
            metrics.count_review("unsupported")
            return _json(415, f'{{"error": "Content-Type must be {JSON_TYPE}"}}'.encode())
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await request.read()
        except TimeoutError:
            metrics.count_review("too_slow")
            log.warning("body from %s not sent within %.0f s", request.remote, self.body_timeout)
            # Not read to the end, so the connection cannot carry another request: close it.
            return _json(408, b'{"error": "request body not sent in time"}', close=True)
        except web.HTTPRequestEntityTooLarge as exc:
            metrics.count_review("too_large")
            # The rest of the body is unread, so the connection cannot carry another request.
            return _json(413, review_bytes({"error": exc.text}), close=True)
        except ConnectionError:
            # The client went away mid-body (a reset, a closed connection): nobody to answer.
            metrics.count_review("disconnected")
            log.debug("client %s went away before sending its body", request.remote)
            return _json(400, b'{"error": "connection lost"}', close=True)
        loop = asyncio.get_running_loop()
        status, answer = await loop.run_in_executor(self.executor, self.answer, body)
        return _json(status, answer)

    def answer(self, body: bytes) -> tuple[int, bytes]:
        """The HTTP status and body for one request body; CPU only, never raises.

        Counts the review once, by the outcome of what is sent back, with its skips and the
        size of its patch."""
        try:
            admission = parse_review(body)
        except ReviewError as exc:
            metrics.count_review("rejected")
            log.warning("bad AdmissionReview: %s", exc)
            return 400, review_bytes({"error": str(exc)})
        uid = admission["uid"]
        operation = metrics.operation_label(admission["operation"])
        outcome, mutation = self.patch_for(admission)
        _count_skips(mutation)
        warnings = self._warnings(uid, mutation)
        try:
            patch = encode_patch(mutation.patch)
            reply = review_bytes(to_review(uid, patch, warnings))
        except (RecursionError, ValueError):
            # The patch carries the user's own env entries, which may nest too deeply to encode.
            metrics.INTERNAL_ERRORS.inc()
            log.warning("request %s admitted unchanged: the patch cannot be encoded", uid)
            outcome, patch, reply = "error", b"", review_bytes(to_review(uid))
        metrics.count_review(outcome, operation)
        if patch:
            metrics.PATCH_BYTES.observe(len(patch))
        return 200, reply

    def _warnings(self, uid: str, mutation: Mutation) -> list[str]:
        """What the user who created the pod is told (kubectl prints AdmissionReview warnings)."""
        if not mutation.over_budget:
            return []
        log.warning(
            "request %s: service variables left out, over %d bytes of env",
            uid,
            self.settings.max_env_bytes,
        )
        return [
            f"kubedns webhook: service environment variables were not added: they would "
            f"have passed {self.settings.max_env_bytes} bytes (too many containers or "
            f"Services); set enableServiceLinks: false or use DNS names"
        ]

    def patch_for(self, admission: AdmissionRequest) -> tuple[Outcome, Mutation]:
        """The outcome and patch for one request; any failure allows the pod unchanged."""
        if not self.catalog.is_synced:
            log.warning("request %s admitted unchanged: services not synced", admission["uid"])
            return "unsynced", Mutation()
        try:
            mutation = self._mutate(admission)
        except Exception:
            metrics.INTERNAL_ERRORS.inc()
            log.exception("request %s admitted unchanged after an internal error", admission["uid"])
            return "error", Mutation()
        return ("mutated" if mutation.patch else "unchanged"), mutation

    def _mutate(self, admission: AdmissionRequest) -> Mutation:
        pod = admission.get("object") or {}
        metadata = pod.get("metadata")
        in_pod = metadata.get("namespace") if isinstance(metadata, dict) else None
        namespace = admission.get("namespace") or (in_pod if isinstance(in_pod, str) else "")
        return mutate(
            pod,
            operation=admission["operation"],
            subresource=admission.get("subResource") or "",
            namespace=namespace,
            old_pod=admission.get("oldObject"),
            services=self.catalog.services_for(namespace),
            configmaps=self.catalog.configmaps_in(namespace),
            settings=self.settings,
        )

    async def healthz(self, _request: web.Request) -> web.Response:
        """Liveness: the server answers. Never tied to sync, or a slow first list would get the
        webhook restarted by its liveness probe over and over."""
        return web.Response(text="ok\n")

    async def readyz(self, _request: web.Request) -> web.Response:
        """Readiness: 200 once the catalogue is synced, so no review is answered from half a
        cluster (the Service sends nothing to an unready pod; failurePolicy covers the gap)."""
        if self.catalog.is_synced:
            return web.Response(text="ok\n")
        return web.Response(text="not synced\n", status=503)


def _count_skips(mutation: Mutation) -> None:
    if mutation.skipped is not None:
        metrics.INJECTIONS_SKIPPED.labels(mutation.skipped).inc()
    if mutation.over_budget:
        metrics.ENV_OVER_BUDGET.inc()
        metrics.INJECTIONS_SKIPPED.labels(metrics.ENV_OVER_BUDGET_REASON).inc()


def _json(status: int, body: bytes, *, close: bool = False) -> web.Response:
    response = web.Response(status=status, body=body, content_type=JSON_TYPE)
    if close:
        response.force_close()
    return response


class Activity:
    """When each connection last started or finished a request, and how many are running.

    aiohttp has no timeout for a request's headers: a client sending them a byte a second
    would hold its connection (and a ``max_connections`` slot) for ever. The server closes a
    connection that has had no request running for ``idle_timeout`` seconds, which covers
    slow headers and idle keep-alive alike.
    """

    def __init__(self) -> None:
        # Keyed by aiohttp's RequestHandler (slotted: no weak references); entries of closed
        # connections are dropped by every sweep.
        self._connections: dict[Any, list[float]] = {}

    def opened(self, connection: Any) -> None:
        self._connections[connection] = [0.0, time.monotonic()]

    def begin(self, connection: Any) -> None:
        entry = self._connections.get(connection)
        if entry is not None:
            entry[0] += 1
            entry[1] = time.monotonic()

    def end(self, connection: Any) -> None:
        entry = self._connections.get(connection)
        if entry is not None:
            entry[0] -= 1
            entry[1] = time.monotonic()

    def take_idle(self, deadline: float) -> list[Any]:
        """Forget closed connections; return (and forget) those with no request running and
        no activity since ``deadline``."""
        idle = []
        for connection, (busy, last) in list(self._connections.items()):
            if connection.transport is None:
                del self._connections[connection]
            elif not busy and last < deadline:
                del self._connections[connection]
                idle.append(connection)
        return idle

    def __len__(self) -> int:
        return len(self._connections)


ACTIVITY = web.AppKey("activity", Activity)


@web.middleware
async def _track_activity(request: web.Request, handler: Handler) -> web.StreamResponse:
    activity = request.app[ACTIVITY]
    activity.begin(request.protocol)
    try:
        return await handler(request)
    finally:
        activity.end(request.protocol)


def make_app(handler: ReviewHandler, *, max_body_bytes: int) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes, middlewares=[_track_activity])
    app[ACTIVITY] = Activity()
    app.router.add_post("/mutate", handler.mutate)
    app.router.add_get("/healthz", handler.healthz)
    app.router.add_get("/readyz", handler.readyz)
    return app


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int = 256
    """Open connections at once, handshakes included; more are closed on arrival."""
    handshake_timeout: float = 10.0
    """Seconds to finish the TLS handshake."""
    idle_timeout: float = 30.0
    """Seconds a connection may go with no request running (slow headers count as none)."""


class WebhookServer:
    """The listening HTTPS server; ``start`` returns the bound port (0 picks a free one).

    TLS is started by hand on each accepted TCP connection (``loop.start_tls``) rather than by
    the listening socket, so every connection is counted from its first byte: a handshake that
    never finishes holds a slot only until ``handshake_timeout``, and past ``max_connections``
    the connection longest in its handshake is closed to make room (or, when every slot has
    finished its handshake, the new one is closed at once) instead of connections piling up.
    """

    def __init__(
        self,
        app: web.Application,
        *,
        host: str,
        port: int,
        certificates: CertificateReloader,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._certificates = certificates
        self._limits = limits or ConnectionLimits()
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._open: set[asyncio.Transport] = set()
        self._handshakes: set[asyncio.Task[None]] = set()
        self._handshaking: dict[asyncio.Transport, None] = {}
        """Connections still in their TLS handshake, oldest first."""
        self._reaper: asyncio.Task[None] | None = None

    async def start(self) -> int:
        sock = self._bind()
        # lingering_time=0: a body left unread (timed out, too large) closes the connection
        # instead of being drained for another 10 s.
        self._runner = web.AppRunner(self._app, access_log=None, lingering_time=0)
        await self._runner.setup()
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(lambda: _Gate(self), sock=sock)
        self._reaper = loop.create_task(self._close_idle(), name="webhook-idle-reaper")
        port: int = sock.getsockname()[1]
        log.info("webhook serving HTTPS on %s port %d", self._host, port)
        return port

    @property
    def open_connections(self) -> int:
        self._forget_closed()
        return len(self._open)

    def _admit(self, transport: asyncio.Transport) -> None:
        self._forget_closed()
        if len(self._open) >= self._limits.max_connections:
            metrics.CONNECTIONS_REFUSED.inc()
            if not self._handshaking:
                transport.abort()
                return
            # Make room by closing the connection longest in its handshake, not the new one:
            # a real client finishes its handshake in milliseconds, so a flood of silent
            # connections churns through its own slots instead of locking everyone out.
            oldest = next(iter(self._handshaking))
            del self._handshaking[oldest]
            oldest.abort()
            self._open.discard(oldest)
        self._open.add(transport)
        self._handshaking[transport] = None
        metrics.CONNECTIONS.set(len(self._open))
        task = asyncio.get_running_loop().create_task(
            self._handshake(transport), name="webhook-tls-handshake"
        )
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    def _forget_closed(self) -> None:
        # At most max_connections entries: cheap to sweep on every arrival, and it needs no
        # hook into every way a connection can end (an ended transport is always closing).
        closed = {t for t in self._open if t.is_closing()}
        if closed:
            self._open -= closed
            metrics.CONNECTIONS.set(len(self._open))

    async def _handshake(self, transport: asyncio.Transport) -> None:
        assert self._runner is not None and self._runner.server is not None
        protocol = self._runner.server()
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                transport,
                protocol,
                self._certificates.server_context,
                server_side=True,
                ssl_handshake_timeout=self._limits.handshake_timeout,
            )
        except Exception as exc:  # a failed handshake is the client's business
            log.debug("TLS handshake failed: %r", exc)
            transport.abort()
            return
        finally:
            self._handshaking.pop(transport, None)
        if tls is None:  # the connection closed during the handshake
            transport.abort()
            return
        protocol.connection_made(tls)
        self._app[ACTIVITY].opened(protocol)

    async def _close_idle(self) -> None:
        activity = self._app[ACTIVITY]
        timeout = self._limits.idle_timeout
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            for connection in activity.take_idle(time.monotonic() - timeout):
                # Nothing is running on it. A request parsed this very moment but not started
                # yet sits in aiohttp's queue: leave that connection be (checked best-effort).
                if getattr(connection, "_messages", None):
                    activity.opened(connection)
                    continue
                connection.force_close()

    def _bind(self) -> socket.socket:
        """The HTTPS listener, dual-stack on ``::`` whatever ``net.ipv6.bindv6only`` says, as
        the DNS and ops listeners are (the API server may call the webhook over IPv4)."""
        try:
            return sockets.stream_listener(self._host, self._port, backlog=128)
        except OSError as exc:
            raise ListenError(f"cannot listen on {self._host} port {self._port}: {exc}") from exc

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for task in list(self._handshakes):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for transport in self._open:
            transport.abort()
        self._open.clear()
        metrics.CONNECTIONS.set(0)


class _Gate(asyncio.Protocol):
    """The first protocol of each TCP connection: counts it, then hands it to TLS."""

    def __init__(self, server: WebhookServer) -> None:
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        # Bytes that arrive before start_tls takes over would be lost: start_tls resumes.
        transport.pause_reading()
        self._server._admit(transport)

    def data_received(self, data: bytes) -> None:  # pragma: no cover - reading is paused
        pass
