"""Snapshot parsing: JSON takes the fast path, YAML (flow style included) still parses."""

from __future__ import annotations

import json

import pytest

from kubedns.objects import Service
from kubedns.sources.snapshot import SnapshotError, parse_snapshot

SERVICE = {
    "kind": "Service",
    "metadata": {"namespace": "shop", "name": "web"},
    "spec": {"clusterIP": "10.0.0.1", "ports": [{"name": "http", "port": 80}]},
}


def services(text: str) -> tuple[object, ...]:
    (replace,) = parse_snapshot(text, source="test", kinds=("Service",))
    return replace.objects


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"kind": "List", "items": [SERVICE]}),
        json.dumps(
            {"kind": "ServiceList", "items": [{k: v for k, v in SERVICE.items() if k != "kind"}]}
        ),
        "{kind: List, items: [{kind: Service, metadata: {namespace: shop, name: web}, "
        "spec: {clusterIP: 10.0.0.1, ports: [{name: http, port: 80}]}}]}",
        "---\n" + json.dumps(SERVICE) + "\n---\n",
    ],
    ids=["json-list", "json-typed-list", "yaml-flow", "yaml-documents"],
)
def test_every_form_gives_the_same_service(text: str) -> None:
    (service,) = services(text)
    assert isinstance(service, Service)
    assert (service.namespace, service.name, service.cluster_ips) == ("shop", "web", ("10.0.0.1",))


def test_broken_json_is_reported_as_unreadable() -> None:
    with pytest.raises(SnapshotError, match="neither YAML nor JSON"):
        services('{"kind": "List", "items": [')
