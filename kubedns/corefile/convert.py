"""Corefile directives to kubedns settings, and a reason for each one that has no equivalent.

The result is a ``Conversion``: settings as paths to values (``("forward", "policy")``),
comments for the YAML (where a value came from, what behaves differently), and problems
(directives or options that do not map, with their line). Nothing is dropped in silence:
every directive either sets something, explains in a comment why nothing needs setting, or
is a problem.

What CoreDNS does differently by default is written out, not left to kubedns's defaults:
``pods disabled`` when the ``kubernetes`` block does not set ``pods``, ``replies.rotate``
off without ``loadbalance``, ``cache.size`` 0 without ``cache``, forwarding off without a
``forward .``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from kubedns.config import (
    MAX_UPSTREAMS,
    CacheConfig,
    ForwardPolicy,
    HostPort,
    PodsMode,
    parse_host_port,
)
from kubedns.corefile import values
from kubedns.corefile.render import SettingPath
from kubedns.corefile.syntax import Corefile, Directive, ServerBlock
from kubedns.forward.resolvconf import is_self

RESOLV_CONF = "/etc/resolv.conf"
_CACHE_DEFAULTS = CacheConfig()

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
    "any": "kubedns has no special handling of ANY queries",
    "view": "kubedns answers every client alike",
    "tls": "kubedns serves plain DNS over UDP and TCP only",
    "import": "imported files and snippets are not expanded; paste their directives in place "
    "of the import and run again",
}
"""Plugins with no kubedns equivalent, and why. Any other unknown name gets a generic reason."""

_KUBERNETES_REFUSED = {
    "endpoint": "kubedns connects in-cluster, or through a kubeconfig file (the `kubeconfig` "
    "option)",
    "tls": "kubedns takes client certificates from a kubeconfig file (the `kubeconfig` option)",
    "namespaces": "kubedns serves every namespace",
    "namespace_labels": "kubedns serves every namespace",
    "labels": "kubedns serves every Service; it has no label selector",
    "endpoint_pod_names": "kubedns names endpoints by hostname or dashed IP, never by pod name",
    "noendpoints": "kubedns always serves endpoint and headless Service records",
    "ignore": "kubedns has no `ignore emptyservice`",
    "transfer": "kubedns does not serve zone transfers",
    "multicluster": "kubedns serves one cluster",
}
_KUBERNETES_NOTED = {
    "upstream": "nothing to set: kubedns resolves ExternalName targets through its forwarder",
    "resyncperiod": "nothing to set: kubedns keeps its watches open and relists only when the "
    "API server asks",
}
_FORWARD_REFUSED = {
    "force_tcp": "kubedns asks upstreams over UDP first (TCP when the answer is truncated)",
    "tls": "kubedns forwards plain DNS only",
    "tls_servername": "kubedns forwards plain DNS only",
    "except": "kubedns forwards every name outside the cluster zone",
    "next": "kubedns has one forwarder per domain; it does not try another on an answer",
    "next_on_nodata": "kubedns has one forwarder per domain",
    "failfast_all_unhealthy_upstreams": "kubedns has no such switch",
    "max_connect_attempts": "kubedns bounds attempts by forward.timeout instead",
    "doh_method": "kubedns forwards plain DNS only",
    "resolver": "kubedns upstreams are IP addresses; nothing to resolve",
}
_FORWARD_NOTED = {
    "expire": "nothing to set: kubedns opens a fresh socket for each exchange",
    "max_idle_conns": "nothing to set: kubedns keeps no idle upstream connections",
    "prefer_udp": "nothing to set: kubedns always asks over UDP first and over TCP when the "
    "answer is truncated",
}
_STUB_OPTION = (
    "not converted: in kubedns it applies to all upstreams; set it on the `forward .` of the "
    "`.` server block"
)


@dataclass(frozen=True, slots=True)
class Problem:
    """A directive or option that does not map, with why."""

    line: int | None
    name: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.name}: {self.reason}"


@dataclass(slots=True)
class Conversion:
    settings: dict[SettingPath, Any] = field(default_factory=dict)
    notes: dict[SettingPath, list[str]] = field(default_factory=dict)
    """Comments by the setting they explain; the empty path holds general ones."""
    problems: list[Problem] = field(default_factory=list)

    def set(self, path: SettingPath, value: Any, note: str | None = None) -> None:
        self.settings[path] = value
        if note is not None:
            self.note(path, note)

    def note(self, path: SettingPath, text: str) -> None:
        self.notes.setdefault(path, []).append(text)

    def refuse(self, line: int | None, name: str, reason: str) -> None:
        self.problems.append(Problem(line, name, reason))


@dataclass(frozen=True, slots=True)
class _Block:
    """A server block on the port kubedns serves: its zones (canonical; "" is the root)."""

    zones: tuple[str, ...]
    source: ServerBlock

    @property
    def is_root(self) -> bool:
        return "" in self.zones

    @property
    def label(self) -> str:
        return " ".join(zone or "." for zone in self.zones)


OptionHandler = Callable[[Directive], None]


def convert(corefile: Corefile) -> Conversion:
    return _Converter().run(corefile)


def _one(directive: Directive) -> str:
    if len(directive.args) != 1:
        raise ValueError(f"takes one value, not {len(directive.args)}")
    return directive.args[0]


def _env_reference(directive: Directive) -> str | None:
    """The first ``{$VAR}`` or ``{%VAR%}`` on a directive's line: CoreDNS fills these from its
    own environment at start, which a conversion cannot know."""
    for text in (directive.name, *directive.args):
        if values.has_env_reference(text):
            return text
    return None


def _env_reason(reference: str) -> str:
    return (
        f"environment substitution in {reference!r} is not done here: write the value into "
        "the Corefile and run again"
    )


def _http_address(text: str) -> HostPort:
    """``:9153``, ``localhost:8080``, ``0.0.0.0:8181``, ``[::]:9153`` as CoreDNS binds them."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} has no port")
    host = host.removeprefix("[").removesuffix("]")
    host = {"": "0.0.0.0", "localhost": "127.0.0.1"}.get(host, host)
    return parse_host_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


def _upstreams(args: tuple[str, ...]) -> tuple[list[HostPort], bool]:
    """The TO list of ``forward``: addresses, and whether it names /etc/resolv.conf."""
    found: list[HostPort] = []
    resolv = False
    for text in args:
        if text.startswith("/"):
            if text != RESOLV_CONF:
                raise ValueError(f"{text}: kubedns reads nameservers only from {RESOLV_CONF}")
            resolv = True
            continue
        scheme, sep, rest = text.partition("://")
        if sep and scheme.lower() != "dns":
            raise ValueError(f"{text}: kubedns forwards plain DNS only (no {scheme}://)")
        try:
            found.append(parse_host_port(rest if sep else text, default_port=53))
        except ValueError:
            raise ValueError(f"{text}: upstreams must be IP addresses or {RESOLV_CONF}") from None
    if resolv and found:
        raise ValueError(f"mixes {RESOLV_CONF} and addresses; kubedns takes one or the other")
    if len(found) > MAX_UPSTREAMS:
        raise ValueError(f"{len(found)} upstreams; at most {MAX_UPSTREAMS}")
    return found, resolv


class _Converter:
    def __init__(self) -> None:
        self.out = Conversion()
        self.port = values.DEFAULT_PORT
        self.bind: tuple[str, int] | None = None
        self.cluster: str | None = None
        self.cluster_line: int | None = None
        self.ops: dict[str, tuple[str, int]] = {}
        self.has_root = False
        self.default_forward: tuple[list[HostPort], int] | None = None
        self.stubs: dict[str, tuple[list[HostPort], int]] = {}
        self.cache_line: int | None = None
        self.cache_caps: dict[str, int] = {}
        self.cache_disabled: list[tuple[str, list[str], int]] = []
        self.loadbalance_line: int | None = None
        self.handlers: dict[str, Callable[[Directive, _Block], None]] = {
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
            "kubernetes": self._kubernetes,
            "forward": self._forward,
            "cache": self._cache,
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

    def _blocks(self, blocks: tuple[ServerBlock, ...]) -> list[_Block]:
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
        served: list[_Block] = []
        seen: dict[str, int] = {}
        for block, keys in keyed:
            if self._is_served(block, keys, seen):
                served.append(_Block(tuple(key.zone for key in keys), block))
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

    def _directive(self, directive: Directive, block: _Block) -> None:
        name = directive.name
        if (reference := _env_reference(directive)) is not None:
            self.out.refuse(directive.line, name, _env_reason(reference))
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

    def _options(
        self,
        directive: Directive,
        *,
        mapped: Mapping[str, OptionHandler] | None = None,
        noted: Mapping[str, str] | None = None,
        refused: Mapping[str, str] | None = None,
        note_at: SettingPath = (),
    ) -> None:
        """Each option in ``directive``'s block: mapped, explained in a comment, or refused."""
        for option in directive.block:
            label = f"{directive.name} {option.name}"
            if (reference := _env_reference(option)) is not None:
                self.out.refuse(option.line, label, _env_reason(reference))
            elif mapped and option.name in mapped:
                try:
                    mapped[option.name](option)
                except ValueError as exc:
                    self.out.refuse(option.line, label, str(exc))
            elif noted and option.name in noted:
                self.out.note(note_at, f"{label} (line {option.line}): {noted[option.name]}")
            else:
                reason = (refused or {}).get(option.name, "not an option kubedns knows")
                self.out.refuse(option.line, label, reason)

    # -- directives with nothing to set -------------------------------------------------

    def _errors(self, directive: Directive, block: _Block) -> None:
        self.out.note(
            (), f"errors (line {directive.line}): nothing to set, kubedns always logs errors"
        )

    def _log(self, directive: Directive, block: _Block) -> None:
        self.out.note(
            (),
            f"log (line {directive.line}): not converted, this kubedns has no query log setting",
        )

    def _reload(self, directive: Directive, block: _Block) -> None:
        self.out.note(
            (),
            f"reload (line {directive.line}): not converted, kubedns reads its config at start; "
            "restart the pods to apply a change",
        )

    def _loop(self, directive: Directive, block: _Block) -> None:
        self.out.note(
            (),
            f"loop (line {directive.line}): nothing to set, kubedns always probes its upstreams "
            "for a forwarding loop at start",
        )

    # -- listeners ----------------------------------------------------------------------

    def _bind(self, directive: Directive, block: _Block) -> None:
        if directive.block:
            raise ValueError("kubedns listens on one address; `bind` options are not supported")
        host = _one(directive)
        try:
            address = parse_host_port(host, default_port=self.port)
        except ValueError:
            raise ValueError(
                f"{host!r} is not an IP address (interface names are not supported)"
            ) from None
        if self.bind is not None and self.bind[0] != address.host:
            raise ValueError(f"kubedns listens on one address, already {self.bind[0]}")
        self.bind = (address.host, directive.line)

    def _health(self, directive: Directive, block: _Block) -> None:
        self._ops_address("health", directive, default=":8080")
        self._options(directive, mapped={"lameduck": self._lameduck})

    def _lameduck(self, option: Directive) -> None:
        text = _one(option)
        note = f"health {{ lameduck {text} }} (line {option.line})"
        self.out.set(("ops", "lame_duck"), values.seconds(text), note)

    def _ready(self, directive: Directive, block: _Block) -> None:
        self._ops_address("ready", directive, default=":8181")
        self._options(directive)

    def _prometheus(self, directive: Directive, block: _Block) -> None:
        self._ops_address("prometheus", directive, default="localhost:9153")
        self._options(
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

    def _bufsize(self, directive: Directive, block: _Block) -> None:
        size = values.whole(_one(directive), low=512, high=4096)
        self.out.set(("replies", "udp_size"), size, f"bufsize (line {directive.line})")

    def _loadbalance(self, directive: Directive, block: _Block) -> None:
        if directive.args not in ((), ("round_robin",)) or directive.block:
            raise ValueError(
                "kubedns rotates records in turn; `weighted` and options are not supported"
            )
        self.loadbalance_line = directive.line

    # -- kubernetes ---------------------------------------------------------------------

    def _kubernetes(self, directive: Directive, block: _Block) -> None:
        if self.cluster_line is not None:
            raise ValueError(
                f"a second kubernetes directive (the first is on line {self.cluster_line}); "
                "kubedns serves one cluster"
            )
        self.cluster_line = directive.line
        zones = [values.zone(arg) for arg in directive.args] or list(block.zones)
        names = [zone for zone in zones if not values.is_reverse(zone)]
        reverse = [zone for zone in zones if values.is_reverse(zone)]
        self._cluster_domain(names, directive.line)
        state = {"pods": False, "fallthrough": False}
        self._options(
            directive,
            mapped={
                "pods": lambda option: self._pods(option, state),
                "ttl": self._ttl,
                "fallthrough": lambda option: self._fallthrough(option, state),
                "kubeconfig": self._kubeconfig,
            },
            noted=_KUBERNETES_NOTED,
            refused=_KUBERNETES_REFUSED,
            note_at=("cluster_domain",),
        )
        if not state["pods"]:
            self.out.set(
                ("pods",),
                "disabled",
                "no `pods` in the kubernetes block: CoreDNS's default, no pod records",
            )
        self._reverse_note(reverse, fallthrough=state["fallthrough"])

    def _cluster_domain(self, names: list[str], line: int) -> None:
        if not names or not names[0]:
            raise ValueError("no cluster zone (such as cluster.local) to serve")
        self.cluster = names[0]
        self.out.set(("cluster_domain",), names[0], f"kubernetes (line {line})")
        for extra in names[1:]:
            self.out.refuse(
                line,
                "kubernetes",
                f"a second cluster domain {extra or '.'}: kubedns serves one ({names[0]})",
            )

    def _reverse_note(self, reverse: list[str], *, fallthrough: bool) -> None:
        if not reverse:
            note = (
                "CoreDNS answered no PTR for cluster IPs (no in-addr.arpa/ip6.arpa zone); "
                "kubedns answers them and forwards other reverse names"
            )
        elif not fallthrough:
            note = (
                "CoreDNS answered NXDOMAIN for reverse names it did not own; kubedns "
                "forwards them, as `fallthrough in-addr.arpa ip6.arpa` does"
            )
        else:
            note = (
                "reverse zones with `fallthrough in-addr.arpa ip6.arpa`: kubedns does the "
                "same, PTR for cluster IPs and other reverse names forwarded"
            )
        self.out.note(("cluster_domain",), note)

    def _pods(self, option: Directive, state: dict[str, bool]) -> None:
        mode = _one(option)
        if mode not in get_args(PodsMode):
            raise ValueError(f"{mode!r} is not disabled, insecure or verified")
        state["pods"] = True
        self.out.set(("pods",), mode, f"kubernetes {{ pods {mode} }} (line {option.line})")

    def _ttl(self, option: Directive) -> None:
        ttl = values.whole(_one(option), high=3600)
        note = f"kubernetes {{ ttl {ttl} }} (line {option.line}): records and the SOA minimum"
        self.out.set(("ttl", "records"), ttl, note)
        self.out.set(("ttl", "negative"), ttl)

    def _fallthrough(self, option: Directive, state: dict[str, bool]) -> None:
        zones = [values.zone(arg) for arg in option.args]
        if not zones:
            raise ValueError(
                "without zones it passes cluster names on down the chain; kubedns never "
                "forwards names of its cluster zone"
            )
        for zone in zones:
            if not values.is_reverse(zone):
                raise ValueError(f"{zone or '.'}: kubedns never forwards names of its cluster zone")
        state["fallthrough"] = True

    def _kubeconfig(self, option: Directive) -> None:
        if not 1 <= len(option.args) <= 2:
            raise ValueError("takes a file and optionally a context")
        self.out.set(
            ("kubeconfig",), option.args[0], f"kubernetes {{ kubeconfig }} (line {option.line})"
        )
        if len(option.args) == 2:
            raise ValueError(
                f"context {option.args[1]!r}: kubedns uses the kubeconfig's current context"
            )

    # -- forward ------------------------------------------------------------------------

    def _forward(self, directive: Directive, block: _Block) -> None:
        if len(directive.args) < 2:
            raise ValueError("needs FROM and at least one TO")
        origin = values.zone(directive.args[0])
        upstreams, resolv = _upstreams(directive.args[1:])
        # `forward .` covers every zone of its block; in the root block that is everything.
        if origin:
            targets: tuple[str, ...] = (origin,)
        else:
            targets = ("",) if block.is_root else block.zones
        is_default = "" in targets
        for target in targets:
            if target:
                self._stub(target, upstreams, resolv=resolv, line=directive.line)
            else:
                self._default_forward(upstreams, resolv=resolv, line=directive.line)
        if is_default:
            self._options(
                directive,
                mapped=self._forward_options(),
                noted=_FORWARD_NOTED,
                refused=_FORWARD_REFUSED,
                note_at=("forward",),
            )
        else:
            noted = dict.fromkeys(
                ("policy", "max_concurrent", "max_fails", "health_check"), _STUB_OPTION
            )
            self._options(
                directive,
                noted=noted | _FORWARD_NOTED,
                refused=_FORWARD_REFUSED,
                note_at=("forward",),
            )

    def _default_forward(self, upstreams: list[HostPort], *, resolv: bool, line: int) -> None:
        if self.default_forward is not None:
            raise ValueError(
                f"a second `forward .` (the first is on line {self.default_forward[1]})"
            )
        self.default_forward = (upstreams, line)
        if resolv:
            self.out.set(
                ("forward", "upstreams"),
                [],
                f"forward . {RESOLV_CONF} (line {line}): "
                "empty upstreams make kubedns read the nameservers of /etc/resolv.conf",
            )
        else:
            self.out.set(
                ("forward", "upstreams"), [str(u) for u in upstreams], f"forward (line {line})"
            )

    def _stub(self, zone: str, upstreams: list[HostPort], *, resolv: bool, line: int) -> None:
        if resolv:
            raise ValueError(f"stub domain {zone}: needs upstream IPs, not {RESOLV_CONF}")
        if zone in self.stubs:
            raise ValueError(f"stub domain {zone} already forwarded on line {self.stubs[zone][1]}")
        self.stubs[zone] = (upstreams, line)

    def _forward_options(self) -> dict[str, OptionHandler]:
        def policy(option: Directive) -> None:
            value = _one(option)
            if value not in get_args(ForwardPolicy):
                raise ValueError(f"{value!r} is not random, round_robin or sequential")
            self.out.set(("forward", "policy"), value)

        def limit(key: str) -> OptionHandler:
            def apply(option: Directive) -> None:
                number = values.whole(_one(option))
                if number:
                    self.out.set(("forward", key), number)
                else:
                    self.out.note(
                        ("forward",),
                        f"forward {option.name} 0 (line {option.line}): "
                        "CoreDNS's 0 means no limit; kubedns needs at least 1 and "
                        "keeps its default",
                    )

            return apply

        def health_check(option: Directive) -> None:
            if not option.args:
                raise ValueError("needs a duration")
            interval = values.seconds(option.args[0])
            if interval <= 0:
                raise ValueError("the interval must be more than 0")
            self.out.set(("forward", "health_check_interval"), interval)
            if option.args[1:]:
                self.out.note(
                    ("forward", "health_check_interval"),
                    "kubedns probes `. IN NS` "
                    "without recursion (as no_rec); the probe name is not configurable",
                )

        def failover(option: Directive) -> None:
            rcodes = {rcode.upper() for rcode in option.args}
            if not rcodes or not rcodes <= {"SERVFAIL", "REFUSED"}:
                raise ValueError("kubedns moves on only after SERVFAIL, REFUSED or no answer")
            self.out.note(
                ("forward",),
                f"forward failover (line {option.line}): nothing to "
                "set, kubedns always tries the next upstream after SERVFAIL or REFUSED",
            )

        return {
            "policy": policy,
            "max_concurrent": limit("max_concurrent"),
            "max_fails": limit("max_fails"),
            "health_check": health_check,
            "failover": failover,
        }

    # -- cache --------------------------------------------------------------------------

    def _cache(self, directive: Directive, block: _Block) -> None:
        if not block.is_root:
            self.out.note(
                (),
                f"cache (line {directive.line}) in the server block for "
                f"{block.label}: not converted, kubedns has one cache of forwarded "
                "answers, set by the cache of the `.` server block",
            )
            return
        if self.cache_line is not None:
            raise ValueError(f"a second cache (the first is on line {self.cache_line})")
        self.cache_line = directive.line
        args = list(directive.args)
        if args and args[0].isdigit():
            ttl = values.whole(args.pop(0), low=1)
            self.out.set(("cache", "max_ttl"), ttl, f"cache {ttl} (line {directive.line})")
            self.out.set(("cache", "negative_max_ttl"), ttl)
        if any(values.zone(arg) for arg in args):
            self.out.note(
                ("cache",), f"cache zones {' '.join(args)}: kubedns caches every forwarded name"
            )
        self._options(
            directive,
            mapped={
                "success": lambda option: self._cache_kind(option, "max_ttl"),
                "denial": lambda option: self._cache_kind(option, "negative_max_ttl"),
                "serve_stale": self._serve_stale,
                "servfail": self._servfail,
                "disable": self._disable,
            },
            noted={
                "prefetch": "not converted, kubedns does not prefetch: a popular name is "
                "asked again when it expires"
            },
            refused={"keepttl": "kubedns ages the TTLs of cached answers"},
            note_at=("cache",),
        )

    def _cache_kind(self, option: Directive, ttl_key: str) -> None:
        """``success|denial CAPACITY [TTL] [MINTTL]``."""
        if not 1 <= len(option.args) <= 3:
            raise ValueError("takes CAPACITY [TTL] [MINTTL]")
        self.cache_caps[option.name] = values.whole(option.args[0])
        if len(option.args) > 1:
            self.out.set(
                ("cache", ttl_key),
                values.whole(option.args[1], low=1),
                f"cache {{ {option.name} ... }} (line {option.line})",
            )
        if len(option.args) > 2:
            minimum = values.whole(option.args[2])
            if option.name == "success":
                self.out.set(("cache", "min_ttl"), minimum)
            else:
                self.out.note(
                    ("cache", ttl_key),
                    f"denial MINTTL {minimum} not converted: "
                    "kubedns keeps negative answers for their SOA TTL, no minimum",
                )

    def _serve_stale(self, option: Directive) -> None:
        if len(option.args) > 2:
            raise ValueError("takes [DURATION] [immediate|verify]")
        age = values.seconds(option.args[0]) if option.args else 3600.0
        mode = option.args[1].lower() if len(option.args) > 1 else "immediate"
        if mode not in ("immediate", "verify"):
            raise ValueError(f"refresh mode {mode!r} is not immediate or verify")
        note = f"cache {{ serve_stale }} (line {option.line})"
        self.out.set(("cache", "serve_stale"), True, note)
        self.out.set(("cache", "stale_max_age"), int(age))
        if mode == "immediate":
            self.out.note(
                ("cache", "serve_stale"),
                "CoreDNS answered stale first and refreshed "
                "after (immediate); kubedns serves stale only when every upstream "
                "fails (as verify), with TTL cache.stale_answer_ttl",
            )

    def _servfail(self, option: Directive) -> None:
        duration = values.seconds(_one(option))
        if duration > 300:
            raise ValueError("CoreDNS allows at most 5m")
        kept = min(int(duration), 5)
        self.out.set(("cache", "servfail_ttl"), kept, f"cache {{ servfail }} (line {option.line})")
        if duration > 5:
            self.out.note(("cache", "servfail_ttl"), "kubedns keeps SERVFAIL at most 5 s")

    def _disable(self, option: Directive) -> None:
        if not option.args or option.args[0] not in ("success", "denial"):
            raise ValueError("takes success|denial [ZONES...]")
        zones = [values.zone(arg) for arg in option.args[1:]] or [""]
        self.cache_disabled.append((option.args[0], zones, option.line))

    # -- after the last directive -------------------------------------------------------

    def _finish(self) -> None:
        listen = self._listen()
        self._ops()
        if self.cluster is None and self.cluster_line is None:
            self.out.refuse(
                None,
                "kubernetes",
                "no kubernetes directive: kubedns always serves "
                "a cluster zone (cluster.local unless cluster_domain says otherwise)",
            )
        self._forwarding(listen)
        self._cache_totals()
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

    def _forwarding(self, listen: HostPort) -> None:
        if self.default_forward is None:
            self.out.set(
                ("forward", "enabled"),
                False,
                "no `forward .` in a `.` server block: CoreDNS answered only its own zones",
            )
            if self.stubs:
                self.out.refuse(
                    None,
                    "forward",
                    "stub domains without a `forward .`: kubedns "
                    "cannot forward some domains and refuse the rest",
                )
        elif not self._check_self(*self.default_forward, listen):
            # Printed, it would make the config fail at start; the problem names it instead.
            del self.out.settings["forward", "upstreams"]
        for zone, (upstreams, line) in self.stubs.items():
            if self.cluster is not None and values.is_within(zone, self.cluster):
                self.out.refuse(
                    line,
                    "forward",
                    f"stub domain {zone} is inside the cluster "
                    f"zone {self.cluster}: kubedns never forwards its names",
                )
            elif self._check_self(upstreams, line, listen):
                self.out.set(
                    ("forward", "stub_domains", zone),
                    [str(u) for u in upstreams],
                    f"forward for {zone} (line {line})",
                )

    def _check_self(self, upstreams: list[HostPort], line: int, listen: HostPort) -> bool:
        for upstream in upstreams:
            if is_self(upstream, [listen]):
                self.out.refuse(line, "forward", f"{upstream} is kubedns's own listen address")
                return False
        return True

    def _cache_totals(self) -> None:
        if self.has_root and self.cache_line is None:
            self.out.set(
                ("cache", "size"),
                0,
                "no cache in the `.` server block: CoreDNS cached no forwarded answers",
            )
        if self.cache_caps:
            size = max(self.cache_caps.values())
            note = "success/denial capacity: kubedns keeps this many each"
            if len(set(self.cache_caps.values())) > 1:
                note += " (the larger of the two)"
            self.out.set(("cache", "size"), size, note)
        minimum = self.out.settings.get(("cache", "min_ttl"), _CACHE_DEFAULTS.min_ttl)
        maximum = self.out.settings.get(("cache", "max_ttl"), _CACHE_DEFAULTS.max_ttl)
        if minimum > maximum:
            self.out.set(
                ("cache", "min_ttl"),
                maximum,
                f"lowered to max_ttl {maximum}: kubedns needs min_ttl <= max_ttl",
            )
        for kind, zones, line in self.cache_disabled:
            label = f"cache disable {kind}"
            if self.cluster is not None and all(values.is_within(z, self.cluster) for z in zones):
                self.out.note(
                    ("cache",),
                    f"{label} {' '.join(zones)} (line {line}): nothing to "
                    "set, kubedns never caches its cluster zone's answers",
                )
            else:
                self.out.refuse(
                    line,
                    label,
                    "kubedns can only turn the whole cache off "
                    "(cache.size 0), not one kind for some zones",
                )
