"""Rendering the chart with the real helm binary, for the chart tests.

helm is the binary .ci/chart-check fetches (there is no Debian package), else one on PATH;
tests that need it are skipped when neither exists, with the command that fetches it.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubedns"
NAMESPACE = "kube-system"
RELEASE = "kubedns"


def find_helm() -> Path | None:
    """The helm that .ci/chart-check fetches (its cache path follows the wheel's version),
    else one on PATH."""
    match = re.search(r'^HELM_WHEEL="[^=]+==([^"]+)"', (ROOT / ".ci/chart-check").read_text(), re.M)
    if match:
        cached = ROOT / ".ci/.cache" / f"helm-{match[1]}" / "helm"
        if os.access(cached, os.X_OK):
            return cached
    found = shutil.which("helm")
    return Path(found) if found else None


HELM = find_helm()
needs_helm = pytest.mark.skipif(HELM is None, reason="no helm: run .ci/chart-check to fetch it")

Doc = dict[str, Any]


def helm(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``helm template`` of the chart as release kubedns in kube-system, plus ``args``."""
    assert HELM is not None
    return subprocess.run(
        [str(HELM), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


def render(*args: str, env: Mapping[str, str] | None = None) -> list[Doc]:
    result = helm(*args, env=env)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def render_error(*args: str) -> str:
    result = helm(*args)
    assert result.returncode != 0, "helm rendered values it must refuse"
    return result.stderr


def one(docs: list[Doc], kind: str, name: str | None = None, component: str = "webhook") -> Doc:
    (doc,) = [
        d
        for d in docs
        if d["kind"] == kind
        and (name is None or d["metadata"]["name"] == name)
        and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
    ]
    return doc


def kinds(docs: list[Doc]) -> list[str]:
    return sorted(d["kind"] for d in docs)


@dataclass(frozen=True)
class Rendered:
    """What the API server and the webhook's pod get from one render."""

    ca_bundle: bytes
    """PEM, decoded from the MutatingWebhookConfiguration."""
    service_name: str
    """The name the API server checks in the certificate: <service>.<namespace>.svc."""
    secret: Doc
    deployment: Doc
    configmap: Doc

    def data(self, key: str) -> bytes:
        return base64.b64decode(self.secret["data"][key])

    @property
    def container(self) -> Doc:
        (container,) = self.deployment["spec"]["template"]["spec"]["containers"]
        return dict(container)


def rendered(docs: list[Doc]) -> Rendered:
    (mwc,) = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
    (hook,) = mwc["webhooks"]
    service = hook["clientConfig"]["service"]
    deployment = one(docs, "Deployment")
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    (secret_name,) = [v["secret"]["secretName"] for v in volumes if "secret" in v]
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    return Rendered(
        ca_bundle=base64.b64decode(hook["clientConfig"]["caBundle"]),
        service_name=f"{service['name']}.{service['namespace']}.svc",
        secret=one(docs, "Secret", secret_name),
        deployment=deployment,
        configmap=configmap,
    )
