"""A fake API server that is just enough for ``helm template --dry-run=server``.

Helm's ``lookup`` only runs against a cluster. Pointed at this server (HTTP on 127.0.0.1, an
ephemeral port), helm discovers the kinds the chart renders, reads objects by name (``lookup``
and its check for objects that already exist) and finds the ones ``put`` stored, so a test can
replay ``helm upgrade``'s view of a cluster offline. Reads only: helm template writes nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# groupVersion -> (resource, kind, namespaced): every kind the chart renders without CRDs.
RESOURCES: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [
        ("configmaps", "ConfigMap", True),
        ("secrets", "Secret", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("services", "Service", True),
    ],
    "apps/v1": [("deployments", "Deployment", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "rbac.authorization.k8s.io/v1": [
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
    ],
    "admissionregistration.k8s.io/v1": [
        ("mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False)
    ],
}
NOT_FOUND = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound"}


def object_path(obj: Mapping[str, Any]) -> str:
    """The URL path the API server serves one object at."""
    group_version = obj["apiVersion"]
    resource, namespaced = next((r, n) for r, k, n in RESOURCES[group_version] if k == obj["kind"])
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    metadata = obj["metadata"]
    if namespaced:
        prefix += f"/namespaces/{metadata['namespace']}"
    return f"{prefix}/{resource}/{metadata['name']}"


class HelmCluster:
    """Start with ``start()``, stop with ``stop()``; ``put`` stores an object as installed."""

    def __init__(self) -> None:
        self._objects: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="helm-cluster", daemon=True
        )

    def start(self) -> HelmCluster:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def put(self, obj: Mapping[str, Any], *, release: str, namespace: str) -> None:
        """Store ``obj`` as ``helm install`` leaves it: with the release's ownership marks,
        without which helm would refuse to take the object over."""
        stored = json.loads(json.dumps(obj))
        annotations = stored["metadata"].setdefault("annotations", {})
        annotations["meta.helm.sh/release-name"] = release
        annotations["meta.helm.sh/release-namespace"] = namespace
        with self._lock:
            self._objects[object_path(stored)] = stored

    def write_kubeconfig(self, path: Path) -> Path:
        host, port = self._server.server_address[:2]
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://{host!s}:{port}"}}],
            "users": [{"name": "helm", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "helm"}}],
            "current-context": "fake",
        }
        path.write_text(json.dumps(config), encoding="utf-8")
        return path

    def answer(self, path: str) -> tuple[int, Mapping[str, Any]]:
        if path == "/version":
            return 200, {"major": "1", "minor": "35", "gitVersion": "v1.35.0"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/apis":
            groups = [
                {
                    "name": gv.split("/")[0],
                    "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                    "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]},
                }
                for gv in RESOURCES
                if gv != "v1"
            ]
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        group_version = "v1" if path == "/api/v1" else path.removeprefix("/apis/")
        if group_version in RESOURCES:
            resources = [
                {"name": r, "singularName": "", "namespaced": n, "kind": k, "verbs": ["get"]}
                for r, k, n in RESOURCES[group_version]
            ]
            return 200, {
                "kind": "APIResourceList",
                "groupVersion": group_version,
                "resources": resources,
            }
        with self._lock:
            stored = self._objects.get(path)
        return (200, stored) if stored is not None else (404, {**NOT_FOUND, "code": 404})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = cluster.answer(self.path.partition("?")[0])
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: pytest shows failures, not every request

        return Handler
