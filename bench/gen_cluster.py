"""A deterministic synthetic cluster: N Services across M Namespaces, with EndpointSlices.

    .venv/bin/python -m bench.gen_cluster --services 1000 --namespaces 100 -o cluster.json

The output is what ``kubectl get namespaces,services,endpointslices,pods -A -o json`` prints
(a ``v1 List``), so ``kubedns serve --snapshot`` loads it as is. ``generate()`` returns the raw
object dicts for other benchmarks (the informer scale run feeds them to a fake API server:
``generate(services=10_000, namespaces=1_000, endpoints=50_000)``).

Same arguments, same bytes: there is no randomness, every choice is arithmetic on the index.
The shape, per generated Service ``i`` (namespace ``ns-<i % M>``):

* every 4th Service (``i % 4 == 3``) is headless; the others get a ClusterIP from
  10.96.0.0/12, and every 10th of those is dual-stack (an IPv6 ClusterIP from fd00:10:96::/108);
* every Service has ports ``http`` (TCP 80) and, for even ``i``, ``grpc`` (TCP 9090);
* endpoints are spread evenly over the Services (``endpoints`` in total), at most 100 per
  EndpointSlice as the EndpointSlice controller does, with pod IPs from 10.128.0.0/9;
* headless Services with ``i % 8 == 3`` are StatefulSet-like: endpoints carry hostnames
  ``<svc>-<k>``; the other headless ones have none (DNS derives ``10-128-0-7``);
* every 5th endpoint is not ready and every 13th is terminating (neither is published);
* two fixed Services are added in front: ``default/kubernetes`` and ``kube-system/kube-dns``
  (10.96.0.10, which gives the zone its NS address), in Namespaces of their own.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RawObject = dict[str, Any]

SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/12")
SERVICE_CIDR6 = ipaddress.IPv6Network("fd00:10:96::/108")
POD_CIDR = ipaddress.IPv4Network("10.128.0.0/9")
DNS_SERVICE_IP = "10.96.0.10"
FIRST_SERVICE_OFFSET = 16
"""ClusterIPs of generated Services start above the fixed ones (.1 and .10)."""
SLICE_CAPACITY = 100
"""The EndpointSlice controller's default ``--max-endpoints-per-slice``."""


@dataclass(frozen=True, slots=True)
class ServiceShape:
    """What the generator decided for one Service (the query-mix builders read this)."""

    namespace: str
    name: str
    headless: bool
    cluster_ips: tuple[str, ...]
    ports: tuple[tuple[str, int], ...]
    hostnames: bool
    endpoints: tuple[tuple[str, str, bool, bool], ...]
    """(ip, hostname or "", ready, terminating) per endpoint."""

    @property
    def published(self) -> tuple[tuple[str, str], ...]:
        """(ip, hostname) of the endpoints DNS answers with."""
        return tuple((ip, host) for ip, host, ready, term in self.endpoints if ready and not term)


def namespace_name(j: int) -> str:
    return f"ns-{j:04d}"


def service_name(i: int) -> str:
    return f"svc-{i:05d}"


def shapes(*, services: int, namespaces: int, endpoints: int) -> list[ServiceShape]:
    """The plan for every generated Service (the two fixed ones excluded)."""
    if services < 1 or namespaces < 1 or endpoints < 0:
        raise ValueError("need at least one service and one namespace")
    if endpoints >= POD_CIDR.num_addresses - 2:
        raise ValueError(f"at most {POD_CIDR.num_addresses - 2} endpoints fit {POD_CIDR}")
    if services + FIRST_SERVICE_OFFSET >= SERVICE_CIDR.num_addresses - 1:
        raise ValueError(f"too many services for {SERVICE_CIDR}")
    plans: list[ServiceShape] = []
    next_pod = 1
    for i in range(services):
        count = endpoints // services + (1 if i < endpoints % services else 0)
        headless = i % 4 == 3
        hostnames = headless and i % 8 == 3
        ips: tuple[str, ...] = ()
        if not headless:
            ips = (str(SERVICE_CIDR[FIRST_SERVICE_OFFSET + i]),)
            if i % 10 == 0:
                ips += (str(SERVICE_CIDR6[FIRST_SERVICE_OFFSET + i]),)
        ports: tuple[tuple[str, int], ...] = (("http", 80),)
        if i % 2 == 0:
            ports += (("grpc", 9090),)
        name = service_name(i)
        eps = []
        for k in range(count):
            ip = str(POD_CIDR[next_pod])
            n = next_pod
            next_pod += 1
            eps.append((ip, f"{name}-{k}" if hostnames else "", n % 5 != 0, n % 13 == 0))
        plans.append(
            ServiceShape(
                namespace=namespace_name(i % namespaces),
                name=name,
                headless=headless,
                cluster_ips=ips,
                ports=ports,
                hostnames=hostnames,
                endpoints=tuple(eps),
            )
        )
    return plans


def generate(
    *, services: int = 1000, namespaces: int = 100, endpoints: int | None = None, pods: bool = False
) -> list[RawObject]:
    """Raw API objects (Namespaces, Services, EndpointSlices, optionally Pods), in List order.

    ``endpoints`` defaults to three per Service. ``pods`` adds one Pod per endpoint (needed
    only for ``--pods verified`` or an informer that watches Pods).
    """
    total = 3 * services if endpoints is None else endpoints
    plans = shapes(services=services, namespaces=namespaces, endpoints=total)
    objects: list[RawObject] = [
        _namespace(name)
        for name in ("default", "kube-system", *map(namespace_name, range(namespaces)))
    ]
    objects.append(_service("default", "kubernetes", ("10.96.0.1",), (("https", 443),)))
    objects.append(
        _service(
            "kube-system", "kube-dns", (DNS_SERVICE_IP,), (("dns", 53), ("metrics", 9153)), udp=1
        )
    )
    objects += [_service(p.namespace, p.name, p.cluster_ips, p.ports) for p in plans]
    for plan in plans:
        objects += _slices(plan)
    if pods:
        for plan in plans:
            objects += [_pod(plan, k, ip) for k, (ip, *_rest) in enumerate(plan.endpoints)]
    return objects


def as_list(objects: list[RawObject]) -> RawObject:
    """Wrap objects as ``kubectl get ... -o json`` does."""
    return {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": objects,
    }


def write_snapshot(path: Path, objects: list[RawObject]) -> Path:
    """JSON, one object per line: loads faster than YAML and still diffs well."""
    items = ",\n".join(json.dumps(obj, separators=(",", ":")) for obj in objects)
    head = '{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":""},"items":[\n'
    path.write_text(head + items + "\n]}\n", encoding="utf-8")
    return path


def _meta(namespace: str, name: str, **extra: Any) -> RawObject:
    return {"name": name, "namespace": namespace, "resourceVersion": "1", **extra}


def _namespace(name: str) -> RawObject:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _service(
    namespace: str,
    name: str,
    cluster_ips: tuple[str, ...],
    ports: tuple[tuple[str, int], ...],
    *,
    udp: int = 0,
) -> RawObject:
    """``udp`` > 0 gives the first port a UDP twin (kube-dns's dns / dns-tcp pair)."""
    port_list = [
        {"name": port_name, "port": port, "protocol": "TCP", "targetPort": port}
        for port_name, port in ports
    ]
    if udp:
        first_name, first_port = ports[0]
        port_list[0] = {"name": first_name, "port": first_port, "protocol": "UDP"}
        port_list.insert(1, {"name": f"{first_name}-tcp", "port": first_port, "protocol": "TCP"})
    spec: RawObject = {"type": "ClusterIP", "selector": {"app": name}, "ports": port_list}
    if cluster_ips:
        spec["clusterIP"] = cluster_ips[0]
        spec["clusterIPs"] = list(cluster_ips)
        spec["ipFamilies"] = ["IPv6" if ":" in ip else "IPv4" for ip in cluster_ips]
        spec["ipFamilyPolicy"] = "PreferDualStack" if len(cluster_ips) > 1 else "SingleStack"
    else:
        spec["clusterIP"] = "None"
        spec["clusterIPs"] = ["None"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(namespace, name, labels={"app": name}),
        "spec": spec,
    }


def _slices(plan: ServiceShape) -> list[RawObject]:
    ports = [
        {"name": name, "port": 8000 + port % 1000, "protocol": "TCP"} for name, port in plan.ports
    ]
    result = []
    for start in range(0, len(plan.endpoints), SLICE_CAPACITY):
        chunk = plan.endpoints[start : start + SLICE_CAPACITY]
        endpoints = []
        for offset, (ip, hostname, ready, terminating) in enumerate(chunk):
            endpoint: RawObject = {
                "addresses": [ip],
                "conditions": {"ready": ready, "serving": ready, "terminating": terminating},
                "targetRef": {
                    "kind": "Pod",
                    "name": _pod_name(plan, start + offset),
                    "namespace": plan.namespace,
                },
                "nodeName": f"node-{(start + offset) % 50:02d}",
            }
            if hostname:
                endpoint["hostname"] = hostname
            endpoints.append(endpoint)
        result.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": _meta(
                    plan.namespace,
                    f"{plan.name}-{start // SLICE_CAPACITY:05d}",
                    labels={
                        "kubernetes.io/service-name": plan.name,
                        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                    },
                ),
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports,
            }
        )
    return result


def _pod_name(plan: ServiceShape, k: int) -> str:
    return f"{plan.name}-{k}" if plan.hostnames else f"{plan.name}-{k:04d}"


def _pod(plan: ServiceShape, k: int, ip: str) -> RawObject:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(plan.namespace, _pod_name(plan, k), labels={"app": plan.name}),
        "spec": {"hostname": _pod_name(plan, k)} if plan.hostnames else {},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--endpoints", type=int, help="total endpoints (default 3 per service)")
    parser.add_argument("--pods", action="store_true", help="also emit one Pod per endpoint")
    parser.add_argument("-o", "--output", type=Path, help="file to write (default stdout)")
    args = parser.parse_args(argv)
    objects = generate(
        services=args.services,
        namespaces=args.namespaces,
        endpoints=args.endpoints,
        pods=args.pods,
    )
    if args.output is None:
        json.dump(as_list(objects), sys.stdout)
        sys.stdout.write("\n")
    else:
        write_snapshot(args.output, objects)
    return 0


if __name__ == "__main__":
    sys.exit(main())
