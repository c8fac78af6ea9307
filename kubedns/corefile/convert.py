"""Corefile directives to kubedns settings, and a reason for each one that has no equivalent.

``convert`` walks the server blocks kubedns can serve (plain DNS, one port, each zone once)
and hands each directive to its converter: the small ones here, ``kubernetes``, ``forward``
and ``cache`` in their own modules. What CoreDNS does differently by default is written out,
not left to kubedns's defaults: ``pods disabled`` when the ``kubernetes`` block does not set
``pods``, ``replies.rotate`` off without ``loadbalance``, ``cache.size`` 0 without ``cache``,
forwarding off without a ``forward .``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from kubedns.config import HostPort, parse_host_port
from kubedns.corefile import values
from kubedns.corefile.cache import Cache
from kubedns.corefile.conversion import Block, Conversion, env_reason, env_reference, one
from kubedns.corefile.forward import Forward
from kubedns.corefile.kubernetes import Kubernetes
from kubedns.corefile.syntax import Corefile, Directive, ServerBlock

UNSUPPORTED = {
    "hosts": "kubedns serves no hosts-file records; publish the names as Services, or from "
    "a resolver kubedns forwards to",
    "rewrite": "kubedns does not rewrite queries or answers",
    "template": "kubedns does not synthesize answers from templates",
    "file": "kubedns serves no zone files; serve the zone elsewhere and forward it (a stub domain)",
    "auto": "kubedns serves no zone files",
    "secondary": "kubedns does not transfer zones in",
    "etcd": "kubedns has no backend besides the Kubernetes API",
    "route53": "kubedns has no backend besides the Kubernetes API",
    "azure": "kubedns has no backend besides the Kubernetes API",
    "clouddns": "kubedns has no backend besides the Kubernetes API",
    "autopath": "kubedns does not complete search paths server-side; clients walk their "
    "search list",
    "dnssec": "kubedns does not sign answers",
    "sign": "kubedns does not sign zones",
    "acl": "kubedns has no query ACLs; restrict clients with a NetworkPolicy",
    "k8s_external": "kubedns does not serve Services' external IPs in another zone",
    "federation": "kubedns does not serve federation names",
    "transfer": "kubedns does not serve zone transfers",
    "dnstap": "kubedns has no dnstap output",
    "local": "kubedns does not answer localhost names itself",
    "any": "kubedns answers ANY for a cluster name with one RRset (RFC 8482) and forwards "
    "other ANY queries; it does not answer them all with HINFO",
    "view": "kubedns answers every client alike",
    "tls": "kubedns serves plain DNS over UDP and TCP only",
    "import": "imported files and snippets are not expanded; paste their directives in place "
    "of the import and run again",
}
"""Plugins with no kubedns equivalent, and why. Any other unknown name gets a generic reason."""


def convert(corefile: Corefile) -> Conversion:
    return _Converter().run(corefile)


def _http_address(text: str) -> HostPort:
    """``:9153``, ``localhost:8080``, ``0.0.0.0:8181``, ``[::]:9153`` as CoreDNS binds them."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} has no port")
    host = host.removeprefix("[").removesuffix("]")
    host = {"": "0.0.0.0", "localhost": "127.0.0.1"}.get(host, host)
    return parse_host_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


class _Converter:
    """One pass over the blocks, then ``_finish`` for what depends on the whole file."""

    def __init__(self) -> None:
        self.out = Conversion()
        self.port = values.DEFAULT_PORT
        self.bind: tuple[str, int] | None = None
        self.ops: dict[str, tuple[str, int]] = {}
        self.has_root = False
        self.loadbalance_line: int | None = None
        self.kubernetes = Kubernetes(self.out)
        self.forward = Forward(self.out)
        self.cache = Cache(self.out)
        self.handlers: dict[str, Callable[[Directive, Block], None]] = {
            "errors": self._errors,
            "log": self._log,
            "reload": self._reload,
            "loop": self._loop,
            "health": self._health,
            "ready": self._ready,
            "prometheus": self._prometheus,
            "bind": self._bind,
            "bufsize": self._bufsize,
            "loadbalance": self._loadbalance,
            "kubernetes": self.kubernetes.directive,
            "forward": self.forward.directive,
            "cache": self.cache.directive,
        }

    def run(self, corefile: Corefile) -> Conversion:
        for directive in corefile.imports:
            self.out.refuse(directive.line, "import", UNSUPPORTED["import"])
        for block in self._blocks(corefile.blocks):
            self.has_root = self.has_root or block.is_root
            for directive in block.source.directives:
                self._directive(directive, block)
        self._finish()
        return self.out

    # -- server blocks ------------------------------------------------------------------

    def _blocks(self, blocks: tuple[ServerBlock, ...]) -> list[Block]:
        """The blocks kubedns can serve: plain DNS on one port, each zone once."""
        keyed: list[tuple[ServerBlock, list[values.ServerKey]]] = []
        for block in blocks:
            if block.is_snippet:
                continue  # only its imports matter, and those are reported where they are
            try:
                keyed.append((block, [values.server_key(key) for key in block.keys]))
            except ValueError as exc:
                self.out.refuse(block.line, "server block", f"{exc}; block not converted")
        self.port = self._main_port(keyed)
        served: list[Block] = []
        seen: dict[str, int] = {}
        for block, keys in keyed:
            if self._is_served(block, keys, seen):
                served.append(Block(tuple(key.zone for key in keys), block))
        return served

    def _main_port(self, keyed: list[tuple[ServerBlock, list[values.ServerKey]]]) -> int:
        """The port of the root zone's block, else of the cluster's, else of the first."""

        def is_cluster(block: ServerBlock) -> bool:
            return any(directive.name == "kubernetes" for directive in block.directives)

        plain = [(block, [key for key in keys if key.scheme == "dns"]) for block, keys in keyed]
        roots = [key for _, keys in plain for key in keys if not key.zone]
        clusters = [key for block, keys in plain if is_cluster(block) for key in keys]
        for found in (roots, clusters, [key for _, keys in plain for key in keys]):
            if found:
                return found[0].port
        return values.DEFAULT_PORT

    def _is_served(
        self, block: ServerBlock, keys: list[values.ServerKey], seen: dict[str, int]
    ) -> bool:
        for key in keys:
            name = f"server block {key.zone or '.'}:{key.port}"
            if key.scheme != "dns":
                reason = f"{key.scheme}:// is not served: kubedns serves plain DNS over UDP and TCP"
            elif key.port != self.port:
                reason = f"kubedns serves DNS on one port ({self.port})"
            elif key.zone in seen:
                reason = f"zone already served by the block on line {seen[key.zone]}"
            else:
                continue
            self.out.refuse(block.line, name, f"{reason}; its directives are not converted")
            return False
        seen.update((key.zone, block.line) for key in keys)
        return True

    def _directive(self, directive: Directive, block: Block) -> None:
        name = directive.name
        if (reference := env_reference(directive)) is not None:
            self.out.refuse(directive.line, name, env_reason(reference))
            return
        handler = self.handlers.get(name)
        if handler is None:
            reason = UNSUPPORTED.get(name, "no kubedns equivalent of this CoreDNS plugin")
            self.out.refuse(directive.line, name, reason)
            return
        try:
            handler(directive, block)
        except ValueError as exc:
            self.out.refuse(directive.line, name, str(exc))

    # -- directives with nothing to set -------------------------------------------------

    def _errors(self, directive: Directive, block: Block) -> None:
        self.out.note(
            (), f"errors (line {directive.line}): nothing to set, kubedns always logs errors"
        )

    def _log(self, directive: Directive, block: Block) -> None:
        self.out.note(
            (),
            f"log (line {directive.line}): not converted, this kubedns has no query log setting",
        )

    def _reload(self, directive: Directive, block: Block) -> None:
        self.out.note(
            (),
            f"reload (line {directive.line}): not converted, kubedns reads its config at start; "
            "restart the pods to apply a change",
        )

    def _loop(self, directive: Directive, block: Block) -> None:
        self.out.note(
            (),
            f"loop (line {directive.line}): nothing to set, kubedns always probes its upstreams "
            "for a forwarding loop at start",
        )

    # -- listeners ----------------------------------------------------------------------

    def _bind(self, directive: Directive, block: Block) -> None:
        if directive.block:
            raise ValueError("kubedns listens on one address; `bind` options are not supported")
        host = one(directive)
        try:
            address = parse_host_port(host, default_port=self.port)
        except ValueError:
            raise ValueError(
                f"{host!r} is not an IP address (interface names are not supported)"
            ) from None
        if self.bind is not None and self.bind[0] != address.host:
            raise ValueError(f"kubedns listens on one address, already {self.bind[0]}")
        self.bind = (address.host, directive.line)

    def _health(self, directive: Directive, block: Block) -> None:
        self._ops_address("health", directive, default=":8080")
        self.out.options(directive, mapped={"lameduck": self._lameduck})

    def _lameduck(self, option: Directive) -> None:
        text = one(option)
        note = f"health {{ lameduck {text} }} (line {option.line})"
        self.out.set(("ops", "lame_duck"), values.seconds(text), note)

    def _ready(self, directive: Directive, block: Block) -> None:
        self._ops_address("ready", directive, default=":8181")
        self.out.options(directive)

    def _prometheus(self, directive: Directive, block: Block) -> None:
        self._ops_address("prometheus", directive, default="localhost:9153")
        self.out.options(
            directive,
            noted={"runtime_metrics": "nothing to set, kubedns exports its process metrics"},
            refused={"tls": "kubedns serves /metrics over plain HTTP"},
            note_at=("ops", "listen"),
        )

    def _ops_address(self, kind: str, directive: Directive, *, default: str) -> None:
        if len(directive.args) > 1:
            raise ValueError("takes one address")
        text = directive.args[0] if directive.args else default
        first = self.ops.setdefault(kind, (text, directive.line))
        if first[0] != text:
            raise ValueError(
                f"kubedns serves one {kind} address, already {first[0]} (line {first[1]})"
            )

    # -- answers ------------------------------------------------------------------------

    def _bufsize(self, directive: Directive, block: Block) -> None:
        size = values.whole(one(directive), low=512, high=4096)
        self.out.set(("replies", "udp_size"), size, f"bufsize (line {directive.line})")

    def _loadbalance(self, directive: Directive, block: Block) -> None:
        if directive.args not in ((), ("round_robin",)) or directive.block:
            raise ValueError(
                "kubedns rotates records in turn; `weighted` and options are not supported"
            )
        self.loadbalance_line = directive.line

    # -- after the last directive -------------------------------------------------------

    def _finish(self) -> None:
        """What depends on the whole file: defaults CoreDNS has and kubedns lacks, addresses."""
        listen = self._listen()
        self._ops()
        self.kubernetes.finish()
        cluster = self.kubernetes.cluster
        self.forward.finish(listen=listen, cluster=cluster)
        self.cache.finish(has_root=self.has_root, cluster=cluster)
        rotate = self.loadbalance_line is not None
        note = (
            f"loadbalance (line {self.loadbalance_line}): kubedns rotates the records from "
            "reply to reply"
            if rotate
            else "no loadbalance: CoreDNS kept the order"
        )
        self.out.set(("replies", "rotate"), rotate, note)

    def _listen(self) -> HostPort:
        host, note = "0.0.0.0", f"CoreDNS listened on every address on port {self.port}"
        if self.bind is not None:
            host, note = self.bind[0], f"bind (line {self.bind[1]})"
        listen = HostPort(host, self.port)
        self.out.set(("listen",), str(listen), f"{note} (the Helm chart sets listen itself)")
        return listen

    def _ops(self) -> None:
        for kind in ("prometheus", "ready", "health"):
            if kind in self.ops:
                break
        else:
            return
        text, line = self.ops[kind]
        try:
            address = _http_address(text)
        except ValueError as exc:
            self.out.refuse(line, kind, str(exc))
            return
        self.out.set(
            ("ops", "listen"),
            str(address),
            f"{kind} {text} (line {line}): kubedns "
            "serves /metrics, /health and /ready all on this address",
        )
        if ipaddress.ip_address(address.host).is_loopback:
            self.out.note(
                ("ops", "listen"),
                "a loopback address: nothing outside the pod can scrape or probe it",
            )
        paths = {"prometheus": "/metrics", "ready": "/ready", "health": "/health"}
        for other, (other_text, other_line) in self.ops.items():
            if other != kind:
                self.out.note(
                    ("ops", "listen"),
                    f"{other} {other_text} (line {other_line}): "
                    f"CoreDNS served {paths[other]} there; move what polls it (a "
                    f"probe) to port {address.port}",
                )
