"""The service catalogue: events in, per-namespace views out."""

from __future__ import annotations

from kubedns.objects import Namespace
from kubedns.sources.events import Delete, Replace, Upsert
from kubedns.webhook.store import ServiceCatalog
from tests.webhook.helpers import configmap, service


def synced() -> ServiceCatalog:
    catalog = ServiceCatalog()
    catalog.apply(
        Replace(
            "Service",
            (
                service("default", "kubernetes", "10.0.0.1"),
                service("default", "other", "10.0.0.2"),
                service("shop", "web", "10.0.0.3"),
            ),
        )
    )
    catalog.apply(Replace("ConfigMap", (configmap("shop", "settings", ["A"]),)))
    return catalog


def test_synced_only_after_both_kinds_are_listed() -> None:
    catalog = ServiceCatalog()
    assert not catalog.is_synced
    catalog.apply(Replace("Service", ()))
    assert not catalog.is_synced
    catalog.apply(Replace("Namespace", (Namespace("x"),)))
    assert not catalog.is_synced
    catalog.apply(Replace("ConfigMap", ()))
    assert catalog.is_synced


def test_services_for_a_namespace_include_default() -> None:
    catalog = synced()
    assert sorted(s.key for s in catalog.services_for("shop")) == [
        ("default", "kubernetes"),
        ("default", "other"),
        ("shop", "web"),
    ]
    assert len(catalog.services_for("default")) == 2


def test_upsert_delete_and_replace() -> None:
    catalog = synced()
    catalog.apply(Upsert(service("shop", "web", "10.0.0.9")))
    catalog.apply(Upsert(service("shop", "api", "10.0.0.8")))
    catalog.apply(Delete("Service", "default", "other"))
    catalog.apply(Delete("ConfigMap", "shop", "settings"))
    catalog.apply(Delete("Service", "nowhere", "nothing"))
    shop = {s.name: s.cluster_ip for s in catalog.services_for("shop")}
    assert shop == {"web": "10.0.0.9", "api": "10.0.0.8", "kubernetes": "10.0.0.1"}
    assert catalog.configmaps_in("shop") == {}
    catalog.apply(Replace("Service", (service("shop", "only", "10.0.0.7"),)))
    assert [s.name for s in catalog.services_for("shop")] == ["only"]


def test_other_kinds_are_ignored() -> None:
    catalog = synced()
    catalog.apply(Upsert(Namespace("shop")))
    catalog.apply(Delete("Pod", "shop", "web"))
    assert len(catalog.services_for("shop")) == 3
