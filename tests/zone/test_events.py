"""Changes after start-up, applied through the server's own index (the seam the API watch
feeds with the same events as the snapshot): answers follow, the reply cache never serves a
stale answer, and the serial moves with every visible change."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kubedns.objects import from_raw
from kubedns.sources.events import Delete, Event, Replace, Upsert
from tests.zone.dnsclient import ask
from tests.zone.server import ServerThread, running

Z = "cluster.local"


@pytest.fixture
def live() -> Iterator[ServerThread]:
    with running() as thread:
        yield thread


def apply(thread: ServerThread, event: Event) -> None:
    thread.call(thread.server.index.apply, event)


def q(thread: ServerThread, qname: str, qtype: str = "A") -> tuple[str, list[str]]:
    reply = ask(thread.address, qname, qtype)
    return reply.rcode_text, reply.answer


def serial(thread: ServerThread) -> int:
    return int(ask(thread.address, Z, "SOA").msg.answer[0][0].serial)


def headless(name: str, namespace: str = "data") -> dict[str, Any]:
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": "None"},
    }


def endpoint_slice(name: str, service: str, *ips: str, ready: bool = True) -> dict[str, Any]:
    return {
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "data",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip in ips],
    }


def test_deleting_a_service_removes_every_record(live: ServerThread) -> None:
    web = f"web.shop.svc.{Z}"
    # Warm the reply cache first: a stale cached answer must not survive the change.
    assert q(live, web)[0] == "NOERROR"
    before = serial(live)
    apply(live, Delete("Service", "shop", "web"))
    assert q(live, web) == ("NXDOMAIN", [])
    assert q(live, f"_http._tcp.{web}", "SRV") == ("NXDOMAIN", [])
    assert q(live, f"_tcp.{web}") == ("NXDOMAIN", [])
    assert q(live, "10.1.96.10.in-addr.arpa", "PTR") == ("NXDOMAIN", [])
    assert q(live, f"shop.svc.{Z}") == ("NOERROR", []), "the Namespace still exists"
    assert serial(live) > before


def test_deleting_a_namespace(live: ServerThread) -> None:
    assert q(live, f"empty.svc.{Z}")[0] == "NOERROR"
    apply(live, Delete("Namespace", "", "empty"))
    assert q(live, f"empty.svc.{Z}")[0] == "NXDOMAIN"
    assert q(live, f"1-2-3-4.empty.pod.{Z}")[0] == "NXDOMAIN"


def test_endpoint_becoming_ready_and_not_ready(live: ServerThread) -> None:
    name = f"sleepy.data.svc.{Z}"
    assert q(live, name)[0] == "NXDOMAIN"
    apply(
        live, Upsert(from_raw("EndpointSlice", endpoint_slice("sleepy-xyz", "sleepy", "10.3.0.1")))
    )
    assert q(live, name) == ("NOERROR", [f"{name}. 5 in a 10.3.0.1"])
    assert q(live, "1.0.3.10.in-addr.arpa", "PTR") == (
        "NOERROR",
        [f"1.0.3.10.in-addr.arpa. 5 in ptr 10-3-0-1.{name}."],
    )
    apply(
        live,
        Upsert(
            from_raw(
                "EndpointSlice", endpoint_slice("sleepy-xyz", "sleepy", "10.3.0.1", ready=False)
            )
        ),
    )
    assert q(live, name)[0] == "NXDOMAIN"
    assert q(live, "1.0.3.10.in-addr.arpa", "PTR")[0] == "NXDOMAIN"


def test_slice_moving_to_another_service(live: ServerThread) -> None:
    moved = endpoint_slice("manual-by-hand", "kafka", "192.168.5.1")
    apply(live, Upsert(from_raw("EndpointSlice", moved)))
    assert q(live, f"manual.data.svc.{Z}")[0] == "NXDOMAIN"
    assert f"kafka.data.svc.{Z}. 5 in a 192.168.5.1" in q(live, f"kafka.data.svc.{Z}")[1]


def test_two_headless_services_sharing_an_ip(live: ServerThread) -> None:
    for name in ("h1", "h2"):
        apply(live, Upsert(from_raw("Service", headless(name))))
        apply(
            live, Upsert(from_raw("EndpointSlice", endpoint_slice(f"{name}-x", name, "10.9.9.9")))
        )
    ptr = "9.9.9.10.in-addr.arpa"
    assert q(live, ptr, "PTR") == (
        "NOERROR",
        [
            f"{ptr}. 5 in ptr 10-9-9-9.h1.data.svc.{Z}.",
            f"{ptr}. 5 in ptr 10-9-9-9.h2.data.svc.{Z}.",
        ],
    )
    apply(live, Delete("Service", "data", "h1"))
    assert q(live, ptr, "PTR") == ("NOERROR", [f"{ptr}. 5 in ptr 10-9-9-9.h2.data.svc.{Z}."])


def test_externalname_becoming_cluster_ip(live: ServerThread) -> None:
    name = f"search.ext.svc.{Z}"
    assert q(live, name, "CNAME")[0] == "NOERROR"
    service = {
        "kind": "Service",
        "metadata": {"name": "search", "namespace": "ext"},
        "spec": {"clusterIP": "10.96.7.7"},
    }
    apply(live, Upsert(from_raw("Service", service)))
    assert q(live, name) == ("NOERROR", [f"{name}. 5 in a 10.96.7.7"])
    assert q(live, f"www.{name}")[0] == "NXDOMAIN"


def test_relist_removes_what_is_gone(live: ServerThread) -> None:
    apply(live, Replace("Service", ()))
    assert q(live, f"kubernetes.default.svc.{Z}")[0] == "NXDOMAIN"
    assert q(live, f"db-0.db.data.svc.{Z}")[0] == "NXDOMAIN"
    assert q(live, f"shop.svc.{Z}")[0] == "NOERROR", "Namespaces were not relisted"
    apply(live, Replace("Namespace", ()))
    assert q(live, f"shop.svc.{Z}")[0] == "NXDOMAIN"
    assert q(live, f"svc.{Z}")[0] == "NOERROR", "svc.<zone> always exists"
    assert q(live, Z, "SOA")[0] == "NOERROR"


def test_unchanged_upsert_keeps_the_serial(live: ServerThread) -> None:
    before = serial(live)
    same = {
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"new": "label"}},
        "spec": {
            "clusterIP": "10.96.1.10",
            "clusterIPs": ["10.96.1.10", "fd00:96::10"],
            "ports": [
                {"name": "http", "port": 80},
                {"port": 8080},
                {"name": "Metrics-HTTP", "port": 9100},
                {"name": "syslog", "port": 514, "protocol": "UDP"},
                {"name": "diameter", "port": 3868, "protocol": "SCTP"},
            ],
        },
    }
    apply(live, Upsert(from_raw("Service", same)))
    apply(live, Upsert(from_raw("Namespace", {"kind": "Namespace", "metadata": {"name": "shop"}})))
    assert serial(live) == before
