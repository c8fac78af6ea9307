"""The chart's values.schema.json and ``kubedns check-config`` judge config values alike.

Each case goes through the real ``helm template`` (its schema check names the key at
``/config/...``) and the real ``kubedns check-config``; for every case the two verdicts agree.
helm is the binary .ci/chart-check fetches into .ci/.cache/ (or one on PATH); without either
these tests are skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubedns.config_schema import CHART_OWNED
from tests.chart.tools import CHART, KUBE_VERSION, helm
from tests.config_cases import BAD, CROSS_FIELD, GOOD, Bad


def helm_template(raw: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    values = tmp_path / "values.yaml"
    values.write_text(json.dumps({"config": raw}))  # JSON is YAML
    return subprocess.run(
        [
            *(helm(), "template", "kubedns", str(CHART), "--namespace", "kube-system"),
            *("--kube-version", KUBE_VERSION, "-f", str(values)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check_config(raw: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "kubedns.yaml"
    path.write_text(json.dumps(raw))
    return subprocess.run(
        [sys.executable, "-m", "kubedns", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_helm_and_check_config_refuse_bad_values_naming_the_key(case: Bad, tmp_path: Path) -> None:
    rendered = helm_template(case.config, tmp_path)
    checked = check_config(case.config, tmp_path)
    assert (rendered.returncode != 0, checked.returncode != 0) == (True, True), (
        rendered.stderr,
        checked.stderr,
    )
    pointer = "/config" + (f"/{case.pointer}" if case.pointer else "")
    assert f"at '{pointer}'" in rendered.stderr, rendered.stderr
    assert checked.returncode == 2
    assert case.key in checked.stderr, checked.stderr


@pytest.mark.parametrize("raw", GOOD.values(), ids=GOOD.keys())
def test_helm_and_check_config_accept_good_values(raw: dict[str, Any], tmp_path: Path) -> None:
    rendered = helm_template(raw, tmp_path)
    checked = check_config(raw, tmp_path)
    assert (rendered.returncode, checked.returncode) == (0, 0), (rendered.stderr, checked.stderr)


@pytest.mark.parametrize("dotted", CHART_OWNED)
def test_keys_the_chart_sets_are_refused_by_helm_only(dotted: str, tmp_path: Path) -> None:
    """kubedns takes these keys; the chart sets them itself, so a value would be ignored."""
    *parents, last = dotted.split(".")
    value = {"listen": "0.0.0.0:53", "cluster_dns": ["10.96.0.10"]}.get(last, "/etc/some-file")
    raw: dict[str, Any] = {last: value}
    for name in reversed(parents):
        raw = {name: raw}
    rendered = helm_template(raw, tmp_path)
    assert rendered.returncode != 0
    assert f"at '/config/{dotted.replace('.', '/')}': 'not' failed" in rendered.stderr


@pytest.mark.parametrize(("raw", "key"), CROSS_FIELD.values(), ids=CROSS_FIELD.keys())
def test_checks_across_settings_are_check_configs_alone(
    raw: dict[str, Any], key: str, tmp_path: Path
) -> None:
    """The schema cannot relate two values; .ci/chart-check loads the rendered config for these."""
    assert helm_template(raw, tmp_path).returncode == 0
    checked = check_config(raw, tmp_path)
    assert checked.returncode == 2
    assert key in checked.stderr
