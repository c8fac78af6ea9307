"""The webhook's part of the Helm chart, rendered by the real helm binary.

The certificate the chart generates is checked as the API server would use it: the real
``kubedns webhook``, started with the rendered container args, serves it on loopback and answers
an AdmissionReview over HTTPS verified against the rendered caBundle for the Service's name.
The same process, watching a fake API server, shows which requests the webhook makes: the
rendered ClusterRole must grant exactly those.

Plain ``helm template`` has no cluster, so ``lookup`` finds nothing and every render is a
fresh pair: here each render must agree with itself (Secret, caBundle, mounted Secret name) and
two renders must differ. What an upgrade keeps is in test_webhook_upgrade.py.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests import kubeobjects as k
from tests.chart.render import (
    NAMESPACE,
    Doc,
    Rendered,
    kinds,
    needs_helm,
    one,
    render,
    render_error,
    rendered,
)
from tests.fakeapi import PATHS, FakeApiServer
from tests.webhook.helpers import apply_patch

DNS_IP = "10.96.0.10"
"""The kube-dns Service's IP in the fake cluster, which the webhook must write into pods."""

pytestmark = needs_helm


def webhook_alone() -> list[Doc]:
    """``--set webhook.enabled=true`` and nothing else: the bare-cluster case."""
    return render("--set", "webhook.enabled=true")


# --- the generated certificate -------------------------------------------------------------


def test_the_generated_pair_is_signed_by_the_ca_bundle_for_the_service_name() -> None:
    r = rendered(webhook_alone())
    assert r.secret["type"] == "kubernetes.io/tls"
    assert r.data("ca.crt") == r.ca_bundle
    ca = x509.load_pem_x509_certificate(r.ca_bundle)
    cert = x509.load_pem_x509_certificate(r.data("tls.crt"))
    key = serialization.load_pem_private_key(r.data("tls.key"), password=None)
    cert.verify_directly_issued_by(ca)  # raises unless the CA's key signed it
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert r.service_name in names.get_values_for_type(x509.DNSName)
    assert key.public_key() == cert.public_key()
    # The Service the API server calls is the one in front of the webhook's pods.
    service = one(webhook_alone(), "Service")
    assert f"{service['metadata']['name']}.{NAMESPACE}.svc" == r.service_name


def days_valid(cert: x509.Certificate) -> float:
    return (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 86400


def test_validity_is_configurable_and_never_outlasts_the_ca() -> None:
    r = rendered(
        render(
            "--set",
            "webhook.enabled=true",
            "--set",
            "webhook.certificate.validityDays=30",
            "--set",
            "webhook.certificate.caValidityDays=400",
        )
    )
    cert = x509.load_pem_x509_certificate(r.data("tls.crt"))
    ca = x509.load_pem_x509_certificate(r.ca_bundle)
    assert round(days_valid(cert)) == 30
    assert round(days_valid(ca)) == 400
    # The recorded expiry is what the next upgrade reads to decide on renewal.
    recorded = datetime.datetime.fromisoformat(
        r.secret["metadata"]["annotations"]["kubedns.io/not-after"]
    )
    assert abs((recorded - cert.not_valid_after_utc).total_seconds()) < 60

    capped = rendered(
        render(
            "--set",
            "webhook.enabled=true",
            "--set",
            "webhook.certificate.validityDays=800",
            "--set",
            "webhook.certificate.caValidityDays=100",
        )
    )
    cert = x509.load_pem_x509_certificate(capped.data("tls.crt"))
    assert (
        cert.not_valid_after_utc
        <= x509.load_pem_x509_certificate(capped.ca_bundle).not_valid_after_utc
    )


def test_each_render_agrees_with_itself_and_two_renders_differ() -> None:
    """Without a cluster lookup finds no Secret, so each render makes a new CA and pair."""
    first, second = rendered(webhook_alone()), rendered(webhook_alone())
    for r in (first, second):
        assert r.data("ca.crt") == r.ca_bundle
    assert first.ca_bundle != second.ca_bundle
    assert first.data("tls.key") != second.data("tls.key")
    assert first.secret["metadata"]["name"] == second.secret["metadata"]["name"]


def test_the_ca_key_is_kept_apart_from_the_pod() -> None:
    """The CA's key (which the next upgrade signs with) is in a Secret no pod mounts."""
    docs = webhook_alone()
    r = rendered(docs)
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    (ca_secret,) = [s for name, s in secrets.items() if name != r.secret["metadata"]["name"]]
    assert base64.b64decode(ca_secret["data"]["tls.crt"]) == r.ca_bundle
    ca = x509.load_pem_x509_certificate(r.ca_bundle)
    ca_key = serialization.load_pem_private_key(
        base64.b64decode(ca_secret["data"]["tls.key"]), password=None
    )
    assert ca_key.public_key() == ca.public_key()
    assert b"PRIVATE KEY" not in r.data("ca.crt")


# --- the real webhook with the rendered args and pair ---------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def kubelet_expand(arg: str, env: dict[str, str]) -> str:
    """``$(VAR)`` in container args as the kubelet expands it (unknown names stay as written)."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), arg)


def named_port(container: Doc, name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


@dataclass
class Running:
    rendered: Rendered
    https_port: int
    ops_port: int
    fake: FakeApiServer


def wait_until(check: Any, what: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while not check():
        if process.poll() is not None:
            raise AssertionError(
                f"webhook exited early: {process.stderr.read() if process.stderr else ''}"
            )
        assert time.monotonic() < deadline, f"{what} not reached"
        time.sleep(0.05)


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """``kubedns webhook`` as the rendered Deployment runs it, on loopback: the rendered
    config, certificate and args; only addresses and the API server are local."""
    tmp = tmp_path_factory.mktemp("webhook")
    r = rendered(webhook_alone())
    for key in ("tls.crt", "tls.key"):
        (tmp / key).write_bytes(r.data(key))
    (tmp / "config.yaml").write_text(r.configmap["data"]["config.yaml"])
    fake = FakeApiServer().start()
    fake.load(
        [
            k.service("default", "kubernetes", "10.96.0.1"),
            k.service(NAMESPACE, "kube-dns", DNS_IP),
            k.service("shop", "web", "10.96.7.7"),
        ]
    )
    container = r.container
    https_port, ops_port = free_port(), free_port()
    # What the kubelet gives the container: service variables of its namespace's Services.
    env = {"KUBE_DNS_SERVICE_HOST": DNS_IP}
    args = []
    for arg in container["args"]:
        flag, _, value = kubelet_expand(arg, env).partition("=")
        value = {
            "--listen": f"127.0.0.1:{https_port}",
            "--ops-listen": f"127.0.0.1:{ops_port}",
            "--config": str(tmp / "config.yaml"),
            "--tls-cert": str(tmp / "tls.crt"),
            "--tls-key": str(tmp / "tls.key"),
        }.get(flag, value)
        args.append(f"{flag}={value}" if _ else flag)
    # The ports replaced above are the ones the Deployment names for the probes and Service.
    assert f"--listen=0.0.0.0:{named_port(container, 'https')}" in container["args"]
    assert f"--ops-listen=0.0.0.0:{named_port(container, 'metrics')}" in container["args"]
    kubeconfig = fake.write_kubeconfig(tmp / "kubeconfig")
    process = subprocess.Popen(
        [sys.executable, "-m", "kubedns", *args, f"--kubeconfig={kubeconfig}"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        probe = container["readinessProbe"]["httpGet"]
        assert probe["port"] == "metrics"
        ready = f"http://127.0.0.1:{ops_port}{probe['path']}"
        wait_until(lambda: http_status(ready) == 200, "readiness", process)
        yield Running(r, https_port, ops_port, fake)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
            fake.stop()


def test_the_probes_answer_on_the_port_they_name(running: Running) -> None:
    container = running.rendered.container
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert named_port(container, get["port"]) == named_port(container, "metrics")
        assert http_status(f"http://127.0.0.1:{running.ops_port}{get['path']}") == 200


async def test_the_api_server_can_call_the_webhook_with_the_ca_bundle(running: Running) -> None:
    """TLS verified as the API server verifies it: the caBundle CA, the Service's name."""
    context = ssl.create_default_context(cadata=running.rendered.ca_bundle.decode())
    pod: Doc = {
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"dnsPolicy": "ClusterFirst", "containers": [{"name": "c"}]},
    }
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "chart-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "shop",
            "operation": "CREATE",
            "object": pod,
        },
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"https://127.0.0.1:{running.https_port}/mutate",
            json=review,
            ssl=context,
            server_hostname=running.rendered.service_name,
        ) as response:
            assert response.status == 200
            answer = await response.json()
        # The same CA does not vouch for another name: the check above meant something.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with session.post(
                f"https://127.0.0.1:{running.https_port}/mutate",
                json=review,
                ssl=context,
                server_hostname="kubedns-webhook.elsewhere.svc",
            ):
                pass
    assert answer["response"]["uid"] == "chart-1"
    patched = apply_patch(pod, json.loads(base64.b64decode(answer["response"]["patch"])))
    # The nameserver is the kube-dns Service's IP, reached through $(KUBE_DNS_SERVICE_HOST).
    assert patched["spec"]["dnsConfig"]["nameservers"] == [DNS_IP]
    env = {e["name"]: e["value"] for e in patched["spec"]["containers"][0]["env"]}
    assert env["WEB_SERVICE_HOST"] == "10.96.7.7"


# --- RBAC: exactly what the code asks for ---------------------------------------------------


def group_and_resource(path: str) -> tuple[str, str]:
    """``/api/v1/services`` -> ("", "services"); ``/apis/g/v1/r`` -> ("g", "r")."""
    parts = path.strip("/").split("/")
    return ("", parts[2]) if parts[0] == "api" else (parts[1], parts[3])


def test_the_cluster_role_grants_exactly_the_requests_the_webhook_makes(running: Running) -> None:
    path_of = {kind: path for path, kind in PATHS.items()}

    def asked() -> set[tuple[str, str, str]]:
        return {
            (*group_and_resource(path_of[r.kind]), "watch" if r.watch else "list")
            for r in running.fake.requests
        }

    # Ready means every list is in; the watches follow them.
    deadline = time.monotonic() + 30
    while {verb for *_, verb in asked()} != {"list", "watch"}:
        assert time.monotonic() < deadline, f"no watch seen: {asked()}"
        time.sleep(0.05)
    docs = webhook_alone()
    role = one(docs, "ClusterRole")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == asked()
    assert not [r for r in role["rules"] if r.get("resourceNames") or "*" in r["verbs"]]
    binding = one(docs, "ClusterRoleBinding")
    (subject,) = binding["subjects"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert (subject["name"], subject["namespace"]) == (pod["serviceAccountName"], NAMESPACE)
    # No Role of the webhook's anywhere else.
    assert [d["kind"] for d in docs if d["kind"] in ("Role", "RoleBinding")] == []


# --- the other certificate sources ----------------------------------------------------------


def test_cert_manager_without_an_issuer_gets_the_charts_own_chain() -> None:
    docs = render("--set", "webhook.enabled=true", "--set", "webhook.certManager.enabled=true")
    (mwc,) = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
    assert "caBundle" not in mwc["webhooks"][0]["clientConfig"]
    issuers = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "Issuer"}
    certificates = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "Certificate"}
    serving_name = mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    namespace, _, serving_name = serving_name.partition("/")
    assert namespace == NAMESPACE
    serving = certificates.pop(serving_name)
    (ca,) = certificates.values()
    # serving <- CA Issuer <- CA Certificate <- self-signed Issuer
    ca_issuer = issuers[serving["issuerRef"]["name"]]
    assert ca_issuer["ca"]["secretName"] == ca["secretName"]
    assert ca["isCA"] is True
    assert issuers[ca["issuerRef"]["name"]] == {"selfSigned": {}}
    r_secret = rendered_secret_name(docs)
    assert serving["secretName"] == r_secret
    assert f"{one(docs, 'Service')['metadata']['name']}.{NAMESPACE}.svc" in serving["dnsNames"]
    assert [d for d in docs if d["kind"] == "Secret"] == []


def rendered_secret_name(docs: list[Doc]) -> str:
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    (name,) = [v["secret"]["secretName"] for v in volumes if "secret" in v]
    return str(name)


def test_cert_manager_with_an_issuer_uses_it_alone() -> None:
    docs = render(
        "--set",
        "webhook.enabled=true",
        "--set",
        "webhook.certManager.enabled=true",
        "--set",
        "webhook.certManager.issuerRef.name=corp-ca",
        "--set",
        "webhook.certManager.issuerRef.kind=ClusterIssuer",
    )
    assert "Issuer" not in kinds(docs)
    (certificate,) = [d for d in docs if d["kind"] == "Certificate"]
    assert certificate["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}


def test_a_ca_bundle_means_the_users_own_secret() -> None:
    bundle = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()
    docs = render("--set", "webhook.enabled=true", "--set", f"webhook.caBundle={bundle}")
    (mwc,) = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
    assert mwc["webhooks"][0]["clientConfig"]["caBundle"] == bundle
    assert "annotations" not in mwc["metadata"]
    assert not [d for d in docs if d["kind"] in ("Secret", "Certificate", "Issuer")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["webhook.certManager.enabled=true", "webhook.caBundle=Cg=="],
            "webhook.certManager.enabled and webhook.caBundle both set",
        ),
        (["webhook.podDisruptionBudget.minAvailable=1"], "not both"),
    ],
)
def test_contradictions_are_refused_by_name(args: list[str], message: str) -> None:
    sets = [a for arg in ["webhook.enabled=true", *args] for a in ("--set", arg)]
    assert message in render_error(*sets)


# --- availability, monitoring, selection ----------------------------------------------------


def test_a_disruption_budget_only_with_more_than_one_replica() -> None:
    assert "PodDisruptionBudget" not in {
        d["kind"]
        for d in render("--set", "webhook.enabled=true", "--set", "webhook.replicaCount=1")
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "webhook"
    }
    docs = webhook_alone()
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": one(docs, "Deployment")["spec"]["selector"],
    }
    docs = render(
        "--set",
        "webhook.enabled=true",
        "--set",
        "webhook.replicaCount=3",
        "--set",
        "webhook.podDisruptionBudget.maxUnavailable=null",
        "--set",
        "webhook.podDisruptionBudget.minAvailable=2",
    )
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 2


def test_priority_class_by_default_and_overridable() -> None:
    pod = one(webhook_alone(), "Deployment")["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    docs = render("--set", "webhook.enabled=true", "--set", "webhook.priorityClassName=")
    assert "priorityClassName" not in one(docs, "Deployment")["spec"]["template"]["spec"]


def test_the_service_monitor_selects_the_webhooks_metrics_port() -> None:
    assert "ServiceMonitor" not in kinds(webhook_alone())
    docs = render(
        "--set",
        "webhook.enabled=true",
        "--set",
        "webhook.metrics.serviceMonitor.enabled=true",
        "--set",
        "webhook.metrics.serviceMonitor.labels.release=prometheus",
    )
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    service = one(docs, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    assert port["targetPort"] == "metrics"
    assert named_port(rendered(docs).container, "metrics") > 0


def test_selectors_default_and_when_set() -> None:
    (mwc,) = [d for d in webhook_alone() if d["kind"] == "MutatingWebhookConfiguration"]
    (hook,) = mwc["webhooks"]
    assert "objectSelector" not in hook
    assert hook["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [NAMESPACE]}
        ]
    }
    opt_out = {"key": "kubedns.io/inject", "operator": "NotIn", "values": ["false"]}
    docs = render(
        "--set",
        "webhook.enabled=true",
        "--set",
        "webhook.failurePolicy=Fail",
        "--set",
        "webhook.excludeNamespaces={kube-system,kube-public}",
        "--set",
        "webhook.namespaceSelector.matchLabels.dns=kubedns",
        "--set-json",
        f"webhook.objectSelector={json.dumps({'matchExpressions': [opt_out]})}",
    )
    (mwc,) = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
    (hook,) = mwc["webhooks"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["objectSelector"] == {"matchExpressions": [opt_out]}
    assert hook["namespaceSelector"] == {
        "matchLabels": {"dns": "kubedns"},
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["kube-system", "kube-public"],
            }
        ],
    }
    # Installed elsewhere, the release namespace is left out as well as kube-system.
    docs = render("--set", "webhook.enabled=true", "--namespace", "dns")
    (mwc,) = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
    values = mwc["webhooks"][0]["namespaceSelector"]["matchExpressions"][-1]["values"]
    assert values == ["kube-system", "dns"]
