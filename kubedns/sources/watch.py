"""One resource's list and watch against the API server: the finite inner layer.

``ResourceWatch.stream_once()`` is blocking and runs in a worker thread (the ``kubernetes``
client is synchronous). One call lists the resource if no resourceVersion is known yet, then
watches from the resourceVersion until the stream ends, and reports how it ended; failures
raise ``ApiError`` or ``ConnectionLostError``. It never retries or sleeps: that is the outer loop's
job (``kube.KubeSource``), so tests can drive the protocol one step at a time.

Responses are read raw (``ApiClient.call_api`` hands back the unread urllib3 response, as
``_preload_content=False`` does) and parsed with ``json.loads``: the client's model objects
cost far more than the DNS data they carry (``bench/decode_bench.py``: 2.5x the time, over 10x
the memory), and every object is slimmed by ``objects.from_raw`` at once, so raw JSON never
outlives its page or line.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from kubedns import metrics
from kubedns.config import WatchConfig
from kubedns.objects import Kind, ObjectError, SlimObject, from_raw, object_ref
from kubedns.sources.events import Delete, Event, Replace, Upsert

log = logging.getLogger(__name__)

TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
_READ_SIZE = 65536


@dataclass(frozen=True, slots=True)
class Resource:
    """What to list and watch for one kind."""

    kind: Kind
    path: str
    """The cluster-wide collection's URL path (also named in RBAC hints)."""
    field_selector: str = ""


# Requests go through ApiClient.call_api rather than CoreV1Api and friends: those generated
# modules cost over 20 MB of memory to import, a fifth of the whole server's budget.
RESOURCES: dict[Kind, Resource] = {
    "Namespace": Resource("Namespace", "/api/v1/namespaces"),
    "Service": Resource("Service", "/api/v1/services"),
    # discovery.k8s.io/v1 only: v1 Endpoints is deprecated and truncates at 1000 addresses.
    "EndpointSlice": Resource("EndpointSlice", "/apis/discovery.k8s.io/v1/endpointslices"),
    # Only running pods can answer; the server filters, so the rest never reach memory.
    "Pod": Resource("Pod", "/api/v1/pods", field_selector="status.phase=Running"),
    "ConfigMap": Resource("ConfigMap", "/api/v1/configmaps"),
}


class WatchError(Exception):
    """A list or watch request failed; the outer loop decides when to try again."""


class ApiError(WatchError):
    """The API server answered with an error status (HTTP or a watch ERROR event)."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}" if message else f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after
        """Seconds the server asked us to wait (``Retry-After``), if it said."""


class ConnectionLostError(WatchError):
    """No answer, or the connection broke mid-response."""


class StreamEnd(enum.Enum):
    """How a ``stream_once()`` ended without an error; also the restart metric's reason."""

    TIMEOUT = "timeout"
    """The server closed the watch at ``timeoutSeconds``: reconnect from the resourceVersion."""
    IDLE = "idle"
    """Nothing arrived within the client read timeout: reconnect from the resourceVersion."""
    EXPIRED = "expired"
    """410 Gone: the resourceVersion is too old; the next call lists again."""
    STOPPED = "stopped"
    """``abort()`` was called."""


@dataclass(frozen=True, slots=True)
class Outcome:
    end: StreamEnd
    progressed: bool
    """Whether anything arrived (a list or a watch line); a stream that keeps ending without
    progress is retried with backoff rather than at once."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """One event on its way to the consumer, with what the metrics need."""

    event: Event
    read_at: float
    """``time.monotonic()`` when the event was read off the wire."""
    trigger_time: float | None = None
    """Unix time of the cluster change behind it (EndpointSlice trigger annotation), if known."""


Deliver = Callable[[Arrival], None]


class _Response(Protocol):
    """The parts of ``urllib3.HTTPResponse`` used here."""

    def read(self) -> bytes: ...
    def read1(self, amt: int | None = None) -> bytes: ...
    def release_conn(self) -> None: ...
    def close(self) -> None: ...
    def shutdown(self) -> None: ...


class ResourceWatch:
    """List and watch one resource kind; keeps the resourceVersion between calls.

    Not thread-safe except ``abort()``, which another thread calls to end a blocked read.
    """

    def __init__(
        self,
        api: ApiClient,
        resource: Resource,
        *,
        deliver: Deliver,
        settings: WatchConfig,
    ) -> None:
        self.resource = resource
        self.resource_version: str | None = None
        """Where the next watch starts; ``None`` means list first."""
        self._api = api
        self._deliver = deliver
        self._settings = settings
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._active: _Response | None = None
        self._progressed = False

    @property
    def kind(self) -> Kind:
        return self.resource.kind

    @property
    def progressed(self) -> bool:
        """Whether the latest ``stream_once()`` got anything, even if it then failed."""
        return self._progressed

    def abort(self) -> None:
        """Make the running (and every later) ``stream_once()`` return promptly."""
        self._stopping.set()
        with self._lock:
            response = self._active
        if response is not None:
            _unblock(response)

    def stream_once(self) -> Outcome:
        """List if needed, then watch until the stream ends; raises ``WatchError``."""
        self._progressed = False
        if self._stopping.is_set():
            return Outcome(StreamEnd.STOPPED, progressed=False)
        if self.resource_version is None:
            end = self._list()
            if end is not None:
                return Outcome(end, self._progressed)
        return Outcome(self._watch(), self._progressed)

    # --- list ---------------------------------------------------------------------------

    def _list(self) -> StreamEnd | None:
        """Read every page and deliver one ``Replace``; ``None`` when it worked."""
        objects: list[SlimObject] = []
        token = ""
        while True:
            page = self._list_page(token)
            if page is None:
                return StreamEnd.STOPPED if self._stopping.is_set() else StreamEnd.EXPIRED
            objects.extend(self._slim_items(page))
            metadata = page.get("metadata")
            metadata = metadata if isinstance(metadata, Mapping) else {}
            token = str(metadata.get("continue") or "")
            if not token:
                break
        version = str(metadata.get("resourceVersion") or "")
        if not version:
            metrics.API_ERRORS.labels(self.kind, "decode").inc()
            raise ApiError(200, f"list of {self.resource.path} has no resourceVersion")
        self._deliver(Arrival(Replace(self.kind, tuple(objects)), time.monotonic()))
        self.resource_version = version
        self._progressed = True
        log.info("listed %d %s objects at resourceVersion %s", len(objects), self.kind, version)
        return None

    def _list_page(self, token: str) -> Mapping[str, Any] | None:
        """One page as parsed JSON; ``None`` if the continue token expired or we stopped."""
        query: list[tuple[str, Any]] = [("limit", self._settings.page_size)]
        if token:
            query.append(("continue", token))
        timeout = (self._settings.connect_timeout, self._settings.list_timeout)
        try:
            response = self._request(query, timeout)
        except ApiError as exc:
            if exc.status == 410:
                # The continue token outlived the server's snapshot: a consistent list must
                # start over (the API docs' advice), so report EXPIRED and list again.
                log.info("continue token for %s expired mid-list; listing again", self.kind)
                return None
            raise
        if response is None:
            return None
        body: bytes | None = None
        try:
            body = self._read_body(response)
        finally:
            self._finish(response, reuse=body is not None)
        if body is None:
            return None
        try:
            page = json.loads(body)
        except ValueError as exc:
            metrics.API_ERRORS.labels(self.kind, "decode").inc()
            raise ApiError(200, f"list of {self.resource.path} is not JSON: {exc}") from exc
        if not isinstance(page, dict) or not isinstance(page.get("items", []), list):
            metrics.API_ERRORS.labels(self.kind, "decode").inc()
            raise ApiError(200, f"list of {self.resource.path} is not a List object")
        return page

    def _read_body(self, response: _Response) -> bytes | None:
        try:
            return response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if self._stopping.is_set():
                return None
            metrics.API_ERRORS.labels(self.kind, "connection").inc()
            raise ConnectionLostError(f"reading the {self.kind} list failed: {exc}") from exc

    def _slim_items(self, page: Mapping[str, Any]) -> Iterator[SlimObject]:
        for raw in page.get("items") or ():
            slim = self._slim(raw)
            if slim is not None:
                yield slim

    def _slim(self, raw: Any) -> SlimObject | None:
        """The slim value, or ``None`` (logged, counted) when the object is malformed."""
        if not isinstance(raw, Mapping):
            log.warning("skipping a %s that is not a JSON object: %.200r", self.kind, raw)
            metrics.OBJECTS_SKIPPED.labels(self.kind).inc()
            return None
        try:
            return from_raw(self.kind, raw)
        except ObjectError as exc:
            log.warning("skipping malformed object: %s", exc)
            metrics.OBJECTS_SKIPPED.labels(self.kind).inc()
            return None

    # --- watch --------------------------------------------------------------------------

    def _watch(self) -> StreamEnd:
        # Spread reconnects of many replicas over [t, 2t), as client-go's reflector does.
        server_timeout = int(self._settings.watch_timeout * (1 + random.random()))
        query: list[tuple[str, Any]] = [
            ("watch", True),
            ("resourceVersion", self.resource_version),
            ("allowWatchBookmarks", True),
            ("timeoutSeconds", max(1, server_timeout)),
        ]
        timeout = (self._settings.connect_timeout, self._settings.read_timeout)
        try:
            response = self._request(query, timeout)
        except ApiError as exc:
            if exc.status == 410:
                return self._expired(str(exc))
            raise
        if response is None:
            return StreamEnd.STOPPED
        try:
            return self._read_stream(response)
        finally:
            self._finish(response, reuse=False)

    def _read_stream(self, response: _Response) -> StreamEnd:
        try:
            for line in _lines(response):
                if self._stopping.is_set():
                    return StreamEnd.STOPPED
                end = self._on_line(line)
                if end is not None:
                    return end
        except urllib3.exceptions.ReadTimeoutError:
            if self._stopping.is_set():
                return StreamEnd.STOPPED
            log.debug("%s watch idle for %ss; reconnecting", self.kind, self._settings.read_timeout)
            return StreamEnd.IDLE
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if self._stopping.is_set():
                return StreamEnd.STOPPED
            metrics.API_ERRORS.labels(self.kind, "connection").inc()
            raise ConnectionLostError(f"{self.kind} watch broke: {exc}") from exc
        return StreamEnd.STOPPED if self._stopping.is_set() else StreamEnd.TIMEOUT

    def _on_line(self, line: bytes) -> StreamEnd | None:
        """Apply one watch event; a value ends the stream."""
        read_at = time.monotonic()
        self._progressed = True
        try:
            message = json.loads(line)
        except ValueError:
            log.warning("%s watch sent a line that is not JSON: %.200r", self.kind, line)
            metrics.API_ERRORS.labels(self.kind, "decode").inc()
            return None
        if not isinstance(message, dict) or not isinstance(message.get("object"), dict):
            log.warning("%s watch sent an event without an object: %.200r", self.kind, line)
            metrics.API_ERRORS.labels(self.kind, "decode").inc()
            return None
        event_type, raw = message.get("type"), message["object"]
        match event_type:
            case "ADDED" | "MODIFIED":
                self._upsert(raw, read_at)
            case "DELETED":
                self._delete(raw, read_at)
            case "BOOKMARK":
                self._advance(raw)
            case "ERROR":
                return self._on_error_event(raw)
            case _:
                log.warning(
                    "%s watch sent unknown event type %.50r; ignored", self.kind, event_type
                )
        return None

    def _upsert(self, raw: Mapping[str, Any], read_at: float) -> None:
        slim = self._slim(raw)
        if slim is not None:
            self._deliver(Arrival(Upsert(slim), read_at, _trigger_time(raw)))
        # Even a skipped object moves the version on: resuming before it would replay it.
        self._advance(raw)

    def _delete(self, raw: Mapping[str, Any], read_at: float) -> None:
        namespace, name = object_ref(raw)
        if name:
            self._deliver(Arrival(Delete(self.kind, namespace, name), read_at))
        else:
            log.warning("%s watch deleted an object without a name; ignored", self.kind)
            metrics.OBJECTS_SKIPPED.labels(self.kind).inc()
        self._advance(raw)

    def _advance(self, raw: Mapping[str, Any]) -> None:
        metadata = raw.get("metadata")
        if isinstance(metadata, Mapping) and metadata.get("resourceVersion"):
            self.resource_version = str(metadata["resourceVersion"])

    def _on_error_event(self, status: Mapping[str, Any]) -> StreamEnd:
        """A watch ERROR carries a Status; 410 is the routine 'too old resourceVersion'."""
        code = status.get("code")
        message = str(status.get("message") or status.get("reason") or "")
        if code == 410:
            return self._expired(message)
        code = code if isinstance(code, int) else 500
        metrics.API_ERRORS.labels(self.kind, str(code)).inc()
        details = status.get("details")
        retry = details.get("retryAfterSeconds") if isinstance(details, Mapping) else None
        retry_after = float(retry) if isinstance(retry, int | float) else None
        raise ApiError(code, f"{self.kind} watch ERROR event: {message}", retry_after=retry_after)

    def _expired(self, message: str) -> StreamEnd:
        log.info(
            "%s resourceVersion %s expired (410 Gone: %s); listing again",
            self.kind,
            self.resource_version,
            message,
        )
        self.resource_version = None
        return StreamEnd.EXPIRED

    # --- HTTP ---------------------------------------------------------------------------

    def _request(self, query: list[tuple[str, Any]], timeout: tuple[float, float]) -> Any:
        """Start a GET; the raw urllib3 response, or ``None`` if aborted meanwhile."""
        if self.resource.field_selector:
            query = [*query, ("fieldSelector", self.resource.field_selector)]
        try:
            method, url, headers, _, _ = self._api.param_serialize(
                method="GET",
                resource_path=self.resource.path,
                query_params=query,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
            result = self._api.call_api(
                method, url, header_params=headers, _request_timeout=timeout
            )
        except (urllib3.exceptions.HTTPError, OSError, ApiException) as exc:
            # ApiException here means TLS failed (the client wraps SSLError as status 0).
            if self._stopping.is_set():
                return None
            metrics.API_ERRORS.labels(self.kind, "connection").inc()
            raise ConnectionLostError(
                f"cannot reach the API server for {self.kind}: {exc}"
            ) from exc
        response = result.response
        if not 200 <= response.status <= 299:
            raise self._api_error(response)
        with self._lock:
            self._active = response
        if self._stopping.is_set():  # abort() ran before _active was set: it missed this one
            _unblock(response)
        return response

    def _api_error(self, response: Any) -> ApiError:
        status = int(response.status)
        metrics.API_ERRORS.labels(self.kind, str(status)).inc()
        try:
            body = response.read()
        except (urllib3.exceptions.HTTPError, OSError):
            body = b""
        finally:
            response.release_conn()
        return ApiError(status, _status_message(body), retry_after=_retry_after(response.headers))

    def _finish(self, response: _Response, *, reuse: bool) -> None:
        with self._lock:
            self._active = None
        if not reuse:
            # A watch cut short leaves unread bytes on the connection: close it rather than
            # return a half-read connection to the pool.
            response.close()
        response.release_conn()


def _lines(response: _Response) -> Iterator[bytes]:
    """Split a watch body into lines as bytes arrive (read1 returns whatever is there).

    Partial lines are kept as a list of chunks and joined once, so a large object arriving in
    many chunks costs linear time."""
    pending: list[bytes] = []
    while chunk := response.read1(_READ_SIZE):
        if b"\n" not in chunk:
            pending.append(chunk)
            continue
        first, *rest = chunk.split(b"\n")
        *complete, tail = [b"".join([*pending, first]), *rest]
        pending = [tail] if tail else []
        yield from (line for line in complete if line.strip())
    if pending and (last := b"".join(pending)).strip():
        yield last


def _unblock(response: _Response) -> None:
    """Wake a thread blocked reading ``response``: shutting the socket down ends the read."""
    # Errors mean it was already released or closed: nothing is blocked on it then.
    with contextlib.suppress(ValueError, RuntimeError, OSError, AttributeError):
        response.shutdown()


def _status_message(body: Any) -> str:
    """The ``message`` of a Status body, else the body itself (shortened)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    try:
        status = json.loads(text)
    except ValueError:
        return text[:200]
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return text[:200]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (the delta form; the API server never sends a date)."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _trigger_time(raw: Mapping[str, Any]) -> float | None:
    """When the change behind an EndpointSlice happened, from the controller's annotation."""
    metadata = raw.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    value = annotations.get(TRIGGER_TIME_ANNOTATION) if isinstance(annotations, Mapping) else None
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None
