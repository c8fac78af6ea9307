"""The snapshot benchmark on a tiny cluster: it starts the real server on both dumps and its
figures and Markdown are sane. No timing is asserted (``python -m bench.snapshot`` measures)."""

from __future__ import annotations

from pathlib import Path

import yaml

from bench import common
from bench import snapshot as bench_snapshot


def test_dumps_are_what_kubectl_prints(tmp_path: Path) -> None:
    paths = bench_snapshot.write_dumps(bench_snapshot.Cluster.of(20), tmp_path)
    text = paths["yaml"].read_text()
    assert text.startswith("apiVersion: v1\nitems:\n- apiVersion: v1\n")
    assert text.endswith("kind: List\nmetadata:\n  resourceVersion: ''\n")  # kind after items
    assert yaml.safe_load(text)["items"][-1]["kind"] == "EndpointSlice"
    assert paths["json"].read_text().startswith('{"apiVersion":"v1","kind":"List"')


def test_snapshot_benchmark_runs_on_a_tiny_cluster(tmp_path: Path) -> None:
    results = bench_snapshot.run([20], variants={"after": common.REPO}, repeats=1, workdir=tmp_path)
    assert results["dumps"]["20"]["services"] == 22
    for fmt in bench_snapshot.FORMATS:
        figures = results["variants"]["after"]["20"][fmt]
        assert figures["serving_s"] > 0
        assert figures["cpu_s"] > 0
        assert 10 < figures["rss_mb"] <= figures["peak_rss_mb"]
    merged = bench_snapshot.merge({"variants": {"before": {"20": {"yaml": figures}}}}, results)
    assert set(merged["variants"]) == {"before", "after"}
    section = bench_snapshot.render(merged)
    assert "| 22 Services, YAML |" in section
    assert "before: time (CPU), peak RSS, RSS | after: time (CPU), peak RSS, RSS" in section
