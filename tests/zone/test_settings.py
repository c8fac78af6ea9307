"""Settings that change answers, each on its own server: pod modes, TTLs, the cluster domain."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.zone.dnsclient import Address, ask
from tests.zone.server import ServerThread, running
from tests.zone.table import NOERROR, NXDOMAIN, REFUSED, ZONE_SOA, Row, check

Z = "cluster.local"


@pytest.fixture(scope="module")
def verified() -> Iterator[ServerThread]:
    with running(pods="verified") as thread:
        yield thread


@pytest.fixture(scope="module")
def disabled() -> Iterator[ServerThread]:
    with running(pods="disabled") as thread:
        yield thread


def pod_a(name: str, ip: str, rtype: str = "a") -> str:
    return f"{name}. 5 in {rtype} {ip}"


VERIFIED = [
    Row(
        f"10-244-1-5.shop.pod.{Z}",
        "A",
        NOERROR,
        [pod_a(f"10-244-1-5.shop.pod.{Z}", "10.244.1.5")],
        note="a pod of shop",
    ),
    Row(
        f"fd00-244--5.shop.pod.{Z}",
        "AAAA",
        NOERROR,
        [pod_a(f"fd00-244--5.shop.pod.{Z}", "fd00:244::5", "aaaa")],
        note="its second IP",
    ),
    Row(
        f"10-244-2-7.data.pod.{Z}", "A", NOERROR, [pod_a(f"10-244-2-7.data.pod.{Z}", "10.244.2.7")]
    ),
    Row(f"1-2-3-4.shop.pod.{Z}", "A", NXDOMAIN, authority=ZONE_SOA, note="no such pod"),
    Row(f"10-244-2-7.shop.pod.{Z}", "A", NXDOMAIN, authority=ZONE_SOA, note="pod of data"),
    Row(f"10-244-1-5.nope.pod.{Z}", "A", NXDOMAIN, authority=ZONE_SOA),
    Row(f"shop.pod.{Z}", "A", NOERROR, authority=ZONE_SOA, note="empty non-terminal"),
    Row(f"pod.{Z}", "A", NOERROR, authority=ZONE_SOA, note="empty non-terminal"),
    Row(f"10-244-1-5.shop.pod.{Z}", "AAAA", NOERROR, authority=ZONE_SOA, note="NODATA"),
]

DISABLED = [
    Row(f"10-244-1-5.shop.pod.{Z}", "A", NXDOMAIN, authority=ZONE_SOA),
    Row(f"1-2-3-4.shop.pod.{Z}", "A", NXDOMAIN, authority=ZONE_SOA),
    Row(f"fd00-244--5.shop.pod.{Z}", "AAAA", NXDOMAIN, authority=ZONE_SOA),
    Row(
        f"web.shop.svc.{Z}",
        "A",
        NOERROR,
        [f"web.shop.svc.{Z}. 5 in a 10.96.1.10"],
        note="services unaffected",
    ),
]


@pytest.mark.parametrize("row", VERIFIED, ids=[r.id for r in VERIFIED])
def test_pods_verified(verified: ServerThread, row: Row) -> None:
    check(row, ask(verified.address, row.qname, row.qtype))


@pytest.mark.parametrize("row", DISABLED, ids=[r.id for r in DISABLED])
def test_pods_disabled(disabled: ServerThread, row: Row) -> None:
    check(row, ask(disabled.address, row.qname, row.qtype))


def test_ttls_come_from_config() -> None:
    with running(**{"ttl.records": 30, "ttl.negative": 17, "ttl.dns_version": 60}) as thread:
        address: Address = thread.address
        check(
            Row(f"web.shop.svc.{Z}", "A", NOERROR, [f"web.shop.svc.{Z}. 30 in a 10.96.1.10"]),
            ask(address, f"web.shop.svc.{Z}", "A"),
        )
        check(
            Row(
                f"_http._tcp.web.shop.svc.{Z}",
                "SRV",
                NOERROR,
                [f"_http._tcp.web.shop.svc.{Z}. 30 in srv 80 web.shop.svc.{Z}."],
                additional=[
                    f"web.shop.svc.{Z}. 30 in a 10.96.1.10",
                    f"web.shop.svc.{Z}. 30 in aaaa fd00:96::10",
                ],
            ),
            ask(address, f"_http._tcp.web.shop.svc.{Z}", "SRV"),
        )
        check(
            Row(
                "10.1.96.10.in-addr.arpa",
                "PTR",
                NOERROR,
                [f"10.1.96.10.in-addr.arpa. 30 in ptr web.shop.svc.{Z}."],
            ),
            ask(address, "10.1.96.10.in-addr.arpa", "PTR"),
        )
        check(
            Row(
                f"search.ext.svc.{Z}",
                "A",
                NOERROR,
                [f"search.ext.svc.{Z}. 30 in cname search.example.com."],
            ),
            ask(address, f"search.ext.svc.{Z}", "A"),
        )
        check(
            Row(f"dns-version.{Z}", "TXT", NOERROR, [f'dns-version.{Z}. 60 in txt "1.1.0"']),
            ask(address, f"dns-version.{Z}", "TXT"),
        )
        for qname, rcode in ((f"nothing.{Z}", NXDOMAIN), (f"svc.{Z}", NOERROR)):
            check(
                Row(qname, "A", rcode, authority=ZONE_SOA),
                ask(address, qname, "A"),
                negative_ttl=17,
            )


CUSTOM = [
    Row(
        "web.shop.svc.corp.example", "A", NOERROR, ["web.shop.svc.corp.example. 5 in a 10.96.1.10"]
    ),
    Row(
        "WEB.shop.svc.Corp.Example",
        "AAAA",
        NOERROR,
        ["web.shop.svc.corp.example. 5 in aaaa fd00:96::10"],
    ),
    Row(
        "_http._tcp.web.shop.svc.corp.example",
        "SRV",
        NOERROR,
        ["_http._tcp.web.shop.svc.corp.example. 5 in srv 80 web.shop.svc.corp.example."],
    ),
    Row(
        "db.data.svc.corp.example",
        "A",
        NOERROR,
        [f"db.data.svc.corp.example. 5 in a 10.1.0.{n}" for n in (10, 11, 14, 15)],
    ),
    Row(
        "10.1.96.10.in-addr.arpa",
        "PTR",
        NOERROR,
        ["10.1.96.10.in-addr.arpa. 5 in ptr web.shop.svc.corp.example."],
    ),
    Row(
        "dns-version.corp.example",
        "TXT",
        NOERROR,
        ['dns-version.corp.example. 28800 in txt "1.1.0"'],
    ),
    Row("nothing.svc.corp.example", "A", NXDOMAIN, authority=ZONE_SOA),
    Row("svc.corp.example", "A", NOERROR, authority=ZONE_SOA),
    Row(
        "10-244-1-5.shop.pod.corp.example",
        "A",
        NOERROR,
        ["10-244-1-5.shop.pod.corp.example. 5 in a 10.244.1.5"],
    ),
    Row(
        "alias.ext.svc.corp.example",
        "A",
        NOERROR,
        ["alias.ext.svc.corp.example. 5 in cname web.shop.svc.cluster.local."],
        note="target is now outside the zone: not chased",
    ),
    Row("web.shop.svc.cluster.local", "A", REFUSED, aa=False, note="the old zone is not ours"),
    Row("cluster.local", "SOA", REFUSED, aa=False),
]


@pytest.fixture(scope="module")
def custom_domain() -> Iterator[ServerThread]:
    with running(cluster_domain="Corp.Example.") as thread:
        yield thread


@pytest.mark.parametrize("row", CUSTOM, ids=[r.id for r in CUSTOM])
def test_other_cluster_domain(custom_domain: ServerThread, row: Row) -> None:
    check(row, ask(custom_domain.address, row.qname, row.qtype), zone="corp.example.")


def test_other_cluster_domain_apex(custom_domain: ServerThread) -> None:
    reply = ask(custom_domain.address, "corp.example", "SOA")
    assert reply.rcode_text == "NOERROR"
    assert reply.aa
    assert reply.msg.answer[0].name.to_text() == "corp.example."


def test_listen_on_ipv6_loopback() -> None:
    try:
        with running(listen="[::1]:0") as thread:
            address = thread.address
            assert address[0] == "::1"
            for tcp in (False, True):
                reply = ask(address, f"web.shop.svc.{Z}", "AAAA", tcp=tcp)
                assert reply.answer == [f"web.shop.svc.{Z}. 5 in aaaa fd00:96::10"]
    except OSError as exc:  # a host without IPv6 loopback
        pytest.skip(f"no [::1]: {exc}")
