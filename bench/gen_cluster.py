"""Generate a large synthetic cluster as raw API objects.

The default shape is the one issue 3 asks about: 10,000 Services across 1,000 namespaces and
one EndpointSlice per Service, 50,000 endpoints in all, a quarter of the Services headless.
Objects look like what the API server sends (labels, annotations, conditions, ports), so
decoding cost is realistic. Output is a Kubernetes ``List`` in JSON, which
``kubedns.sources.snapshot`` and ``tests.fakeapi.FakeApiServer.load`` both read.

    python bench/gen_cluster.py --out /tmp/cluster.json
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

JSON = dict[str, Any]
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
POD_CIDR = ipaddress.ip_network("10.128.0.0/9")


def generate(
    *,
    namespaces: int = 1000,
    services: int = 10_000,
    endpoints: int = 50_000,
    headless_every: int = 4,
) -> Iterator[JSON]:
    """Namespaces, then Services, then EndpointSlices; every ``headless_every``-th Service
    is headless. Endpoints are spread evenly over the Services."""
    for n in range(namespaces):
        yield _namespace(f"ns-{n:04d}")
    per_service, extra = divmod(endpoints, services)
    pod_ips = (str(ip) for ip in POD_CIDR.hosts())
    for s in range(services):
        namespace = f"ns-{s % namespaces:04d}"
        name = f"svc-{s:05d}"
        headless = s % headless_every == 0
        cluster_ip = "None" if headless else str(SERVICE_CIDR[s + 10])
        yield _service(namespace, name, cluster_ip)
        count = per_service + (1 if s < extra else 0)
        ips = [next(pod_ips) for _ in range(count)]
        yield _endpoint_slice(namespace, f"{name}-abcde", name, ips, with_hostnames=headless)


def _metadata(namespace: str, name: str, **extra: Any) -> JSON:
    return {
        "name": name,
        "namespace": namespace,
        "uid": f"{namespace}-{name}",
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "labels": {"app": name, "app.kubernetes.io/part-of": "bench"},
        **extra,
    }


def _namespace(name: str) -> JSON:
    return {
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def _service(namespace: str, name: str, cluster_ip: str) -> JSON:
    return {
        "kind": "Service",
        "metadata": _metadata(namespace, name),
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "selector": {"app": name},
            "sessionAffinity": "None",
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9090},
            ],
        },
        "status": {"loadBalancer": {}},
    }


def _endpoint_slice(
    namespace: str, name: str, service: str, ips: list[str], *, with_hostnames: bool
) -> JSON:
    labels = {"kubernetes.io/service-name": service, "app": service}
    annotations = {"endpoints.kubernetes.io/last-change-trigger-time": "2026-01-01T00:00:00Z"}
    return {
        "kind": "EndpointSlice",
        "metadata": {
            **_metadata(namespace, name, annotations=annotations),
            "labels": {**labels, "endpointslice.kubernetes.io/managed-by": "bench"},
        },
        "addressType": "IPv4",
        "endpoints": [
            _endpoint(service, i, ip, with_hostname=with_hostnames) for i, ip in enumerate(ips)
        ],
        "ports": [
            {"name": "http", "port": 8080, "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "protocol": "TCP"},
        ],
    }


def _endpoint(service: str, index: int, ip: str, *, with_hostname: bool) -> JSON:
    endpoint: JSON = {
        "addresses": [ip],
        "conditions": {"ready": index % 10 != 9, "serving": True, "terminating": False},
        "nodeName": f"node-{index % 50:02d}",
        "targetRef": {"kind": "Pod", "name": f"{service}-{index}", "namespace": "x"},
        "zone": "zone-a",
    }
    if with_hostname:
        endpoint["hostname"] = f"{service}-{index}"
    return endpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON List")
    parser.add_argument("--namespaces", type=int, default=1000)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=50_000)
    args = parser.parse_args(argv)
    items = list(
        generate(namespaces=args.namespaces, services=args.services, endpoints=args.endpoints)
    )
    args.out.write_text(json.dumps({"kind": "List", "apiVersion": "v1", "items": items}))
    print(f"wrote {len(items)} objects to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
