"""Every Prometheus metric kubedns exports, declared once.

Where a metric means what a CoreDNS metric means, it carries the CoreDNS name (and, where it
can, the CoreDNS label names) so dashboards and alerts written for CoreDNS keep working; where
CoreDNS has no equivalent the name starts with ``kubedns_``. Label values are bounded sets
(resource kinds, HTTP status codes, rcodes), never names of cluster objects. Each feature's
metrics stay in their own block.
"""

from __future__ import annotations

import collections
import platform
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from kubedns import __version__

# --- webhook (kubedns/webhook/) ------------------------------------------------------------

WEBHOOK_REVIEWS = Counter(
    "kubedns_webhook_reviews_total",
    "AdmissionReviews answered, by outcome: mutated, unchanged, rejected (HTTP 400), "
    "unsupported (HTTP 415), too_slow (body not sent in time) or error (an internal failure; "
    "the pod was allowed unchanged).",
    ["outcome"],
)
WEBHOOK_ERRORS = Counter(
    "kubedns_webhook_internal_errors_total",
    "Internal failures while mutating a pod; each one admitted the pod unchanged.",
)
WEBHOOK_CERT_RELOADS = Counter(
    "kubedns_webhook_certificate_reloads_total",
    "Attempts to reload the serving certificate after its files changed, by result.",
    ["result"],
)
WEBHOOK_ENV_OVER_BUDGET = Counter(
    "kubedns_webhook_env_over_budget_total",
    "Pods admitted without service variables because they would have passed "
    "webhook.max_env_bytes (their resolver settings were still written).",
)
WEBHOOK_CONNECTIONS = Gauge(
    "kubedns_webhook_connections",
    "Open HTTPS connections, TLS handshakes in progress included.",
)
WEBHOOK_CONNECTIONS_REFUSED = Counter(
    "kubedns_webhook_connections_refused_total",
    "Connections closed because webhook.max_connections were open: the one longest in its "
    "TLS handshake, or the new one when none was.",
)
WEBHOOK_REVIEWS_WAITING = Gauge(
    "kubedns_webhook_reviews_waiting",
    "Reviews waiting, body unread, for one of webhook.max_reviews slots.",
)
WEBHOOK_SERVICES = Gauge(
    "kubedns_webhook_services",
    "Services the webhook knows (those with a cluster IP feed environment variables).",
)

# --- end webhook ---------------------------------------------------------------------------

# --- forward/ and cache: forwarded names (issue 4) ------------------------------------------
# Cache, mirroring CoreDNS's `cache` plugin. `type` is "success" (positive answers) or
# "denial" (NXDOMAIN, NODATA and briefly cached SERVFAIL), as CoreDNS labels them.


class HotCounter(Collector):
    """A counter with one label, counted with plain integers because the hot path bumps it
    (a labelled prometheus_client counter costs a lock and a dict lookup per query); it
    becomes a metric family only when scraped."""

    def __init__(self, name: str, documentation: str, label: str, values: tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.counts: dict[str, int] = dict.fromkeys(values, 0)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, count in self.counts.items():
            family.add_metric([value], count)
        yield family


CACHE_HITS = HotCounter(
    "coredns_cache_hits",
    "Forwarded queries answered from the cache (mirrors CoreDNS coredns_cache_hits_total).",
    "type",
    ("success", "denial"),
)
REGISTRY.register(CACHE_HITS)
CACHE_MISSES = Counter(
    "coredns_cache_misses_total",
    "Forwarded queries not in the cache (mirrors CoreDNS coredns_cache_misses_total).",
)
CACHE_ENTRIES = Gauge(
    "coredns_cache_entries",
    "Entries in the cache of forwarded answers (mirrors CoreDNS coredns_cache_entries).",
    ["type"],
)
CACHE_BYTES = Gauge(
    "kubedns_cache_bytes",
    "Bytes held by the cache of forwarded answers (records plus an estimate of the overhead "
    "per entry), bounded by cache.max_bytes per type.",
    ["type"],
)
CACHE_EVICTIONS = Counter(
    "coredns_cache_evictions_total",
    "Entries pushed out because the cache was full "
    "(mirrors CoreDNS coredns_cache_evictions_total).",
    ["type"],
)
CACHE_SERVED_STALE = Counter(
    "coredns_cache_served_stale_total",
    "Expired answers served because every upstream failed, RFC 8767 "
    "(mirrors CoreDNS coredns_cache_served_stale_total).",
)

# Upstreams, mirroring CoreDNS's `forward` plugin; `to` is the upstream's HOST:PORT.
FORWARD_REQUESTS = Counter(
    "coredns_forward_requests_total",
    "Queries sent to an upstream, retries over TCP included "
    "(mirrors CoreDNS coredns_forward_requests_total).",
    ["to", "proto"],
)
FORWARD_RESPONSES = Counter(
    "coredns_forward_responses_total",
    "Replies from an upstream by rcode (mirrors CoreDNS coredns_forward_responses_total).",
    ["to", "rcode"],
)
FORWARD_DURATION = Histogram(
    "coredns_forward_request_duration_seconds",
    "Time from sending a query to an upstream to its valid reply "
    "(mirrors CoreDNS coredns_forward_request_duration_seconds).",
    ["to", "rcode"],
    buckets=tuple(0.00025 * 2**i for i in range(16)),  # 0.25 ms to 8 s
)
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
FORWARD_HEALTHCHECK_FAILURES = Counter(
    "coredns_forward_healthcheck_failures_total",
    "Health probes of a down upstream that failed "
    "(mirrors CoreDNS coredns_forward_healthcheck_failures_total).",
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
# Counted with plain integers on the hot path (a labelled prometheus_client counter costs a
# lock and a dict lookup per query) and turned into metric families only when scraped.

RCODE_NAMES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
}


class ReplyCounter(Collector):
    """Replies sent, by transport and rcode (the header's four bits; BADVERS shows as
    NOERROR there, as on the wire). Mirrors CoreDNS ``coredns_dns_requests_total`` and
    ``coredns_dns_responses_total``."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, int]] = collections.Counter()

    def count(self, proto: str, reply: bytes) -> None:
        self.counts[(proto, reply[3] & 0x0F)] += 1

    def count_rcodes(self, proto: str, rcodes: list[int]) -> None:
        """Add a batch counted by rcode (index: rcode) and reset ``rcodes`` to zeros."""
        counts = self.counts
        for rcode, value in enumerate(rcodes):
            if value:
                counts[(proto, rcode)] += value
                rcodes[rcode] = 0

    def collect(self) -> Iterator[CounterMetricFamily]:
        requests = CounterMetricFamily(
            "coredns_dns_requests", "DNS queries answered, by transport.", labels=["proto"]
        )
        responses = CounterMetricFamily(
            "coredns_dns_responses", "DNS replies sent, by rcode.", labels=["proto", "rcode"]
        )
        per_proto: collections.Counter[str] = collections.Counter()
        for (proto, rcode), value in sorted(self.counts.items()):
            per_proto[proto] += value
            responses.add_metric([proto, RCODE_NAMES.get(rcode, str(rcode))], value)
        for proto, value in sorted(per_proto.items()):
            requests.add_metric([proto], value)
        yield requests
        yield responses


REPLIES = ReplyCounter()
REGISTRY.register(REPLIES)

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
