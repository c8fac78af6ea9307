"""Hostile clients against the real webhook over real HTTPS on 127.0.0.1 (issue 9): a container
bomb, bodies that do not decode, wrong types, trickled bodies, silent and surplus connections,
resets mid-body, and /healthz answering while a mutation runs. No test measures time: each
waits on an outcome with a generous timeout, which a regression turns into a failure."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import socket
import ssl
import struct
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from kubedns.config import load
from kubedns.objects import Service
from kubedns.sources.events import Replace
from kubedns.webhook.dnsconfig import ResolvConf
from kubedns.webhook.runner import Prepared, mutate_settings, prepare
from kubedns.webhook.server import CertificateReloader, ReviewHandler, WebhookServer, make_app
from kubedns.webhook.store import ServiceCatalog
from tests.webhook.helpers import apply_patch, raw_service
from tests.webhook.test_server import Pki, review, shop_pod
from tests.webhook.tls import issue, new_authority

GENEROUS = 30.0
"""Seconds any single outcome may take on a loaded machine; a hang fails the test here."""

JSON = {"Content-Type": "application/json"}

Start = Callable[..., Coroutine[Any, Any, tuple[str, Prepared]]]


@pytest.fixture
def tls(tmp_path: Path) -> Pki:
    authority = new_authority()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    issue(authority, cert, key)
    return Pki(authority, cert, key)


@pytest.fixture
async def start(tls: Pki, tmp_path: Path) -> AsyncIterator[Start]:
    """Start a webhook on a snapshot of ``items`` with config ``overrides``; stopped after."""
    started: list[Prepared] = []

    async def _start(
        items: list[dict[str, Any]] | None = None, **overrides: Any
    ) -> tuple[str, Prepared]:
        snapshot = tmp_path / f"cluster-{len(started)}.json"
        items = items or [raw_service("default", "kubernetes", "10.96.0.1", [("https", 443, "")])]
        snapshot.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        config = load(
            None,
            {
                "snapshot": str(snapshot),
                "cluster_domain": "cluster.local",
                "webhook.listen": "127.0.0.1:0",
                "webhook.tls_cert": str(tls.cert),
                "webhook.tls_key": str(tls.key),
                "webhook.cluster_dns": ["10.96.0.10"],
                "webhook.node_resolv_conf": None,
                **{f"webhook.{key}": value for key, value in overrides.items()},
            },
        )
        prepared = prepare(config)
        started.append(prepared)
        port = await prepared.server.start()
        return f"https://127.0.0.1:{port}", prepared

    yield _start
    for prepared in started:
        await prepared.server.close()
        assert prepared.executor is not None
        prepared.executor.shutdown()


@pytest.fixture
async def session(tls: Pki) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=tls.client_context(), force_close=True)
    timeout = aiohttp.ClientTimeout(total=GENEROUS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        yield client


def _metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


REVIEWS = "kubedns_webhook_reviews_total"
OUTCOMES = ("mutated", "unchanged", "error")


def _reviews(outcome: str) -> float:
    """Reviews counted with ``outcome``; none of these reached a readable request."""
    return _metric(REVIEWS, {"outcome": outcome, "operation": "other"})


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("https://").split(":")
    return host, int(port)


# --- the container bomb ---------------------------------------------------------------------


def _bomb_cluster(services: int) -> list[dict[str, Any]]:
    items = [raw_service("default", "kubernetes", "10.96.0.1", [("https", 443, "TCP")])]
    items += [
        raw_service(
            "shop",
            f"service-{i:03d}",
            f"10.96.{i // 250 + 1}.{i % 250 + 1}",
            [("http", 80, "TCP"), ("metrics", 9090, "TCP")],
        )
        for i in range(services)
    ]
    return items


async def test_a_container_bomb_gets_its_resolver_a_bounded_patch_and_a_warning(
    start: Start, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = await start(_bomb_cluster(200))
    pod = shop_pod()
    pod["spec"]["containers"] = [{"name": f"c{i}", "image": "app"} for i in range(1000)]
    before = _metric("kubedns_webhook_env_over_budget_total")
    with caplog.at_level(logging.WARNING, logger="kubedns.webhook"):
        async with session.post(f"{url}/mutate", json=review(pod, uid="bomb")) as response:
            assert response.status == 200
            body = await response.read()
    answer = json.loads(body)["response"]
    patch_bytes = len(base64.b64decode(answer["patch"]))
    # The unbounded patch was 206 MB; resolver settings and the marker are a few hundred bytes.
    assert patch_bytes < 4096
    assert len(body) < 8192
    patched = apply_patch(pod, json.loads(base64.b64decode(answer["patch"])))
    assert patched["spec"]["dnsPolicy"] == "None"
    assert patched["spec"]["dnsConfig"]["nameservers"] == ["10.96.0.10"]
    assert all("env" not in c for c in patched["spec"]["containers"])
    assert "service environment variables were not added" in answer["warnings"][0]
    assert _metric("kubedns_webhook_env_over_budget_total") == before + 1
    assert any("bomb" in r.getMessage() and "left out" in r.getMessage() for r in caplog.records)


async def test_a_budget_that_fits_gets_every_variable(
    start: Start, session: aiohttp.ClientSession
) -> None:
    url, _ = await start(_bomb_cluster(200), max_env_bytes=1 << 20)
    pod = shop_pod()
    pod["spec"]["containers"] = [{"name": "a"}, {"name": "b"}]
    async with session.post(f"{url}/mutate", json=review(pod)) as response:
        answer = (await response.json())["response"]
    assert "warnings" not in answer
    patched = apply_patch(pod, json.loads(base64.b64decode(answer["patch"])))
    # 200 Services x 13 variables (two named ports), plus the master Service's 8.
    assert [len(c["env"]) for c in patched["spec"]["containers"]] == [2608, 2608]


# --- mutation off the event loop ------------------------------------------------------------


class _SlowCatalog(ServiceCatalog):
    """Holds a mutation in the middle of its work until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()

    def services_for(self, namespace: str) -> list[Service]:
        self.entered.set()
        # Bounded, so a server that (wrongly) runs this on its event loop is stuck for a while
        # and then fails the test, rather than hanging it for ever.
        self.release.wait(GENEROUS)
        self.finished.set()
        return super().services_for(namespace)


@contextlib.asynccontextmanager
async def _slow_webhook(tls: Pki, *, max_reviews: int = 16) -> AsyncIterator[tuple[str, Any]]:
    """A webhook whose mutations wait inside the catalogue until ``catalog.release``."""
    catalog = _SlowCatalog()
    catalog.apply(Replace("Service", ()))
    catalog.apply(Replace("ConfigMap", ()))
    settings = mutate_settings(load(None, {"webhook.cluster_dns": ["10.96.0.10"]}), ResolvConf())
    with ThreadPoolExecutor(2) as executor:
        handler = ReviewHandler(catalog, settings, executor, slots=asyncio.Semaphore(max_reviews))
        server = WebhookServer(
            make_app(handler, max_body_bytes=1 << 20),
            host="127.0.0.1",
            port=0,
            certificates=CertificateReloader(tls.cert, tls.key),
        )
        url = f"https://127.0.0.1:{await server.start()}"
        try:
            yield url, catalog
        finally:
            catalog.release.set()
            await server.close()


async def test_healthz_answers_while_a_mutation_is_running(
    tls: Pki, session: aiohttp.ClientSession
) -> None:
    async with _slow_webhook(tls) as (url, catalog):
        reviewing = asyncio.create_task(
            session.post(f"{url}/mutate", json=review(shop_pod(), uid="slow"))
        )
        assert await asyncio.to_thread(catalog.entered.wait, GENEROUS)
        async with session.get(f"{url}/healthz") as response:
            assert response.status == 200
        # Answered while the mutation was still in the middle of its work.
        assert not catalog.finished.is_set()
        catalog.release.set()
        async with await asyncio.wait_for(reviewing, GENEROUS) as answer:
            assert answer.status == 200
            assert (await answer.json())["response"]["uid"] == "slow"


async def test_reviews_past_max_reviews_wait_with_their_bodies_unread(
    tls: Pki, session: aiohttp.ClientSession
) -> None:
    async with _slow_webhook(tls, max_reviews=1) as (url, catalog):
        first = asyncio.create_task(session.post(f"{url}/mutate", json=review(shop_pod())))
        assert await asyncio.to_thread(catalog.entered.wait, GENEROUS)
        second = asyncio.create_task(session.post(f"{url}/mutate", json=review(shop_pod())))
        for _ in range(int(GENEROUS / 0.05)):
            if _metric("kubedns_webhook_reviews_waiting") == 1:
                break
            await asyncio.sleep(0.05)
        assert _metric("kubedns_webhook_reviews_waiting") == 1
        catalog.release.set()
        for task in (first, second):
            async with await asyncio.wait_for(task, GENEROUS) as answer:
                assert answer.status == 200
        assert _metric("kubedns_webhook_reviews_waiting") == 0


# --- bodies that do not decode, wrong types, sizes ------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 100_000, "nested too deeply"),
        (b'{"a": ' * 100_000, "nested too deeply"),
        (b"\xff\xfe{}", "not JSON"),
        (b'{"apiVersion": "\xc3\x28"}', "not JSON"),
        (b"1" * 5000, "not JSON"),
        (json.dumps(review(shop_pod()) | {"request": {"uid": "u"}}).encode(), "Pod"),
    ],
)
async def test_bodies_that_do_not_decode_get_400_never_500(
    start: Start,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    message: str,
) -> None:
    url, _ = await start()
    async with session.post(f"{url}/mutate", data=body, headers=JSON) as response:
        assert response.status == 400
        assert message in (await response.json())["error"]
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_review_nested_deep_inside_the_pod_is_admitted(
    start: Start, session: aiohttp.ClientSession
) -> None:
    url, _ = await start()
    pod = shop_pod()
    # Deep enough to parse, deep enough that echoing the user's env back may not encode.
    deep = "[" * 900 + "]" * 900
    body = json.dumps(review(pod, uid="deep")).replace(
        '"value": "$(REDIS_MASTER_PORT)"', f'"value": {deep}'
    )
    counted = {o: _metric(REVIEWS, {"outcome": o, "operation": "CREATE"}) for o in OUTCOMES}
    async with session.post(f"{url}/mutate", data=body.encode(), headers=JSON) as response:
        assert response.status == 200
        answer = (await response.json())["response"]
    assert answer["allowed"] is True
    # Counted by what was sent back: a patch that could not be encoded is an error, not a
    # mutation, since the pod was admitted unchanged.
    outcome = "mutated" if "patch" in answer else "error"
    assert {o: _metric(REVIEWS, {"outcome": o, "operation": "CREATE"}) for o in OUTCOMES} == {
        o: counted[o] + (o == outcome) for o in OUTCOMES
    }


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_that_is_not_json_by_type_gets_415(
    start: Start, session: aiohttp.ClientSession, content_type: str
) -> None:
    url, _ = await start()
    before = _reviews("unsupported")
    body = json.dumps(review(shop_pod())).encode()
    headers = {"Content-Type": content_type}
    async with session.post(f"{url}/mutate", data=body, headers=headers) as response:
        assert response.status == 415
    assert _reviews("unsupported") == before + 1


async def test_json_with_a_charset_is_json(start: Start, session: aiohttp.ClientSession) -> None:
    url, _ = await start()
    body = json.dumps(review(shop_pod())).encode()
    headers = {"Content-Type": "application/json; charset=utf-8"}
    async with session.post(f"{url}/mutate", data=body, headers=headers) as response:
        assert response.status == 200


async def test_a_body_over_the_limit_gets_413(start: Start, session: aiohttp.ClientSession) -> None:
    url, _ = await start(max_body_bytes=64 * 1024)
    pod = shop_pod()
    pod["metadata"]["annotations"] = {"big": "x" * 100_000}
    before = _reviews("too_large")
    async with session.post(f"{url}/mutate", json=review(pod)) as response:
        assert response.status == 413
        assert "65536" in (await response.json())["error"]
    assert _reviews("too_large") == before + 1


def test_the_default_body_limit_is_the_api_servers() -> None:
    assert load(None, {}).webhook.max_body_bytes == 3 * 1024 * 1024


# --- slow, silent, surplus and vanishing clients --------------------------------------------


async def _tls_connect(url: str, pki: Pki) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = _host_port(url)
    return await asyncio.open_connection(host, port, ssl=pki.client_context())


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    chunks = []
    try:
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    except (ConnectionError, ssl.SSLError):
        pass
    return b"".join(chunks)


async def test_a_body_sent_a_byte_at_a_time_is_cut_off(start: Start, tls: Pki) -> None:
    url, _ = await start(body_timeout=1.0)
    before = _reviews("too_slow")
    reader, writer = await _tls_connect(url, tls)
    writer.write(
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{"
    )

    async def trickle() -> None:
        with_errors = (ConnectionError, ssl.SSLError, RuntimeError)
        try:
            while not writer.is_closing():
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.2)
        except with_errors:
            pass

    trickling = asyncio.create_task(trickle())
    try:
        answer = await asyncio.wait_for(_closed_by_server(reader), GENEROUS)
    finally:
        trickling.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert _reviews("too_slow") == before + 1


async def test_headers_sent_a_byte_at_a_time_are_cut_off(start: Start, tls: Pki) -> None:
    url, _ = await start(idle_timeout=1.0)
    reader, writer = await _tls_connect(url, tls)
    head = b"POST /mutate HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000

    async def trickle() -> None:
        try:
            for byte in head:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)
        except (ConnectionError, ssl.SSLError, RuntimeError):
            pass

    trickling = asyncio.create_task(trickle())
    try:
        assert await asyncio.wait_for(_closed_by_server(reader), GENEROUS) == b""
    finally:
        trickling.cancel()
        writer.close()


async def test_a_working_keep_alive_connection_is_not_cut(
    start: Start, tls: Pki, session: aiohttp.ClientSession
) -> None:
    url, _ = await start(idle_timeout=1.0)
    connector = aiohttp.TCPConnector(ssl=tls.client_context(), limit=1)
    async with aiohttp.ClientSession(connector=connector) as keep_alive:
        # Requests one after another on one connection, each well within the idle timeout,
        # for longer than the timeout in total: the connection serves them all.
        for _ in range(8):
            async with keep_alive.post(f"{url}/mutate", json=review(shop_pod())) as response:
                assert response.status == 200
            await asyncio.sleep(0.25)


async def test_a_silent_connection_is_closed_after_the_handshake_timeout(start: Start) -> None:
    url, _ = await start(handshake_timeout=0.5)
    reader, writer = await asyncio.open_connection(*_host_port(url))
    try:
        # Never sends a ClientHello: the server must give up on it by itself.
        assert await asyncio.wait_for(_closed_by_server(reader), GENEROUS) == b""
    finally:
        writer.close()


async def _until(predicate: Callable[[], bool]) -> None:
    for _ in range(int(GENEROUS / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_silent_connections_cannot_lock_out_a_real_client(
    start: Start, session: aiohttp.ClientSession
) -> None:
    url, prepared = await start(max_connections=3, handshake_timeout=GENEROUS * 2)
    refused = _metric("kubedns_webhook_connections_refused_total")
    silent = [await asyncio.open_connection(*_host_port(url)) for _ in range(3)]
    await _until(lambda: prepared.server.open_connections == 3)
    # A fourth silent one takes the slot of the oldest, which the server closes.
    extra = await asyncio.open_connection(*_host_port(url))
    assert await asyncio.wait_for(_closed_by_server(silent[0][0]), GENEROUS) == b""
    assert _metric("kubedns_webhook_connections_refused_total") == refused + 1
    # A real client gets in at once, though every slot is held by a silent connection.
    async with session.get(f"{url}/healthz") as response:
        assert response.status == 200
    assert prepared.server.open_connections <= 3
    for _reader, writer in [*silent, extra]:
        writer.close()


async def test_past_the_cap_with_every_handshake_done_a_new_connection_is_closed(
    start: Start, tls: Pki
) -> None:
    url, prepared = await start(max_connections=3)
    held = [await _tls_connect(url, tls) for _ in range(3)]
    await _until(lambda: prepared.server.open_connections == 3)
    reader, writer = await asyncio.open_connection(*_host_port(url))
    assert await asyncio.wait_for(_closed_by_server(reader), GENEROUS) == b""
    writer.close()
    # The established connections were left alone, and one leaving frees its slot.
    held[0][1].close()
    await _until(lambda: prepared.server.open_connections == 2)
    reader, writer = await _tls_connect(url, tls)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await asyncio.wait_for(_closed_by_server(reader), GENEROUS)).startswith(b"HTTP/1.1 200")
    for _reader, held_writer in held[1:]:
        held_writer.close()


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "closed"])
async def test_a_client_gone_mid_body_logs_no_traceback(
    start: Start,
    tls: Pki,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    reset: bool,
) -> None:
    url, _ = await start()
    before = _reviews("disconnected")
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            _reader, writer = await _tls_connect(url, tls)
            writer.write(
                b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n" + b" " * 5000
            )
            await writer.drain()
            if reset:
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()  # RST, not FIN
            else:
                writer.close()  # TLS close_notify and FIN, mid-body
        # The server is still fine, and said nothing with a traceback about the resets.
        async with session.get(f"{url}/healthz") as response:
            assert response.status == 200
        # Each one is counted once the server has noticed it left (a wait, not a timing).
        async with asyncio.timeout(GENEROUS):
            while _reviews("disconnected") < before + 3:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
    assert _reviews("disconnected") == before + 3
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
