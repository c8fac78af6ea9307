"""Smoke test of the metrics on/off benchmark: a tiny cluster, one short dnsperf round;
structure is asserted, never speed (figures belong to ``python -m bench.metrics_cost``)."""

from __future__ import annotations

import pytest

from bench import common, metrics_cost


def test_metrics_cost_smoke_run() -> None:
    for name in ("dnsperf", "dnsmasq"):
        if common.find(name) is None:
            pytest.skip(f"{name} is not installed (CI installs it: apt-get install {name})")
    result = metrics_cost.run(
        seconds=1, repeats=1, loads=(common.LOADED,), rounds=1, services=20, namespaces=4
    )
    micro = result["in_process"]
    assert micro["queries"] > 0 and micro["profiles"] > 0
    assert micro["ns_per_query_on"] > 0 and micro["ns_per_query_off"] > 0
    loaded = result["dnsperf"]["results"]["loaded"]
    assert set(loaded) == {"kubedns", "kubedns-metrics-off"}
    assert all(run["lost"] == 0 and run["qps"] > 0 for run in loaded.values())
    assert set(result["dnsperf"]["ratios"]) == {"loaded"}
    section = metrics_cost.render(result)
    assert section.startswith("## Request metrics: on against off")
    assert "| loaded | kubedns-metrics-off |" in section
