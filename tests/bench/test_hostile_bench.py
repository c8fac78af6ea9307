"""Smoke test of the hostile-clients memory benchmark: tiny sizes, structure asserted, never
figures (memory figures belong to ``python -m bench.hostile``, not to timed tests)."""

from __future__ import annotations

import struct
from pathlib import Path

import dnslib

from bench import hostile


def test_the_fake_upstreams_answer_is_big_and_parses() -> None:
    query = hostile.query_wire(7, "n1.cache-bust.example")
    answer = dnslib.DNSRecord.parse(hostile.big_answer(query))
    assert answer.header.id == 7 and len(answer.rr) == hostile.TXT_RECORDS
    assert 25_000 < len(hostile.big_answer(query)) < 27_000
    cut = hostile.truncated(query)
    assert struct.unpack_from("!H", cut, 2)[0] & 0x0200  # TC set over UDP
    assert str(dnslib.DNSRecord.parse(cut).q.qname) == "n1.cache-bust.example."


def test_hostile_smoke_run(tmp_path: Path) -> None:
    result = hostile.run(
        names=60, rate=100, seconds=0.5, services=20, containers=20, big_containers=100,
        workdir=tmp_path,
    )  # fmt: skip
    cache = result["cache"]
    assert cache["names"] == 60 and cache["rcodes"]["lost"] == 0
    assert cache["rcodes"]["NOERROR"] == 60 and cache["cache_entries"] > 0
    assert {"vmrss", "vmhwm"} <= set(cache["before"]) and cache["after"]["vmrss"] > 0
    flood = result["inflight"]
    assert flood["sent"] > 0 and flood["answered"] + flood["unanswered"] == flood["sent"]
    assert set(flood["rcodes"]) <= {"REFUSED", "SERVFAIL"}
    webhook = result["webhook"]
    assert webhook["alive_after"] and [p["containers"] for p in webhook["pods"]] == [20, 100]
    for pod in webhook["pods"]:
        assert pod["status"] == 200 and pod["allowed"] is True and pod["patch_bytes"] > 0
        assert pod["healthz_status"] == 200 and pod["memory_after"]["vmrss"] > 0
    text = hostile.render(result)
    assert text.startswith("## Hostile clients") and "| 100 |" in text
