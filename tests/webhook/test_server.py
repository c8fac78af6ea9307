"""The real webhook over real HTTPS on 127.0.0.1: reviews in, JSONPatch out, 400s, errors
that admit the pod unchanged, and a rotated certificate picked up without a restart."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from kubedns.config import load
from kubedns.objects import Service
from kubedns.sources.events import Replace
from kubedns.webhook.dnsconfig import ResolvConf
from kubedns.webhook.mutate import MutateSettings
from kubedns.webhook.runner import Prepared, mutate_settings, prepare
from kubedns.webhook.server import CertificateReloader, ReviewHandler, WebhookServer, make_app
from kubedns.webhook.store import ServiceCatalog
from tests.webhook.helpers import apply_patch, env, raw_configmap, raw_service
from tests.webhook.tls import Authority, issue, new_authority, serial_of


@dataclass
class Pki:
    authority: Authority
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.authority.pem().decode())
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    authority = new_authority()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    issue(authority, cert, key)
    return Pki(authority, cert, key)


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    items = [
        raw_service("default", "kubernetes", "10.96.0.1", [("https", 443, "TCP")]),
        raw_service("shop", "redis-master", "fd00::11", [("", 6379, "TCP")]),
        raw_service("shop", "headless", "None"),
        raw_configmap("shop", "settings", ["KUBERNETES_SERVICE_HOST"]),
    ]
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return path


@pytest.fixture
def node_resolv(tmp_path: Path) -> Path:
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 192.168.0.1\nsearch corp.example\noptions timeout:2\n")
    return path


@pytest.fixture
async def webhook(
    pki: Pki, snapshot: Path, node_resolv: Path
) -> AsyncIterator[tuple[str, Prepared]]:
    config = load(
        None,
        {
            "snapshot": str(snapshot),
            "cluster_domain": "cluster.local",
            "webhook.listen": "127.0.0.1:0",
            "webhook.tls_cert": str(pki.cert),
            "webhook.tls_key": str(pki.key),
            "webhook.cluster_dns": ["10.96.0.10"],
            "webhook.node_resolv_conf": str(node_resolv),
        },
    )
    prepared = prepare(config)
    port = await prepared.server.start()
    yield f"https://127.0.0.1:{port}", prepared
    await prepared.server.close()
    assert prepared.executor is not None
    prepared.executor.shutdown()


@pytest.fixture
async def client(pki: Pki) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=pki.client_context(), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


def review(pod: dict[str, Any], *, operation: str = "CREATE", uid: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": operation,
            "object": pod,
            "oldObject": None,
        },
    }


def shop_pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "dnsPolicy": "ClusterFirst",
            "containers": [
                {
                    "name": "web",
                    "image": "nginx",
                    "envFrom": [{"configMapRef": {"name": "settings"}}],
                    "env": env([("URL", "$(REDIS_MASTER_PORT)")]),
                }
            ],
        },
    }


async def post(client: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    async with client.post(f"{url}/mutate", data=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def test_create_review_returns_the_kubelets_pod(
    webhook: tuple[str, Prepared], client: aiohttp.ClientSession
) -> None:
    url, _ = webhook
    pod = shop_pod()
    status, answer = await post(client, url, json.dumps(review(pod, uid="abc-123")).encode())
    assert status == 200
    response = answer["response"]
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert (response["uid"], response["allowed"], response["patchType"]) == (
        "abc-123",
        True,
        "JSONPatch",
    )
    patched = apply_patch(pod, json.loads(base64.b64decode(response["patch"])))
    assert patched["spec"]["dnsPolicy"] == "None"
    assert patched["spec"]["dnsConfig"] == {
        "nameservers": ["10.96.0.10"],
        "searches": [
            "shop.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "corp.example",
        ],
        "options": [{"name": "ndots", "value": "5"}],
    }
    # KUBERNETES_SERVICE_HOST comes from the ConfigMap through envFrom, so it is not injected.
    assert patched["spec"]["containers"][0]["env"] == env(
        [
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
            ("REDIS_MASTER_SERVICE_HOST", "fd00::11"),
            ("REDIS_MASTER_SERVICE_PORT", "6379"),
            ("REDIS_MASTER_PORT", "tcp://[fd00::11]:6379"),
            ("REDIS_MASTER_PORT_6379_TCP", "tcp://[fd00::11]:6379"),
            ("REDIS_MASTER_PORT_6379_TCP_PROTO", "tcp"),
            ("REDIS_MASTER_PORT_6379_TCP_PORT", "6379"),
            ("REDIS_MASTER_PORT_6379_TCP_ADDR", "fd00::11"),
            ("URL", "$(REDIS_MASTER_PORT)"),
        ]
    )
    assert patched["metadata"]["annotations"] == {"kubedns.io/injected": "true"}

    # Re-invocation with the mutated pod: allowed, no patch.
    status, again = await post(client, url, json.dumps(review(patched, uid="abc-124")).encode())
    assert status == 200
    assert again["response"] == {"uid": "abc-124", "allowed": True}


def _bad_bodies() -> Iterator[tuple[bytes, str]]:
    good = review(shop_pod())
    yield b"{not json", "not JSON"
    yield b"[]", "not a JSON object"
    yield json.dumps({**good, "apiVersion": "admission.k8s.io/v1beta1"}).encode(), "v1beta1"
    yield (
        json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
        ("no request"),
    )
    no_uid = {**good, "request": {k: v for k, v in good["request"].items() if k != "uid"}}
    yield json.dumps(no_uid).encode(), "uid"
    wrong_kind = {
        **good,
        "request": {
            **good["request"],
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        },
    }
    yield json.dumps(wrong_kind).encode(), "Pod"


@pytest.mark.parametrize(("body", "message"), list(_bad_bodies()))
async def test_bad_reviews_get_400_with_a_message(
    webhook: tuple[str, Prepared], client: aiohttp.ClientSession, body: bytes, message: str
) -> None:
    url, _ = webhook
    status, answer = await post(client, url, body)
    assert status == 400
    assert message in answer["error"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_once_synced(
    webhook: tuple[str, Prepared], client: aiohttp.ClientSession, path: str
) -> None:
    url, _ = webhook
    async with client.get(f"{url}{path}") as response:
        assert (response.status, await response.text()) == (200, "ok\n")


def _settings() -> MutateSettings:
    config = load(None, {"webhook.cluster_dns": ["10.96.0.10"]})
    return mutate_settings(config, ResolvConf())


class _BrokenCatalog(ServiceCatalog):
    """A catalogue that fails on read, standing in for any bug below the handler."""

    def services_for(self, namespace: str) -> list[Service]:
        raise RuntimeError(f"boom in {namespace}")


async def _serve_handler(handler: ReviewHandler, pki: Pki) -> tuple[WebhookServer, str]:
    certificates = CertificateReloader(pki.cert, pki.key)
    server = WebhookServer(
        make_app(handler, max_body_bytes=1 << 20),
        host="127.0.0.1",
        port=0,
        certificates=certificates,
    )
    port = await server.start()
    return server, f"https://127.0.0.1:{port}"


async def test_internal_error_admits_the_pod_unchanged_and_counts(
    pki: Pki, client: aiohttp.ClientSession
) -> None:
    catalog = _BrokenCatalog()
    catalog.apply(Replace("Service", ()))
    catalog.apply(Replace("ConfigMap", ()))
    server, url = await _serve_handler(ReviewHandler(catalog, _settings()), pki)
    before = REGISTRY.get_sample_value("kubedns_webhook_internal_errors_total") or 0.0
    try:
        status, answer = await post(client, url, json.dumps(review(shop_pod(), uid="u1")).encode())
    finally:
        await server.close()
    assert status == 200
    assert answer["response"] == {"uid": "u1", "allowed": True}
    assert REGISTRY.get_sample_value("kubedns_webhook_internal_errors_total") == before + 1


async def test_unsynced_catalog_is_not_ready_and_admits_unchanged(
    pki: Pki, client: aiohttp.ClientSession
) -> None:
    server, url = await _serve_handler(ReviewHandler(ServiceCatalog(), _settings()), pki)
    try:
        async with client.get(f"{url}/readyz") as response:
            assert response.status == 503
        async with client.get(f"{url}/healthz") as response:
            assert response.status == 200
        status, answer = await post(client, url, json.dumps(review(shop_pod(), uid="u2")).encode())
    finally:
        await server.close()
    assert (status, answer["response"]) == (200, {"uid": "u2", "allowed": True})


async def _served_serial(url: str, pki: Pki) -> int:
    host, port = url.removeprefix("https://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port), ssl=pki.client_context())
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return serial_of(der)


async def test_rotated_certificate_is_served_to_new_connections(
    webhook: tuple[str, Prepared], pki: Pki, client: aiohttp.ClientSession
) -> None:
    url, _ = webhook
    first = await _served_serial(url, pki)
    rotated = issue(pki.authority, pki.cert, pki.key)
    assert rotated != first
    assert await _served_serial(url, pki) == rotated
    # And the server still answers reviews over the new certificate.
    status, _ = await post(client, url, json.dumps(review(shop_pod())).encode())
    assert status == 200


async def test_half_written_rotation_keeps_the_old_certificate(
    webhook: tuple[str, Prepared], pki: Pki
) -> None:
    url, _ = webhook
    first = await _served_serial(url, pki)
    failed = (
        REGISTRY.get_sample_value("kubedns_webhook_certificate_reloads_total", {"result": "failed"})
        or 0.0
    )
    pki.cert.write_text("-----BEGIN CERTIFICATE-----\ntruncated")
    assert await _served_serial(url, pki) == first
    assert await _served_serial(url, pki) == first
    # Reported once for the broken pair, not once per handshake.
    assert (
        REGISTRY.get_sample_value("kubedns_webhook_certificate_reloads_total", {"result": "failed"})
        == failed + 1
    )
    # Completing the rotation is picked up.
    rotated = issue(pki.authority, pki.cert, pki.key)
    assert await _served_serial(url, pki) == rotated
