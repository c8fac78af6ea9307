"""The operations endpoint: ``/metrics``, ``/health`` and ``/ready`` over plain HTTP.

``/health`` answers 200 while the process serves (liveness); ``/ready`` answers 200 only when
every watched kind has been listed and the server is not shutting down, so a rolling update
never routes queries to a replica that would answer SERVFAIL (readiness).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.registry import Collector

from kubedns import sockets
from kubedns.config import HostPort

log = logging.getLogger(__name__)


class OpsServer:
    def __init__(
        self,
        listen: HostPort,
        *,
        is_ready: Callable[[], bool],
        registry: Collector = REGISTRY,
    ) -> None:
        self.listen = listen
        self.is_ready = is_ready
        self.registry = registry
        """What ``/metrics`` exports: the whole process-wide registry unless the program
        exports only part of it (the webhook)."""
        self.address = listen
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._ready)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # Our own socket: aiohttp's TCPSite on "::" would be IPv6-only, and the kubelet's
        # probes of an IPv4 pod IP would fail.
        sock = sockets.stream_listener(self.listen.host, self.listen.port)
        try:
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            sock.close()
            raise
        bound = self._runner.addresses  # the real port when listening on port 0
        if bound:
            self.address = HostPort(self.listen.host, int(bound[0][1]))
        log.info("serving /metrics, /health and /ready on http://%s", self.address)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _health(self, _request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _ready(self, _request: web.Request) -> web.Response:
        if self.is_ready():
            return web.Response(text="OK")
        return web.Response(status=503, text="not ready")
