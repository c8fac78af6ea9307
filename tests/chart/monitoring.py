"""What the monitoring tests read out of the chart rendered by the real helm (tests/chart/tools):
the PrometheusRule's groups and alerts, the dashboard and the PromQL of its panels."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart import tools

MONITORING = (
    "prometheusRule.enabled=true",
    "dashboard.enabled=true",
    "webhook.enabled=true",
)
"""Values that render every monitoring object, the webhook's alerts included."""

GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
"""Values of Grafana's own variables when a panel's query is evaluated outside Grafana."""

_COMPARISON = re.compile(r"\s*(?:==|!=|>=|<=|>|<)\s*-?[0-9][0-9.eE+-]*")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")

Object = dict[str, Any]


def binary(name: str, *, hint: str) -> str:
    found = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if found is None:
        pytest.skip(f"{name} is not installed ({hint})")
    return found


def _args(values: tuple[str, ...], numbers: dict[str, float] | None) -> list[str]:
    """``--set`` for each of ``values``, ``--set-json`` for ``numbers`` (``--set`` keeps 2.5 a
    string, which the schema refuses)."""
    args = [arg for value in values for arg in ("--set", value)]
    for key, number in (numbers or {}).items():
        args += ["--set-json", f"{key}={json.dumps(number)}"]
    return args


def render(*values: str, numbers: dict[str, float] | None = None) -> list[Object]:
    """The chart's objects as ``helm template`` renders them with these values."""
    return tools.render(*_args(values, numbers))


def helm_error(*values: str, numbers: dict[str, float] | None = None) -> str:
    """The message helm refuses these values with (the test fails if it renders them)."""
    return tools.refused(*_args(values, numbers))


def only(docs: list[Object], kind: str) -> Object:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def rule_groups(docs: list[Object]) -> list[Object]:
    groups: list[Object] = only(docs, "PrometheusRule")["spec"]["groups"]
    return groups


def write_rule_file(groups: list[Object], path: Path) -> Path:
    """The groups as a Prometheus rule file, what prometheus-operator hands Prometheus."""
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def alerts(groups: list[Object]) -> list[Object]:
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def without_threshold(expr: str) -> str:
    """The expression an alert compares with its threshold, so it returns data whenever the
    metrics exist: comparisons with a number are dropped, and ``absent(X)`` becomes ``X``.

    The rule files keep every threshold a comparison with a literal number (so this stays a
    text edit, not a PromQL parser).
    """
    stripped = _COMPARISON.sub("", expr).strip()
    absent = re.fullmatch(r"absent\((.*)\)", stripped, re.S)
    return absent.group(1).strip() if absent else stripped


def dashboard(docs: list[Object]) -> Object:
    configmaps = [d for d in docs if d["kind"] == "ConfigMap" and "kubedns.json" in d["data"]]
    (configmap,) = configmaps
    board: Object = json.loads(configmap["data"]["kubedns.json"])
    return board


def panels(board: Object) -> list[Object]:
    """Every panel with queries, those inside collapsed rows included."""
    found = []
    for panel in board["panels"]:
        found += [panel, *panel.get("panels", [])]
    return [p for p in found if p.get("targets")]


def variables(board: Object) -> dict[str, str]:
    """Each template variable's default value as Grafana puts it in a query ("All" is the
    variable's allValue), plus Grafana's built-in interval variables."""
    values = dict(GRAFANA_BUILTINS)
    for variable in board["templating"]["list"]:
        current = variable.get("current", {}).get("value")
        if current in ("$__all", ["$__all"]):
            values[variable["name"]] = variable["allValue"]
        elif isinstance(current, list):
            values[variable["name"]] = "|".join(current)
        elif current:
            values[variable["name"]] = current
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise AssertionError(f"{expr}: ${name} is not a dashboard variable")
        return values[name]

    return _VARIABLE.sub(value, expr)


def panel_queries(board: Object) -> list[tuple[str, str]]:
    """(panel title and legend, PromQL with the variables' default values) for every target."""
    values = variables(board)
    return [
        (f"{panel['title']}: {target.get('legendFormat', '')}", substitute(target["expr"], values))
        for panel in panels(board)
        for target in panel["targets"]
    ]
