"""The command line: argv -> config -> app. The only place that exits the process."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kubedns import __version__, app, config, logs
from kubedns.corefile.cli import add_import_parser
from kubedns.reload import ConfigSource, digest
from kubedns.sources.snapshot import SnapshotError
from kubedns.webhook.cli import add_webhook_parser

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubedns", description="Cluster DNS server for Kubernetes."
    )
    parser.add_argument("--version", action="version", version=f"kubedns {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve the cluster zone over UDP and TCP",
        description="Serve the cluster DNS zone. Flags override the config file.",
    )
    serve.add_argument("--config", type=Path, metavar="FILE", help="YAML config file")
    serve.add_argument(
        "--snapshot",
        type=Path,
        metavar="FILE",
        help="serve the objects in this file (kubectl get namespaces,services,"
        "endpointslices,pods -A -o yaml) instead of a live cluster",
    )
    serve.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="FILE",
        help="watch the cluster of this kubeconfig (default: in-cluster credentials in a pod, "
        "else $KUBECONFIG); exclusive with --snapshot",
    )
    serve.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="address for both UDP and TCP (default 127.0.0.1:5353; [::1]:53 for IPv6)",
    )
    serve.add_argument(
        "--cluster-domain",
        metavar="DOMAIN",
        help="the cluster zone to answer for authoritatively (default cluster.local)",
    )
    serve.add_argument(
        "--pods",
        choices=["disabled", "insecure", "verified"],
        help="pod A records <a-b-c-d>.<ns>.pod.<zone> (default insecure)",
    )
    serve.add_argument(
        "--upstream",
        action="append",
        metavar="HOST[:PORT]",
        help="resolver for names outside the cluster (repeatable, up to 15); "
        "default: the nameservers of /etc/resolv.conf",
    )
    serve.add_argument(
        "--no-forward",
        action="store_true",
        help="authoritative only: names outside the cluster zone get REFUSED",
    )
    serve.add_argument(
        "--ops-listen",
        metavar="HOST:PORT",
        help="serve /metrics, /health and /ready over HTTP here (default: off)",
    )
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", choices=["json", "text"])
    serve.set_defaults(handler=run_serve)
    check = commands.add_parser(
        "check-config",
        help="validate a config file as `serve` does at start, then exit",
        description="Validate FILE exactly as `kubedns serve --config FILE` does before it "
        "opens any socket: every key and value, the forwarder's upstreams, and the snapshot "
        "it names. Cluster credentials are not tried (they belong to where it runs). "
        "Exit 0 when valid, 2 with the same message serve would print.",
    )
    check.add_argument("file", type=Path, metavar="FILE", help="YAML config file")
    check.set_defaults(handler=run_check_config)
    schema = commands.add_parser(
        "config-schema",
        help="print the JSON Schema of the config file",
        description="Print the JSON Schema (draft-07) of the config file, generated from "
        "kubedns/config.py: types, enums, bounds, patterns, defaults and descriptions.",
    )
    schema.add_argument(
        "--chart",
        action="store_true",
        help="the Helm chart's variant: keys the chart sets itself are refused",
    )
    schema.add_argument(
        "--update",
        type=Path,
        metavar="VALUES_SCHEMA",
        help="rewrite properties.config of this values.schema.json with the chart's variant, "
        "keeping the rest of the file (make schema)",
    )
    schema.set_defaults(handler=run_config_schema)
    add_webhook_parser(commands)
    add_import_parser(commands)
    return parser


def serve_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flags given on the command line, as dotted config keys."""
    flags = {
        "snapshot": args.snapshot,
        "kubeconfig": args.kubeconfig,
        "listen": args.listen,
        "cluster_domain": args.cluster_domain,
        "pods": args.pods,
        "ops.listen": args.ops_listen,
        "logging.level": args.log_level,
        "logging.format": args.log_format,
    }
    if args.no_forward:
        flags["forward.enabled"] = False
    if args.upstream:
        flags["forward.upstreams"] = [_upstream(text) for text in args.upstream]
    return {key: value for key, value in flags.items() if value is not None}


def _upstream(text: str) -> config.HostPort:
    try:
        return config.parse_host_port(text, default_port=53)
    except ValueError as exc:
        raise config.ConfigError(f"--upstream: {exc}") from None


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: it roughly doubles UDP throughput (see BENCHMARKS.md)."""
    try:
        import uvloop  # noqa: PLC0415 - optional at run time
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


def run_check_config(args: argparse.Namespace) -> int:
    """The checks of ``run_serve`` up to the first socket, with its messages and exit codes."""
    try:
        settings = config.load(args.file)
    except config.ConfigError as exc:
        print(f"kubedns: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logs.setup(settings.logging)
    try:
        server = app.Server(settings)  # builds the forwarder: self-forwarding is refused here
        if settings.snapshot is not None:
            server.load_sources()
    except (config.ConfigError, SnapshotError) as exc:
        print(f"kubedns: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"kubedns: {args.file} is valid")
    return 0


def run_config_schema(args: argparse.Namespace) -> int:
    """Print the config file's schema, or write the chart's variant into values.schema.json."""
    # Imported here: the generator reads config.py's source, which serving never needs.
    from kubedns import config_schema  # noqa: PLC0415

    if args.update is None:
        schema = config_schema.chart_schema() if args.chart else config_schema.config_schema()
        print(config_schema.to_json(schema), end="")
        return 0
    try:
        changed = config_schema.update_values_schema(args.update)
    except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
        print(f"kubedns: cannot update {args.update}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"kubedns: {args.update}: config schema {'updated' if changed else 'up to date'}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    try:
        source = ConfigSource(args.config, serve_overrides(args))
        # Read once, parsed and hashed: a reload compares the file against these very bytes.
        data = source.read()
        settings = source.parse(data)
    except config.ConfigError as exc:
        print(f"kubedns: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logs.setup(settings.logging)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(app.run(settings, source, content=digest(data)))
    except (config.ConfigError, SnapshotError) as exc:
        print(f"kubedns: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(
            f"kubedns: cannot listen on {settings.listen}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    return 0
