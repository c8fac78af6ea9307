"""``KubeSource``: the outer retry loop, delivery to the event loop, sync state and shutdown,
against the fake API server over real HTTP with the real ``kubernetes`` client."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from kubernetes.client import ApiClient
from prometheus_client import REGISTRY

from bench.gen_cluster import generate
from kubedns.config import WatchConfig
from kubedns.objects import Kind, Service, SlimObject
from kubedns.sources.events import Delete, Event, Replace, Upsert, watched_kinds
from kubedns.sources.kube import KubeSource
from kubedns.sources.snapshot import parse_snapshot
from tests import kubeobjects as k
from tests.fakeapi import FakeApiServer

KINDS3: tuple[Kind, ...] = ("Namespace", "Service", "EndpointSlice")
FAST = WatchConfig(
    page_size=2,
    watch_timeout=30,
    read_timeout=5,
    connect_timeout=1,
    list_timeout=5,
    backoff_base=0.01,
    backoff_cap=0.05,
    sync_timeout=5,
    stop_timeout=2,
)


@dataclass
class Store:
    """A minimal consumer: applies events the way the index will, and checks it runs on the
    loop thread (the source's promise)."""

    loop_thread: int
    events: list[Event] = field(default_factory=list)
    objects: dict[tuple[str, str, str], SlimObject] = field(default_factory=dict)
    off_loop: int = 0

    def __call__(self, event: Event) -> None:
        if threading.get_ident() != self.loop_thread:
            self.off_loop += 1
        self.events.append(event)
        match event:
            case Replace(kind, objects):
                for key in [key for key in self.objects if key[0] == kind]:
                    del self.objects[key]
                for obj in objects:
                    self.objects[(kind, *obj.key)] = obj
            case Upsert(obj):
                self.objects[(type(obj).__name__, *obj.key)] = obj
            case Delete(kind, namespace, name):
                self.objects.pop((kind, namespace, name), None)

    def names(self, kind: Kind) -> set[str]:
        return {name for (k, _, name) in self.objects if k == kind}


@dataclass
class Running:
    source: KubeSource
    store: Store
    stop: asyncio.Event
    task: asyncio.Task[None]


async def eventually(check: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def start(api: ApiClient) -> AsyncIterator[Callable[..., Running]]:
    runs: list[Running] = []

    def launch(kinds: tuple[Kind, ...] = ("Service",), settings: WatchConfig = FAST) -> Running:
        store = Store(threading.get_ident())
        source = KubeSource(api, kinds=kinds, sink=store, settings=settings)
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop), name="kube-source")
        runs.append(Running(source, store, stop, task))
        return runs[-1]

    yield launch
    for run in runs:
        run.stop.set()
    await asyncio.gather(*(asyncio.wait_for(r.task, 5) for r in runs))
    assert all(r.store.off_loop == 0 for r in runs)


async def test_initial_lists_sync_every_kind(
    fake: FakeApiServer, start: Callable[..., Running]
) -> None:
    fake.load([k.namespace("a"), k.namespace("b"), k.namespace("c")])
    fake.load(k.service("a", f"s{i}") for i in range(5))
    run = start(("Namespace", "Service"))
    assert not run.source.is_synced

    assert await run.source.wait_synced()
    assert run.source.synced_kinds == {"Namespace", "Service"}
    assert run.store.names("Namespace") == {"a", "b", "c"}
    assert run.store.names("Service") == {f"s{i}" for i in range(5)}
    assert [type(e) for e in run.store.events] == [Replace, Replace]
    assert len(fake.seen("Service", watch=False)) == 3  # 5 objects, pages of 2


async def test_wait_synced_gives_up_after_the_bounded_wait(
    fake: FakeApiServer, start: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next("EndpointSlice", 503, count=10**6)
    run = start(("Service", "EndpointSlice"))
    assert not await run.source.wait_synced(timeout=0.2)
    assert run.source.synced_kinds == {"Service"}
    assert "initial list of EndpointSlice not complete" in caplog.text
    fake.clear_faults()
    assert await run.source.wait_synced()


async def test_changes_arrive_in_order(fake: FakeApiServer, start: Callable[..., Running]) -> None:
    run = start()
    assert await run.source.wait_synced()
    await eventually(lambda: fake.open_watches("Service") == 1)
    fake.create(k.service("ns", "web", "10.0.0.1"))
    fake.update(k.service("ns", "web", "10.0.0.2"))
    fake.create(k.service("ns", "api", "10.0.0.3"))
    fake.delete("Service", "ns", "api")
    await eventually(lambda: len(run.store.events) == 5)

    web = run.store.objects[("Service", "ns", "web")]
    assert isinstance(web, Service) and web.cluster_ips == ("10.0.0.2",)
    assert run.store.names("Service") == {"web"}
    assert run.store.events[-1] == Delete("Service", "ns", "api")
    assert metric("kubedns_kubernetes_event_delivery_seconds_count", kind="Service") >= 4


@pytest.mark.parametrize("style", ["event", "http"])
async def test_expired_watch_relists_and_drops_deletions_missed_meanwhile(
    fake: FakeApiServer, start: Callable[..., Running], style: str
) -> None:
    fake.expired_style = "event" if style == "event" else "http"
    fake.load([k.service("ns", "keep"), k.service("ns", "gone")])
    relists = metric("kubedns_kubernetes_relists_total", kind="Service")
    run = start()
    assert await run.source.wait_synced()
    await eventually(lambda: fake.open_watches("Service") == 1)

    # The watch goes down and stays down while a Service is deleted and history compacted.
    fake.fail_next("Service", 503, count=10**6, on="watch")
    fake.disconnect_watches("Service")
    failed = len(fake.seen("Service", watch=True)) + 1
    await eventually(lambda: len(fake.seen("Service", watch=True)) > failed)
    fake.delete("Service", "ns", "gone")
    fake.create(k.service("ns", "new"))
    fake.compact()
    fake.clear_faults()

    await eventually(lambda: run.store.names("Service") == {"keep", "new"})
    assert not any(isinstance(e, Delete) for e in run.store.events)  # only the relist knew
    assert [type(e) for e in run.store.events] == [Replace, Replace]
    assert metric("kubedns_kubernetes_relists_total", kind="Service") == relists + 1


async def test_server_errors_are_retried_until_the_api_recovers(
    fake: FakeApiServer, start: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    before = metric("kubedns_kubernetes_api_errors_total", kind="Service", code="500")
    fake.fail_next("Service", 500, count=3, on="list")
    fake.load([k.service("ns", "web")])
    run = start()
    assert await run.source.wait_synced()
    assert run.store.names("Service") == {"web"}
    assert len(fake.seen("Service", watch=False)) == 4
    assert metric("kubedns_kubernetes_api_errors_total", kind="Service", code="500") == before + 3
    assert "API server error on Service" in caplog.text


async def test_429_waits_as_long_as_retry_after_says(
    fake: FakeApiServer, start: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next("Service", 429, on="list", retry_after=0.3)
    run = start()
    assert await run.source.wait_synced()
    first, second = fake.seen("Service", watch=False)[:2]
    # The backoff alone would be at most FAST.backoff_cap (0.05 s).
    assert second.at - first.at >= 0.29
    assert "429 Too Many Requests" in caplog.text


@pytest.mark.parametrize(
    ("status", "message"), [(401, "401 Unauthorized"), (403, "list and watch on /api/v1/services")]
)
async def test_auth_failures_say_what_is_wrong_and_keep_retrying(
    fake: FakeApiServer,
    start: Callable[..., Running],
    caplog: pytest.LogCaptureFixture,
    status: int,
    message: str,
) -> None:
    fake.fail_next("Service", status, count=2)
    with caplog.at_level(logging.ERROR):
        run = start()
        assert await run.source.wait_synced()
    assert message in caplog.text
    assert len(fake.seen("Service", watch=False)) == 3


async def test_wrong_token_is_401_until_it_is_fixed(
    fake: FakeApiServer, start: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    token, fake.token = fake.token, "rotated"
    run = start()
    await eventually(lambda: len(fake.seen("Service", watch=False)) >= 2)
    assert "401 Unauthorized" in caplog.text
    fake.token = token
    assert await run.source.wait_synced()


async def test_disconnect_resumes_from_the_last_version_without_a_relist(
    fake: FakeApiServer, start: Callable[..., Running]
) -> None:
    run = start()
    assert await run.source.wait_synced()
    await eventually(lambda: fake.open_watches("Service") == 1)
    last = fake.create(k.service("ns", "web"))
    await eventually(lambda: "web" in run.store.names("Service"))

    fake.disconnect_watches("Service")
    await eventually(lambda: len(fake.seen("Service", watch=True)) == 2)
    fake.create(k.service("ns", "api"))
    await eventually(lambda: "api" in run.store.names("Service"))

    assert len(fake.seen("Service", watch=False)) == 1
    assert fake.seen("Service", watch=True)[1].params["resourceVersion"] == str(last)


async def test_malformed_lines_and_objects_do_not_stop_the_watch(
    fake: FakeApiServer, start: Callable[..., Running]
) -> None:
    fake.load([k.service("ns", "broken", "999.0.0.1"), k.service("ns", "fine")])
    run = start()
    assert await run.source.wait_synced()
    assert run.store.names("Service") == {"fine"}
    await eventually(lambda: fake.open_watches("Service") == 1)
    fake.send_line("Service", b"\x00garbage")
    fake.send_event("Service", "HALFTIME", k.service("ns", "odd"))
    fake.create(k.service("ns", "bad", "not-an-ip"))
    fake.create(k.service("ns", "later"))
    await eventually(lambda: "later" in run.store.names("Service"))
    assert run.store.names("Service") == {"fine", "later"}
    assert len(fake.seen("Service", watch=True)) == 1  # the same stream carried on


async def test_error_event_restarts_the_watch_without_a_relist(
    fake: FakeApiServer, start: Callable[..., Running]
) -> None:
    run = start()
    assert await run.source.wait_synced()
    await eventually(lambda: fake.open_watches("Service") == 1)
    fake.send_error("Service", 500, "storage hiccup")
    await eventually(lambda: len(fake.seen("Service", watch=True)) == 2)
    await eventually(lambda: fake.open_watches("Service") == 1)
    fake.create(k.service("ns", "web"))
    await eventually(lambda: "web" in run.store.names("Service"))
    assert len(fake.seen("Service", watch=False)) == 1


async def test_stop_ends_run_promptly_and_leaves_no_threads(
    fake: FakeApiServer, start: Callable[..., Running]
) -> None:
    fake.line_delay = 0.2  # a slow stream: a worker is likely blocked mid-read
    run = start(("Namespace", "Service", "EndpointSlice", "Pod", "ConfigMap"))
    assert await run.source.wait_synced()
    await eventually(lambda: fake.open_watches("ConfigMap") == 1)
    fake.create(k.service("ns", "web"))

    run.stop.set()
    await asyncio.wait_for(run.task, 3)
    alive = [t.name for t in threading.enumerate() if t.name.startswith("kube-watch-")]
    assert alive == []
    tasks = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("kube-watch")]
    assert tasks == []


async def test_stop_during_backoff_is_prompt(
    fake: FakeApiServer, start: Callable[..., Running]
) -> None:
    fake.stop()
    slow = WatchConfig(backoff_base=30, backoff_cap=60, connect_timeout=1)
    run = start(settings=slow)
    await asyncio.sleep(0.1)  # the first connection fails at once; now it waits 15-30 s
    run.stop.set()
    await asyncio.wait_for(run.task, 2)
    assert not run.source.is_synced


async def test_endpoint_slice_changes_feed_the_programming_metric(
    fake: FakeApiServer, start: Callable[..., Running]
) -> None:
    before = metric(
        "coredns_kubernetes_dns_programming_duration_seconds_count", service_kind="endpointslice"
    )
    run = start(("EndpointSlice",))
    assert await run.source.wait_synced()
    await eventually(lambda: fake.open_watches("EndpointSlice") == 1)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    fake.create(k.endpoint_slice("ns", "web-1", "web", ["10.2.0.1"], trigger_time=stamp))
    await eventually(lambda: "web-1" in run.store.names("EndpointSlice"))
    after = metric(
        "coredns_kubernetes_dns_programming_duration_seconds_count", service_kind="endpointslice"
    )
    assert after == before + 1


async def test_pods_and_config_maps_only_when_asked(
    fake: FakeApiServer, start: Callable[..., Running]
) -> None:
    fake.load([k.pod("ns", "p", "10.1.0.1"), k.config_map("ns", "env", {"A": "1"})])
    run = start(("Service",))
    assert await run.source.wait_synced()
    assert fake.seen("Pod", watch=False) == [] and fake.seen("ConfigMap", watch=False) == []

    both = start(("Pod", "ConfigMap"))
    assert await both.source.wait_synced()
    assert both.store.names("Pod") == {"p"} and both.store.names("ConfigMap") == {"env"}


async def test_an_idle_watch_reconnects_at_once_after_its_read_timeout(
    fake: FakeApiServer, start: Callable[..., Running]
) -> None:
    # Backoff would wait at least 5 s; an idle watch is healthy and must not wait at all.
    idle = WatchConfig(read_timeout=0.1, backoff_base=10, backoff_cap=10)
    run = start(settings=idle)
    assert await run.source.wait_synced()
    await eventually(lambda: len(fake.seen("Service", watch=True)) >= 4, timeout=3)
    assert len(fake.seen("Service", watch=False)) == 1


async def test_a_server_that_closes_every_watch_at_once_is_not_hammered(
    fake: FakeApiServer, start: Callable[..., Running]
) -> None:
    fake.max_watch_seconds = 0
    run = start(settings=WatchConfig(backoff_base=0.2, backoff_cap=0.2))
    assert await run.source.wait_synced()
    await asyncio.sleep(0.5)
    # Without backoff this would be hundreds; with it, one every 0.1-0.2 s.
    assert 2 <= len(fake.seen("Service", watch=True)) <= 8


def test_unknown_kinds_are_refused(api: ApiClient) -> None:
    with pytest.raises(ValueError, match="cannot watch kind 'Endpoints'"):
        KubeSource(api, kinds=("Endpoints",), sink=print, settings=FAST)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pods", "config_maps", "expected"),
    [
        ("insecure", False, ("Namespace", "Service", "EndpointSlice")),
        ("disabled", True, ("Namespace", "Service", "EndpointSlice", "ConfigMap")),
        ("verified", False, ("Namespace", "Service", "EndpointSlice", "Pod")),
    ],
)
def test_pods_are_watched_only_when_verified(
    pods: str, config_maps: bool, expected: tuple[str, ...]
) -> None:
    assert watched_kinds(pods=pods, config_maps=config_maps) == expected  # type: ignore[arg-type]


async def test_the_watch_and_the_snapshot_agree_on_the_same_cluster(
    fake: FakeApiServer, start: Callable[..., Running]
) -> None:
    items = list(generate(namespaces=5, services=40, endpoints=150))
    fake.load(items)
    from_file = parse_snapshot(json.dumps({"kind": "List", "items": items}), source="test")
    run = start(KINDS3)
    assert await run.source.wait_synced()

    from_api = {e.kind: e for e in run.store.events if isinstance(e, Replace)}
    for replace in from_file:
        if replace.kind in KINDS3:
            assert set(from_api[replace.kind].objects) == set(replace.objects), replace.kind
            assert len(replace.objects) > 0


async def test_a_failing_consumer_loses_one_event_not_the_watch(
    fake: FakeApiServer, api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Event] = []

    def picky(event: Event) -> None:
        if isinstance(event, Upsert) and event.obj.name == "poison":
            raise RuntimeError("consumer bug")
        seen.append(event)

    source = KubeSource(api, kinds=("Service",), sink=picky, settings=FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    try:
        assert await source.wait_synced()
        await eventually(lambda: fake.open_watches("Service") == 1)
        fake.create(k.service("ns", "poison"))
        fake.create(k.service("ns", "fine"))
        await eventually(lambda: len(seen) == 2)
    finally:
        stop.set()
        await task
    assert isinstance(seen[1], Upsert) and seen[1].obj.name == "fine"
    assert "event consumer failed on Upsert" in caplog.text


async def test_restarts_are_counted_by_reason(
    fake: FakeApiServer, start: Callable[..., Running]
) -> None:
    def restarts(reason: str) -> float:
        return metric("kubedns_kubernetes_watch_restarts_total", kind="Service", reason=reason)

    before = {reason: restarts(reason) for reason in ("error", "expired")}
    run = start()
    assert await run.source.wait_synced()
    await eventually(lambda: fake.open_watches("Service") == 1)
    fake.disconnect_watches("Service")
    await eventually(lambda: restarts("error") == before["error"] + 1)
    await eventually(lambda: fake.open_watches("Service") == 1)
    fake.send_error("Service", 410, "too old")
    await eventually(lambda: restarts("expired") == before["expired"] + 1)
