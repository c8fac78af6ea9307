"""The webhook's Prometheus metrics, declared here so only ``kubedns webhook`` registers them.

They used to live in ``kubedns.metrics``, which ``kubedns serve`` imports too: the DNS server
then exported every webhook family as a constant zero. Nothing in the DNS server imports this
module (an import-linter contract keeps it so).

Every label value comes from a fixed set: ``operation`` is the AdmissionReview's operation
when it is one Kubernetes defines, else ``other`` (a client chooses the body, so it must not
choose label values); reviews whose request could not be read count as ``other`` too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, get_args

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import Metric

from kubedns.webhook.mutate import SkipReason

Outcome = Literal[
    "mutated",
    "unchanged",
    "rejected",
    "unsupported",
    "too_large",
    "too_slow",
    "disconnected",
    "unsynced",
    "error",
]

OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
"""The operations of admission.k8s.io/v1 (``k8s.io/apiserver/pkg/admission``)."""
OTHER_OPERATION = "other"
ENV_OVER_BUDGET_REASON = "env_over_budget"
"""The one skip that still leaves a patch: the resolver settings without the variables."""
SKIP_REASONS: tuple[str, ...] = (*get_args(SkipReason), ENV_OVER_BUDGET_REASON)

REVIEWS = Counter(
    "kubedns_webhook_reviews_total",
    "AdmissionReviews answered, by outcome and operation (CREATE, UPDATE, DELETE, CONNECT, "
    "other). Outcomes: mutated, unchanged, rejected (HTTP 400), unsupported (HTTP 415), "
    "too_large (HTTP 413), too_slow (body not sent in time), disconnected (the client left "
    "before sending its body), unsynced (admitted unchanged before the first lists) or "
    "error (an internal failure; the pod was allowed unchanged).",
    ["outcome", "operation"],
)
REVIEW_DURATION = Histogram(
    "kubedns_webhook_review_duration_seconds",
    "Time from starting to read a review's body to its response written (the wait for one "
    "of webhook.max_reviews slots is not included: see kubedns_webhook_reviews_waiting).",
    buckets=tuple(0.00025 * 2**i for i in range(16)),  # 0.25 ms to 8 s, CoreDNS's TimeBuckets
)
PATCH_BYTES = Histogram(
    "kubedns_webhook_patch_bytes",
    "Size of each JSONPatch returned (JSON bytes, before base64); reviews without a patch "
    "are not observed.",
    buckets=tuple(64 * 4**i for i in range(10)),  # 64 B to 16 MiB
)
INJECTIONS_SKIPPED = Counter(
    "kubedns_webhook_injections_skipped_total",
    "Pods the webhook chose not to change, by reason: opted_out (the opt-out annotation), "
    "already_injected (the marker annotation), not_applicable (an operation or subresource "
    "the webhook leaves alone), env_over_budget (service variables left out, resolver "
    "settings still written).",
    ["reason"],
)
INTERNAL_ERRORS = Counter(
    "kubedns_webhook_internal_errors_total",
    "Internal failures while mutating a pod; each one admitted the pod unchanged.",
)
CERT_RELOADS = Counter(
    "kubedns_webhook_certificate_reloads_total",
    "Attempts to reload the serving certificate after its files changed, by result.",
    ["result"],
)
ENV_OVER_BUDGET = Counter(
    "kubedns_webhook_env_over_budget_total",
    "Pods admitted without service variables because they would have passed "
    "webhook.max_env_bytes (their resolver settings were still written).",
)
CONNECTIONS = Gauge(
    "kubedns_webhook_connections",
    "Open HTTPS connections, TLS handshakes in progress included.",
)
CONNECTIONS_REFUSED = Counter(
    "kubedns_webhook_connections_refused_total",
    "Connections closed because webhook.max_connections were open: the one longest in its "
    "TLS handshake, or the new one when none was.",
)
REVIEWS_WAITING = Gauge(
    "kubedns_webhook_reviews_waiting",
    "Reviews waiting, body unread, for one of webhook.max_reviews slots.",
)
SERVICES = Gauge(
    "kubedns_webhook_services",
    "Services the webhook knows (those with a cluster IP feed environment variables).",
)

# Known reasons are exported at 0 from the start, so rate() over them has data before the
# first skip (Prometheus cannot tell a counter that never moved from one that is missing).
for _reason in SKIP_REASONS:
    INJECTIONS_SKIPPED.labels(_reason)


def operation_label(operation: object) -> str:
    """The ``operation`` label for what a client sent: a known operation, else ``other``."""
    return operation if isinstance(operation, str) and operation in OPERATIONS else OTHER_OPERATION


def count_review(outcome: Outcome, operation: str = OTHER_OPERATION) -> None:
    REVIEWS.labels(outcome, operation).inc()


EXPORTED_PREFIXES = ("kubedns_webhook_", "kubedns_kubernetes_", "process_", "python_")
"""The families the webhook's ``/metrics`` exports: its own, its API watch's (the watch code
is shared with the DNS server and counts into ``kubedns.metrics``) and the process's."""


class WebhookFamilies:
    """The webhook's part of the process-wide registry.

    The shared watch code imports ``kubedns.metrics``, which declares every DNS family; the
    webhook never sets them, so exporting them would show a constant ``kubedns_synced 0`` and
    zero CoreDNS counters under the webhook's job."""

    def collect(self) -> Iterator[Metric]:
        for family in REGISTRY.collect():
            if family.name.startswith(EXPORTED_PREFIXES):
                yield family
