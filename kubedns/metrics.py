"""Every Prometheus metric kubedns exports, declared once (the webhook's own are in
``kubedns/webhook/metrics.py``, so the DNS server never exports them).

Where a metric means what a CoreDNS metric means, it carries the CoreDNS name (and, where it
can, the CoreDNS label names) so dashboards and alerts written for CoreDNS keep working; where
CoreDNS has no equivalent the name starts with ``kubedns_``. Label values are bounded sets
(resource kinds, HTTP status codes, rcodes), never names of cluster objects. Each feature's
metrics stay in their own block.
"""

from __future__ import annotations

import bisect
import collections
import math
import platform
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from kubedns import __version__

# --- forward/ and cache: forwarded names (issue 4) ------------------------------------------
# Cache, as CoreDNS's `cache` plugin exports it (plugin/cache/metrics.go), with its label sets:
# `server` is the listener's `dns://HOST:PORT` (the coredns_dns_* families' `server`), `zones`
# is "." (one cache serves every forwarded name, as the cache of kubeadm's single `.` server
# block does) and `view` is "". `type` is "success" (positive answers) or "denial" (NXDOMAIN,
# NODATA and briefly cached SERVFAIL). No coredns_cache_drops_total: CoreDNS counts replies
# whose question does not match the query; kubedns never gets that far with one (the
# exchange discards it, kubedns_forward_ignored_replies_total), so it would never move.

CACHE_TYPES = ("success", "denial")


class CacheMetrics(Collector):
    """CoreDNS's cache families, counted with plain integers (a hit is on the fast path, where
    a labelled prometheus_client call would cost about as much as the hit itself) and
    labelled only when scraped. Both types are there from the start, as zeros: a dashboard
    splitting by ``type`` shows 0, not "no data", before the first denial.

    ``coredns_cache_requests_total`` is not counted at all: CoreDNS counts a request exactly
    where it then counts a hit or a miss (``getIgnoreTTL``), so it is their sum."""

    def __init__(self) -> None:
        self.server = ""
        """``dns://HOST:PORT`` of the listener; set once it is bound."""
        self.hits: dict[str, int] = dict.fromkeys(CACHE_TYPES, 0)
        self.misses = 0
        self.served_stale = 0
        self.evictions: dict[str, int] = dict.fromkeys(CACHE_TYPES, 0)
        self.entries: dict[str, int] = dict.fromkeys(CACHE_TYPES, 0)

    def collect(self) -> Iterator[Metric]:
        where = (self.server, ".", "")  # server, zones, view
        requests = sum(self.hits.values()) + self.misses
        yield _counter("coredns_cache_requests", "Lookups in the cache.", where, requests)
        yield _counter(
            "coredns_cache_misses",
            "Lookups that found no fresh entry (CoreDNS deprecates it: requests minus hits).",
            where,
            self.misses,
        )
        yield _counter(
            "coredns_cache_served_stale",
            "Expired answers served because every upstream failed (RFC 8767).",
            where,
            self.served_stale,
        )
        hits = CounterMetricFamily(
            "coredns_cache_hits", "Queries answered from the cache.", labels=_BY_TYPE
        )
        evictions = CounterMetricFamily(
            "coredns_cache_evictions", "Entries pushed out of the full cache.", labels=_BY_TYPE
        )
        entries = GaugeMetricFamily(
            "coredns_cache_entries", "Entries in the cache.", labels=_BY_TYPE
        )
        for family, counts in ((hits, self.hits), (evictions, self.evictions),
                               (entries, self.entries)):  # fmt: skip
            yield _by_type(family, where, counts)


_BY_TYPE = ("server", "type", "zones", "view")
"""CoreDNS's label order for the cache families split by type."""
Where = tuple[str, str, str]
"""(server, zones, view)"""


def _counter(name: str, documentation: str, where: Where, value: int) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=("server", "zones", "view"))
    family.add_metric(where, value)
    return family


def _by_type(
    family: CounterMetricFamily | GaugeMetricFamily, where: Where, counts: dict[str, int]
) -> Metric:
    server, zones, view = where
    for cache_type, count in counts.items():
        family.add_metric((server, cache_type, zones, view), count)
    return family


CACHE_STATS = CacheMetrics()
REGISTRY.register(CACHE_STATS)
CACHE_BYTES = Gauge(
    "kubedns_cache_bytes",
    "Bytes held by the cache of forwarded answers (records plus an estimate of the overhead "
    "per entry), bounded by cache.max_bytes per type.",
    ["type"],
)

# Upstreams; `to` is the upstream's HOST:PORT. CoreDNS 1.11 on exports the exchanges with an
# upstream from its shared proxy package (plugin/pkg/proxy/metrics.go), `proxy_name` "forward":
# coredns_proxy_request_duration_seconds{proxy_name, to, rcode} and
# coredns_proxy_healthcheck_failures_total{proxy_name, to}. Older releases, and the
# coredns-mixin's dashboard and alerts, read forward's own names instead: requests{to},
# responses{to, rcode}, request_duration_seconds{to, rcode}, healthcheck_failures{to}. Both are
# exported; the old names but requests are made from the new ones when scraped
# (``LegacyForwardMetrics``), so they cost nothing per exchange and cannot disagree.

PROXY_NAME = "forward"
"""CoreDNS's ``proxy_name`` of the forward plugin's upstreams."""
PROXY_DURATION = Histogram(
    "coredns_proxy_request_duration_seconds",
    "Seconds from sending a query to an upstream to its valid reply, a retry over TCP "
    "included (mirrors CoreDNS 1.11+).",
    ["proxy_name", "to", "rcode"],
    buckets=tuple(0.00025 * 2**i for i in range(16)),  # CoreDNS plugin.TimeBuckets
)
PROXY_HEALTHCHECK_FAILURES = Counter(
    "coredns_proxy_healthcheck_failures_total",
    "Failed health probes of a down upstream (mirrors CoreDNS 1.11+).",
    ["proxy_name", "to"],
)
FORWARD_REQUESTS = Counter(
    "coredns_forward_requests_total",
    "Queries sent to an upstream, a retry over TCP counted again, health probes not "
    "(mirrors CoreDNS before 1.11).",
    ["to"],
)


class LegacyForwardMetrics(Collector):
    """forward's families from before CoreDNS 1.11, made from the proxy families when scraped:
    ``coredns_forward_request_duration_seconds{to, rcode}`` (the proxy histogram without
    ``proxy_name``), ``coredns_forward_responses_total{to, rcode}`` (its count: CoreDNS counted
    both for every reply) and ``coredns_forward_healthcheck_failures_total{to}``."""

    def collect(self) -> Iterator[Metric]:
        durations = HistogramMetricFamily(
            "coredns_forward_request_duration_seconds",
            "Seconds from sending a query to an upstream to its valid reply "
            "(coredns_proxy_request_duration_seconds under its name before CoreDNS 1.11).",
            labels=["to", "rcode"],
        )
        responses = CounterMetricFamily(
            "coredns_forward_responses",
            "Replies from an upstream, by rcode (mirrors CoreDNS before 1.11).",
            labels=["to", "rcode"],
        )
        for (to, rcode), (buckets, total) in _forward_histograms().items():
            durations.add_metric([to, rcode], buckets, total)
            responses.add_metric([to, rcode], buckets[-1][1])  # the +Inf bucket: every reply
        failures = CounterMetricFamily(
            "coredns_forward_healthcheck_failures",
            "Failed health probes of a down upstream (coredns_proxy_healthcheck_failures_total "
            "under its name before CoreDNS 1.11).",
            labels=["to"],
        )
        for sample in _forward_samples(PROXY_HEALTHCHECK_FAILURES, "_total"):
            failures.add_metric([sample.labels["to"]], sample.value)
        yield from (durations, responses, failures)


_Buckets = list[tuple[str, float]]


def _forward_histograms() -> dict[tuple[str, str], tuple[_Buckets, float]]:
    """The proxy duration histogram of ``PROXY_NAME`` by (to, rcode): buckets and sum."""
    found: dict[tuple[str, str], tuple[_Buckets, float]] = {}
    for sample in _forward_samples(PROXY_DURATION, "_bucket", "_sum"):
        key = (sample.labels["to"], sample.labels["rcode"])
        buckets, total = found.get(key, ([], 0.0))
        if sample.name.endswith("_sum"):
            total = sample.value
        else:  # prometheus_client lists the buckets in order, +Inf last
            buckets.append((sample.labels["le"], sample.value))
        found[key] = (buckets, total)
    return found


def _forward_samples(metric: Counter | Histogram, *suffixes: str) -> Iterator[Sample]:
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(suffixes) and sample.labels["proxy_name"] == PROXY_NAME:
                yield sample


REGISTRY.register(LegacyForwardMetrics())
FORWARD_LOCAL_ERRORS = Counter(
    "kubedns_forward_local_errors_total",
    "Exchanges that could not start because a local socket could not be opened (errno name: "
    "EMFILE, ENFILE, ENOBUFS, ENOMEM). Never counted as an upstream failure; the query gets "
    "SERVFAIL unless another upstream or a stale answer serves it.",
    ["reason"],
)
FORWARD_FAILURES = Counter(
    "kubedns_forward_failures_total",
    "Exchanges with an upstream that got no valid reply, by reason (timeout, refused, error). "
    "CoreDNS has no direct equivalent; it folds these into healthcheck failures.",
    ["to", "reason"],
)
FORWARD_GARBAGE = Counter(
    "kubedns_forward_ignored_replies_total",
    "Datagrams from an upstream that were not a valid reply to our query (wrong ID or "
    "question, unparseable) and were ignored.",
    ["to"],
)
FORWARD_HEALTHCHECK_BROKEN = Counter(
    "coredns_forward_healthcheck_broken_total",
    "Times every upstream of a pool was down at once "
    "(mirrors CoreDNS coredns_forward_healthcheck_broken_total).",
)
FORWARD_UPSTREAM_UP = Gauge(
    "kubedns_forward_upstream_up",
    "1 while an upstream is considered healthy, 0 while it is marked down and probed.",
    ["to"],
)
FORWARD_MAX_CONCURRENT_REJECTS = Counter(
    "coredns_forward_max_concurrent_rejects_total",
    "Queries refused because max_concurrent queries were already waiting on upstreams "
    "(mirrors CoreDNS coredns_forward_max_concurrent_rejects_total).",
)
FORWARD_LOOP_DETECTED = Gauge(
    "kubedns_forward_loop_detected",
    "1 if the start-up probe came back to our own listener: upstreams forward to us "
    "(CoreDNS's loop plugin stops the server instead).",
)
# --- end forward/ and cache ------------------------------------------------------------------


# --- DNS server: queries and replies ------------------------------------------------------
# CoreDNS's request families, with its names, labels and buckets (plugin/metrics/vars): counted
# with plain integers on the hot path (a labelled prometheus_client call costs a lock and a
# dict lookup, about as much as answering a cached query) and turned into metric families only
# when scraped. docs/metrics.md says how.

QUERY_TYPES = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
    33: "SRV", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 50: "NSEC3", 65: "HTTPS",
    251: "IXFR", 252: "AXFR", 255: "ANY",
}  # fmt: skip
"""The query types CoreDNS labels by name (``plugin/metrics/vars/monitor.go``); any other type
is counted as ``other``, so no client can create label values."""
TYPE_LABELS = (*QUERY_TYPES.values(), "other")
_TYPE_INDEX = {qtype: index for index, qtype in enumerate(QUERY_TYPES)}
OTHER_TYPE = len(QUERY_TYPES)

RCODE_NAMES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 16: "BADVERS",
}  # fmt: skip
PLUGINS = ("", "kubernetes", "forward", "cache")
"""Who wrote a reply, as CoreDNS's ``plugin`` label names it: "" for the server itself (format
errors, refusals, SERVFAILs without an answer), the cluster zone, upstreams, the cache."""
SERVER, KUBERNETES, FORWARD, CACHE = range(4)
PROTOS = ("udp", "tcp")
FAMILIES = ("1", "2")
"""CoreDNS's ``family`` label: 1 for IPv4 clients (v4-mapped ones too), 2 for IPv6."""

TIME_BUCKETS = tuple(0.00025 * 2**i for i in range(16))
"""CoreDNS ``plugin.TimeBuckets``: 0.25 ms doubling up to about 8 s."""
SIZE_BUCKETS = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3)
"""CoreDNS's request and response size buckets, in bytes."""

MAX_PROFILES = 4096
"""Distinct profiles (labels plus exact sizes) counted with one list slot each. Past it, a
reply of a new profile is still counted exactly, through label-keyed totals, at a few hundred
nanoseconds more: clients choose names, hence sizes, and must not grow memory without bound."""


def type_index(qtype: int) -> int:
    """The ``type`` label of ``qtype`` as an index into ``TYPE_LABELS``."""
    return _TYPE_INDEX.get(qtype, OTHER_TYPE)


Labels = tuple[int, int, int, int, int, int]
"""(zone, type, proto, DO, rcode, plugin): everything a reply is labelled by but its sizes,
its client's family and its duration. Zone is an index into ``Tally.zones``, the others
into ``TYPE_LABELS``, ``PROTOS``, (0, 1), rcode values, ``PLUGINS``."""
Profile = tuple[int, int, int, int, int, int, int, int]
"""``Labels`` plus the request and the reply size in bytes: fixed for a stored reply."""


class Tally:
    """The DNS request metrics of one server (listener address), counted with plain integers.

    A reply is counted as its ``Profile``, which gets a slot the first time it is seen. A
    stored reply (the fast path) knows its slot and the request size it was made for, so a hit
    of that size costs one list increment (``pending``) and a list append for the first hit of
    a batch (``touched``). The transport ends each batch with ``settle(elapsed, n)``: the batch's
    counts move to the slot's totals for the client family in ``family``, each reply taken to
    have lasted ``elapsed / n`` (the n replies ran one after the other, so their times add up
    to the batch's). Replies that waited on an upstream are counted one by one with their own
    time (``observe``). Everything becomes metric families only when scraped (``collect``).
    """

    def __init__(self) -> None:
        self.server = ""
        """CoreDNS's ``server`` label, ``dns://HOST:PORT``; set once the listener is bound."""
        self.zones: list[str] = ["."]
        self._zone_index = {".": 0}
        self.family = 0
        """The client family of the batch being answered (0: IPv4, 1: IPv6), set by the
        transport before it answers; replies that wait on an upstream take it with them."""
        self._slots: dict[Profile, int] = {}
        self.profiles: list[Profile] = []
        self.pending: list[int] = []
        """Replies counted in the current batch, by slot; moved to the totals by ``settle``."""
        self.touched: list[int] = []
        """Slots with pending counts, in first-hit order."""
        self._loose: list[Profile] = []
        """Profiles of this batch that found no slot (the table was full)."""
        self.durations: tuple[list[list[int]], list[list[int]]] = ([], [])
        """Settled replies per client family, by slot, per duration bucket (``TIME_BUCKETS``
        and +Inf, not cumulative)."""
        self.seconds: list[float] = []
        """Summed duration by slot."""
        self.beyond = _Totals()
        """Replies whose profile found no slot, totalled by label set."""

    def zone(self, name: str) -> int:
        """The index of zone ``name`` (``"."`` or a stub domain with its trailing dot)."""
        index = self._zone_index.get(name)
        if index is None:
            index = self._zone_index[name] = len(self.zones)
            self.zones.append(name)
        return index

    def slot(self, profile: Profile) -> int:
        """The slot of ``profile``, made on first sight; -1 once ``MAX_PROFILES`` are taken."""
        slot = self._slots.get(profile)
        if slot is not None:
            return slot
        if len(self.profiles) >= MAX_PROFILES:
            return -1
        slot = self._slots[profile] = len(self.profiles)
        self.profiles.append(profile)
        self.pending.append(0)
        for rows in self.durations:
            rows.append([0] * (len(TIME_BUCKETS) + 1))
        self.seconds.append(0.0)
        return slot

    def count(self, profile: Profile) -> int:
        """Count one synchronous reply in the current batch; its slot, or -1 if it has none."""
        slot = self.slot(profile)
        if slot < 0:
            self._loose.append(profile)
            return slot
        if not self.pending[slot]:
            self.touched.append(slot)
        self.pending[slot] += 1
        return slot

    def settle(self, elapsed: float, queries: int) -> None:
        """End a batch of ``queries`` that took ``elapsed`` seconds: move its counts to the
        totals, each reply taken to have lasted ``elapsed / queries``. (Queries of the batch
        that got no reply or wait on an upstream share the time too: their synchronous part
        ran in it.)"""
        touched, pending, loose = self.touched, self.pending, self._loose
        if not queries or not (touched or loose):
            return
        each = elapsed / queries
        bucket = bisect.bisect_left(TIME_BUCKETS, each)
        rows, seconds = self.durations[self.family], self.seconds
        for slot in touched:  # the only per-slot work of a batch: keep it to four steps
            count = pending[slot]
            pending[slot] = 0
            rows[slot][bucket] += count
            seconds[slot] += each * count
        touched.clear()
        for profile in loose:
            self.beyond.add(profile, self.family, each, bucket)
        loose.clear()

    def observe(self, profile: Profile, *, family: int, elapsed: float) -> None:
        """Count one reply that waited on an upstream, ``elapsed`` seconds after its query."""
        bucket = bisect.bisect_left(TIME_BUCKETS, elapsed)
        slot = self.slot(profile)
        if slot < 0:
            self.beyond.add(profile, family, elapsed, bucket)
            return
        self.durations[family][slot][bucket] += 1
        self.seconds[slot] += elapsed

    def totals(self) -> _Totals:
        """Every settled count folded by label set (a copy: scraping does not block counting)."""
        totals = self.beyond.copy()
        for slot, profile in enumerate(self.profiles):
            totals.add_slot(profile, self, slot)
        return totals


class _Histogram:
    """Bucket counts (not cumulative, +Inf last) and the sum of one label set."""

    __slots__ = ("buckets", "total")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size
        self.total = 0.0

    def copy(self) -> _Histogram:
        other = _Histogram(0)
        other.buckets = list(self.buckets)
        other.total = self.total
        return other


def _size_bucket(size: int) -> int:
    return bisect.bisect_left(SIZE_BUCKETS, size)


class _Totals:
    """The CoreDNS families of one server as label tuple -> count or histogram."""

    def __init__(self) -> None:
        self.requests: collections.Counter[tuple[int, int, int, int]] = collections.Counter()
        """(zone, proto, family, type)"""
        self.responses: collections.Counter[tuple[int, int, int]] = collections.Counter()
        """(zone, rcode, plugin)"""
        self.do: collections.Counter[int] = collections.Counter()
        """zone"""
        self.durations: dict[tuple[int, int], _Histogram] = {}
        """(zone, type)"""
        self.request_sizes: dict[tuple[int, int], _Histogram] = {}
        """(zone, proto)"""
        self.response_sizes: dict[tuple[int, int], _Histogram] = {}
        """(zone, proto)"""

    def copy(self) -> _Totals:
        other = _Totals()
        other.requests = self.requests.copy()
        other.responses = self.responses.copy()
        other.do = self.do.copy()
        for mine, theirs in (
            (self.durations, other.durations),
            (self.request_sizes, other.request_sizes),
            (self.response_sizes, other.response_sizes),
        ):
            theirs.update((key, histogram.copy()) for key, histogram in mine.items())
        return other

    def add(self, profile: Profile, family: int, seconds: float, bucket: int) -> None:
        """One reply of ``profile`` that took ``seconds`` (in duration bucket ``bucket``)."""
        durations = [0] * (len(TIME_BUCKETS) + 1)
        durations[bucket] = 1
        counts = (1, 0) if family == 0 else (0, 1)
        self._add(profile, counts, seconds, durations)

    def add_slot(self, profile: Profile, tally: Tally, slot: int) -> None:
        ipv4, ipv6 = tally.durations[0][slot], tally.durations[1][slot]
        counts = (sum(ipv4), sum(ipv6))
        if counts[0] or counts[1]:
            durations = [a + b for a, b in zip(ipv4, ipv6, strict=True)]
            self._add(profile, counts, tally.seconds[slot], durations)

    def _add(
        self, profile: Profile, counts: tuple[int, int], seconds: float, durations: list[int]
    ) -> None:
        zone, qtype, proto, do, rcode, plugin, request_size, response_size = profile
        replies = counts[0] + counts[1]
        for family, count in enumerate(counts):
            if count:
                self.requests[(zone, proto, family, qtype)] += count
        self.responses[(zone, rcode, plugin)] += replies
        if do:
            self.do[zone] += replies
        duration = self.durations.get((zone, qtype))
        if duration is None:
            duration = self.durations[(zone, qtype)] = _Histogram(len(TIME_BUCKETS) + 1)
        for bucket, count in enumerate(durations):
            duration.buckets[bucket] += count
        duration.total += seconds
        for sizes, size in (
            (self.request_sizes, request_size),
            (self.response_sizes, response_size),
        ):
            histogram = sizes.get((zone, proto))
            if histogram is None:
                histogram = sizes[(zone, proto)] = _Histogram(len(SIZE_BUCKETS) + 1)
            histogram.buckets[_size_bucket(size)] += replies
            histogram.total += size * replies


class RequestMetrics(Collector):
    """CoreDNS's DNS request families for every ``Tally`` (one per server), built at scrape
    time: ``coredns_dns_requests_total``, ``coredns_dns_responses_total``,
    ``coredns_dns_request_duration_seconds``, ``coredns_dns_request_size_bytes``,
    ``coredns_dns_response_size_bytes`` and ``coredns_dns_do_requests_total``."""

    def __init__(self) -> None:
        self.tallies: list[Tally] = []

    def add(self, tally: Tally) -> None:
        if tally not in self.tallies:
            self.tallies.append(tally)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "coredns_dns_requests",
            "Counter of DNS requests made per zone, protocol and family.",
            labels=["server", "zone", "view", "proto", "family", "type"],
        )
        responses = CounterMetricFamily(
            "coredns_dns_responses",
            "Counter of response status codes.",
            labels=["server", "zone", "view", "rcode", "plugin"],
        )
        do = CounterMetricFamily(
            "coredns_dns_do_requests",
            "Counter of DNS requests with DO bit set per zone.",
            labels=["server", "zone", "view"],
        )
        durations = HistogramMetricFamily(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            labels=["server", "zone", "view", "type"],
        )
        request_sizes = HistogramMetricFamily(
            "coredns_dns_request_size_bytes",
            "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.",
            labels=["server", "zone", "view", "proto"],
        )
        response_sizes = HistogramMetricFamily(
            "coredns_dns_response_size_bytes",
            "Size of the returned response in bytes.",
            labels=["server", "zone", "view", "proto"],
        )
        for tally in self.tallies:
            server, zones = tally.server, tally.zones
            totals = tally.totals()
            for (zone, proto, family, qtype), count in sorted(totals.requests.items()):
                labels = [server, zones[zone], "", PROTOS[proto], FAMILIES[family]]
                requests.add_metric([*labels, TYPE_LABELS[qtype]], count)
            for (zone, rcode, plugin), count in sorted(totals.responses.items()):
                rcode_label = RCODE_NAMES.get(rcode, str(rcode))
                responses.add_metric([server, zones[zone], "", rcode_label, PLUGINS[plugin]], count)
            for zone, count in sorted(totals.do.items()):
                do.add_metric([server, zones[zone], ""], count)
            for (zone, qtype), histogram in sorted(totals.durations.items()):
                labels = [server, zones[zone], "", TYPE_LABELS[qtype]]
                durations.add_metric(labels, *_cumulative(histogram, TIME_BUCKETS))
            for metric, sizes in ((request_sizes, totals.request_sizes),
                                  (response_sizes, totals.response_sizes)):  # fmt: skip
                for (zone, proto), histogram in sorted(sizes.items()):
                    labels = [server, zones[zone], "", PROTOS[proto]]
                    metric.add_metric(labels, *_cumulative(histogram, SIZE_BUCKETS))
        yield from (requests, responses, do, durations, request_sizes, response_sizes)


def _cumulative(
    histogram: _Histogram, bounds: tuple[float, ...]
) -> tuple[list[tuple[str, float]], float]:
    """prometheus_client's bucket list (cumulative, "+Inf" last) and the sum."""
    running = 0
    buckets = []
    for bound, count in zip((*bounds, math.inf), histogram.buckets, strict=True):
        running += count
        buckets.append(("+Inf" if bound == math.inf else repr(float(bound)), float(running)))
    return buckets, histogram.total


REQUESTS = RequestMetrics()
REGISTRY.register(REQUESTS)

DNS_DROPPED = Counter(
    "kubedns_dns_dropped_total",
    "Packets dropped without a reply: shorter than a header, or responses rather than queries.",
    ["proto"],
)
UDP_DROPPED = Counter(
    "kubedns_udp_dropped_total",
    "UDP datagrams the transport dropped, by reason: a query longer than the receive buffer "
    "(oversized), a reply that found the bounded send queue full (send_queue), a forwarded "
    "query beyond the bound on those waiting for an answer (pending).",
    ["reason"],
)
for _reason in ("oversized", "send_queue", "pending"):  # 0 from the start, not "no data"
    UDP_DROPPED.labels(_reason)
ZONE_SERIAL = Gauge("kubedns_zone_serial", "SOA serial of the cluster zone.")
ZONE_OWNER_NAMES = Gauge(
    "kubedns_zone_owner_names", "Names that own records in the cluster and reverse zones."
)
PANICS = Counter(
    "coredns_panics_total",
    "Unexpected errors caught while answering a query, each answered SERVFAIL or not at all "
    "instead of stopping the server (mirrors CoreDNS coredns_panics_total, recovered panics).",
)
BUILD_INFO = Gauge(
    "coredns_build_info",
    "Always 1; the labels say what runs (mirrors CoreDNS coredns_build_info: version, "
    "revision, and in goversion the Python that runs kubedns).",
    ["version", "revision", "goversion"],
)
BUILD_INFO.labels(__version__, "", f"python{platform.python_version()}").set(1)
SYNCED = Gauge("kubedns_synced", "1 once every watched kind has been listed completely.")
TCP_CONNECTIONS = Gauge(
    "kubedns_tcp_connections",
    "DNS-over-TCP connections holding a slot: open, or closed with forwarded queries in flight.",
)
TCP_REJECTED = Counter(
    "kubedns_tcp_connections_rejected_total",
    "TCP connections closed at once: the cap (tcp.max_connections, or the client's "
    "tcp.max_connections_per_client) was reached and every connection had a query in flight.",
)
TCP_CLOSED = Counter(
    "kubedns_tcp_connections_closed_total",
    "TCP connections the server closed, by reason: idle (idle_timeout), lifetime "
    "(max_lifetime), write_timeout (the client did not read its replies), evicted (the idlest, "
    "to admit a new connection at max_connections), client_limit (the client's own idlest, "
    "at max_connections_per_client).",
    ["reason"],
)
for _reason in ("idle", "lifetime", "write_timeout", "evicted", "client_limit"):
    TCP_CLOSED.labels(_reason)

# --- end DNS server ----------------------------------------------------------------------

# --- watch (kubedns/sources/) ------------------------------------------------------------

# Buckets from CoreDNS's dns_programming_duration_seconds: sub-second up to many minutes,
# because a change can wait for a watch to reconnect after an outage.
_PROGRAMMING_BUCKETS = tuple(0.001 * 2**i for i in range(20))  # 1 ms to about 9 minutes
_DELIVERY_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

WATCH_RESTARTS = Counter(
    "kubedns_kubernetes_watch_restarts_total",
    "Watch streams opened again after the previous one ended, by resource kind and reason.",
    ["kind", "reason"],
)
RELISTS = Counter(
    "kubedns_kubernetes_relists_total",
    "Complete lists after the first one (410 Gone or a broken list), by resource kind.",
    ["kind"],
)
API_ERRORS = Counter(
    "kubedns_kubernetes_api_errors_total",
    "Failed API requests by resource kind and HTTP status code ('connection' when there was "
    "no response, 'decode' when the response was not the JSON expected).",
    ["kind", "code"],
)
OBJECTS_SKIPPED = Counter(
    "kubedns_kubernetes_objects_skipped_total",
    "Objects the API sent that kubedns could not read and left out, by resource kind.",
    ["kind"],
)
EVENT_DELIVERY = Histogram(
    "kubedns_kubernetes_event_delivery_seconds",
    "Seconds from reading a watch event off the wire to the consumer having applied it on the "
    "event loop (thread hand-off, queueing and the index update).",
    ["kind"],
    buckets=_DELIVERY_BUCKETS,
)
DNS_PROGRAMMING = Histogram(
    "coredns_kubernetes_dns_programming_duration_seconds",
    "Seconds from an endpoints change in the cluster (the EndpointSlice annotation "
    "endpoints.kubernetes.io/last-change-trigger-time) to kubedns answering with it "
    "(mirrors CoreDNS coredns_kubernetes_dns_programming_duration_seconds).",
    ["service_kind"],
    buckets=_PROGRAMMING_BUCKETS,
)


def observe_dns_programming(trigger_time: float, *, service_kind: str = "endpointslice") -> None:
    """Record that a change triggered at ``trigger_time`` (Unix seconds) is now answerable.

    The hook for the record index: the API source calls it once the sink returned for an
    EndpointSlice event, which means the index applied it (sinks are synchronous). CoreDNS
    labels by ``cluster_ip``/``headless_with_selector``/``headless_without_selector`` and only
    counts headless services; the index, which knows the Service, can call this itself with
    that label instead.
    """
    DNS_PROGRAMMING.labels(service_kind).observe(max(0.0, time.time() - trigger_time))


# --- config reload (kubedns/reload.py) -----------------------------------------------------
# CoreDNS's reload plugin exports the first two; the rest are kubedns's own, in the shape
# Prometheus uses for its own config reloads (alert on ..._successful == 0).

RELOAD_FAILED = Counter(
    "coredns_reload_failed_total",
    "Config reloads that failed and kept the running config "
    "(mirrors CoreDNS coredns_reload_failed_total).",
)
RELOAD_VERSION = Gauge(
    "coredns_reload_version_info",
    "Always 1; value is the hash (of kind hash) of the config file in force "
    "(mirrors CoreDNS coredns_reload_version_info).",
    ["hash", "value"],
)
CONFIG_RELOADS = Counter(
    "kubedns_config_reloads_total",
    "Config reloads (SIGHUP, or a changed config file), by result: success or failed.",
    ["result"],
)
for _result in ("success", "failed"):
    CONFIG_RELOADS.labels(_result)
CONFIG_LAST_RELOAD_SUCCESSFUL = Gauge(
    "kubedns_config_last_reload_successful",
    "1 if the last config load (at start or a reload) succeeded, 0 if the last reload failed.",
)
CONFIG_LAST_RELOAD_SUCCESS = Gauge(
    "kubedns_config_last_reload_success_timestamp_seconds",
    "Unix time of the last successful config load, at start or a reload.",
)

# --- end config reload ---------------------------------------------------------------------
