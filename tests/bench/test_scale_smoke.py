"""The scale benchmark's machinery on a tiny cluster: it runs end to end and its numbers are
sane. No timing thresholds; ``make scale`` measures the real cluster."""

from __future__ import annotations

from bench.scale import Shape, build_query, parse_reply, run_scale


def test_query_and_reply_parsing_round_trip() -> None:
    query = build_query(0x1234, "svc-00001.ns-0001.svc.cluster.local")
    assert query[:2] == b"\x12\x34"
    # A reply: the query with QR set, one A answer pointing back at the question name.
    header = b"\x12\x34\x84\x00\x00\x01\x00\x01\x00\x00\x00\x00"
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\x0a\x60\x00\x0b"
    assert parse_reply(header + query[12:] + answer) == (0, frozenset({"10.96.0.11"}))


def test_scale_benchmark_runs_on_a_tiny_cluster() -> None:
    results = run_scale(
        Shape(namespaces=2, services=20, endpoints=100), rate=20, seconds=2, pin=False
    )
    assert results["ready_s"] > 0
    assert 10 < results["rss_after_sync_mb"] <= results["peak_rss_after_sync_mb"]
    assert results["changes_sent"] == 40
    assert results["changes_observed"] + results["changes_missed"] == 40
    assert results["changes_observed"] >= 36  # a loaded CI machine may drop a reply or two
    assert 0 < results["latency_p50_ms"] <= results["latency_p99_ms"] <= results["latency_max_ms"]
    kinds = {"ip", "ep-add", "ep-del", "create", "delete"}
    assert kinds <= {k.split("_")[1] for k in results if k.endswith("_p50_ms")}
    assert results["kubedns_kubernetes_event_delivery_seconds_count"] >= 36
