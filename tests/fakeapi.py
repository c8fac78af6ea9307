"""An in-process fake Kubernetes API server that speaks the real HTTP protocol.

aiohttp on 127.0.0.1 with an ephemeral port, in a background thread with its own event loop,
so tests may block on the real ``kubernetes`` client (which is synchronous) without deadlock.
A kubeconfig written by ``write_kubeconfig`` points the unchanged client at it.

What it implements, as the API server does:

- a store with one global resourceVersion counter and an event history with a compaction
  point: a watch from a version older than the compaction point is 410 Gone, either as an
  ERROR event in a 200 stream (what kube-apiserver sends) or as an HTTP 410;
- lists at a consistent snapshot with ``limit``/``continue`` (an expired snapshot is 410);
- chunked watch streams of JSON lines: ADDED/MODIFIED/DELETED from ``resourceVersion`` on,
  BOOKMARK when ``allowWatchBookmarks`` is set, end of stream at ``timeoutSeconds``;
- ``fieldSelector`` equality (``status.phase=Running``): an object leaving the selection is a
  DELETED event, one entering it is ADDED;
- bearer-token authentication (401 on a wrong token).

And what tests inject: failures by status code with Retry-After, abrupt disconnects, raw lines
(malformed, ERROR, unknown types), slow streams. Every request is recorded in ``requests``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import itertools
import json
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

JSON = dict[str, Any]

# Collection path -> kind, and kind -> apiVersion, for the resources kubedns reads.
PATHS: dict[str, str] = {
    "/api/v1/namespaces": "Namespace",
    "/api/v1/services": "Service",
    "/api/v1/pods": "Pod",
    "/api/v1/configmaps": "ConfigMap",
    "/apis/discovery.k8s.io/v1/endpointslices": "EndpointSlice",
}
API_VERSIONS: dict[str, str] = {
    "Namespace": "v1",
    "Service": "v1",
    "Pod": "v1",
    "ConfigMap": "v1",
    "EndpointSlice": "discovery.k8s.io/v1",
}
REASONS = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    410: "Expired",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


@dataclass(frozen=True, slots=True)
class SeenRequest:
    kind: str
    watch: bool
    params: dict[str, str]
    at: float
    """``time.monotonic()`` when it arrived."""


@dataclass(frozen=True, slots=True)
class Fault:
    status: int
    on: Literal["any", "list", "watch"]
    retry_after: float | None


@dataclass(frozen=True, slots=True)
class Change:
    """One history entry: the object before and after (``None`` for create/delete)."""

    rv: int
    kind: str
    old: JSON | None
    new: JSON | None


@dataclass
class _Watcher:
    kind: str
    selector: list[tuple[str, str, bool]]
    queue: asyncio.Queue[tuple[str, Any]]
    loop: asyncio.AbstractEventLoop
    transport: asyncio.BaseTransport | None = None


@dataclass
class _Snapshot:
    rv: int
    items: list[JSON]


@dataclass
class FakeApiServer:
    """Start with ``start()``; stop with ``stop()``. All public methods are thread-safe."""

    token: str = "test-token"
    expired_style: Literal["event", "http"] = "event"
    """How an expired watch resourceVersion is reported: an ERROR event (as kube-apiserver
    does) or an HTTP 410 response."""
    line_delay: float = 0.0
    """Seconds to wait before each watch line, for slow streams."""
    bookmark_interval: float | None = None
    """Send a BOOKMARK this often on watches that allow them; ``None`` for never."""
    max_watch_seconds: float | None = None
    """End every watch after this long whatever ``timeoutSeconds`` asked (0: at once)."""
    requests: list[SeenRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rv = 1
        self._compacted = 0
        self._objects: dict[str, dict[tuple[str, str], JSON]] = {k: {} for k in API_VERSIONS}
        self._history: list[Change] = []
        self._watchers: list[_Watcher] = []
        self._faults: dict[str, list[Fault]] = {}
        self._snapshots: dict[int, _Snapshot] = {}
        self._snapshot_ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeApiServer:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name="fake-api", daemon=True
        )
        self._thread.start()
        if not ready.wait(10) or not self.port:
            raise RuntimeError("fake API server did not start")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig (JSON is valid YAML) for the real client to reach this server."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester"}}],
            "current-context": "fake",
        }
        path.write_text(json.dumps(config), encoding="utf-8")
        return path

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._setup())
        finally:
            ready.set()
        loop.run_forever()
        loop.close()

    async def _setup(self) -> None:
        app = web.Application()
        for path in PATHS:
            app.router.add_get(path, self._handle)
        app.router.add_post("/_fake/churn", self._handle_churn)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self.disconnect_watches()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- the store ----------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def create(self, raw: Mapping[str, Any]) -> int:
        """Add an object (``kind`` and ``metadata`` required); its new resourceVersion."""
        return self._change(raw["kind"], _key(raw), copy.deepcopy(dict(raw)), must_exist=False)

    def update(self, raw: Mapping[str, Any]) -> int:
        return self._change(raw["kind"], _key(raw), copy.deepcopy(dict(raw)), must_exist=True)

    def apply(self, raw: Mapping[str, Any]) -> int:
        """Create or update."""
        return self._change(raw["kind"], _key(raw), copy.deepcopy(dict(raw)), must_exist=None)

    def delete(self, kind: str, namespace: str, name: str) -> int:
        return self._change(kind, (namespace, name), None, must_exist=True)

    def load(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Bulk-load objects without watch events (a cluster that existed before we came)."""
        with self._lock:
            for raw in objects:
                self._rv += 1
                stored = _stamp(dict(raw), self._rv)
                self._objects[raw["kind"]][_key(raw)] = stored
            self._compacted = self._rv

    def compact(self) -> None:
        """Forget the history: every watch from an older resourceVersion now gets 410 Gone."""
        with self._lock:
            self._compacted = self._rv
            self._history.clear()

    def objects(self, kind: str) -> list[JSON]:
        with self._lock:
            return [copy.deepcopy(o) for o in self._objects[kind].values()]

    def _change(
        self, kind: str, key: tuple[str, str], new: JSON | None, *, must_exist: bool | None
    ) -> int:
        with self._lock:
            old = self._objects[kind].get(key)
            if must_exist is True and old is None:
                raise KeyError(f"{kind} {key} does not exist")
            if must_exist is False and old is not None:
                raise KeyError(f"{kind} {key} already exists")
            self._rv += 1
            if new is None:
                del self._objects[kind][key]
                assert old is not None
                new_for_history = None
                old = {**old, "metadata": {**old["metadata"], "resourceVersion": str(self._rv)}}
            else:
                new_for_history = _stamp(new, self._rv)
                self._objects[kind][key] = new_for_history
            change = Change(self._rv, kind, old, new_for_history)
            self._history.append(change)
            watchers = [w for w in self._watchers if w.kind == kind]
            for watcher in watchers:
                _notify(watcher, "change", change)
            return self._rv

    # --- fault injection ----------------------------------------------------------------

    def fail_next(
        self,
        kind: str,
        status: int,
        *,
        count: int = 1,
        on: Literal["any", "list", "watch"] = "any",
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests for ``kind`` with ``status``."""
        with self._lock:
            self._faults.setdefault(kind, []).extend([Fault(status, on, retry_after)] * count)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def send_line(self, kind: str, line: bytes) -> None:
        """Write ``line`` (a newline is added) to every open watch of ``kind``."""
        self._broadcast(kind, "line", line)

    def send_event(self, kind: str, event_type: str, obj: Mapping[str, Any]) -> None:
        self.send_line(kind, json.dumps({"type": event_type, "object": obj}).encode())

    def send_error(self, kind: str, code: int, message: str = "injected") -> None:
        self.send_event(kind, "ERROR", _status(code, message))

    def send_bookmark(self, kind: str) -> None:
        """A BOOKMARK at the current resourceVersion to every open watch of ``kind``."""
        self._broadcast(kind, "bookmark", None)

    def disconnect_watches(self, kind: str | None = None) -> None:
        """Abruptly drop open watch connections (no chunked terminator), as a crash does."""
        with self._lock:
            watchers = [w for w in self._watchers if kind is None or w.kind == kind]
        for watcher in watchers:
            _notify(watcher, "disconnect", None)

    def open_watches(self, kind: str) -> int:
        with self._lock:
            return sum(1 for w in self._watchers if w.kind == kind)

    def seen(self, kind: str, *, watch: bool) -> list[SeenRequest]:
        with self._lock:
            return [r for r in self.requests if r.kind == kind and r.watch == watch]

    def _broadcast(self, kind: str, what: str, payload: Any) -> None:
        with self._lock:
            watchers = [w for w in self._watchers if w.kind == kind]
        for watcher in watchers:
            _notify(watcher, what, payload)

    # --- load generation ----------------------------------------------------------------

    async def churn(self, *, rate: float, seconds: float) -> int:
        """Modify EndpointSlices at ``rate`` changes a second for ``seconds`` (on the fake's
        loop). Each change stamps the first endpoint's hostname with ``t<time_ns>`` and sets the
        trigger-time annotation, so a consumer can measure change-to-applied latency."""
        with self._lock:
            keys = sorted(
                k for k, o in self._objects["EndpointSlice"].items() if o.get("endpoints")
            )
        loop = asyncio.get_running_loop()
        start, total = loop.time(), int(rate * seconds)
        for i in range(total):
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
            with self._lock:
                current = copy.deepcopy(self._objects["EndpointSlice"][keys[i % len(keys)]])
            now = time.time_ns()
            current["endpoints"][0]["hostname"] = f"t{now}"
            annotations = current["metadata"].setdefault("annotations", {})
            annotations["endpoints.kubernetes.io/last-change-trigger-time"] = _rfc3339(now)
            self._change("EndpointSlice", _key(current), current, must_exist=True)
        return total

    async def _handle_churn(self, request: web.Request) -> web.Response:
        rate = float(request.query.get("rate", "200"))
        seconds = float(request.query.get("seconds", "10"))
        changes = await self.churn(rate=rate, seconds=seconds)
        return web.json_response({"changes": changes})

    # --- HTTP ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        kind = PATHS[request.path]
        params = dict(request.query)
        watching = params.get("watch") in ("true", "1", "True")
        with self._lock:
            self.requests.append(SeenRequest(kind, watching, params, time.monotonic()))
            fault = self._take_fault(kind, watching)
        if request.headers.get("Authorization", "").lower() != f"bearer {self.token}".lower():
            return _error(401, "Unauthorized")
        if fault is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            return _error(fault.status, "injected failure", headers=headers)
        selector = _parse_selector(params.get("fieldSelector", ""))
        if watching:
            return await self._watch(request, kind, selector, params)
        return self._list(kind, selector, params)

    def _take_fault(self, kind: str, watching: bool) -> Fault | None:
        queue = self._faults.get(kind, [])
        for index, fault in enumerate(queue):
            if fault.on == "any" or (fault.on == "watch") == watching:
                return queue.pop(index)
        return None

    def _list(self, kind: str, selector: _Selector, params: Mapping[str, str]) -> web.Response:
        limit = int(params.get("limit") or 0)
        token = params.get("continue", "")
        with self._lock:
            if token:
                snapshot_id, offset = _decode_token(token)
                snapshot = self._snapshots.get(snapshot_id)
                if snapshot is None or snapshot.rv < self._compacted:
                    return _error(410, "The provided continue parameter is too old")
            else:
                items = [
                    _as_item(o)
                    for _, o in sorted(self._objects[kind].items())
                    if _matches(o, selector)
                ]
                snapshot_id, offset = next(self._snapshot_ids), 0
                snapshot = _Snapshot(self._rv, items)
                self._snapshots[snapshot_id] = snapshot
        end = offset + limit if limit else len(snapshot.items)
        metadata: JSON = {"resourceVersion": str(snapshot.rv)}
        if end < len(snapshot.items):
            metadata["continue"] = _encode_token(snapshot_id, end)
            metadata["remainingItemCount"] = len(snapshot.items) - end
        body = {
            "kind": f"{kind}List",
            "apiVersion": API_VERSIONS[kind],
            "metadata": metadata,
            "items": snapshot.items[offset:end],
        }
        return web.json_response(body)

    async def _watch(
        self, request: web.Request, kind: str, selector: _Selector, params: Mapping[str, str]
    ) -> web.StreamResponse:
        since = int(params.get("resourceVersion") or 0)
        timeout = float(params.get("timeoutSeconds") or 1800)
        if self.max_watch_seconds is not None:
            timeout = min(timeout, self.max_watch_seconds)
        bookmarks = params.get("allowWatchBookmarks") in ("true", "1", "True")
        loop = asyncio.get_running_loop()
        watcher = _Watcher(kind, selector, asyncio.Queue(), loop, request.transport)
        with self._lock:
            expired = since < self._compacted
            backlog = [c for c in self._history if c.kind == kind and c.rv > since]
            if not expired:
                self._watchers.append(watcher)
        if expired and self.expired_style == "http":
            return _error(410, f"too old resource version: {since} ({self._compacted})")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            if expired:
                message = f"too old resource version: {since} ({self._compacted})"
                await self._write(response, {"type": "ERROR", "object": _status(410, message)})
            else:
                for change in backlog:
                    await self._write_change(response, watcher, change)
                await self._stream(response, watcher, timeout=timeout, bookmarks=bookmarks)
        except _DisconnectError:
            if request.transport is not None:
                request.transport.abort()
            return response
        except (ConnectionResetError, RuntimeError):
            return response  # the client went away
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._watchers.remove(watcher)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

    async def _stream(
        self, response: web.StreamResponse, watcher: _Watcher, *, timeout: float, bookmarks: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_bookmark = loop.time() + (self.bookmark_interval or timeout)
        while (remaining := deadline - loop.time()) > 0:
            if watcher.transport is None or watcher.transport.is_closing():
                return  # the client hung up; stop counting this watch as open
            if bookmarks and self.bookmark_interval is not None and loop.time() >= next_bookmark:
                next_bookmark = loop.time() + self.bookmark_interval
                await self._write(response, self._bookmark(watcher.kind))
            try:
                # Short waits so a client that went away is noticed soon.
                what, payload = await asyncio.wait_for(watcher.queue.get(), min(remaining, 0.05))
            except TimeoutError:
                continue
            if what == "disconnect":
                raise _DisconnectError
            if what == "change":
                await self._write_change(response, watcher, payload)
            elif what == "line":
                await self._pace()
                await response.write(payload + b"\n")
            elif what == "bookmark" and bookmarks:
                await self._write(response, self._bookmark(watcher.kind))

    def _bookmark(self, kind: str) -> JSON:
        with self._lock:
            rv = self._rv
        return {
            "type": "BOOKMARK",
            "object": {
                "kind": kind,
                "apiVersion": API_VERSIONS[kind],
                "metadata": {"resourceVersion": str(rv)},
            },
        }

    async def _write_change(
        self, response: web.StreamResponse, watcher: _Watcher, change: Change
    ) -> None:
        was = change.old is not None and _matches(change.old, watcher.selector)
        now = change.new is not None and _matches(change.new, watcher.selector)
        if now:
            assert change.new is not None
            await self._write(
                response, {"type": "MODIFIED" if was else "ADDED", "object": change.new}
            )
        elif was:
            gone = change.new if change.new is not None else change.old
            assert gone is not None
            await self._write(response, {"type": "DELETED", "object": gone})

    async def _write(self, response: web.StreamResponse, event: JSON) -> None:
        await self._pace()
        await response.write(json.dumps(event).encode() + b"\n")

    async def _pace(self) -> None:
        if self.line_delay:
            await asyncio.sleep(self.line_delay)


class _DisconnectError(Exception):
    """Raised inside a watch handler to drop the connection abruptly."""


_Selector = list[tuple[str, str, bool]]


def _notify(watcher: _Watcher, what: str, payload: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the fake's loop is gone: nobody is listening
        watcher.loop.call_soon_threadsafe(watcher.queue.put_nowait, (what, payload))


def _key(raw: Mapping[str, Any]) -> tuple[str, str]:
    metadata = raw["metadata"]
    return (str(metadata.get("namespace") or ""), str(metadata["name"]))


def _stamp(raw: JSON, rv: int) -> JSON:
    """Set the server-owned fields: resourceVersion, apiVersion, kind."""
    metadata = dict(raw.get("metadata") or {})
    metadata["resourceVersion"] = str(rv)
    metadata.setdefault("uid", f"uid-{rv}")
    return {**raw, "apiVersion": API_VERSIONS[raw["kind"]], "metadata": metadata}


def _as_item(raw: JSON) -> JSON:
    """List items carry no kind or apiVersion on the wire (the List says them once)."""
    return {k: v for k, v in raw.items() if k not in ("kind", "apiVersion")}


def _parse_selector(text: str) -> _Selector:
    """``a.b=c,d!=e`` into (path, value, equal) terms."""
    terms: _Selector = []
    for term in filter(None, text.split(",")):
        if "!=" in term:
            path, value = term.split("!=", 1)
            terms.append((path, value, False))
        else:
            path, value = term.replace("==", "=").split("=", 1)
            terms.append((path, value, True))
    return terms


def _matches(raw: Mapping[str, Any], selector: _Selector) -> bool:
    for path, value, equal in selector:
        node: Any = raw
        for part in path.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if (str(node if node is not None else "") == value) != equal:
            return False
    return True


def _status(code: int, message: str) -> JSON:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": REASONS.get(code, "Unknown"),
        "code": code,
    }


def _error(code: int, message: str, *, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(_status(code, message), status=code, headers=headers)


def _encode_token(snapshot_id: int, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([snapshot_id, offset]).encode()).decode()


def _decode_token(token: str) -> tuple[int, int]:
    snapshot_id, offset = json.loads(base64.urlsafe_b64decode(token.encode()))
    return int(snapshot_id), int(offset)


def _rfc3339(time_ns: int) -> str:
    """RFC 3339 with microseconds, as the EndpointSlice controller writes trigger times."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos // 1000:06d}Z"


def main(argv: list[str] | None = None) -> int:
    """Serve a cluster file standalone, e.g. for benchmarks or ``kubedns serve --kubeconfig``."""
    parser = argparse.ArgumentParser(description="fake Kubernetes API server")
    parser.add_argument("--load", type=Path, help="a JSON List of objects to serve")
    parser.add_argument("--kubeconfig", type=Path, required=True, help="where to write it")
    args = parser.parse_args(argv)
    server = FakeApiServer()
    if args.load is not None:
        items = json.loads(args.load.read_text(encoding="utf-8"))["items"]
        server.load(items)
        del items
    server.start()
    server.write_kubeconfig(args.kubeconfig)
    print(f"serving {server.url}; kubeconfig {args.kubeconfig}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
