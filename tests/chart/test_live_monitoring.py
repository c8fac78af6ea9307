"""The chart's dashboard and alerts against the real thing: a real Prometheus (Debian's 2.42)
scrapes a real ``kubedns serve`` and a real ``kubedns webhook`` under traffic, and every query
of the rendered dashboard and every alert expression of the rendered PrometheusRule (without
its threshold) must return data through Prometheus's HTTP API. A query that returns nothing
shows an empty panel, or an alert that can never fire, usually because a metric or label name
is wrong.

kubedns watches the fake API server loaded with config/demo-cluster.yaml (the objects the demo
snapshot holds) rather than reading the snapshot, so the watch, relist and DNS programming
metrics have something to count. Upstreams: dnsmasq with local data, a fake that answers
SERVFAIL (stub domain fail.test) and a closed port (stub domain down.test, which is marked
down and probed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import yaml

from kubedns.config import HostPort
from tests.chart.monitoring import (
    MONITORING,
    alerts,
    binary,
    dashboard,
    panel_queries,
    render,
    rule_groups,
    without_threshold,
    write_rule_file,
)
from tests.fakeapi import FakeApiServer
from tests.forward.conftest import dnsmasq_argv
from tests.forward.fakes import FakeUpstream, closed_port, free_port, rcode_only
from tests.test_stop_signals import bound_address
from tests.webhook.tls import issue, new_authority

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "config" / "demo-cluster.yaml"
DNS_JOB = "kube-dns"  # the chart's default selector: job="<service.name>"
WEBHOOK_JOB = "kubedns-webhook"  # job="<fullname>-webhook" for a release named kubedns
DEADLINE = 40.0
"""Seconds to wait for every query to return data (a few scrapes of traffic); not a measure
of speed: the test fails only if some query still returns nothing by then."""

HANG_GUARD = 180.0
"""Seconds after which the test is failed as hung, with the traceback of where it waited."""
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
"""For each HTTP request of the test: a server that stops answering fails it, not hangs it."""

# (name, type): cluster names answered, NXDOMAIN, forwarded (dnsmasq, cached), SERVFAIL.
QUESTIONS = [
    ("web.shop.svc.cluster.local.", "A"),
    ("web.shop.svc.cluster.local.", "AAAA"),
    ("_postgres._tcp.db.shop.svc.cluster.local.", "SRV"),
    ("34.12.96.10.in-addr.arpa.", "PTR"),
    ("missing.shop.svc.cluster.local.", "A"),
    ("www.example.org.", "A"),
    ("txt.example.org.", "TXT"),
    ("nope.example.org.", "A"),
    ("www.fail.test.", "A"),
    ("www.down.test.", "A"),
]


PROVOKED = {
    ("KubeDNSErrorsHigh", "warning"),  # www.fail.test and www.down.test: 1 in 5 is SERVFAIL
    ("KubeDNSErrorsHigh", "critical"),
    ("KubeDNSForwardErrorsHigh", "warning"),  # the fake upstream answers only SERVFAIL
    ("KubeDNSForwardErrorsHigh", "critical"),
    ("KubeDNSForwardHealthcheckFailureCount", "warning"),  # down.test's closed port
    ("KubeDNSForwardHealthcheckBrokenCount", "warning"),  # ... is its pool's only upstream
    ("KubeDNSAPIErrors", "warning"),  # the injected 500
    ("KubeDNSConfigReloadFailed", "warning"),  # break_config
}
"""Alerts the test's faults make active (pending: none lasts their ``for``)."""
QUIET = {
    "KubeDNSLatencyHigh",
    "KubeDNSForwardLatencyHigh",
    "KubeDNSProgrammingLatencyHigh",
    "KubeDNSDown",
    "KubeDNSInstanceDown",
    "KubeDNSNoReadyReplicas",
    "KubeDNSNotSynced",
    "KubeDNSForwardLoop",
    "KubeDNSPanics",
    "KubeDNSWebhookDown",
    "KubeDNSWebhookErrorsHigh",
    "KubeDNSWebhookLatencyHigh",
}
"""Alerts nothing in the test gives a reason to be active."""


@contextlib.contextmanager
def process(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` running, its stderr in ``log`` (a file: a pipe nobody reads could fill)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    with log.open("wb") as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``url`` answers 200; if the process exits first, fail with its stderr."""
    deadline = time.monotonic() + DEADLINE
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args!r} exited early: {log.read_text()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{proc.args!r} did not answer 200 on {url}: {log.read_text()}")


async def bound(log: Path, proc: subprocess.Popen[bytes], text: str) -> HostPort:
    """The address in the first line of ``log`` with ``text``: the listener bound port 0 and
    logged the port the kernel picked, so no other process can have taken it."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if text in line:
                return bound_address(line)
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args!r} exited early: {log.read_text()}")
        await asyncio.sleep(0.05)
    raise AssertionError(f"no line with {text!r} from {proc.args!r}: {log.read_text()}")


@contextlib.contextmanager
def dnsmasq(tmp_path: Path) -> Iterator[HostPort]:
    address = HostPort("127.0.0.1", free_port())
    argv = dnsmasq_argv(
        address.port,
        "--local=/example.org/",
        "--host-record=www.example.org,192.0.2.10",
        "--txt-record=txt.example.org,hello",
    )
    with process(argv, tmp_path / "dnsmasq.log"):
        yield address


@dataclass(frozen=True)
class Kubedns:
    dns: HostPort
    ops: str
    """The URL of /metrics, /health and /ready."""
    process: subprocess.Popen[bytes]
    config: Path


@contextlib.asynccontextmanager
async def kubedns(
    tmp_path: Path, fake: FakeApiServer, *, upstream: HostPort, failing: HostPort
) -> AsyncIterator[Kubedns]:
    """``kubedns serve`` watching the fake API, ready."""
    config = {
        "listen": "127.0.0.1:0",
        "kubeconfig": str(fake.write_kubeconfig(tmp_path / "kubeconfig")),
        "ops": {"listen": "127.0.0.1:0"},
        "logging": {"level": "info"},  # for the lines naming the bound ports
        "forward": {
            "upstreams": [str(upstream)],
            "stub_domains": {"fail.test": [str(failing)], "down.test": [str(closed_port())]},
        },
    }
    path = tmp_path / "kubedns.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "kubedns", "serve", "--config", str(path)]
    log = tmp_path / "kubedns.log"
    with process(argv, log) as proc:
        listen = await bound(log, proc, "serving DNS on")
        ops = await bound(log, proc, "serving /metrics")
        await wait_http(f"http://{ops}/ready", proc, log)
        yield Kubedns(listen, f"http://{ops}", proc, path)


def break_config(server: Kubedns) -> None:
    """An invalid config and SIGHUP: the reload fails and kubedns keeps the running config."""
    server.config.write_text("pods: sometimes\n")
    server.process.send_signal(signal.SIGHUP)


@contextlib.asynccontextmanager
async def webhook(tmp_path: Path) -> AsyncIterator[tuple[str, str, bytes]]:
    """``kubedns webhook --ops-listen``; yields its HTTPS URL, ops URL and CA (PEM)."""
    authority = new_authority()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    issue(authority, cert, key)
    snapshot = tmp_path / "webhook-cluster.yaml"
    snapshot.write_text(DEMO.read_text())
    argv = [
        sys.executable,
        "-m",
        "kubedns.webhook",
        "--listen=127.0.0.1:0",
        "--ops-listen=127.0.0.1:0",
        f"--tls-cert={cert}",
        f"--tls-key={key}",
        f"--snapshot={snapshot}",
        "--cluster-domain=cluster.local",
        "--cluster-dns=10.96.0.10",
        "--node-resolv-conf=",
        "--log-level=info",  # for the lines naming the bound ports
    ]
    log = tmp_path / "webhook.log"
    with process(argv, log) as proc:
        ops = await bound(log, proc, "serving /metrics")
        https = await bound(log, proc, "serving HTTPS on")
        await wait_http(f"http://{ops}/ready", proc, log)
        yield f"https://{https}", f"http://{ops}", authority.pem()


@contextlib.asynccontextmanager
async def prometheus(tmp_path: Path, *, targets: dict[str, str], rules: Path) -> AsyncIterator[str]:
    """Prometheus scraping each job's target every second, with the chart's rules loaded."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in targets.items()
        ],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    address = HostPort("127.0.0.1", free_port())
    argv = [
        binary("prometheus", hint="apt-get install prometheus"),
        f"--config.file={path}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address={address}",
        "--log.level=warn",
    ]
    log = tmp_path / "prometheus.log"
    with process(argv, log) as proc:
        await wait_http(f"http://{address}/-/ready", proc, log)
        yield f"http://{address}"


async def ask(server: HostPort, name: str, rdtype: str, *, tcp: bool, do: bool) -> None:
    query = dns.message.make_query(name, rdtype, want_dnssec=do)
    send = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
    with contextlib.suppress(dns.exception.Timeout, OSError):
        await send(query, server.host, port=server.port, timeout=2)


async def dig(server: HostPort, name: str, rdtype: str, *flags: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        binary("dig", hint="apt-get install bind9-dnsutils"),
        f"@{server.host}",
        "-p",
        str(server.port),
        name,
        rdtype,
        "+tries=1",
        "+time=2",
        *flags,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await proc.wait()


async def dns_traffic(server: HostPort) -> None:
    """Every question over UDP and TCP, some with DO, some by dig, until cancelled."""
    while True:
        for i, (name, rdtype) in enumerate(QUESTIONS):
            await ask(server, name, rdtype, tcp=False, do=i % 3 == 0)
            await ask(server, name, rdtype, tcp=True, do=False)
        await dig(server, "web.shop.svc.cluster.local", "A")
        await dig(server, "www.example.org", "A", "+tcp")
        await asyncio.sleep(0.2)


def review(uid: str) -> dict[str, Any]:
    pod = {
        "metadata": {"name": uid, "namespace": "shop"},
        "spec": {"dnsPolicy": "ClusterFirst", "containers": [{"name": "c"}]},
    }
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "shop",
            "operation": "CREATE",
            "object": pod,
        },
    }


async def webhook_traffic(url: str, ca: bytes) -> None:
    """Admission reviews, a mutated one and a malformed one each round, until cancelled."""
    context = ssl.create_default_context(cadata=ca.decode())
    connector = aiohttp.TCPConnector(ssl=context)
    async with aiohttp.ClientSession(connector=connector, timeout=HTTP_TIMEOUT) as session:
        for round_ in range(1_000_000):
            async with session.post(f"{url}/mutate", json=review(f"r{round_}")) as response:
                await response.read()
            async with session.post(f"{url}/mutate", data=b"{not json") as response:
                await response.read()
            await asyncio.sleep(0.3)


async def cluster_changes(fake: FakeApiServer) -> None:
    """What the watch metrics count, every round until cancelled: an endpoints change with its
    trigger time, a dropped watch stream whose next request fails, and now and then a 410 Gone
    that forces a relist. Counters must keep rising for rate() to see them."""
    for round_ in range(1_000_000):
        (slice_,) = [
            s for s in fake.objects("EndpointSlice") if s["metadata"]["name"] == "web-7xk2p"
        ]
        trigger = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        slice_["metadata"].setdefault("annotations", {})[
            "endpoints.kubernetes.io/last-change-trigger-time"
        ] = trigger
        slice_["endpoints"][0]["conditions"]["ready"] = round_ % 2 == 1
        fake.update(slice_)
        fake.fail_next("Service", 500, on="watch")
        fake.disconnect_watches("Service")
        if round_ % 3 == 0:
            fake.compact()
            fake.disconnect_watches("Namespace")
        await asyncio.sleep(2)


async def returns_data(session: aiohttp.ClientSession, url: str, query: str) -> bool:
    async with session.get(f"{url}/api/v1/query", params={"query": query}) as response:
        body = await response.json()
    assert body["status"] == "success", f"{query}: {body}"
    # NaN is no data either: a histogram_quantile() over buckets that did not move.
    return any(sample["value"][1] != "NaN" for sample in body["data"]["result"])


async def queries_without_data(url: str, queries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Asks again until every query returns data (a value other than NaN), or DEADLINE
    passes: what still returns none."""
    waiting = list(queries)
    deadline = time.monotonic() + DEADLINE
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session:
        while True:
            waiting = [(what, q) for what, q in waiting if not await returns_data(session, url, q)]
            if not waiting or time.monotonic() > deadline:
                return waiting
            await asyncio.sleep(1)


async def rule_errors(url: str) -> list[str]:
    async with (
        aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session,
        session.get(f"{url}/api/v1/rules") as response,
    ):
        body = await response.json()
    return [
        f"{rule['name']}: {rule.get('lastError')}"
        for group in body["data"]["groups"]
        for rule in group["rules"]
        if rule["health"] == "err"
    ]


async def active_alerts(url: str) -> set[tuple[str, str]]:
    """(alertname, severity) of every pending or firing alert, until PROVOKED are all there
    or DEADLINE passes."""
    deadline = time.monotonic() + DEADLINE
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session:
        while True:
            async with session.get(f"{url}/api/v1/alerts") as response:
                body = await response.json()
            active = {
                (a["labels"]["alertname"], a["labels"]["severity"]) for a in body["data"]["alerts"]
            }
            if active >= PROVOKED or time.monotonic() > deadline:
                return active
            await asyncio.sleep(1)


async def test_every_dashboard_query_and_alert_expression_returns_data(
    fake: FakeApiServer, tmp_path: Path
) -> None:
    docs = render(*MONITORING)
    groups = rule_groups(docs)
    queries = panel_queries(dashboard(docs)) + [
        (f"alert {rule['alert']} ({rule['labels']['severity']})", without_threshold(rule["expr"]))
        for rule in alerts(groups)
    ]
    rules = write_rule_file(groups, tmp_path / "rules.yaml")
    fake.load(yaml.safe_load(DEMO.read_text())["items"])
    # A guard against a hang (every wait above has its own bound), not a measure of speed.
    async with asyncio.timeout(HANG_GUARD):
        with dnsmasq(tmp_path) as upstream:
            async with (
                FakeUpstream(rcode_only(dns.rcode.SERVFAIL)) as failing,
                kubedns(tmp_path, fake, upstream=upstream, failing=failing.address) as server,
                webhook(tmp_path) as (hook, hook_ops, ca),
                prometheus(
                    tmp_path,
                    targets={
                        DNS_JOB: server.ops.removeprefix("http://"),
                        WEBHOOK_JOB: hook_ops.removeprefix("http://"),
                    },
                    rules=rules,
                ) as url,
            ):
                break_config(server)
                traffic = [
                    asyncio.create_task(cluster_changes(fake)),
                    asyncio.create_task(dns_traffic(server.dns)),
                    asyncio.create_task(webhook_traffic(hook, ca)),
                ]
                try:
                    missing = await queries_without_data(url, queries)
                    errors = await rule_errors(url)
                    active = await active_alerts(url)
                finally:
                    for task in traffic:
                        task.cancel()
                    await asyncio.gather(*traffic, return_exceptions=True)
    assert errors == [], "Prometheus failed to evaluate rules"
    assert {name for name, _ in PROVOKED} | QUIET == {r["alert"] for r in alerts(groups)}
    assert PROVOKED - active == set(), "alerts the faults should have made pending"
    assert {name for name, _ in active} & QUIET == set(), "alerts active without a cause"
    empty = [f"{what}: {query}" for what, query in missing]
    assert not empty, "queries that returned no data:\n" + "\n".join(empty)
