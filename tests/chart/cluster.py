"""What a cluster does with a set of objects, for the questions the chart tests ask: which
pods a selector picks, which pod port a Service port or a NetworkPolicy port reaches, and on
which ports the program in a container really listens (read from its own config file, not
from its declared containerPort).

Deployments stand for their pods: replicas > 0 means pods exist (no scheduling, no
readiness).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import yaml

from tests.chart.tools import Obj

DNS_PORTS = (("dns", "UDP"), ("dns-tcp", "TCP"))


@dataclass(frozen=True)
class Reach:
    """One selected Deployment and, per protocol, the pod port a Service port reaches."""

    deployment: str
    ports: frozenset[tuple[str, int | None]]  # (protocol, container port or None)
    listening: frozenset[tuple[str, int]]  # (protocol, port) the program binds

    def is_served(self) -> bool:
        """Every DNS port the Service sends to is one the program binds."""
        return bool(self.ports) and all(
            port is not None and (proto, port) in self.listening for proto, port in self.ports
        )


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A Service selector (or matchLabels): every pair present. Empty selects nothing here
    (a Service without a selector has no endpoints)."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def replicas(deployment: Obj) -> int:
    # The API server defaults a missing replicas to 1.
    return int(deployment["spec"].get("replicas", 1))


def pod_labels(deployment: Obj) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"].get("labels", {}))


def container(deployment: Obj) -> Obj:
    (first, *_) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(first)


def target(port: Mapping[str, object], c: Obj) -> int | None:
    """The container port a Service port reaches, as the EndpointSlice controller resolves
    it: a number as is, a name through the container's ports of that protocol, else None."""
    wanted = port.get("targetPort", port["port"])
    if isinstance(wanted, int):
        return wanted
    for p in c.get("ports", []):
        if p.get("name") == wanted and p.get("protocol", "TCP") == port.get("protocol", "TCP"):
            return int(p["containerPort"])
    return None


def configmap_for(deployment: Obj, objects: Iterable[Obj]) -> Obj | None:
    volumes = deployment["spec"]["template"]["spec"].get("volumes", [])
    names = {v["configMap"]["name"] for v in volumes if "configMap" in v}
    for o in objects:
        if (
            o["kind"] == "ConfigMap"
            and o["metadata"]["name"] in names
            and {"config.yaml", "Corefile"} & set(o.get("data", {}))
        ):
            return o
    return None


def listening(deployment: Obj, objects: Iterable[Obj]) -> frozenset[tuple[str, int]]:
    """The DNS ports the container's program binds, UDP and TCP, from its config: kubedns's
    `listen` (and a --listen argument), CoreDNS's server blocks (`.:53 {`, port 53 when a
    block names none)."""
    cm = configmap_for(deployment, objects)
    if cm is None:
        return frozenset()
    data = cm["data"]
    ports: set[int] = set()
    if "config.yaml" in data:
        listen = str(yaml.safe_load(data["config.yaml"]).get("listen", "127.0.0.1:5353"))
        for arg in container(deployment).get("args", []):
            if str(arg).startswith("--listen="):
                listen = str(arg).split("=", 1)[1]
        ports.add(int(listen.rsplit(":", 1)[1]))
    else:
        for key in re.findall(r"^(\S+)\s*\{", data["Corefile"], flags=re.MULTILINE):
            _, _, port = key.rpartition(":")
            ports.add(int(port) if port.isdigit() else 53)
    return frozenset((proto, p) for p in ports for proto in ("UDP", "TCP"))


def reached(service: Obj, objects: list[Obj]) -> dict[str, Reach]:
    """Every Deployment with pods that the Service selects, with the DNS ports it reaches."""
    selector = service["spec"].get("selector") or {}
    found = {}
    for d in objects:
        if d["kind"] != "Deployment" or replicas(d) == 0 or not matches(selector, pod_labels(d)):
            continue
        c = container(d)
        ports = frozenset(
            (p.get("protocol", "TCP"), target(p, c))
            for p in service["spec"]["ports"]
            if p.get("port") == 53
        )
        name = d["metadata"]["name"]
        found[name] = Reach(name, ports, listening(d, objects))
    return found


def label_selector(selector: Mapping[str, object], labels: Mapping[str, str]) -> bool:
    """A NetworkPolicy label selector (matchLabels only): empty selects everything."""
    wanted = selector.get("matchLabels") or {}
    assert isinstance(wanted, dict)
    return all(labels.get(k) == v for k, v in wanted.items())


def allows(
    policy: Obj, *, namespace: str, namespace_labels: Mapping[str, str], pod: Mapping[str, str]
) -> set[tuple[str, int]]:
    """The (protocol, pod port) pairs a NetworkPolicy's egress rules allow towards a pod with
    these labels in this namespace. A peer without namespaceSelector means the policy's own
    namespace; a rule without peers allows every destination."""
    allowed: set[tuple[str, int]] = set()
    for rule in policy["spec"].get("egress", []):
        peers = rule.get("to", [])
        hit = not peers or any(
            (
                label_selector(peer["namespaceSelector"], namespace_labels)
                if "namespaceSelector" in peer
                else namespace == policy["metadata"].get("namespace")
            )
            and label_selector(peer.get("podSelector", {}), pod)
            for peer in peers
        )
        if hit:
            allowed |= {(p.get("protocol", "TCP"), int(p["port"])) for p in rule.get("ports", [])}
    return allowed
