"""The inner layer, one ``stream_once()`` at a time, against the fake API over real HTTP.

Each test runs ``stream_once`` in a thread (it blocks like the real client) and drives the
fake from the test thread; nothing of the ``kubernetes`` client is mocked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from kubernetes.client import ApiClient

from kubedns.config import WatchConfig
from kubedns.objects import Service
from kubedns.sources.events import Delete, Event, Replace, Upsert
from kubedns.sources.watch import (
    RESOURCES,
    ApiError,
    Arrival,
    ConnectionLostError,
    Outcome,
    ResourceWatch,
    StreamEnd,
)
from tests import kubeobjects as k
from tests.fakeapi import FakeApiServer

SETTINGS = WatchConfig(page_size=2, watch_timeout=30, read_timeout=5, connect_timeout=2)


@dataclass
class Recorder:
    arrivals: list[Arrival] = field(default_factory=list)

    def __call__(self, arrival: Arrival) -> None:
        self.arrivals.append(arrival)

    @property
    def events(self) -> list[Event]:
        return [a.event for a in self.arrivals]


@dataclass
class Running:
    """A ``stream_once`` call in a worker thread."""

    watch: ResourceWatch
    thread: threading.Thread
    result: list[Outcome | BaseException]

    def join(self, timeout: float = 5) -> Outcome:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "stream_once did not return"
        (result,) = self.result
        if isinstance(result, BaseException):
            raise result
        return result


def start(watch: ResourceWatch) -> Running:
    result: list[Outcome | BaseException] = []

    def target() -> None:
        try:
            result.append(watch.stream_once())
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return Running(watch, thread, result)


def eventually(check: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def services(api: ApiClient, recorder: Recorder) -> Iterator[ResourceWatch]:
    watch = ResourceWatch(api, RESOURCES["Service"], deliver=recorder, settings=SETTINGS)
    yield watch
    watch.abort()


def open_watch(fake: FakeApiServer, watch: ResourceWatch) -> Running:
    running = start(watch)
    eventually(lambda: fake.open_watches(watch.kind) == 1)
    return running


def test_list_is_paginated_and_becomes_one_replace(
    fake: FakeApiServer, services: ResourceWatch, recorder: Recorder
) -> None:
    fake.load(k.service("ns", f"s{i}", f"10.0.0.{i + 1}") for i in range(5))
    running = open_watch(fake, services)

    lists = fake.seen("Service", watch=False)
    assert [r.params.get("limit") for r in lists] == ["2", "2", "2"]
    assert "continue" not in lists[0].params and all("continue" in r.params for r in lists[1:])
    (replace,) = recorder.events
    assert isinstance(replace, Replace) and replace.kind == "Service"
    assert sorted(o.name for o in replace.objects) == ["s0", "s1", "s2", "s3", "s4"]
    (watch_request,) = fake.seen("Service", watch=True)
    assert watch_request.params["resourceVersion"] == str(fake.resource_version)
    assert watch_request.params["allowWatchBookmarks"] == "true"
    assert int(watch_request.params["timeoutSeconds"]) >= 30
    services.abort()
    assert running.join().end is StreamEnd.STOPPED


def test_watch_turns_changes_into_upserts_and_deletes(
    fake: FakeApiServer, services: ResourceWatch, recorder: Recorder
) -> None:
    fake.create(k.service("ns", "web"))
    running = open_watch(fake, services)
    fake.create(k.service("ns", "api", "10.0.0.2"))
    fake.update(k.service("ns", "web", "10.0.0.9"))
    last = fake.delete("Service", "ns", "api")
    eventually(lambda: len(recorder.events) == 4)

    assert isinstance(recorder.events[0], Replace)
    created, updated, deleted = recorder.events[1:]
    assert isinstance(created, Upsert) and isinstance(created.obj, Service)
    assert created.obj.name == "api"
    assert isinstance(updated, Upsert) and isinstance(updated.obj, Service)
    assert updated.obj.cluster_ips == ("10.0.0.9",)
    assert deleted == Delete("Service", "ns", "api")
    assert services.resource_version == str(last)
    services.abort()
    running.join()


def test_bookmark_moves_the_resource_version(
    fake: FakeApiServer, services: ResourceWatch, recorder: Recorder
) -> None:
    running = open_watch(fake, services)
    fake.create(k.namespace("other"))  # moves the global version without a Service event
    fake.send_bookmark("Service")
    eventually(lambda: services.resource_version == str(fake.resource_version))
    assert len(recorder.events) == 1  # a bookmark is not an event for consumers
    services.abort()
    running.join()


def test_periodic_bookmarks_keep_an_idle_watch_current(
    fake: FakeApiServer, services: ResourceWatch, recorder: Recorder
) -> None:
    fake.bookmark_interval = 0.05
    running = open_watch(fake, services)
    fake.create(k.namespace("elsewhere"))
    eventually(lambda: services.resource_version == str(fake.resource_version))
    assert len(recorder.events) == 1
    services.abort()
    running.join()


@pytest.mark.parametrize("style", ["event", "http"])
def test_expired_version_ends_the_stream_and_forgets_the_version(
    fake: FakeApiServer, services: ResourceWatch, recorder: Recorder, style: str
) -> None:
    fake.expired_style = "event" if style == "event" else "http"
    fake.create(k.service("ns", "web"))
    services.resource_version = "1"
    fake.compact()

    assert services.stream_once().end is StreamEnd.EXPIRED
    assert services.resource_version is None
    assert recorder.events == []
    running = open_watch(fake, services)  # the next call lists again
    assert isinstance(recorder.events[0], Replace)
    services.abort()
    running.join()


def test_expired_continue_token_lists_again_from_the_start(
    fake: FakeApiServer, services: ResourceWatch, recorder: Recorder
) -> None:
    fake.load(k.service("ns", f"s{i}") for i in range(3))
    fake.fail_next("Service", 410, on="list")
    assert services.stream_once().end is StreamEnd.EXPIRED
    assert recorder.events == []


def test_server_timeout_ends_the_stream_cleanly(
    fake: FakeApiServer, api: ApiClient, recorder: Recorder
) -> None:
    settings = WatchConfig(watch_timeout=1, read_timeout=5)
    watch = ResourceWatch(api, RESOURCES["Namespace"], deliver=recorder, settings=settings)
    outcome = watch.stream_once()
    assert outcome == Outcome(StreamEnd.TIMEOUT, progressed=True)
    assert watch.resource_version is not None


def test_silent_connection_counts_as_idle(
    fake: FakeApiServer, api: ApiClient, recorder: Recorder
) -> None:
    settings = WatchConfig(watch_timeout=30, read_timeout=0.2)
    watch = ResourceWatch(api, RESOURCES["Namespace"], deliver=recorder, settings=settings)
    watch.resource_version = str(fake.resource_version)
    assert watch.stream_once().end is StreamEnd.IDLE


def test_abrupt_disconnect_raises_and_keeps_the_version(
    fake: FakeApiServer, services: ResourceWatch
) -> None:
    running = open_watch(fake, services)
    rv = fake.create(k.service("ns", "web"))
    eventually(lambda: services.resource_version == str(rv))
    fake.disconnect_watches("Service")
    with pytest.raises(ConnectionLostError):
        running.join()
    assert services.resource_version == str(rv)


@pytest.mark.parametrize("status", [401, 403, 429, 500, 503])
def test_error_statuses_raise_api_error(
    fake: FakeApiServer, services: ResourceWatch, status: int
) -> None:
    fake.fail_next("Service", status, retry_after=7 if status == 429 else None)
    with pytest.raises(ApiError) as caught:
        services.stream_once()
    assert caught.value.status == status
    assert caught.value.retry_after == (7.0 if status == 429 else None)
    assert "injected failure" in str(caught.value)


def test_malformed_objects_are_skipped(
    fake: FakeApiServer, services: ResourceWatch, recorder: Recorder
) -> None:
    bad = k.service("ns", "bad", "not-an-ip")
    fake.load([bad, k.service("ns", "good")])
    running = open_watch(fake, services)
    fake.create(k.service("ns", "bad2", "300.1.1.1"))
    fake.send_line("Service", b"{not json")
    fake.send_line("Service", b'{"type": "ADDED"}')
    fake.send_line("Service", b'["a list"]')
    fake.send_event("Service", "ADDED", {"kind": "Service", "metadata": {}, "spec": {}})
    last = fake.create(k.service("ns", "after"))
    eventually(lambda: services.resource_version == str(last))

    replace, after = recorder.events
    assert isinstance(replace, Replace) and [o.name for o in replace.objects] == ["good"]
    assert isinstance(after, Upsert) and after.obj.name == "after"
    services.abort()
    assert running.join().end is StreamEnd.STOPPED


def test_unknown_event_types_are_ignored(
    fake: FakeApiServer, services: ResourceWatch, recorder: Recorder
) -> None:
    running = open_watch(fake, services)
    fake.send_event("Service", "SURPRISE", k.service("ns", "x"))
    last = fake.create(k.service("ns", "web"))
    eventually(lambda: services.resource_version == str(last))
    assert [type(e) for e in recorder.events] == [Replace, Upsert]
    services.abort()
    running.join()


def test_error_event_other_than_410_raises_api_error(
    fake: FakeApiServer, services: ResourceWatch
) -> None:
    running = open_watch(fake, services)
    version = services.resource_version
    fake.send_error("Service", 500, "etcd is sad")
    with pytest.raises(ApiError, match="etcd is sad") as caught:
        running.join()
    assert caught.value.status == 500
    assert services.resource_version == version  # resume there, no relist


def test_pods_are_listed_with_the_running_selector_and_leave_when_they_stop(
    fake: FakeApiServer, api: ApiClient, recorder: Recorder
) -> None:
    fake.load([k.pod("ns", "a", "10.1.0.1"), k.pod("ns", "done", "10.1.0.2", "Succeeded")])
    pods = ResourceWatch(api, RESOURCES["Pod"], deliver=recorder, settings=SETTINGS)
    running = open_watch(fake, pods)
    fake.update(k.pod("ns", "a", "10.1.0.1", "Succeeded"))
    eventually(lambda: len(recorder.events) == 2)

    assert all(
        r.params["fieldSelector"] == "status.phase=Running"
        for r in fake.requests
        if r.kind == "Pod"
    )
    replace, gone = recorder.events
    assert isinstance(replace, Replace) and [o.name for o in replace.objects] == ["a"]
    assert gone == Delete("Pod", "ns", "a")
    pods.abort()
    running.join()


def test_endpoint_slices_carry_their_trigger_time(
    fake: FakeApiServer, api: ApiClient, recorder: Recorder
) -> None:
    slices = ResourceWatch(api, RESOURCES["EndpointSlice"], deliver=recorder, settings=SETTINGS)
    running = open_watch(fake, slices)
    stamp = "2026-01-02T03:04:05Z"
    fake.create(k.endpoint_slice("ns", "web-1", "web", ["10.2.0.1"], trigger_time=stamp))
    eventually(lambda: len(recorder.arrivals) == 2)
    assert recorder.arrivals[1].trigger_time == 1767323045.0
    assert fake.seen("EndpointSlice", watch=True)  # discovery.k8s.io/v1, not v1 Endpoints
    slices.abort()
    running.join()


def test_abort_unblocks_a_slow_stream(fake: FakeApiServer, services: ResourceWatch) -> None:
    fake.line_delay = 0.5
    running = open_watch(fake, services)
    fake.create(k.service("ns", "web"))
    services.abort()
    assert running.join(timeout=2).end is StreamEnd.STOPPED
    assert services.stream_once().end is StreamEnd.STOPPED  # and stays stopped


def test_unreachable_server_raises_connection_lost(api: ApiClient, fake: FakeApiServer) -> None:
    fake.stop()
    watch = ResourceWatch(api, RESOURCES["Service"], deliver=Recorder(), settings=SETTINGS)
    with pytest.raises(ConnectionLostError):
        watch.stream_once()
