"""The record index: atomic updates, visible-change detection, reconcile on Replace."""

from __future__ import annotations

from kubedns.dns.template import Srv
from kubedns.index import REQUIRED_KINDS, RecordIndex
from kubedns.objects import (
    Endpoint,
    EndpointPort,
    EndpointSlice,
    Namespace,
    Pod,
    Service,
    ServicePort,
)
from kubedns.records import AAAA, PTR, SRV, A
from kubedns.sources.events import Delete, Replace, Upsert

ZONE = "cluster.local"


def synced_index() -> RecordIndex:
    index = RecordIndex(zone=ZONE, serial=100)
    for kind in REQUIRED_KINDS:
        index.apply(Replace(kind, ()))
    return index


def web(ip: str = "10.96.0.5", *, port: int = 80) -> Service:
    return Service("shop", "web", "ClusterIP", (ip,), (ServicePort("http", port, "TCP"),))


def headless_slice(name: str, *endpoints: Endpoint, service: str = "db") -> EndpointSlice:
    return EndpointSlice("shop", name, service, endpoints, (EndpointPort("pg", 5432, "TCP"),))


def test_service_records_and_ancestors() -> None:
    index = synced_index()
    index.apply(Upsert(web()))
    assert index.records("web.shop.svc.cluster.local") == {
        A: ("10.96.0.5",),
        SRV: (Srv(0, 100, 80, "web.shop.svc.cluster.local"),),
    }
    assert index.records("5.0.96.10.in-addr.arpa") == {PTR: ("web.shop.svc.cluster.local",)}
    assert index.exists("shop.svc.cluster.local")
    assert index.exists("_tcp.web.shop.svc.cluster.local")
    assert index.exists("0.96.10.in-addr.arpa")
    assert index.namespace_exists("shop")


def test_serial_moves_only_on_visible_change() -> None:
    index = synced_index()
    index.apply(Upsert(web()))
    serial, generation = index.serial, index.generation
    index.apply(Upsert(web()))  # the same object again (a resync)
    assert (index.serial, index.generation) == (serial, generation)
    index.apply(Upsert(web(port=8080)))
    assert index.serial == serial + 1
    assert index.generation > generation


def test_unready_endpoint_change_is_invisible_for_headless_service() -> None:
    index = synced_index()
    index.apply(Upsert(Service("shop", "db", "ClusterIP", (), ())))
    ready = Endpoint("10.1.0.1", "db-0", True)
    index.apply(Upsert(headless_slice("db-a", ready, Endpoint("10.1.0.2", "db-1", False))))
    serial = index.serial
    index.apply(Upsert(headless_slice("db-a", ready, Endpoint("10.1.0.3", "db-1", False))))
    assert index.serial == serial


def test_headless_merges_slices_and_removes_on_delete() -> None:
    index = synced_index()
    index.apply(Upsert(Service("shop", "db", "ClusterIP", (), ())))
    index.apply(Upsert(headless_slice("db-v4", Endpoint("10.1.0.1", "db-0", True))))
    index.apply(Upsert(headless_slice("db-v6", Endpoint("fd00::1", "db-0", True))))
    records = index.records("db-0.db.shop.svc.cluster.local")
    assert records == {A: ("10.1.0.1",), AAAA: ("fd00::1",)}
    index.apply(Delete("EndpointSlice", "shop", "db-v6"))
    assert index.records("db-0.db.shop.svc.cluster.local") == {A: ("10.1.0.1",)}
    index.apply(Delete("Service", "shop", "db"))
    assert index.records("db.shop.svc.cluster.local") is None
    assert not index.exists("db-0.db.shop.svc.cluster.local")
    assert not index.exists("1.0.1.10.in-addr.arpa")


def test_shared_endpoint_ip_keeps_both_ptrs_until_each_goes() -> None:
    index = synced_index()
    for name in ("a", "b"):
        index.apply(Upsert(Service("shop", name, "ClusterIP", (), ())))
        index.apply(
            Upsert(headless_slice(f"{name}-1", Endpoint("10.1.0.9", "", True), service=name))
        )
    ptr = "9.0.1.10.in-addr.arpa"
    assert index.records(ptr) == {
        PTR: ("10-1-0-9.a.shop.svc.cluster.local", "10-1-0-9.b.shop.svc.cluster.local")
    }
    index.apply(Delete("Service", "shop", "a"))
    assert index.records(ptr) == {PTR: ("10-1-0-9.b.shop.svc.cluster.local",)}


def test_three_owners_of_one_ptr_come_and_go_in_any_order() -> None:
    """One owner is stored without a container, several as a list; every transition between
    the two keeps the merged records in contribution order."""
    index = synced_index()
    ptr = "9.0.1.10.in-addr.arpa"

    def host(name: str) -> str:
        return f"10-1-0-9.{name}.shop.svc.cluster.local"

    for name in ("a", "b", "c"):
        index.apply(Upsert(Service("shop", name, "ClusterIP", (), ())))
        index.apply(
            Upsert(headless_slice(f"{name}-1", Endpoint("10.1.0.9", "", True), service=name))
        )
    assert index.records(ptr) == {PTR: (host("a"), host("b"), host("c"))}
    index.apply(Delete("Service", "shop", "b"))
    assert index.records(ptr) == {PTR: (host("a"), host("c"))}
    index.apply(Delete("Service", "shop", "a"))
    assert index.records(ptr) == {PTR: (host("c"),)}
    index.apply(Upsert(Service("shop", "a", "ClusterIP", (), ())))
    assert index.records(ptr) == {PTR: (host("c"), host("a"))}
    index.apply(Delete("Service", "shop", "c"))
    index.apply(Delete("Service", "shop", "a"))
    assert index.records(ptr) is None
    assert not index.exists(ptr)


def test_slices_matter_only_to_headless_services_whenever_they_arrive() -> None:
    index = synced_index()
    index.apply(Upsert(web()))
    serial = index.serial
    index.apply(Upsert(headless_slice("web-1", Endpoint("10.1.0.7", "", True), service="web")))
    assert index.serial == serial  # a ClusterIP Service's records ignore its endpoints
    index.apply(Upsert(headless_slice("db-1", Endpoint("10.1.0.8", "", True))))
    assert index.records("db.shop.svc.cluster.local") is None  # no Service yet
    index.apply(Upsert(Service("shop", "db", "ClusterIP", (), ())))
    assert (index.records("db.shop.svc.cluster.local") or {})[A] == ("10.1.0.8",)
    index.apply(Upsert(Service("shop", "web", "ClusterIP", (), ())))  # becomes headless
    assert (index.records("web.shop.svc.cluster.local") or {})[A] == ("10.1.0.7",)


def test_slice_moving_to_another_service_refreshes_both() -> None:
    index = synced_index()
    for name in ("a", "b"):
        index.apply(Upsert(Service("shop", name, "ClusterIP", (), ())))
    endpoint = Endpoint("10.1.0.7", "", True)
    index.apply(Upsert(headless_slice("moving", endpoint, service="a")))
    index.apply(Upsert(headless_slice("moving", endpoint, service="b")))
    assert index.records("a.shop.svc.cluster.local") is None
    assert index.records("b.shop.svc.cluster.local") == {
        A: ("10.1.0.7",),
        SRV: (Srv(0, 100, 5432, "10-1-0-7.b.shop.svc.cluster.local"),),
    }


def test_replace_reconciles_deletions_missed_while_disconnected() -> None:
    index = synced_index()
    index.apply(Upsert(web()))
    index.apply(Upsert(Service("shop", "old", "ClusterIP", ("10.96.0.6",), ())))
    index.apply(Replace("Service", (web(),)))
    assert index.records("old.shop.svc.cluster.local") is None
    assert index.records("web.shop.svc.cluster.local") is not None


def test_sync_needs_every_required_kind() -> None:
    index = RecordIndex(zone=ZONE)
    assert not index.is_synced
    index.apply(Replace("Service", ()))
    index.apply(Replace("EndpointSlice", ()))
    assert not index.is_synced
    generation = index.generation
    index.apply(Replace("Namespace", (Namespace("shop"),)))
    assert index.is_synced
    assert index.generation > generation


def test_namespace_deletion_removes_its_empty_non_terminal() -> None:
    index = synced_index()
    index.apply(Upsert(Namespace("empty")))
    assert index.exists("empty.svc.cluster.local")
    index.apply(Delete("Namespace", "", "empty"))
    assert not index.exists("empty.svc.cluster.local")
    assert not index.namespace_exists("empty")


def test_pod_ips_are_counted_per_namespace() -> None:
    index = synced_index()
    index.apply(Upsert(Pod("shop", "a", ("10.2.0.1",))))
    index.apply(Upsert(Pod("shop", "b", ("10.2.0.1",))))  # a restarted pod reusing the IP
    index.apply(Delete("Pod", "shop", "a"))
    assert index.pod_has_ip("shop", "10.2.0.1")
    index.apply(Delete("Pod", "shop", "b"))
    assert not index.pod_has_ip("shop", "10.2.0.1")
    assert not index.pod_has_ip("other", "10.2.0.1")


def test_dns_service_addresses_the_nameserver_name() -> None:
    index = synced_index()
    index.apply(Upsert(Service("kube-system", "kube-dns", "ClusterIP", ("10.96.0.10",), ())))
    assert index.records("ns.dns.cluster.local") == {A: ("10.96.0.10",)}


def test_owners_lists_every_owner_name() -> None:
    index = synced_index()
    index.apply(Upsert(web()))
    names = {name for name, _ in index.owners()}
    assert names == {
        "web.shop.svc.cluster.local",
        "5.0.96.10.in-addr.arpa",
        "_http._tcp.web.shop.svc.cluster.local",
    }
