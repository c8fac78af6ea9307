"""Every Prometheus metric kubedns exports, declared once.

Names follow CoreDNS where the meaning is the same, so existing dashboards keep working; where
CoreDNS has no equivalent the name starts with ``kubedns_``. Label values are bounded sets
(resource kinds, HTTP status codes), never names of cluster objects.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram

# Buckets from CoreDNS's dns_programming_duration_seconds: sub-second up to many minutes,
# because a change can wait for a watch to reconnect after an outage.
_PROGRAMMING_BUCKETS = (
    0.001,
    0.002,
    0.004,
    0.008,
    0.016,
    0.032,
    0.064,
    0.128,
    0.256,
    0.512,
    1.024,
    2.048,
    4.096,
    8.192,
    16.384,
    32.768,
    65.536,
    131.072,
    262.144,
    524.288,
)
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
    "kubedns_dns_programming_duration_seconds",
    "Seconds from an endpoints change in the cluster (the EndpointSlice annotation "
    "endpoints.kubernetes.io/last-change-trigger-time) to kubedns answering with it. "
    "CoreDNS calls this coredns_kubernetes_dns_programming_duration_seconds.",
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
