"""A real ``kubedns serve`` (its own process, so its registry holds nothing but what it counted)
with a real dnsmasq upstream, scraped on its real /metrics after zone answers, forwarded names
and cache hits:

* the cache and forward families carry CoreDNS's names and label sets (``plugin/cache/
  metrics.go``, ``plugin/pkg/proxy/metrics.go`` of CoreDNS 1.11+, and forward's own names
  from before 1.11 that the coredns-mixin still queries), with values that add up;
* every family the DNS server exports has a sample: nothing declared and never set.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from kubedns import metrics
from kubedns.config import HostPort
from tests.forward.conftest import dnsmasq  # noqa: F401 (a fixture)
from tests.forward.fakes import closed_port, free_port
from tests.test_ops import DEMO

DEADLINE = 30.0
"""Seconds before waiting for the server (or for a health probe to fail) counts as a hang."""

CACHE_FAMILIES = {
    "coredns_cache_entries": {"server", "type", "zones", "view"},
    "coredns_cache_requests": {"server", "zones", "view"},
    "coredns_cache_hits": {"server", "type", "zones", "view"},
    "coredns_cache_misses": {"server", "zones", "view"},
    "coredns_cache_evictions": {"server", "type", "zones", "view"},
    "coredns_cache_served_stale": {"server", "zones", "view"},
}
FORWARD_FAMILIES = {
    "coredns_proxy_request_duration_seconds": {"proxy_name", "to", "rcode"},
    "coredns_proxy_healthcheck_failures": {"proxy_name", "to"},
    "coredns_forward_requests": {"to"},
    "coredns_forward_responses": {"to", "rcode"},
    "coredns_forward_request_duration_seconds": {"to", "rcode"},
    "coredns_forward_healthcheck_failures": {"to"},
    "coredns_forward_healthcheck_broken": set(),
    "coredns_forward_max_concurrent_rejects": set(),
}
TIME_BOUNDS = [0.00025 * 2**i for i in range(16)]  # CoreDNS plugin.TimeBuckets

EMPTY_WITHOUT_A_WATCH = {
    "kubedns_kubernetes_watch_restarts",
    "kubedns_kubernetes_relists",
    "kubedns_kubernetes_api_errors",
    "kubedns_kubernetes_objects_skipped",
    "kubedns_kubernetes_event_delivery_seconds",
    "coredns_kubernetes_dns_programming_duration_seconds",
}
"""Families of the API watch: a server answering from a snapshot watches nothing. (The live
monitoring test, tests/chart/test_live_monitoring.py, runs kubedns against a fake API server
and needs them there.)"""


@dataclass(frozen=True)
class Served:
    dns: HostPort
    metrics_url: str
    down: HostPort
    """The stub domain down.test's only upstream, where nothing listens."""


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"kubedns exited early: {log.read_text()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"kubedns never got ready: {log.read_text()}")


@pytest.fixture
def served(tmp_path: Path, dnsmasq: HostPort) -> Iterator[Served]:  # noqa: F811
    listen, ops, down = (
        HostPort("127.0.0.1", free_port()),
        HostPort("127.0.0.1", free_port()),
        closed_port(),
    )
    config = {
        "snapshot": str(DEMO),
        "listen": str(listen),
        "ops": {"listen": str(ops)},
        "logging": {"level": "warning"},
        "forward": {"upstreams": [str(dnsmasq)], "stub_domains": {"down.test": [str(down)]}},
    }
    path = tmp_path / "kubedns.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tmp_path / "kubedns.log"
    argv = [sys.executable, "-m", "kubedns", "serve", "--config", str(path)]
    with log.open("wb") as stderr:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_ready(f"http://{ops}/ready", process, log)
        yield Served(listen, f"http://{ops}/metrics", down)
    finally:
        process.terminate()
        process.wait(timeout=10)


def ask(server: Served, name: str, rdtype: str, *, tcp: bool = False, do: bool = False) -> int:
    query = dns.message.make_query(name, rdtype, want_dnssec=do)
    address, port = server.dns.host, server.dns.port
    if tcp:
        return dns.query.tcp(query, address, port=port, timeout=5).rcode()
    return dns.query.udp(query, address, port=port, timeout=5).rcode()


def scrape(server: Served) -> dict[str, list[Sample]]:
    """Every family on /metrics, by name (counters without ``_total``, as the parser gives)."""
    with urllib.request.urlopen(server.metrics_url, timeout=5) as response:
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def total(samples: list[Sample], suffix: str = "", **labels: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name.endswith(suffix) and all(s.labels.get(k) == v for k, v in labels.items())
    )


def traffic(server: Served) -> None:
    """Zone answers (UDP, TCP, DO, NXDOMAIN), a forwarded name asked three times (a miss, a
    hit in the forwarder, a hit on the fast path), and a stub domain whose upstream is down."""
    assert ask(server, "web.shop.svc.cluster.local", "A") == dns.rcode.NOERROR
    assert ask(server, "web.shop.svc.cluster.local", "A", tcp=True) == dns.rcode.NOERROR
    assert ask(server, "db.shop.svc.cluster.local", "A", do=True) == dns.rcode.NOERROR
    assert ask(server, "missing.shop.svc.cluster.local", "A") == dns.rcode.NXDOMAIN
    for _ in range(3):
        assert ask(server, "www.example.com", "A") == dns.rcode.NOERROR
    for _ in range(3):  # max_fails (2) failures mark it down; the third finds the pool broken
        assert ask(server, "a.down.test", "A") == dns.rcode.SERVFAIL


def wait_for_failed_probe(server: Served) -> dict[str, list[Sample]]:
    """Scrape until the down upstream's health probe (every 0.5 s) has failed once."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        families = scrape(server)
        if total(families["coredns_proxy_healthcheck_failures"], "_total"):
            return families
        time.sleep(0.1)
    raise AssertionError("no health probe of the down upstream failed")


def test_cache_and_forward_families_carry_coredns_labels(served: Served) -> None:
    traffic(served)
    families = wait_for_failed_probe(served)
    server = f"dns://{served.dns}"  # the coredns_dns_* families' server label
    assert {s.labels["server"] for s in families["coredns_dns_requests"]} == {server}
    for name, labels in CACHE_FAMILIES.items():
        for sample in families[name]:
            assert set(sample.labels) == labels, (name, sample.labels)
            assert (sample.labels["server"], sample.labels["zones"]) == (server, ".")
            assert sample.labels["view"] == ""
    for name in ("coredns_cache_entries", "coredns_cache_hits", "coredns_cache_evictions"):
        assert {s.labels["type"] for s in families[name]} == {"success", "denial"}, name
    cache = {name: total(families[name], "_total") for name in CACHE_FAMILIES}
    assert cache["coredns_cache_hits"] == 2  # www.example.com, twice
    assert total(families["coredns_cache_hits"], type="success") == 2
    # Misses: www.example.com once, a.down.test three times (SERVFAIL is not cached: no reply).
    assert cache["coredns_cache_misses"] == 4
    assert cache["coredns_cache_requests"] == 6
    assert total(families["coredns_cache_entries"], type="success") == 1

    for name, labels in FORWARD_FAMILIES.items():
        assert families[name], name
        for sample in families[name]:
            assert set(sample.labels) - {"le"} == labels, (name, sample.labels)
    upstream = next(s.labels["to"] for s in families["coredns_forward_responses"])
    down = str(served.down)
    requests = families["coredns_forward_requests"]
    assert {s.labels["to"] for s in requests} == {upstream, down}
    # The start-up loop probe (CoreDNS's loop plugin sends its own through forward too) may
    # have been counted as well, or not yet.
    assert total(requests, "_total", to=upstream) in (1, 2)
    assert total(requests, "_total", to=down) in (3, 4)
    duration = families["coredns_proxy_request_duration_seconds"]
    assert {s.labels["proxy_name"] for s in duration} == {"forward"}
    assert total(duration, "_count", to=upstream, rcode="NOERROR") == 1
    buckets = [s for s in duration if s.name.endswith("_bucket") and s.labels["rcode"] == "NOERROR"]
    assert [float(s.labels["le"]) for s in buckets] == [
        *TIME_BOUNDS,
        float("inf"),
    ]
    # The old names hold the same figures as the new ones.
    old = families["coredns_forward_request_duration_seconds"]
    assert [(s.name.replace("forward", "proxy"), s.value) for s in old] == [
        (s.name, s.value) for s in duration
    ]
    assert total(families["coredns_forward_responses"], "_total", rcode="NOERROR") == 1
    failures = total(families["coredns_proxy_healthcheck_failures"], "_total", to=down)
    assert failures >= 1
    assert total(families["coredns_forward_healthcheck_failures"], "_total", to=down) == failures
    assert total(families["coredns_forward_healthcheck_broken"], "_total") >= 1


def test_every_family_the_dns_server_exports_has_a_sample(served: Served) -> None:
    traffic(served)
    families = wait_for_failed_probe(served)
    empty = sorted(
        name
        for name, samples in families.items()
        if not samples and name not in EMPTY_WITHOUT_A_WATCH
    )
    assert empty == [], empty
    assert set(families) >= EMPTY_WITHOUT_A_WATCH  # the exclusions are still real names


SET_IN_METRICS = {"BUILD_INFO", "DNS_PROGRAMMING"}
"""Declarations kubedns/metrics.py sets itself: the constant build info, and the programming
histogram through ``observe_dns_programming`` (which kubedns/sources/kube.py calls)."""


def test_every_declared_metric_is_set_somewhere() -> None:
    """A metric nobody sets exports a constant 0 that looks like a measurement (as
    ``kubedns_zone_owner_names`` once did); an unlabelled one passes the sample check above,
    so each declaration must be named outside kubedns/metrics.py (``metrics.NAME``, or
    imported, which ruff only lets stay if it is used)."""
    package = Path(metrics.__file__).parent
    sources = "\n".join(
        path.read_text() for path in package.rglob("*.py") if path.name != "metrics.py"
    )
    declared = {
        name
        for name, value in vars(metrics).items()
        if isinstance(value, (Counter, Gauge, Histogram))
    }
    assert declared >= SET_IN_METRICS
    unused = sorted(
        name for name in declared - SET_IN_METRICS if not re.search(rf"\b{name}\b", sources)
    )
    assert unused == []
    assert "observe_dns_programming(" in sources
