"""``kubedns webhook``: the command line of the admission webhook.

The lead's ``kubedns/cli.py`` registers ``add_webhook_parser`` as the ``webhook`` subcommand
and calls ``run_webhook(args)``; ``python -m kubedns.webhook`` runs it on its own. The flags
mirror the kubelet's, including its meaning of empty values: ``--cluster-dns=`` is no cluster
DNS, ``--node-resolv-conf=`` is no node file.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubedns import logs
from kubedns.config import ConfigError, load

if TYPE_CHECKING:
    from kubedns.webhook.runner import Prepared

EXIT_USAGE = 2

log = logging.getLogger(__name__)


def add_webhook_parser(subparsers: Any) -> None:
    """Add ``webhook`` to an ``argparse`` sub-parser set (``parser.add_subparsers()``)."""
    parser = subparsers.add_parser(
        "webhook",
        help="serve the mutating admission webhook (resolv.conf and service variables)",
        description="Mutating admission webhook: writes each new pod's resolver settings and "
        "the kubelet's service environment variables, as the kubelet would.",
    )
    add_webhook_arguments(parser)
    parser.set_defaults(handler=run_webhook)


def add_webhook_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML settings file")
    parser.add_argument("--listen", metavar="HOST:PORT", help="HTTPS address (0.0.0.0:8443)")
    parser.add_argument("--tls-cert", metavar="FILE", help="PEM certificate chain (re-read)")
    parser.add_argument("--tls-key", metavar="FILE", help="PEM private key (re-read)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--snapshot", metavar="FILE", help="Services and ConfigMaps from a kubectl dump"
    )
    source.add_argument(
        "--kubeconfig", metavar="FILE", help="watch this cluster (in a pod: omit both)"
    )
    parser.add_argument("--cluster-domain", metavar="DOMAIN", help="the kubelet's --cluster-domain")
    parser.add_argument(
        "--cluster-dns",
        metavar="IP[,IP...]",
        help="the kubelet's --cluster-dns; empty means none (ClusterFirst pods left alone)",
    )
    parser.add_argument(
        "--ops-listen",
        metavar="HOST:PORT",
        help="serve /metrics, /health and /ready over plain HTTP here, as `serve` does "
        "(default: off; the HTTPS port keeps /healthz and /readyz)",
    )
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", choices=["json", "text"])
    parser.add_argument(
        "--node-resolv-conf",
        metavar="FILE",
        help="the kubelet's --resolv-conf (node search domains); empty means no file",
    )


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """Flags given on the command line as dotted config keys (absent flags are not set)."""
    values: dict[str, Any] = {}
    plain = {
        "listen": "webhook.listen",
        "tls_cert": "webhook.tls_cert",
        "tls_key": "webhook.tls_key",
        "snapshot": "snapshot",
        "kubeconfig": "kubeconfig",
        "cluster_domain": "cluster_domain",
        "ops_listen": "ops.listen",
        "log_level": "logging.level",
        "log_format": "logging.format",
    }
    for attribute, key in plain.items():
        if getattr(args, attribute, None) is not None:
            values[key] = getattr(args, attribute)
    if args.cluster_dns is not None:
        values["webhook.cluster_dns"] = split_ips(args.cluster_dns)
    if args.node_resolv_conf is not None:
        values["webhook.node_resolv_conf"] = args.node_resolv_conf or None
    return values


def split_ips(text: str) -> list[str]:
    """``a,b`` into its IPs; the empty string is the empty list, as for the kubelet."""
    return [part.strip() for part in text.split(",") if part.strip()]


def run_webhook(args: argparse.Namespace) -> int:
    """Run until SIGTERM or SIGINT; returns the process exit code."""
    # Imported here, not at the top: ``kubedns serve`` builds this parser too, and the runner
    # brings in the kubernetes client (about 20 MB of RSS and 0.3 s) that serving a snapshot
    # never uses.
    from kubedns.webhook.runner import WebhookStartError, prepare  # noqa: PLC0415
    from kubedns.webhook.server import ListenError  # noqa: PLC0415

    try:
        config = load(args.config, overrides_from(args))
    except ConfigError as exc:
        print(f"kubedns webhook: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logs.setup(config.logging)  # the same logging as `kubedns serve`: levels, JSON or text
    try:
        prepared = prepare(config)
    except (ConfigError, WebhookStartError) as exc:
        print(f"kubedns webhook: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        asyncio.run(_serve_until_signal(prepared))
    except ListenError as exc:
        print(f"kubedns webhook: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _ignore_hangup() -> None:
    log.warning("SIGHUP ignored: reloading the settings needs a restart for now")


async def _serve_until_signal(prepared: Prepared) -> None:
    from kubedns.webhook.runner import serve  # noqa: PLC0415 - see run_webhook

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # SIGHUP's default action ends the process; operators send it expecting a reload. Until
    # reloading the settings exists (certificates already reload on their own), say so.
    loop.add_signal_handler(signal.SIGHUP, _ignore_hangup)
    await serve(prepared, stop=stop)
