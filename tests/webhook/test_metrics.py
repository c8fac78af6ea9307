"""The webhook's metrics as an operator scrapes them: a real ``kubedns webhook --ops-listen``
process is sent reviews over real HTTPS, then its ``/metrics`` is read over HTTP and every
family is checked against what the reviews were and what came back. A real ``kubedns serve``
must export none of the webhook's families.

Each review below states what it should count; the expected figures are computed from that
table and from the answers the webhook actually sent (the patch sizes)."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.webhook.helpers import raw_service
from tests.webhook.tls import issue, new_authority

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo-cluster.yaml"
POD_KIND = {"group": "", "version": "v1", "kind": "Pod"}
MAX_ENV_BYTES = 1024
"""Enough for the ``default/kubernetes`` variables of a pod in ``quiet``; far too little for
the many Services of ``crowded``."""
START_ATTEMPTS = 400
"""Readiness polls (50 ms apart) before giving up on a process: a bound on a hang only."""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass(frozen=True)
class Review:
    """One request to ``/mutate`` and what it must count."""

    body: bytes
    outcome: str
    operation: str
    skipped: tuple[str, ...] = ()
    content_type: str = "application/json"


def _pod(namespace: str, *, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "p", "namespace": namespace}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "metadata": metadata,
        "spec": {"dnsPolicy": "ClusterFirst", "containers": [{"name": "app"}]},
    }


def _review(uid: str, operation: str, obj: dict[str, Any] | None, **extra: Any) -> bytes:
    namespace = obj["metadata"]["namespace"] if obj else "quiet"
    request = {
        "uid": uid,
        "kind": POD_KIND,
        "namespace": namespace,
        "operation": operation,
        "object": obj,
        **extra,
    }
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    ).encode()


def _debugged_pod() -> dict[str, Any]:
    pod = _pod("quiet")
    pod["spec"]["ephemeralContainers"] = [{"name": "debug"}]
    return pod


REVIEWS = [
    Review(_review("create", "CREATE", _pod("quiet")), "mutated", "CREATE"),
    Review(
        _review("crowded", "CREATE", _pod("crowded")), "mutated", "CREATE", ("env_over_budget",)
    ),
    Review(
        _review("marked", "CREATE", _pod("quiet", annotations={"kubedns.io/injected": "true"})),
        "unchanged",
        "CREATE",
        ("already_injected",),
    ),
    Review(
        _review("optout", "CREATE", _pod("quiet", annotations={"kubedns.io/inject": "false"})),
        "unchanged",
        "CREATE",
        ("opted_out",),
    ),
    Review(
        _review(
            "debug",
            "UPDATE",
            _debugged_pod(),
            subResource="ephemeralcontainers",
            oldObject=_pod("quiet"),
        ),
        "mutated",
        "UPDATE",
    ),
    Review(
        _review("relabel", "UPDATE", _pod("quiet"), oldObject=_pod("quiet")),
        "unchanged",
        "UPDATE",
        ("not_applicable",),
    ),
    Review(_review("delete", "DELETE", None), "unchanged", "DELETE", ("not_applicable",)),
    # An operation Kubernetes does not define must not become a label value of its own.
    Review(_review("odd", "TELEPORT", _pod("quiet")), "unchanged", "other", ("not_applicable",)),
    Review(b'{"apiVersion": "admission.k8s.io/v1", "kind":', "rejected", "other"),
    Review(_review("plain", "CREATE", _pod("quiet")), "unsupported", "other", (), "text/plain"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cluster(path: Path) -> Path:
    items = [raw_service("default", "kubernetes", "10.96.0.1", [("https", 443, "TCP")])]
    items += [raw_service("crowded", f"svc-{i}", f"10.96.1.{i}") for i in range(1, 40)]
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return path


@contextlib.contextmanager
def _process(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(START_ATTEMPTS):
            assert process.poll() is None, f"exited early: {log.read_text()}"
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never ready: {log.read_text()}")


@dataclass(frozen=True)
class Webhook:
    url: str
    ops: str
    context: ssl.SSLContext


@pytest.fixture
async def webhook(tmp_path: Path) -> AsyncIterator[Webhook]:
    authority = new_authority()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    issue(authority, cert, key)
    config = tmp_path / "webhook.yaml"
    config.write_text(f"webhook:\n  max_env_bytes: {MAX_ENV_BYTES}\n")
    port, ops_port = _free_port(), _free_port()
    argv = [
        *(sys.executable, "-m", "kubedns", "webhook", f"--config={config}"),
        f"--listen=127.0.0.1:{port}",
        f"--ops-listen=127.0.0.1:{ops_port}",
        f"--tls-cert={cert}",
        f"--tls-key={key}",
        f"--snapshot={_cluster(tmp_path / 'cluster.json')}",
        "--cluster-dns=10.96.0.10",
        "--node-resolv-conf=",
    ]
    log = tmp_path / "webhook.log"
    with _process(argv, log) as process:
        ops = f"http://127.0.0.1:{ops_port}"
        await _wait_ready(f"{ops}/ready", process, log)
        context = ssl.create_default_context(cadata=authority.pem().decode())
        yield Webhook(f"https://127.0.0.1:{port}", ops, context)


async def _scrape(ops: str) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(f"{ops}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _by(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for (n, labels), value in samples.items() if n == name}


def _by_pair(samples: Samples, name: str) -> dict[tuple[str, str], float]:
    found = {}
    for (n, labels), value in samples.items():
        if n == name:
            found[(dict(labels)["outcome"], dict(labels)["operation"])] = value
    return found


def _value(samples: Samples, name: str) -> float:
    return samples[(name, frozenset())]


async def _send_all(hook: Webhook) -> list[int]:
    """Post every review; the sizes of the JSONPatches that came back (decoded from base64)."""
    sizes = []
    connector = aiohttp.TCPConnector(ssl=hook.context)
    async with aiohttp.ClientSession(connector=connector) as session:
        for review in REVIEWS:
            headers = {"Content-Type": review.content_type}
            url = f"{hook.url}/mutate"
            async with session.post(url, data=review.body, headers=headers) as response:
                answer = await response.read()
            if response.status == 200:
                patch = json.loads(answer)["response"].get("patch")
                if patch is not None:
                    sizes.append(len(base64.b64decode(patch)))
    return sizes


async def test_every_review_is_counted_by_outcome_operation_and_skip(webhook: Webhook) -> None:
    await _send_all(webhook)
    samples = await _scrape(webhook.ops)
    expected = collections.Counter((r.outcome, r.operation) for r in REVIEWS)
    assert _by_pair(samples, "kubedns_webhook_reviews_total") == expected
    skips = collections.Counter(reason for r in REVIEWS for reason in r.skipped)
    reasons = ("opted_out", "already_injected", "not_applicable", "env_over_budget")
    assert _by(samples, "kubedns_webhook_injections_skipped_total", "reason") == {
        reason: skips[reason] for reason in reasons
    }
    assert _value(samples, "kubedns_webhook_env_over_budget_total") == skips["env_over_budget"]
    assert _value(samples, "kubedns_webhook_internal_errors_total") == 0


async def test_patch_sizes_and_durations_are_histograms_of_what_was_sent(
    webhook: Webhook,
) -> None:
    sizes = await _send_all(webhook)
    assert len(sizes) == sum(r.outcome == "mutated" for r in REVIEWS)
    samples = await _scrape(webhook.ops)
    assert _value(samples, "kubedns_webhook_patch_bytes_count") == len(sizes)
    assert _value(samples, "kubedns_webhook_patch_bytes_sum") == sum(sizes)
    buckets = _by(samples, "kubedns_webhook_patch_bytes_bucket", "le")
    for le, count in buckets.items():
        assert count == sum(size <= float(le) for size in sizes), le
    # Every answered review is timed, the rejected and unsupported ones included.
    durations = _by(samples, "kubedns_webhook_review_duration_seconds_bucket", "le")
    count = _value(samples, "kubedns_webhook_review_duration_seconds_count")
    assert count == len(REVIEWS) == durations["+Inf"]
    assert _value(samples, "kubedns_webhook_review_duration_seconds_sum") > 0
    ordered = [durations[le] for le in sorted(durations, key=float)]
    assert ordered == sorted(ordered), "cumulative buckets"
    assert float(min(durations, key=float)) < 0.001, "sub-millisecond resolution"


async def test_the_dns_server_exports_no_webhook_family(tmp_path: Path) -> None:
    ops = f"127.0.0.1:{_free_port()}"
    argv = [
        *(sys.executable, "-m", "kubedns", "serve", "--no-forward", f"--snapshot={DEMO}"),
        f"--listen=127.0.0.1:{_free_port()}",
        f"--ops-listen={ops}",
    ]
    log = tmp_path / "serve.log"
    with _process(argv, log) as process:
        await _wait_ready(f"http://{ops}/ready", process, log)
        samples = await _scrape(f"http://{ops}")
    names = {name for name, _labels in samples}
    assert {"coredns_build_info", "kubedns_synced"} <= names, "the DNS server's own families"
    assert not {name for name in names if name.startswith("kubedns_webhook_")}


async def test_the_webhook_exports_none_of_the_dns_servers_families(webhook: Webhook) -> None:
    # The shared watch code declares every DNS family in this process too; the webhook never
    # sets them, so a constant kubedns_synced 0 or coredns_* zeros under its job would mislead.
    names = {name for name, _labels in await _scrape(webhook.ops)}
    assert "kubedns_webhook_services" in names and "process_cpu_seconds_total" in names
    assert not {n for n in names if n.startswith("coredns_") or n == "kubedns_synced"}
