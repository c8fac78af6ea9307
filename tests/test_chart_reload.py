"""The chart and config reload: a config change reloads in place and rolls no pods, unless it
touches what kubedns applies only at start, or ``rollOnConfigChange`` asks for the old way.

Rendered by the real ``helm`` (``.ci/chart-check`` fetches it into ``.ci/.cache``); a change of
the Deployment's pod template is what makes Kubernetes roll the pods.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubedns.reload import RESTART_KEYS

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "kubedns"

CHART_OWNED = {"listen", "ops.listen", "snapshot", "kubeconfig"}
"""Restart-only keys the chart sets itself (the values schema refuses them)."""
RESTART_VALUES = {
    "cluster_domain": "config.cluster_domain=example.local",
    "dns_service": "config.dns_service=dns/kubedns",
    "udp.batch": "config.udp.batch=false",
    "watch": "config.watch.page_size=100",
}
"""A value change for each other restart-only key."""
RELOADED_VALUES = [
    "config.ttl.records=30",
    "config.forward.upstreams[0]=10.0.0.2:53",
    "config.logging.level=debug",
    "config.cache.size=100",
    "config.pods=disabled",
]
"""Changes kubedns applies in place. (``config.ops.lame_duck`` does too, but the chart derives
the pods' termination grace period from it, so changing it rolls them anyway.)"""


def _helm() -> str:
    cached = sorted((ROOT / ".ci" / ".cache").glob("helm-*/helm"))
    found = str(cached[-1]) if cached else shutil.which("helm")
    if found is None:
        pytest.skip("helm is not installed (.ci/chart-check fetches it into .ci/.cache)")
    return found


def render(*values: str) -> dict[str, Any]:
    """The DNS Deployment and the ConfigMap's config.yaml, as rendered with ``values``."""
    args = [item for value in values for item in ("--set", value)]
    done = subprocess.run(
        [_helm(), "template", "kubedns", str(CHART), "--namespace", "kube-system", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    objects = [o for o in yaml.safe_load_all(done.stdout) if o]
    (deployment,) = [
        o
        for o in objects
        if o["kind"] == "Deployment"
        and o["metadata"]["labels"].get("app.kubernetes.io/component") == "dns"
    ]
    (configmap,) = [o for o in objects if o["kind"] == "ConfigMap"]
    return {"pods": deployment["spec"]["template"], "config": configmap["data"]["config.yaml"]}


@pytest.fixture(scope="module")
def default() -> dict[str, Any]:
    return render()


def test_every_restart_key_is_covered() -> None:
    assert set(RESTART_KEYS) == CHART_OWNED | set(RESTART_VALUES)


@pytest.mark.parametrize("value", RELOADED_VALUES)
def test_a_reloadable_change_rolls_no_pod(default: dict[str, Any], value: str) -> None:
    changed = render(value)
    assert changed["config"] != default["config"]
    assert changed["pods"] == default["pods"]


@pytest.mark.parametrize("value", [*RESTART_VALUES.values(), "config.pods=verified"])
def test_a_change_only_a_start_applies_rolls_the_pods(default: dict[str, Any], value: str) -> None:
    assert render(value)["pods"] != default["pods"]


def test_roll_on_config_change_rolls_for_any_change() -> None:
    rolling = render("rollOnConfigChange=true")
    assert render("rollOnConfigChange=true", RELOADED_VALUES[0])["pods"] != rolling["pods"]


def test_roll_on_config_change_must_be_a_boolean() -> None:
    done = subprocess.run(
        [_helm(), "template", "kubedns", str(CHART), "--set-string", "rollOnConfigChange=yes"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "rollOnConfigChange" in done.stderr
