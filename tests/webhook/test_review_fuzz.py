"""Property-based tests of the AdmissionReview decoder and of the whole answer to a body.

Whatever bytes arrive, ``parse_review`` returns a request or raises ``ReviewError`` (HTTP 400),
and ``ReviewHandler.answer`` returns 200 or 400 with a JSON body, never an exception (which
would be a 500 with a traceback). The ``@example`` lines are the saved corpus: inputs that
broke the decoder before issue 9 (deep nesting, a 5,000-digit number, non-UTF-8, a namespace
that is not a string, metadata that is not an object). Example counts are kept small so
``make test`` stays fast; raise them by hand (``--hypothesis-seed``, ``max_examples``) to hunt.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from kubedns.config import load
from kubedns.sources.events import Replace
from kubedns.webhook.dnsconfig import ResolvConf
from kubedns.webhook.review import ReviewError, parse_review
from kubedns.webhook.runner import mutate_settings
from kubedns.webhook.server import ReviewHandler
from kubedns.webhook.store import ServiceCatalog
from tests.webhook.helpers import configmap, service

FAST = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)

POD_GVK = {"group": "", "version": "v1", "kind": "Pod"}
FIELDS = ("uid", "kind", "operation", "namespace", "subResource", "object", "oldObject", "dryRun")


def _plausible_request() -> st.SearchStrategy[dict[str, Any]]:
    """Requests close to valid: each field either right or replaced by anything at all."""
    right: dict[str, st.SearchStrategy[Any]] = {
        "uid": st.just("u-1"),
        "kind": st.just(POD_GVK),
        "operation": st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]),
        "namespace": st.sampled_from(["shop", "default", ""]),
        "subResource": st.sampled_from(["", "ephemeralcontainers", "status"]),
        "object": st.fixed_dictionaries(
            {},
            optional={
                "metadata": json_values
                | st.fixed_dictionaries(
                    {}, optional={"annotations": json_values, "namespace": json_values}
                ),
                "spec": json_values | _plausible_spec(),
            },
        ),
        "oldObject": st.none() | json_values,
        "dryRun": st.booleans(),
    }
    return st.fixed_dictionaries({}, optional={name: right[name] | json_values for name in FIELDS})


def _plausible_spec() -> st.SearchStrategy[dict[str, Any]]:
    container = st.fixed_dictionaries(
        {},
        optional={
            "name": json_values,
            "env": json_values
            | st.lists(st.fixed_dictionaries({"name": json_values, "value": json_values})),
            "envFrom": json_values
            | st.lists(
                st.fixed_dictionaries(
                    {"configMapRef": json_values | st.just({"name": "settings"})},
                    optional={"prefix": json_values},
                )
            ),
        },
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "containers": json_values | st.lists(container, max_size=3),
            "initContainers": st.lists(container, max_size=2),
            "ephemeralContainers": st.lists(container, max_size=2),
            "dnsPolicy": json_values | st.sampled_from(["ClusterFirst", "Default", "None"]),
            "dnsConfig": json_values,
            "hostNetwork": json_values,
            "enableServiceLinks": json_values,
        },
    )


def _review(request: Any) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def _decodes_or_says_why(body: bytes) -> None:
    try:
        request = parse_review(body)
    except ReviewError:
        return
    assert isinstance(request["uid"], str)
    assert request["kind"] == POD_GVK


@FAST
@given(st.binary(max_size=300))
@example(b"[" * 100_000)
@example(b"{" * 50_000)
@example(b"1" * 5000)
@example(b"\xff\xfe{\x00}\x00")
@example(b'"\xed\xa0\x80"')
def test_any_bytes_decode_or_raise_review_error(body: bytes) -> None:
    _decodes_or_says_why(body)


@FAST
@given(json_values)
def test_any_json_value_decodes_or_raises_review_error(value: Any) -> None:
    _decodes_or_says_why(json.dumps(value).encode())


@FAST
@given(_plausible_request())
def test_any_near_valid_request_decodes_or_raises_review_error(request: dict[str, Any]) -> None:
    _decodes_or_says_why(json.dumps(_review(request)).encode())


def _handler() -> ReviewHandler:
    catalog = ServiceCatalog()
    services = (
        service("default", "kubernetes", "10.96.0.1", [("https", 443, "TCP")]),
        service("shop", "redis", "10.96.0.11", [("", 6379, "TCP")]),
    )
    catalog.apply(Replace("Service", services))
    catalog.apply(Replace("ConfigMap", (configmap("shop", "settings", ["REDIS_PORT"]),)))
    settings_ = mutate_settings(load(None, {"webhook.cluster_dns": ["10.96.0.10"]}), ResolvConf())
    return ReviewHandler(catalog, settings_)


HANDLER = _handler()


@FAST
@given(_plausible_request())
@example({"uid": "u", "kind": POD_GVK, "operation": "CREATE", "namespace": 7, "object": {}})
@example({"uid": "u", "kind": POD_GVK, "operation": "CREATE", "object": {"metadata": [1]}})
def test_the_answer_to_any_request_is_200_or_400_never_an_exception(
    request: dict[str, Any],
) -> None:
    errors = REGISTRY.get_sample_value("kubedns_webhook_internal_errors_total")
    status, body = HANDLER.answer(json.dumps(_review(request)).encode())
    assert status in (200, 400)
    # Odd pods are the mutation's business too: none may reach the internal-error path.
    assert REGISTRY.get_sample_value("kubedns_webhook_internal_errors_total") == errors
    answer = json.loads(body)
    if status == 200:
        assert answer["response"]["uid"] == request["uid"]
        assert answer["response"]["allowed"] is True
