"""The command line: flag spellings, the kubelet's empty values, start-up errors, and the
whole program started as a process and asked over HTTPS."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kubedns.webhook.cli import add_webhook_parser, overrides_from, run_webhook
from tests.webhook.helpers import apply_patch, raw_service
from tests.webhook.tls import issue, new_authority


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kubedns")
    add_webhook_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["webhook", *argv])


def test_flags_map_to_config_keys() -> None:
    args = parse(
        [
            "--listen=127.0.0.1:9443",
            "--tls-cert=c.pem",
            "--tls-key=k.pem",
            "--snapshot=s.yaml",
            "--cluster-domain=example.local",
            "--cluster-dns=10.0.0.10, fd00::10",
            "--node-resolv-conf=/host/etc/resolv.conf",
        ]
    )
    assert overrides_from(args) == {
        "webhook.listen": "127.0.0.1:9443",
        "webhook.tls_cert": "c.pem",
        "webhook.tls_key": "k.pem",
        "snapshot": "s.yaml",
        "cluster_domain": "example.local",
        "webhook.cluster_dns": ["10.0.0.10", "fd00::10"],
        "webhook.node_resolv_conf": "/host/etc/resolv.conf",
    }
    assert args.handler is run_webhook


def test_empty_values_mean_none_as_for_the_kubelet() -> None:
    overrides = overrides_from(parse(["--cluster-dns=", "--node-resolv-conf="]))
    assert overrides == {"webhook.cluster_dns": [], "webhook.node_resolv_conf": None}


def test_snapshot_and_kubeconfig_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["--snapshot=a", "--kubeconfig=b"])
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--snapshot=x.yaml"], "--tls-cert and --tls-key"),
        (["--cluster-dns=10.0.0.300", "--snapshot=x"], "webhook.cluster_dns[0]"),
        (["--listen=nohost", "--snapshot=x"], "webhook.listen"),
    ],
)
def test_start_up_errors_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_webhook(parse(argv)) == 2
    assert message in capsys.readouterr().err


def test_missing_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    authority = new_authority()
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    issue(authority, cert, key)
    common = [f"--tls-cert={cert}", f"--tls-key={key}"]
    missing = tmp_path / "missing"
    assert run_webhook(parse([*common, f"--snapshot={missing}"])) == 2
    assert str(missing) in capsys.readouterr().err
    snapshot = tmp_path / "s.json"
    snapshot.write_text('{"kind": "List", "items": []}')
    argv = [*common, f"--snapshot={snapshot}", f"--node-resolv-conf={missing}"]
    assert run_webhook(parse(argv)) == 2
    assert f"node resolv.conf {missing}" in capsys.readouterr().err
    argv = [f"--tls-cert={missing}", f"--tls-key={key}", f"--snapshot={snapshot}"]
    assert run_webhook(parse(argv)) == 2
    assert "cannot load TLS pair" in capsys.readouterr().err


def test_a_busy_port_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    authority = new_authority()
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    issue(authority, cert, key)
    snapshot = tmp_path / "s.json"
    snapshot.write_text('{"kind": "List", "items": []}')
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = [f"--listen=127.0.0.1:{port}", f"--tls-cert={cert}", f"--tls-key={key}"]
        assert run_webhook(parse([*argv, f"--snapshot={snapshot}"])) == 2
    assert f"cannot listen on 127.0.0.1 port {port}" in capsys.readouterr().err


def test_unusable_kubeconfig_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    authority = new_authority()
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    issue(authority, cert, key)
    argv = [f"--tls-cert={cert}", f"--tls-key={key}", f"--kubeconfig={tmp_path / 'kc'}"]
    assert run_webhook(parse(argv)) == 2
    assert str(tmp_path / "kc") in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait_healthy(session: aiohttp.ClientSession, url: str, process: Any) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise AssertionError(f"webhook exited early: {process.stderr.read()}")
        try:
            async with session.get(f"{url}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.05)
    raise AssertionError("webhook did not become healthy")


async def test_the_program_serves_a_review_and_stops_on_sigterm(tmp_path: Path) -> None:
    authority = new_authority()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    issue(authority, cert, key)
    snapshot = tmp_path / "cluster.json"
    items = [raw_service("default", "kubernetes", "10.96.0.1", [("https", 443, "TCP")])]
    snapshot.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    port, ops_port = _free_port(), _free_port()
    argv = [
        f"--listen=127.0.0.1:{port}",
        f"--ops-listen=127.0.0.1:{ops_port}",
        "--log-format=json",
        f"--tls-cert={cert}",
        f"--tls-key={key}",
        f"--snapshot={snapshot}",
        "--cluster-domain=cluster.local",
        "--cluster-dns=",
        "--node-resolv-conf=",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "kubedns.webhook", *argv],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cadata=authority.pem().decode())
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
            await _wait_healthy(session, url, process)
            # SIGHUP (a reload, to an operator) must not end it; the review below proves it.
            process.send_signal(signal.SIGHUP)
            pod: dict[str, Any] = {
                "metadata": {"name": "p", "namespace": "shop"},
                "spec": {"dnsPolicy": "ClusterFirst", "containers": [{"name": "c"}]},
            }
            review = {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": "cli-1",
                    "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "namespace": "shop",
                    "operation": "CREATE",
                    "object": pod,
                },
            }
            async with session.post(f"{url}/mutate", json=review) as response:
                answer = await response.json()
        # The same operations endpoint as `kubedns serve`, over plain HTTP.
        ops = f"http://127.0.0.1:{ops_port}"
        async with aiohttp.ClientSession() as plain:
            async with plain.get(f"{ops}/metrics") as response:
                metrics_text = await response.text()
            for path in ("/health", "/ready"):
                async with plain.get(f"{ops}{path}") as response:
                    assert response.status == 200, path
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=10)
    assert returncode == 0
    stderr = process.stderr.read()  # type: ignore[union-attr]
    hangup = [line for line in stderr.splitlines() if "SIGHUP ignored" in line]
    assert hangup and json.loads(hangup[0])["level"] == "warning", "logged as serve logs: JSON"
    assert re.search(
        r'^kubedns_webhook_reviews_total\{operation="CREATE",outcome="mutated"\} 1\.0$',
        metrics_text,
        re.M,
    )
    patched = apply_patch(pod, json.loads(base64.b64decode(answer["response"]["patch"])))
    # --cluster-dns= means no cluster DNS: the kubelet keeps ClusterFirst pods on the node's
    # resolver, so only the variables change.
    assert patched["spec"]["dnsPolicy"] == "ClusterFirst"
    assert "dnsConfig" not in patched["spec"]
    assert patched["spec"]["containers"][0]["env"][0] == {
        "name": "KUBERNETES_SERVICE_HOST",
        "value": "10.96.0.1",
    }
