"""The benchmark's own parts: the cluster generator, the zone export, and a one-second smoke run.

No timing is asserted: figures belong in BENCHMARKS.md (``make bench``), not in a test.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from bench import common, forward, gen_cluster, zone
from kubedns.records import AAAA, SRV, A


def _tool(name: str) -> str:
    found = common.find(name)
    if found is None:
        pytest.skip(f"{name} is not installed (CI installs it: apt-get install {name})")
    return found


def test_generator_is_deterministic_and_shaped_as_asked() -> None:
    first = gen_cluster.generate(services=40, namespaces=8, endpoints=200)
    assert first == gen_cluster.generate(services=40, namespaces=8, endpoints=200)
    kinds = Counter(obj["kind"] for obj in first)
    assert kinds["Namespace"] == 8 + 2  # plus default and kube-system
    assert kinds["Service"] == 40 + 2  # plus kubernetes and kube-dns
    slices = [obj for obj in first if obj["kind"] == "EndpointSlice"]
    assert sum(len(s["endpoints"]) for s in slices) == 200
    assert all(len(s["endpoints"]) <= gen_cluster.SLICE_CAPACITY for s in slices)
    headless = [o for o in first if o["kind"] == "Service" and o["spec"]["clusterIP"] == "None"]
    assert len(headless) == 10
    conditions = [e["conditions"] for s in slices for e in s["endpoints"]]
    assert any(not c["ready"] for c in conditions) and any(c["ready"] for c in conditions)
    assert any(c["terminating"] for c in conditions)
    assert gen_cluster.generate(services=3, namespaces=1, pods=True)[-1]["kind"] == "Pod"


def test_generated_snapshot_loads_into_kubedns(tmp_path: Path) -> None:
    snapshot = gen_cluster.write_snapshot(
        tmp_path / "cluster.json", gen_cluster.generate(services=40, namespaces=8)
    )
    index = zone.load_index(snapshot)
    plans = gen_cluster.shapes(services=40, namespaces=8, endpoints=120)
    for plan in plans:
        rrsets = index.records(f"{plan.name}.{plan.namespace}.svc.cluster.local")
        if plan.headless and not plan.published:
            assert rrsets is None
            continue
        assert rrsets is not None
        expected = plan.cluster_ips or tuple(ip for ip, _ in plan.published)
        assert sorted(rrsets.get(A, ()) + rrsets.get(AAAA, ())) == sorted(set(expected))
        assert SRV in rrsets
    peer = next(p for p in plans if p.hostnames and p.published)
    ip, host = peer.published[0]
    assert index.records(f"{host}.{peer.name}.{peer.namespace}.svc.cluster.local") == {A: (ip,)}


def test_query_mix_is_mostly_negative_and_repeatable() -> None:
    plans = gen_cluster.shapes(services=40, namespaces=8, endpoints=120)
    queries = zone.query_mix(plans, lookups=500)
    assert queries == zone.query_mix(plans, lookups=500)
    expansions = [q for q in queries if ".example.com." in q[0] or q[0].count(".ns-") > 1]
    assert len(expansions) > len(queries) / 2


def test_exported_zones_pass_the_peers_own_checkers(tmp_path: Path) -> None:
    snapshot = gen_cluster.write_snapshot(
        tmp_path / "cluster.json", gen_cluster.generate(services=40, namespaces=8)
    )
    by_zone = zone.records(zone.load_index(snapshot))
    assert set(by_zone) == {"cluster.local", "10.in-addr.arpa", "d.f.ip6.arpa"}
    assert by_zone["cluster.local"][0].startswith("cluster.local. 5 IN SOA ns.dns.cluster.local.")
    checkzone = _tool("nsd-checkzone")
    for name, path in zone.nsd_zone_files(by_zone, tmp_path).items():
        argv = [checkzone, name, str(path)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    checkconf = common.find("unbound-checkconf")
    if checkconf is not None:
        conf = zone.unbound_conf(tmp_path, port=53535, by_zone=by_zone)
        done = subprocess.run([checkconf, str(conf)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_zone_smoke_run_serves_the_same_answers(tmp_path: Path) -> None:
    for tool in ("dnsperf", "nsd", "unbound", "dnsmasq"):
        _tool(tool)
    result = zone.run(
        services=20, namespaces=4, seconds=1, repeats=1, loads=(common.LOADED,), workdir=tmp_path
    )
    assert result["cross_check"]["differences"] == {}, result["cross_check"]["examples"]
    loaded = result["results"]["loaded"]
    assert set(loaded) == {"kubedns", "nsd", "unbound"}
    for server in loaded.values():
        assert server["completed"] > 0
        assert server["memory_mib"]["rss"] > 0
    assert "| loaded | kubedns |" in common.table(result["results"])


def test_forward_smoke_run_matches_dnsmasq(tmp_path: Path) -> None:
    for tool in ("dnsperf", "dnsmasq"):
        _tool(tool)
    result = forward.run(seconds=1, repeats=1, loads=(common.SINGLE,), workdir=tmp_path)
    assert result["cross_check"]["differences"] == 0, result["cross_check"]["examples"]
    for mix in ("cache-hit", "ndots5"):
        assert result["results"][mix]["single"]["kubedns"]["completed"] > 0
