"""Raw API objects for tests, shaped as the API server sends them."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]


def namespace(name: str) -> JSON:
    return {"kind": "Namespace", "metadata": {"name": name}}


def service(namespace: str, name: str, cluster_ip: str = "10.0.0.1") -> JSON:
    return {
        "kind": "Service",
        "metadata": {"namespace": namespace, "name": name},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    }


def endpoint_slice(
    namespace: str, name: str, service_name: str, ips: list[str], *, trigger_time: str = ""
) -> JSON:
    metadata: JSON = {
        "namespace": namespace,
        "name": name,
        "labels": {"kubernetes.io/service-name": service_name},
    }
    if trigger_time:
        metadata["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": trigger_time}
    return {
        "kind": "EndpointSlice",
        "metadata": metadata,
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def pod(namespace: str, name: str, ip: str, phase: str = "Running") -> JSON:
    return {
        "kind": "Pod",
        "metadata": {"namespace": namespace, "name": name},
        "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def config_map(namespace: str, name: str, data: dict[str, str]) -> JSON:
    return {"kind": "ConfigMap", "metadata": {"namespace": namespace, "name": name}, "data": data}
