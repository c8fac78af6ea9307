"""The chart's own webhook certificate across ``helm upgrade``, replayed offline.

``lookup`` runs only against a cluster: ``helm template --dry-run=server`` is pointed at
``HelmCluster`` (HTTP on loopback), holding the Secrets an earlier install left, so the
templates see what an upgrade would see. Expiry is moved by rewriting the
``kubedns.io/not-after`` annotation the chart reads, never by waiting.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.chart.helm_cluster import HelmCluster
from tests.chart.render import NAMESPACE, RELEASE, Doc, Rendered, needs_helm, render, rendered

pytestmark = needs_helm

RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


class Upgrades:
    """Renders as ``helm upgrade`` would against one fake cluster."""

    def __init__(self, cluster: HelmCluster, home: Path) -> None:
        self.cluster = cluster
        self.kubeconfig = cluster.write_kubeconfig(home / "kubeconfig")
        # helm keeps its caches and settings under these: keep them out of the real home.
        self.env = {
            "HOME": str(home),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def render(self, *args: str) -> list[Doc]:
        return render(
            "--set",
            "webhook.enabled=true",
            "--dry-run=server",
            # The fake serves no OpenAPI documents; .ci/chart-check validates the objects.
            "--disable-openapi-validation",
            f"--kubeconfig={self.kubeconfig}",
            *args,
            env=self.env,
        )

    def install(self, docs: list[Doc]) -> None:
        for doc in docs:
            if doc["kind"] == "Secret":
                self.cluster.put(doc, release=RELEASE, namespace=NAMESPACE)


@pytest.fixture
def upgrades(tmp_path: Path) -> Iterator[Upgrades]:
    cluster = HelmCluster().start()
    try:
        yield Upgrades(cluster, tmp_path)
    finally:
        cluster.stop()


def secrets(docs: list[Doc]) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}


def expiring(secret: Doc, days: int) -> Doc:
    """The Secret as if its certificate expired in ``days`` days."""
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)
    changed = {**secret, "metadata": {**secret["metadata"]}}
    changed["metadata"]["annotations"] = {
        **secret["metadata"]["annotations"],
        "kubedns.io/not-after": at.strftime(RFC3339),
    }
    return changed


def ca_secret(docs: list[Doc], r: Rendered) -> Doc:
    (secret,) = [s for n, s in secrets(docs).items() if n != r.secret["metadata"]["name"]]
    return secret


def test_an_upgrade_keeps_the_ca_and_the_certificate(upgrades: Upgrades) -> None:
    installed = upgrades.render()
    upgrades.install(installed)
    upgraded = upgrades.render()
    assert secrets(upgraded) == secrets(installed)
    assert rendered(upgraded).ca_bundle == rendered(installed).ca_bundle
    # Without the Secrets (helm template, a fresh cluster) the pair is new: the lookup above
    # is what kept it.
    assert (
        rendered(render("--set", "webhook.enabled=true")).ca_bundle != rendered(installed).ca_bundle
    )


def test_a_certificate_near_expiry_is_signed_again_by_the_same_ca(upgrades: Upgrades) -> None:
    installed = upgrades.render()
    before = rendered(installed)
    upgrades.install(installed)
    upgrades.cluster.put(expiring(before.secret, 30), release=RELEASE, namespace=NAMESPACE)
    after = rendered(upgrades.render())
    assert after.ca_bundle == before.ca_bundle, "caBundle must not change on renewal"
    assert after.data("tls.crt") != before.data("tls.crt")
    assert after.data("tls.key") != before.data("tls.key")
    ca = x509.load_pem_x509_certificate(after.ca_bundle)
    x509.load_pem_x509_certificate(after.data("tls.crt")).verify_directly_issued_by(ca)
    # Far enough from expiry, the same certificate stays.
    upgrades.install(installed)
    upgrades.cluster.put(expiring(before.secret, 200), release=RELEASE, namespace=NAMESPACE)
    assert rendered(upgrades.render()).data("tls.crt") == before.data("tls.crt")


def test_a_ca_near_expiry_is_replaced_with_its_certificate(upgrades: Upgrades) -> None:
    installed = upgrades.render()
    before = rendered(installed)
    upgrades.install(installed)
    upgrades.cluster.put(
        expiring(ca_secret(installed, before), 10), release=RELEASE, namespace=NAMESPACE
    )
    after = rendered(upgrades.render())
    assert after.ca_bundle != before.ca_bundle
    assert after.data("ca.crt") == after.ca_bundle
    ca = x509.load_pem_x509_certificate(after.ca_bundle)
    x509.load_pem_x509_certificate(after.data("tls.crt")).verify_directly_issued_by(ca)


def test_a_new_name_gets_a_new_certificate_from_the_same_ca(upgrades: Upgrades) -> None:
    installed = upgrades.render()
    before = rendered(installed)
    upgrades.install(installed)
    after = rendered(upgrades.render("--set", "config.cluster_domain=example.internal"))
    assert after.ca_bundle == before.ca_bundle
    cert = x509.load_pem_x509_certificate(after.data("tls.crt"))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{after.service_name}.example.internal" in names.get_values_for_type(x509.DNSName)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(
            lambda s: {**s, "data": {k: v for k, v in s["data"].items() if k != "tls.key"}},
            id="no-key",
        ),
        pytest.param(
            lambda s: {**s, "metadata": {**s["metadata"], "annotations": {}}}, id="no-expiry"
        ),
        pytest.param(
            lambda s: {
                **s,
                "metadata": {**s["metadata"], "annotations": {"kubedns.io/not-after": "soon"}},
            },
            id="bad-expiry",
        ),
    ],
)
def test_a_serving_secret_it_cannot_trust_is_replaced(
    upgrades: Upgrades, damage: Callable[[Doc], Doc]
) -> None:
    installed = upgrades.render()
    before = rendered(installed)
    upgrades.install(installed)
    upgrades.cluster.put(damage(before.secret), release=RELEASE, namespace=NAMESPACE)
    after = rendered(upgrades.render())
    assert after.ca_bundle == before.ca_bundle
    assert after.data("tls.crt") != before.data("tls.crt")
    assert set(after.secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
