"""Composition of the webhook: settings, the service catalogue, its source and the server.

``prepare`` does everything that can fail because of the operator's input (node resolv.conf,
snapshot, certificates, a missing watch module) before anything listens, raising
``WebhookStartError`` with a message for the command line. ``serve`` then runs until ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubedns.config import Config
from kubedns.ops import OpsServer
from kubedns.sources import kube
from kubedns.sources.snapshot import SnapshotError, load_snapshot
from kubedns.webhook import metrics
from kubedns.webhook.dnsconfig import (
    DNSSettings,
    ResolvConf,
    parse_resolv_conf,
    usable_node_searches,
)
from kubedns.webhook.mutate import MutateSettings
from kubedns.webhook.server import (
    CertificateError,
    CertificateReloader,
    ConnectionLimits,
    ReviewHandler,
    WebhookServer,
    make_app,
)
from kubedns.webhook.store import WATCHED_KINDS, ServiceCatalog

log = logging.getLogger(__name__)

SourceRun = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class WebhookStartError(RuntimeError):
    """The webhook cannot start; the message names the file or setting at fault."""


@dataclass(frozen=True, slots=True)
class Prepared:
    server: WebhookServer
    catalog: ServiceCatalog
    source: SourceRun | None
    """The live watch to run alongside the server; None when serving a snapshot."""
    executor: ThreadPoolExecutor | None = None
    """The mutation threads, shut down when serving ends."""
    ops: OpsServer | None = None
    """``/metrics``, ``/health`` and ``/ready`` over plain HTTP when ``ops.listen`` is set,
    as ``kubedns serve`` has them."""


def prepare(config: Config) -> Prepared:
    webhook = config.webhook
    if webhook.tls_cert is None or webhook.tls_key is None:
        raise WebhookStartError("the webhook serves HTTPS only: give --tls-cert and --tls-key")
    settings = mutate_settings(config, read_node_resolv_conf(webhook.node_resolv_conf))
    catalog = ServiceCatalog()
    source = None
    if config.snapshot is not None:
        try:
            for event in load_snapshot(config.snapshot, kinds=WATCHED_KINDS):
                catalog.apply(event)
        except SnapshotError as exc:
            raise WebhookStartError(str(exc)) from exc
    else:
        source = live_source(config, catalog)
    try:
        certificates = CertificateReloader(webhook.tls_cert, webhook.tls_key)
    except CertificateError as exc:
        raise WebhookStartError(str(exc)) from exc
    executor = ThreadPoolExecutor(webhook.workers, thread_name_prefix="webhook-mutate")
    handler = ReviewHandler(
        catalog,
        settings,
        executor,
        body_timeout=webhook.body_timeout,
        slots=asyncio.Semaphore(webhook.max_reviews),
    )
    app = make_app(handler, max_body_bytes=webhook.max_body_bytes)
    host, port = webhook.listen.host, webhook.listen.port
    limits = ConnectionLimits(
        webhook.max_connections, webhook.handshake_timeout, webhook.idle_timeout
    )
    server = WebhookServer(app, host=host, port=port, certificates=certificates, limits=limits)
    ops = None
    if config.ops.listen is not None:
        ops = OpsServer(
            config.ops.listen,
            is_ready=lambda: catalog.is_synced,
            registry=metrics.WebhookFamilies(),
        )
    return Prepared(server, catalog, source, executor, ops)


async def serve(prepared: Prepared, *, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set; the watch (if any) runs as a named task beside it."""
    await prepared.server.start()
    if prepared.ops is not None:
        await prepared.ops.start()
    watch: asyncio.Task[None] | None = None
    if prepared.source is not None:
        watch = asyncio.create_task(prepared.source(stop), name="webhook-watch")
    try:
        await stop.wait()
    finally:
        if prepared.ops is not None:
            await prepared.ops.stop()
        await prepared.server.close()
        if prepared.executor is not None:
            prepared.executor.shutdown(wait=False, cancel_futures=True)
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch


def mutate_settings(config: Config, node: ResolvConf) -> MutateSettings:
    webhook = config.webhook
    dns = DNSSettings(
        cluster_dns=tuple(dict.fromkeys(canonical_ip(ip) for ip in webhook.cluster_dns)),
        cluster_domain=config.cluster_domain.rstrip("."),
        node=usable_node_searches(node),
    )
    return MutateSettings(
        dns=dns,
        opt_out_annotation=webhook.opt_out_annotation,
        marker_annotation=webhook.marker_annotation,
        max_env_bytes=webhook.max_env_bytes,
    )


def canonical_ip(text: str) -> str:
    """The IP as the kubelet prints it (Go's ``net.IP.String``): mapped IPv4 as IPv4."""
    ip = ipaddress.ip_address(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def read_node_resolv_conf(path: Path | None) -> ResolvConf:
    """The node's resolv.conf, read once at start; None (``--node-resolv-conf=``) is empty."""
    if path is None:
        return ResolvConf()
    try:
        return parse_resolv_conf(path.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise WebhookStartError(f"cannot read node resolv.conf {path}: {exc.strerror}") from exc


def live_source(config: Config, catalog: ServiceCatalog) -> SourceRun:
    """The API watch (the same code the DNS server uses) feeding the catalogue."""
    try:
        api = kube.api_client_from(config.kubeconfig)
    except kube.KubeConfigError as exc:
        raise WebhookStartError(str(exc)) from exc
    source = kube.KubeSource(api, kinds=WATCHED_KINDS, sink=catalog.apply, settings=config.watch)
    run: SourceRun = source.run
    return run
