"""The ``kubernetes`` directive: the cluster domain, pod records, TTLs and reverse zones."""

from __future__ import annotations

from typing import get_args

from kubedns.config import PodsMode
from kubedns.corefile import values
from kubedns.corefile.conversion import Block, Conversion, one
from kubedns.corefile.syntax import Directive

REFUSED = {
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
NOTED = {
    "upstream": "nothing to set: kubedns resolves ExternalName targets through its forwarder",
    "resyncperiod": "nothing to set: kubedns keeps its watches open and relists only when the "
    "API server asks",
}


class Kubernetes:
    """Converts the one ``kubernetes`` directive kubedns can serve."""

    def __init__(self, out: Conversion) -> None:
        self.out = out
        self.cluster: str | None = None
        """The cluster domain, once a ``kubernetes`` directive named one."""
        self.line: int | None = None

    def directive(self, directive: Directive, block: Block) -> None:
        if self.line is not None:
            raise ValueError(
                f"a second kubernetes directive (the first is on line {self.line}); "
                "kubedns serves one cluster"
            )
        self.line = directive.line
        zones = [values.zone(arg) for arg in directive.args] or list(block.zones)
        names = [zone for zone in zones if not values.is_reverse(zone)]
        reverse = [zone for zone in zones if values.is_reverse(zone)]
        self._cluster_domain(names, directive.line)
        state = {"pods": False, "fallthrough": False}
        self.out.options(
            directive,
            mapped={
                "pods": lambda option: self._pods(option, state),
                "ttl": self._ttl,
                "fallthrough": lambda option: self._fallthrough(option, state),
                "kubeconfig": self._kubeconfig,
            },
            noted=NOTED,
            refused=REFUSED,
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
        mode = one(option)
        if mode not in get_args(PodsMode):
            raise ValueError(f"{mode!r} is not disabled, insecure or verified")
        state["pods"] = True
        self.out.set(("pods",), mode, f"kubernetes {{ pods {mode} }} (line {option.line})")

    def _ttl(self, option: Directive) -> None:
        ttl = values.whole(one(option), high=3600)
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

    def finish(self) -> None:
        if self.line is None:
            self.out.refuse(
                None,
                "kubernetes",
                "no kubernetes directive: kubedns always serves "
                "a cluster zone (cluster.local unless cluster_domain says otherwise)",
            )
