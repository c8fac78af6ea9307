"""The chart's PrometheusRule, rendered by helm: promtool accepts its groups, and promtool's unit
tests (rules_test.yaml) show each alert firing on broken input and quiet on healthy input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.chart.monitoring import (
    MONITORING,
    alerts,
    binary,
    helm_error,
    only,
    render,
    rule_groups,
    without_threshold,
    write_rule_file,
)

UNIT_TESTS = Path(__file__).with_name("rules_test.yaml")


@pytest.fixture
def promtool() -> str:
    return binary("promtool", hint="apt-get install prometheus")


def promtool_run(promtool: str, *args: str, cwd: Path) -> str:
    result = subprocess.run([promtool, *args], capture_output=True, text=True, check=False, cwd=cwd)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def test_promtool_accepts_the_rendered_rules(promtool: str, tmp_path: Path) -> None:
    groups = rule_groups(render(*MONITORING))
    out = promtool_run(
        promtool, "check", "rules", str(write_rule_file(groups, tmp_path / "r.yaml")), cwd=tmp_path
    )
    assert f"SUCCESS: {sum(len(g['rules']) for g in groups)} rules found" in out


def test_promtool_unit_tests_pass_on_the_rendered_rules(promtool: str, tmp_path: Path) -> None:
    write_rule_file(rule_groups(render(*MONITORING)), tmp_path / "rules.yaml")
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    out = promtool_run(promtool, "test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert "SUCCESS" in out


def test_every_alert_has_a_case_firing_and_one_quiet() -> None:
    names = {rule["alert"] for rule in alerts(rule_groups(render(*MONITORING)))}
    cases = [
        case
        for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"
    assert (firing | quiet) - names == set(), "unit tests of alerts the chart does not have"


def test_every_alert_says_how_bad_for_how_long_and_what_to_do() -> None:
    for rule in alerts(rule_groups(render(*MONITORING))):
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["for"].endswith("m"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_thresholds_and_selectors_come_from_values() -> None:
    docs = render(
        *MONITORING,
        'prometheusRule.selector=namespace="dns"\\,service="kubedns"',
        'prometheusRule.webhookSelector=job="hook"',
        "prometheusRule.namespace=monitoring",
        "prometheusRule.labels.release=prometheus",
        numbers={
            "prometheusRule.thresholds.latencyCriticalSeconds": 2.5,
            "prometheusRule.thresholds.errorRatioCritical": 0.07,
        },
    )
    rule = only(docs, "PrometheusRule")
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    exprs = {(r["alert"], r["labels"]["severity"]): r["expr"] for r in alerts(rule_groups(docs))}
    assert exprs[("KubeDNSLatencyHigh", "critical")].rstrip().endswith("> 2.5")
    assert exprs[("KubeDNSErrorsHigh", "critical")].rstrip().endswith("> 0.07")
    assert 'up{namespace="dns",service="kubedns"}' in exprs[("KubeDNSInstanceDown", "warning")]
    assert exprs[("KubeDNSWebhookDown", "warning")].strip() == 'up{job="hook"} == 0'


def test_default_selectors_are_the_jobs_of_the_services() -> None:
    docs = render(*MONITORING, "service.name=cluster-dns")
    exprs = {r["alert"]: r["expr"].strip() for r in alerts(rule_groups(docs))}
    assert exprs["KubeDNSInstanceDown"] == 'up{job="cluster-dns"} == 0'
    assert exprs["KubeDNSWebhookDown"] == 'up{job="kubedns-webhook"} == 0'


def test_webhook_alerts_only_with_the_webhook() -> None:
    groups = rule_groups(render("prometheusRule.enabled=true"))
    assert [g["name"] for g in groups] == ["kubedns", "kubedns_forward"]
    assert not [d for d in render() if d["kind"] == "PrometheusRule"], "opt-in"


def test_bad_values_are_refused_by_name() -> None:
    assert "/prometheusRule/thresholds/errorRatioWarning" in helm_error(
        "prometheusRule.enabled=true", numbers={"prometheusRule.thresholds.errorRatioWarning": 3}
    )
    assert "/prometheusRule/thresholds/latencyCriticalSeconds" in helm_error(
        "prometheusRule.enabled=true",
        numbers={"prometheusRule.thresholds.latencyCriticalSeconds": -1},
    )
    assert "/prometheusRule/selector" in helm_error('prometheusRule.selector={job="x"}')


@pytest.mark.parametrize(
    ("expr", "stripped"),
    [
        ('absent(up{job="a"} == 1)\n', 'up{job="a"}'),
        (
            'sum(rate(x{rcode="SERVFAIL",a!="1"}[5m]))\n  /\nsum(rate(x[5m])) > 0.03\n',
            'sum(rate(x{rcode="SERVFAIL",a!="1"}[5m]))\n  /\nsum(rate(x[5m]))',
        ),
        (
            "histogram_quantile(0.99,\n  sum by (le) (rate(h[5m]))\n) > 4",
            "histogram_quantile(0.99,\n  sum by (le) (rate(h[5m]))\n)",
        ),
        ("max(y) == 1", "max(y)"),
    ],
)
def test_without_threshold(expr: str, stripped: str) -> None:
    assert without_threshold(expr) == stripped
