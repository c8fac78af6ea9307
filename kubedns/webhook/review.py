"""AdmissionReview v1 on the wire: parsing requests and building responses.

Only ``admission.k8s.io/v1`` is spoken (v1beta1 is gone from supported API servers). A body
that is not a v1 AdmissionReview about a Pod raises ``ReviewError``, which the server turns
into HTTP 400 with the message; the response to a good request always echoes its ``uid``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired, TypedDict, cast

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
MAX_UID_LENGTH = 128
"""UIDs are 36-character UUIDs; the uid is echoed and logged, so a longer one is refused, as
is one with control characters (a newline in it could forge a log line)."""


class ReviewError(ValueError):
    """The body is not an AdmissionReview v1 request this webhook can answer."""


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class AdmissionRequest(TypedDict):
    """The fields of ``request`` the webhook reads."""

    uid: str
    kind: GroupVersionKind
    operation: str
    namespace: NotRequired[str]
    subResource: NotRequired[str]
    object: NotRequired[dict[str, Any]]
    oldObject: NotRequired[dict[str, Any] | None]
    dryRun: NotRequired[bool]


class AdmissionResponse(TypedDict):
    uid: str
    allowed: bool
    patchType: NotRequired[Literal["JSONPatch"]]
    patch: NotRequired[str]
    warnings: NotRequired[list[str]]


class AdmissionReview(TypedDict):
    apiVersion: str
    kind: str
    request: NotRequired[AdmissionRequest]
    response: NotRequired[AdmissionResponse]


class PatchOp(TypedDict):
    """One RFC 6902 operation; the webhook only emits ``add``."""

    op: Literal["add"]
    path: str
    value: Any


def parse_review(body: bytes) -> AdmissionRequest:
    """The request of an AdmissionReview v1 about a Pod, or ``ReviewError`` saying why not."""
    try:
        # UTF-8 only (RFC 8259 8.1, and what the API server sends): ``json.loads`` on bytes
        # would also guess UTF-16 and UTF-32.
        review = json.loads(body.decode("utf-8"))
    except RecursionError:
        # Deep nesting (``[[[[...``) exhausts the parser's recursion limit: no real object
        # nests anywhere near that deep.
        raise ReviewError("body is not JSON: nested too deeply") from None
    except ValueError as exc:
        # JSONDecodeError, UnicodeDecodeError, and the int() digit limit for a huge number.
        raise ReviewError(f"body is not JSON: {_short(exc)}") from None
    if not isinstance(review, dict):
        raise ReviewError("body is not a JSON object")
    if review.get("apiVersion") != API_VERSION or review.get("kind") != KIND:
        found = f"{_short_repr(review.get('apiVersion'))}/{_short_repr(review.get('kind'))}"
        raise ReviewError(f"expected apiVersion {API_VERSION!r} kind {KIND!r}, got {found}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise ReviewError("AdmissionReview has no request object")
    return _check_request(request)


def _check_request(request: dict[str, Any]) -> AdmissionRequest:
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("request.uid is missing")
    if len(uid) > MAX_UID_LENGTH or not uid.isprintable():
        raise ReviewError("request.uid is not a UID (too long, or control characters)")
    kind = request.get("kind")
    if not isinstance(kind, dict) or _gvk(kind) != ("", "v1", "Pod"):
        found = _short_repr(kind)
        raise ReviewError(f"request {uid}: request.kind must be core/v1 Pod, got {found}")
    if not isinstance(request.get("operation"), str):
        raise ReviewError(f"request {uid}: request.operation is missing")
    for field in ("namespace", "subResource"):
        if request.get(field) is not None and not isinstance(request[field], str):
            raise ReviewError(f"request {uid}: request.{field} must be a string")
    for field in ("object", "oldObject"):
        if request.get(field) is not None and not isinstance(request[field], dict):
            raise ReviewError(f"request {uid}: request.{field} must be an object")
    if request["operation"] in ("CREATE", "UPDATE") and request.get("object") is None:
        raise ReviewError(f"request {uid}: request.object is missing for {request['operation']}")
    # Every field read later has been checked above; the rest is carried along untouched.
    return cast(AdmissionRequest, request)


def _short(exc: Exception, limit: int = 200) -> str:
    """An error message cut to ``limit`` characters: some quote the client's input."""
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."


def _short_repr(value: Any, limit: int = 200) -> str:
    """``repr`` of client input, bounded: it may be megabytes long or nested too deeply."""
    try:
        text = repr(value)
    except RecursionError:
        return "(nested too deeply)"
    return text if len(text) <= limit else text[:limit] + "..."


def _gvk(kind: dict[str, Any]) -> tuple[Any, Any, Any]:
    return (kind.get("group"), kind.get("version"), kind.get("kind"))


def encode_patch(patch: Sequence[PatchOp]) -> bytes:
    """The JSONPatch as JSON; empty when there is nothing to change (no patch is sent then).

    Raises ``ValueError`` or ``RecursionError`` for values that cannot be encoded (a pod's own
    env entries travel in the patch and may nest too deeply)."""
    return json.dumps(list(patch)).encode() if patch else b""


def to_review(uid: str, patch: bytes = b"", warnings: Sequence[str] = ()) -> AdmissionReview:
    """An allowing response; ``patch`` (from ``encode_patch``) travels base64-encoded, as the
    API requires.

    ``warnings`` reach the user who created the pod (kubectl prints them)."""
    response = AdmissionResponse(uid=uid, allowed=True)
    if warnings:
        response["warnings"] = list(warnings)
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(patch).decode("ascii")
    return AdmissionReview(apiVersion=API_VERSION, kind=KIND, response=response)


def review_bytes(review: Mapping[str, Any]) -> bytes:
    return json.dumps(review, separators=(",", ":")).encode()
