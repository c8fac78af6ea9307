"""Every Prometheus metric kubedns exports, declared once.

Each component owns one clearly separated block below, so blocks written in parallel merge
without conflicts. Metric names reuse CoreDNS names where they mean the same thing.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

# --- webhook (kubedns/webhook/) ------------------------------------------------------------

WEBHOOK_REVIEWS = Counter(
    "kubedns_webhook_reviews_total",
    "AdmissionReviews answered, by outcome: mutated, unchanged, rejected (HTTP 400) or error "
    "(an internal failure; the pod was allowed unchanged).",
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
WEBHOOK_SERVICES = Gauge(
    "kubedns_webhook_services",
    "Services the webhook knows (those with a cluster IP feed environment variables).",
)

# --- end webhook ---------------------------------------------------------------------------
