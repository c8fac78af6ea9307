"""Smoke tests of the attack and amplification benchmarks, and of the targets' verdicts.

Tiny inputs, a second or two each; structure is asserted, never speed.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, DNSRecord

from bench import amplification, attack, common, run


def _tools(*names: str) -> None:
    for name in names:
        if common.find(name) is None:
            pytest.skip(f"{name} is not installed (CI installs it: apt-get install {name})")


def test_busting_queries_are_all_different_but_ask_the_same_two_questions() -> None:
    rng = random.Random(7)
    packets = [attack.busting_query(n, rng) for n in range(200)]
    assert len(set(packets)) == len(packets)
    shapes = set()
    for n, packet in enumerate(packets):
        parsed = DNSRecord.parse(packet)
        name = str(parsed.q.qname).rstrip(".")
        expected = (attack.BIG_SRV, "SRV") if n % 2 == 0 else (attack.BIG_NAME, "A")
        assert (name.lower(), QTYPE[parsed.q.qtype]) == expected
        (opt,) = parsed.ar
        assert 512 <= opt.rclass <= 65535
        assert len(opt.rdata) == 1
        shapes.add((name, opt.rclass))
    assert len(shapes) > 150  # letter case and payload size vary, not just the ID


def test_plain_queries_are_what_a_stub_sends() -> None:
    plain = attack.query_wire(1, "cluster.local", "SOA")
    assert len(plain) == 12 + 15 + 4
    edns = DNSRecord.parse(attack.query_wire(1, "cluster.local", "ANY", payload=4096, do=True))
    (opt,) = edns.ar
    assert (opt.rclass, opt.ttl) == (4096, 0x8000)


def test_big_service_has_every_endpoint_ready_in_full_slices() -> None:
    objects = attack.big_service(250)
    slices = [o for o in objects if o["kind"] == "EndpointSlice"]
    assert [len(s["endpoints"]) for s in slices] == [100, 100, 50]
    assert all(e["conditions"]["ready"] for s in slices for e in s["endpoints"])
    assert {p["name"] for p in slices[0]["ports"]} == {"http", "grpc"}


def test_attack_smoke_run(tmp_path: Path) -> None:
    _tools("nsd", "dnsmasq")
    result = attack.run(
        services=20, namespaces=4, endpoints=300, seconds=1, rate=200, attack_rate=20,
        timeout=0.5, repeats=1, workdir=tmp_path,
    )  # fmt: skip
    assert set(result["results"]) == {"kubedns", "nsd"}
    for server in result["results"].values():
        assert set(server) == {"quiet", "attack"}
        assert server["quiet"]["attack"]["sent"] == 0
        hit = server["attack"]
        assert hit["ordinary"]["sent"] == 200 and hit["ordinary"]["answered"] > 0
        assert hit["attack"]["sent"] == 20 and hit["attack"]["answered"] > 0
        assert hit["ordinary"]["p50_ms"] <= hit["ordinary"]["p99_ms"] <= hit["ordinary"]["max_ms"]
    assert "| kubedns | yes |" in attack.table(result)


def test_amplification_smoke_run(tmp_path: Path) -> None:
    _tools("nsd", "dnsmasq")
    result = amplification.run(services=20, namespaces=4, endpoints=300, workdir=tmp_path)
    kubedns = result["summary"]["kubedns"]
    assert kubedns["queries"] == result["questions"] * len(amplification.shapes())
    assert kubedns["answered"] == kubedns["queries"]
    assert kubedns["max_reply_bytes"] > 512  # the big answers are asked for, and truncated
    assert result["summary"]["nsd"]["answered"] > 0
    assert "`m.io A`" in amplification.table(result["rows"]["kubedns"])


def _server(qps: float, per_cpu: float, lost: int = 0) -> dict[str, Any]:
    return {"qps": qps, "qps_per_cpu": per_cpu, "lost": lost}


def test_targets_say_met_or_not_from_the_figures() -> None:
    zone_result = {
        "results": {"loaded": {"kubedns": _server(95, 95), "nsd": _server(100, 100)}},
        "results_a": {"loaded": {"kubedns": _server(80, 95), "nsd": _server(100, 100)}},
    }
    forward_result = {
        "results": {"cache-hit": {"loaded": {"kubedns": _server(90, 90, lost=3),
                                             "dnsmasq": _server(100, 100)}}}
    }  # fmt: skip
    text = run.targets(zone_result, forward_result, None, None)
    rows = text.splitlines()[2:]
    assert rows[0].endswith("| met |")
    assert rows[1].endswith("| **not met** |")  # qps 0.80x < 0.9
    assert "not measured" in rows[2]  # no TCP run
    assert "3 lost" in rows[3] and rows[3].endswith("| **not met** |")
