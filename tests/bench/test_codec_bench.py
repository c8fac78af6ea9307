"""bench/codec.py runs and renders its section (no timing asserted)."""

from __future__ import annotations

from bench import codec


def test_codec_bench_measures_every_row_and_renders() -> None:
    results = codec.measure(number=20)
    assert set(results["rows"]) >= {"parse a query", "zone hit, query bytes to reply bytes"}
    assert all(row["kubedns_us"] > 0 for row in results["rows"].values())
    section = codec.render(results)
    assert section.startswith("## The codec against dnslib")
    assert section.count("\n|") == len(results["rows"]) + 2
