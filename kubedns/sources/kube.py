"""The live API source: list and watch the Kubernetes API server, emit ``events``.

Two layers, as kopf does it. The outer layer (``KubeSource.run``, one asyncio task per kind)
only retries: capped exponential backoff with jitter, a log line for each failure, the
Retry-After of a 429 honoured. The inner layer (``watch.ResourceWatch.stream_once``) is finite
and blocking; it runs in a daemon worker thread because the ``kubernetes`` client is
synchronous. Events cross to the loop with ``call_soon_threadsafe`` and the sink runs on the
loop thread, so a query never sees half an update and events of one kind keep their order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from kubernetes.client import ApiClient, Configuration
from kubernetes.config import ConfigException, incluster_config, kube_config

from kubedns import metrics
from kubedns.config import WatchConfig
from kubedns.objects import Kind
from kubedns.sources.events import Delete, EventSink, Replace
from kubedns.sources.watch import (
    RESOURCES,
    ApiError,
    Arrival,
    ConnectionLostError,
    Outcome,
    ResourceWatch,
    StreamEnd,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
HEALTHY_STREAM_SECONDS = 1.0
"""A stream open at least this long was not refused, even if nothing came on it."""


class KubeConfigError(RuntimeError):
    """Neither in-cluster credentials nor a usable kubeconfig were found."""


def api_client_from(
    kubeconfig: Path | None,
    *,
    environ: Mapping[str, str] = os.environ,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
) -> ApiClient:
    """An API client: in-cluster when running in a pod and no kubeconfig is given, else the
    kubeconfig file (``kubeconfig``, then ``$KUBECONFIG``, then ``~/.kube/config``).

    Raises ``KubeConfigError`` naming what was tried when neither works.
    """
    configuration = Configuration()
    # The watch loop owns every retry. urllib3's default would silently retry a 429 or 503 with
    # Retry-After by sleeping inside the worker thread, where a stop cannot interrupt it.
    configuration.retries = False
    if kubeconfig is None and environ.get("KUBERNETES_SERVICE_HOST"):
        _load_in_cluster(configuration, environ=environ, directory=service_account_dir)
    else:
        _load_kubeconfig(configuration, kubeconfig, environ=environ)
    return ApiClient(configuration)


def _load_in_cluster(
    configuration: Configuration, *, environ: Mapping[str, str], directory: Path
) -> None:
    loader = incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
        token_filename=str(directory / "token"),
        cert_filename=str(directory / "ca.crt"),
        try_refresh_token=False,
        environ=environ,
    )
    try:
        loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError) as exc:
        raise KubeConfigError(f"in-cluster API config from {directory}: {exc}") from exc
    hook: Any = _TokenFile(directory / "token")  # the client types the attribute as None
    configuration.refresh_api_key_hook = hook


class _TokenFile:
    """Refresh hook: re-read the service-account token whenever the file changed.

    Bound tokens expire (an hour by default) and the kubelet rotates the file by swapping a
    symlink; checking its identity before each request (a ``stat``; requests are rare) picks up
    a new token at once, where the client's own hook waits a minute.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._seen: tuple[int, int, int] | None = None

    def __call__(self, configuration: Configuration) -> None:
        try:
            info = self._path.stat()
            identity = (info.st_ino, info.st_mtime_ns, info.st_size)
            if identity == self._seen:
                return
            token = self._path.read_text(encoding="utf-8").strip()
        except OSError as exc:  # keep the old token; the API will say 401 if it is stale
            log.warning("cannot re-read service-account token %s: %s", self._path, exc)
            return
        if token:
            configuration.api_key["BearerToken"] = f"Bearer {token}"
            self._seen = identity


def _load_kubeconfig(
    configuration: Configuration, kubeconfig: Path | None, *, environ: Mapping[str, str]
) -> None:
    # Resolved here rather than by the client, which reads $KUBECONFIG once at import.
    where = str(kubeconfig or environ.get("KUBECONFIG") or Path("~/.kube/config").expanduser())
    try:
        kube_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=where, client_configuration=configuration, persist_config=False
        )
    except (ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        raise KubeConfigError(
            f"no API server to watch: not in a pod (KUBERNETES_SERVICE_HOST unset) and "
            f"kubeconfig {where} is unusable: {exc}"
        ) from exc


class KubeSource:
    """Lists and watches ``kinds``, feeding ``sink`` on the event loop until stopped.

    ``synced_kinds`` holds the kinds whose first complete list the sink has applied; it changes
    in the same loop callback as the sink call, so it always agrees with a consumer that marks
    a kind synced on its first ``Replace``. One instance runs once.
    """

    def __init__(
        self,
        api: ApiClient,
        *,
        kinds: tuple[Kind, ...],
        sink: EventSink,
        settings: WatchConfig,
    ) -> None:
        unknown = [kind for kind in kinds if kind not in RESOURCES]
        if unknown:
            raise ValueError(f"cannot watch kind {unknown[0]!r}; known: {', '.join(RESOURCES)}")
        self._sink = sink
        self._settings = settings
        self._kinds = tuple(dict.fromkeys(kinds))
        self._watches = {
            kind: ResourceWatch(api, RESOURCES[kind], deliver=self._from_thread, settings=settings)
            for kind in self._kinds
        }
        self._synced: set[Kind] = set()
        self._all_synced = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()

    @property
    def kinds(self) -> tuple[Kind, ...]:
        return self._kinds

    @property
    def synced_kinds(self) -> frozenset[Kind]:
        return frozenset(self._synced)

    @property
    def is_synced(self) -> bool:
        """Every kind has had its initial list applied."""
        return self._all_synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait for all initial lists, at most ``timeout`` seconds (default
        ``settings.sync_timeout``); ``False`` (and a log line) if they are not all in by then,
        so the caller starts serving anyway, as CoreDNS does after its 5 s."""
        limit = self._settings.sync_timeout if timeout is None else timeout
        try:
            await asyncio.wait_for(self._all_synced.wait(), limit)
        except TimeoutError:
            missing = ", ".join(k for k in self._kinds if k not in self._synced)
            log.warning(
                "initial list of %s not complete after %.1fs; serving anyway (unknown "
                "cluster names get SERVFAIL until it is)",
                missing,
                limit,
            )
            return False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Watch every kind until ``stop`` is set, then end the workers and return."""
        self._loop = asyncio.get_running_loop()
        if not self._kinds:
            self._all_synced.set()
        tasks = [
            asyncio.create_task(self._run_kind(watch, stop), name=f"kube-watch-{kind}")
            for kind, watch in self._watches.items()
        ]
        try:
            await stop.wait()
        finally:
            for watch in self._watches.values():
                watch.abort()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._join_threads()
            # Events still queued from the workers are dropped: run() has returned, so the
            # consumer must be able to rely on the source being quiet.
            self._closed = True

    # --- outer loop ---------------------------------------------------------------------

    async def _run_kind(self, watch: ResourceWatch, stop: asyncio.Event) -> None:
        """Retry ``stream_once`` forever; the only decision here is how long to wait."""
        failures = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                outcome = await self._in_thread(watch.stream_once, f"kube-watch-{watch.kind}")
            except Exception as exc:
                # A stream that delivered something before failing starts the count afresh.
                failures = 1 if watch.progressed else failures + 1
                delay = self._delay_after_failure(watch, exc, failures)
                reason = "error"
            else:
                if outcome.end is StreamEnd.STOPPED:
                    return
                if outcome.end is StreamEnd.EXPIRED:
                    metrics.RELISTS.labels(watch.kind).inc()
                if failures and outcome.progressed:
                    log.info("%s watch working again after %d failures", watch.kind, failures)
                elapsed = time.monotonic() - started
                failures, delay = self._after_clean_end(outcome, failures, elapsed=elapsed)
                reason = outcome.end.value
            metrics.WATCH_RESTARTS.labels(watch.kind, reason).inc()
            if delay > 0 and await _stopped_within(stop, delay):
                return

    def _after_clean_end(
        self, outcome: Outcome, failures: int, *, elapsed: float
    ) -> tuple[int, float]:
        """Reconnect at once after a healthy stream: one that brought something, or stayed
        open a while, or went quiet for the whole read timeout (which paces retries by
        itself). A 410 relists at once too, but only the first time in a row. Streams that keep
        ending at once with nothing back off, so a server that closes every watch immediately
        is not hammered."""
        healthy = outcome.end is StreamEnd.IDLE or elapsed >= HEALTHY_STREAM_SECONDS
        if outcome.progressed or healthy:
            return 0, 0.0
        failures += 1
        if outcome.end is StreamEnd.EXPIRED and failures == 1:
            return failures, 0.0
        return failures, self._backoff(failures)

    def _delay_after_failure(self, watch: ResourceWatch, exc: Exception, failures: int) -> float:
        if isinstance(exc, ApiError):
            return self._delay_after_api_error(watch, exc, failures)
        delay = self._backoff(failures)
        if isinstance(exc, ConnectionLostError):
            log.warning("%s; retrying in %.2fs", exc, delay)
        else:  # a bug: say so loudly, but the watch must outlive it
            log.error(
                "%s watch failed unexpectedly; retrying in %.2fs",
                watch.kind,
                delay,
                exc_info=exc,
            )
        return delay

    def _delay_after_api_error(self, watch: ResourceWatch, exc: ApiError, failures: int) -> float:
        delay = self._backoff(failures)
        kind, path = watch.kind, watch.resource.path
        if exc.status == 401:
            log.error(
                "API server rejected our credentials for %s (401 Unauthorized: token expired "
                "or revoked?); retrying in %.2fs: %s",
                kind,
                delay,
                exc,
            )
        elif exc.status == 403:
            log.error(
                "forbidden to list/watch %s (403): grant the service account list and watch "
                "on %s; retrying in %.2fs: %s",
                kind,
                path,
                delay,
                exc,
            )
        elif exc.status == 429:
            if exc.retry_after is not None:
                delay = exc.retry_after  # the server knows its load better than our backoff
            log.warning(
                "API server is throttling %s (429 Too Many Requests); retrying in %.2fs as asked",
                kind,
                delay,
            )
        elif exc.status >= 500:
            log.warning("API server error on %s (%s); retrying in %.2fs", kind, exc, delay)
        else:
            log.error("%s request to %s failed (%s); retrying in %.2fs", kind, path, exc, delay)
        return delay

    def _backoff(self, failures: int) -> float:
        """Capped exponential backoff with equal jitter: half fixed, half random, so
        replicas that failed together do not retry together."""
        base, cap = self._settings.backoff_base, self._settings.backoff_cap
        ceiling = min(cap, base * 2 ** min(failures - 1, 32))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))

    # --- threads and delivery -----------------------------------------------------------

    async def _in_thread(self, work: Callable[[], T], name: str) -> T:
        """Run ``work`` in a daemon thread (stoppable by ``abort()``, never holding the
        process open) and await its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def target() -> None:
            try:
                result = work()
            except BaseException as exc:
                _call_on_loop(loop, _settle, future, None, exc)
            else:
                _call_on_loop(loop, _settle, future, result, None)
            finally:
                with self._threads_lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=target, name=name, daemon=True)
        with self._threads_lock:
            self._threads.add(thread)
        thread.start()
        return await future

    async def _join_threads(self) -> None:
        """Give aborted workers ``stop_timeout`` to finish without blocking the loop."""
        deadline = time.monotonic() + self._settings.stop_timeout
        while alive := self._alive_threads():
            if time.monotonic() >= deadline:
                names = ", ".join(t.name for t in alive)
                log.warning("abandoning watch threads still running at shutdown: %s", names)
                return
            await asyncio.sleep(0.01)

    def _alive_threads(self) -> list[threading.Thread]:
        with self._threads_lock:
            return [t for t in self._threads if t.is_alive()]

    def _from_thread(self, arrival: Arrival) -> None:
        """Called by workers: hand the event to the loop, in order."""
        if self._loop is not None:
            _call_on_loop(self._loop, self._apply, arrival)

    def _apply(self, arrival: Arrival) -> None:
        """On the loop thread: the sink applies the event, then sync state and metrics."""
        if self._closed:
            return
        event = arrival.event
        try:
            self._sink(event)
        except Exception:
            log.exception("event consumer failed on %s; event dropped", type(event).__name__)
            return
        if isinstance(event, Replace):
            self._mark_synced(event.kind)
        else:
            kind = event.kind if isinstance(event, Delete) else type(event.obj).__name__
            metrics.EVENT_DELIVERY.labels(kind).observe(time.monotonic() - arrival.read_at)
        if arrival.trigger_time is not None:
            metrics.observe_dns_programming(arrival.trigger_time)

    def _mark_synced(self, kind: Kind) -> None:
        if kind not in self._synced:
            self._synced.add(kind)
            log.info("initial list of %s applied", kind)
        if all(k in self._synced for k in self._kinds):
            self._all_synced.set()


def _settle(future: asyncio.Future[T], result: T | None, exc: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled at shutdown
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)  # type: ignore[arg-type]  # T when exc is None


def _call_on_loop(
    loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: object
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed: we are shutting down
        loop.call_soon_threadsafe(callback, *args)


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; whether it was."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
