"""The HTTPS side of the webhook: ``POST /mutate``, ``GET /healthz`` and ``GET /readyz``.

Two promises shape this module. A malformed or non-v1 AdmissionReview gets HTTP 400 with a
message saying what is wrong. Anything else that goes wrong inside allows the pod unchanged,
logs the exception and counts it: the webhook must never be the reason a pod cannot start.

The certificate and key are re-read when their files change (cert-manager rotates them by
swapping a symlink): every TLS handshake first checks the files' identity, and a changed pair
is loaded into a fresh ``SSLContext`` that new connections then use. A pair that fails to load
(say, caught half-written) keeps the previous one serving and is retried on the next handshake.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from kubedns.metrics import WEBHOOK_CERT_RELOADS, WEBHOOK_ERRORS, WEBHOOK_REVIEWS
from kubedns.webhook.mutate import MutateSettings, mutate
from kubedns.webhook.review import (
    AdmissionRequest,
    PatchOp,
    ReviewError,
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
            WEBHOOK_CERT_RELOADS.labels("failed").inc()
            log.warning("cannot load the changed TLS pair, keeping the current one: %s", exc)
            return
        self._identity = identity
        WEBHOOK_CERT_RELOADS.labels("loaded").inc()
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


@dataclass(frozen=True, slots=True)
class ReviewHandler:
    """Answers AdmissionReviews from the catalogue; holds no state of its own."""

    catalog: ServiceCatalog
    settings: MutateSettings

    async def mutate(self, request: web.Request) -> web.Response:
        try:
            admission = parse_review(await request.read())
        except ReviewError as exc:
            WEBHOOK_REVIEWS.labels("rejected").inc()
            log.warning("bad AdmissionReview from %s: %s", request.remote, exc)
            return web.json_response({"error": str(exc)}, status=400)
        patch = self.patch_for(admission)
        body = review_bytes(to_review(admission["uid"], patch))
        return web.Response(body=body, content_type="application/json")

    def patch_for(self, admission: AdmissionRequest) -> list[PatchOp]:
        """The patch for one request; any failure allows the pod unchanged."""
        if not self.catalog.is_synced:
            WEBHOOK_REVIEWS.labels("unsynced").inc()
            log.warning("request %s admitted unchanged: services not synced", admission["uid"])
            return []
        try:
            patch = self._mutate(admission)
        except Exception:
            WEBHOOK_ERRORS.inc()
            WEBHOOK_REVIEWS.labels("error").inc()
            log.exception("request %s admitted unchanged after an internal error", admission["uid"])
            return []
        WEBHOOK_REVIEWS.labels("mutated" if patch else "unchanged").inc()
        return patch

    def _mutate(self, admission: AdmissionRequest) -> list[PatchOp]:
        pod = admission.get("object") or {}
        metadata = pod.get("metadata") or {}
        namespace = admission.get("namespace") or str(metadata.get("namespace") or "")
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


def make_app(handler: ReviewHandler, *, max_body_bytes: int) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_post("/mutate", handler.mutate)
    app.router.add_get("/healthz", handler.healthz)
    app.router.add_get("/readyz", handler.readyz)
    return app


class WebhookServer:
    """The listening HTTPS server; ``start`` returns the bound port (0 picks a free one)."""

    def __init__(
        self, app: web.Application, *, host: str, port: int, certificates: CertificateReloader
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._certificates = certificates
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        sock = self._bind()
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock, ssl_context=self._certificates.server_context)
        await site.start()
        port: int = sock.getsockname()[1]
        log.info("webhook serving HTTPS on %s port %d", self._host, port)
        return port

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
        except OSError as exc:
            sock.close()
            raise ListenError(f"cannot listen on {self._host} port {self._port}: {exc}") from exc
        return sock

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
