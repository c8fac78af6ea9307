"""Builders shared by the webhook tests: raw API objects in, slim values out, and a JSONPatch
applier, so tests check the pod a patch produces rather than the patch's exact shape."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from kubedns.objects import ConfigMap, Service, from_raw

Port = tuple[str, int, str]
"""(name, port, protocol) of a Service port."""


def raw_service(
    namespace: str,
    name: str,
    cluster_ip: str,
    ports: Sequence[Port] = (("", 80, "TCP"),),
    *,
    service_type: str = "ClusterIP",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": service_type,
        "ports": [
            {**({"name": n} if n else {}), "port": p, **({"protocol": pr} if pr else {})}
            for n, p, pr in ports
        ],
    }
    if service_type == "ExternalName":
        spec["externalName"] = "db.example.com"
    else:
        spec["clusterIP"] = cluster_ip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": namespace, "name": name},
        "spec": spec,
    }


def service(
    namespace: str,
    name: str,
    cluster_ip: str,
    ports: Sequence[Port] = (("", 80, "TCP"),),
    *,
    service_type: str = "ClusterIP",
) -> Service:
    slim = from_raw(
        "Service", raw_service(namespace, name, cluster_ip, ports, service_type=service_type)
    )
    assert isinstance(slim, Service)
    return slim


def raw_configmap(namespace: str, name: str, keys: Sequence[str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"namespace": namespace, "name": name},
        "data": {key: "x" for key in keys},
    }


def configmap(namespace: str, name: str, keys: Sequence[str]) -> ConfigMap:
    slim = from_raw("ConfigMap", raw_configmap(namespace, name, keys))
    assert isinstance(slim, ConfigMap)
    return slim


def apply_patch(document: Any, ops: Sequence[dict[str, Any]]) -> Any:
    """A small RFC 6902 applier (add, replace, remove), enough to check the webhook's output."""
    result = copy.deepcopy(document)
    for op in ops:
        *parents, last = [_unescape(t) for t in op["path"].split("/")[1:]]
        target = result
        for token in parents:
            target = target[int(token)] if isinstance(target, list) else target[token]
        if op["op"] in ("add", "replace"):
            value = copy.deepcopy(op["value"])
            if isinstance(target, list):
                index = len(target) if last == "-" else int(last)
                if op["op"] == "add":
                    target.insert(index, value)
                else:
                    target[index] = value
            else:
                if op["op"] == "replace" and last not in target:
                    raise KeyError(op["path"])
                target[last] = value
        elif op["op"] == "remove":
            del target[int(last) if isinstance(target, list) else last]
        else:
            raise ValueError(f"unsupported op {op['op']}")
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def env(pairs: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in pairs]
