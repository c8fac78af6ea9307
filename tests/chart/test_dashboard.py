"""The chart's Grafana dashboard: rendered into a ConfigMap the Grafana sidecar picks up, every
panel's query is PromQL promtool accepts once Grafana's variables are filled in."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from tests.chart import tools
from tests.chart.monitoring import (
    MONITORING,
    binary,
    dashboard,
    helm_error,
    panel_queries,
    panels,
    render,
)


def configmap(*values: str) -> dict[str, object]:
    (found,) = [
        d for d in render(*values) if d["kind"] == "ConfigMap" and "kubedns.json" in d["data"]
    ]
    return found


def test_opt_in() -> None:
    assert not [d for d in render() if d["kind"] == "ConfigMap" and "kubedns.json" in d["data"]]


def test_the_configmap_carries_the_chart_file_and_the_sidecar_label() -> None:
    found = configmap("dashboard.enabled=true")
    metadata = found["metadata"]
    assert isinstance(metadata, dict)
    assert metadata["labels"]["grafana_dashboard"] == "1"
    assert metadata["namespace"] == "kube-system"
    data = found["data"]
    assert isinstance(data, dict)
    file = json.loads((tools.CHART / "dashboards" / "kubedns.json").read_text())
    assert json.loads(data["kubedns.json"]) == file


def test_label_and_namespace_follow_the_sidecar_settings() -> None:
    found = configmap(
        "dashboard.enabled=true",
        "dashboard.label=dashboards",
        "dashboard.labelValue=kubedns",
        "dashboard.namespace=monitoring",
        "dashboard.annotations.grafana_folder=DNS",
    )
    metadata = found["metadata"]
    assert isinstance(metadata, dict)
    assert metadata["labels"]["dashboards"] == "kubedns"
    assert "grafana_dashboard" not in metadata["labels"]
    assert metadata["namespace"] == "monitoring"
    assert metadata["annotations"] == {"grafana_folder": "DNS"}


def test_a_label_kubernetes_refuses_is_refused_by_name() -> None:
    assert "/dashboard/label" in helm_error("dashboard.enabled=true", "dashboard.label=a b")


def test_panels_are_laid_out_and_use_the_datasource_variable() -> None:
    board = dashboard(render(*MONITORING))
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    for panel in panels(board):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    names = [v["name"] for v in board["templating"]["list"]]
    assert names[0] == "datasource"
    assert {"job", "instance"} <= set(names)


def test_every_query_is_promql_promtool_accepts(tmp_path: Path) -> None:
    """As recording rules, so promtool parses each query; the live test checks they return
    data from a real kubedns."""
    promtool = binary("promtool", hint="apt-get install prometheus")
    queries = panel_queries(dashboard(render(*MONITORING)))
    rules = [{"record": f"dashboard:query_{i}", "expr": q} for i, (_, q) in enumerate(queries)]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(queries) >= 30
