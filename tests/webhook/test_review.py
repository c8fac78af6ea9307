"""AdmissionReview parsing and responses, without a server."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from kubedns.webhook.review import PatchOp, ReviewError, encode_patch, parse_review, to_review


def body(**request: Any) -> bytes:
    base: dict[str, Any] = {
        "uid": "u-1",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "operation": "CREATE",
        "object": {"metadata": {"name": "p"}},
    }
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}
    return json.dumps({**review, "request": {**base, **request}}).encode()


def test_a_good_request_parses() -> None:
    request = parse_review(body(subResource="", namespace="ns"))
    assert (request["uid"], request["operation"], request["namespace"]) == ("u-1", "CREATE", "ns")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"", "not JSON"),
        (b'"text"', "not a JSON object"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "Other"}', "AdmissionReview"),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": 1}',
            "no request",
        ),
        (body(uid=""), "uid"),
        (body(uid=7), "uid"),
        (body(uid="u" * 129), "not a UID"),
        (body(uid="u-1\nERROR forged line"), "not a UID"),
        (body(kind={"group": "", "version": "v1", "kind": "Service"}), "Pod"),
        (body(kind={"group": "", "version": "v2", "kind": "Pod"}), "Pod"),
        (body(kind="Pod"), "Pod"),
        (body(operation=None), "operation"),
        (body(object=None), "object is missing"),
        (body(object=[1]), "object must be an object"),
        (body(oldObject="x"), "oldObject must be an object"),
    ],
)
def test_bad_requests_say_why(raw: bytes, message: str) -> None:
    with pytest.raises(ReviewError, match=message):
        parse_review(raw)


def test_delete_needs_no_object() -> None:
    assert parse_review(body(operation="DELETE", object=None))["operation"] == "DELETE"


def test_response_echoes_uid_and_encodes_the_patch() -> None:
    patch = [PatchOp(op="add", path="/spec/dnsPolicy", value="None")]
    review = to_review("u-9", encode_patch(patch))
    response = review["response"]
    assert (review["apiVersion"], review["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    assert (response["uid"], response["allowed"], response["patchType"]) == (
        "u-9",
        True,
        "JSONPatch",
    )
    assert json.loads(base64.b64decode(response["patch"])) == [dict(patch[0])]


def test_empty_patch_sends_no_patch_fields() -> None:
    assert encode_patch([]) == b""
    assert to_review("u-0", encode_patch([]))["response"] == {"uid": "u-0", "allowed": True}
