"""Issue 2 section 4 and the Kubernetes DNS schema, one table row per question, asked over UDP
(and the whole table again over TCP) of a real server serving ``cluster.yaml``."""

from __future__ import annotations

import pytest

from tests.zone.dnsclient import Address, ask
from tests.zone.table import ANY_SOA, NOERROR, NXDOMAIN, REFUSED, ZONE_SOA, Row, check

Z = "cluster.local"
WEB = f"web.shop.svc.{Z}"
V6ONLY = f"v6only.shop.svc.{Z}"
DB = f"db.data.svc.{Z}"
MANUAL = f"manual.data.svc.{Z}"
KAFKA = f"kafka.data.svc.{Z}"
SEARCH = f"search.ext.svc.{Z}"
ALIAS = f"alias.ext.svc.{Z}"
DANGLING = f"dangling.ext.svc.{Z}"
WEB_V6_PTR = "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa"
V6ONLY_PTR = "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa"
DB1_V6_PTR = "1.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa"
DB2_V6_PTR = "2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa"


def rr(name: str, rtype: str, rdata: str, ttl: int = 5) -> str:
    return f"{name}. {ttl} in {rtype.lower()} {rdata}".lower()


def srv(name: str, port: int, target: str) -> str:
    return rr(name, "SRV", f"{port} {target}.")


def nxdomain(qname: str, qtype: str = "A", note: str = "") -> Row:
    return Row(qname, qtype, NXDOMAIN, authority=ZONE_SOA, note=note)


def nodata(qname: str, qtype: str = "A", note: str = "") -> Row:
    return Row(qname, qtype, NOERROR, authority=ZONE_SOA, note=note)


WEB_ADDRESSES = [rr(WEB, "A", "10.96.1.10"), rr(WEB, "AAAA", "fd00:96::10")]
DB_A = [rr(DB, "A", f"10.1.0.{n}") for n in (10, 11, 14, 15)]
DB_AAAA = [rr(DB, "AAAA", f"fd00:1::{n}") for n in (10, 11, 14)]
DB_TARGETS = [f"{h}.{DB}" for h in ("db-0", "db-1", "10-1-0-14", "10-1-0-15", "fd00-1--14")]
DB_ADDITIONAL = [
    rr(f"db-0.{DB}", "A", "10.1.0.10"),
    rr(f"db-0.{DB}", "AAAA", "fd00:1::10"),
    rr(f"db-1.{DB}", "A", "10.1.0.11"),
    rr(f"db-1.{DB}", "AAAA", "fd00:1::11"),
    rr(f"10-1-0-14.{DB}", "A", "10.1.0.14"),
    rr(f"10-1-0-15.{DB}", "A", "10.1.0.15"),
    rr(f"fd00-1--14.{DB}", "AAAA", "fd00:1::14"),
]

CLUSTER_IP = [
    Row(WEB, "A", NOERROR, [rr(WEB, "A", "10.96.1.10")], note="dual-stack, v4"),
    Row(WEB, "AAAA", NOERROR, [rr(WEB, "AAAA", "fd00:96::10")], note="dual-stack, v6"),
    Row(
        f"kubernetes.default.svc.{Z}",
        "A",
        NOERROR,
        [rr(f"kubernetes.default.svc.{Z}", "A", "10.96.0.1")],
    ),
    nodata(f"kubernetes.default.svc.{Z}", "AAAA", note="v4-only: NODATA"),
    nodata(V6ONLY, "A", note="v6-only: NODATA"),
    Row(V6ONLY, "AAAA", NOERROR, [rr(V6ONLY, "AAAA", "fd00:96::20")]),
    nodata(WEB, "TXT"),
    nodata(WEB, "MX"),
    nodata(WEB, "CNAME"),
    nodata(WEB, "SOA", note="SOA only at the apex"),
    nodata(WEB, "NS"),
    nodata(WEB, "PTR"),
    nxdomain(f"nothere.shop.svc.{Z}"),
    nxdomain(f"nothere.shop.svc.{Z}", "AAAA", note="NXDOMAIN for AAAA too"),
    nxdomain(f"nothere.shop.svc.{Z}", "SRV"),
    nxdomain(f"sub.{WEB}", note="below a ClusterIP service"),
]

SRV_CLUSTER_IP = [
    Row(
        f"_http._tcp.{WEB}",
        "SRV",
        NOERROR,
        [srv(f"_http._tcp.{WEB}", 80, WEB)],
        additional=WEB_ADDRESSES,
        note="targets' A and AAAA in additional",
    ),
    Row(
        f"_HTTP._TCP.{WEB}",
        "SRV",
        NOERROR,
        [srv(f"_http._tcp.{WEB}", 80, WEB)],
        note="case-insensitive",
    ),
    Row(
        f"_metrics-http._tcp.{WEB}",
        "SRV",
        NOERROR,
        [srv(f"_metrics-http._tcp.{WEB}", 9100, WEB)],
        note="port name Metrics-HTTP",
    ),
    Row(f"_syslog._udp.{WEB}", "SRV", NOERROR, [srv(f"_syslog._udp.{WEB}", 514, WEB)]),
    Row(f"_syslog._UDP.{WEB}", "SRV", NOERROR, [srv(f"_syslog._udp.{WEB}", 514, WEB)]),
    Row(f"_diameter._sctp.{WEB}", "SRV", NOERROR, [srv(f"_diameter._sctp.{WEB}", 3868, WEB)]),
    nxdomain(f"_diameter._tcp.{WEB}", "SRV", note="wrong protocol"),
    nxdomain(f"_http._udp.{WEB}", "SRV", note="wrong protocol"),
    nxdomain(f"_8080._tcp.{WEB}", "SRV", note="unnamed port has no SRV"),
    nxdomain(f"_nope._tcp.{WEB}", "SRV"),
    nxdomain(f"x._http._tcp.{WEB}", "SRV", note="below an SRV owner"),
    nodata(f"_tcp.{WEB}", "SRV", note="empty non-terminal"),
    nodata(f"_udp.{WEB}", "SRV", note="empty non-terminal"),
    nodata(f"_sctp.{WEB}", "A", note="empty non-terminal"),
    nodata(f"_http._tcp.{WEB}", "A", note="SRV owner without A"),
    Row(
        f"_dns._udp.kube-dns.kube-system.svc.{Z}",
        "SRV",
        NOERROR,
        [srv(f"_dns._udp.kube-dns.kube-system.svc.{Z}", 53, f"kube-dns.kube-system.svc.{Z}")],
    ),
    Row(
        f"_https._tcp.kubernetes.default.svc.{Z}",
        "SRV",
        NOERROR,
        [srv(f"_https._tcp.kubernetes.default.svc.{Z}", 443, f"kubernetes.default.svc.{Z}")],
        additional=[rr(f"kubernetes.default.svc.{Z}", "A", "10.96.0.1")],
    ),
    Row(
        f"_http._tcp.{V6ONLY}",
        "SRV",
        NOERROR,
        [srv(f"_http._tcp.{V6ONLY}", 80, V6ONLY)],
        additional=[rr(V6ONLY, "AAAA", "fd00:96::20")],
        note="protocol defaults to TCP",
    ),
]

HEADLESS = [
    Row(DB, "A", NOERROR, DB_A, note="merged across slices, deduplicated, ready only"),
    Row(DB, "AAAA", NOERROR, DB_AAAA, note="IPv6 slice"),
    Row(f"db-0.{DB}", "A", NOERROR, [rr(f"db-0.{DB}", "A", "10.1.0.10")], note="ready true"),
    Row(f"db-0.{DB}", "AAAA", NOERROR, [rr(f"db-0.{DB}", "AAAA", "fd00:1::10")]),
    Row(f"db-1.{DB}", "A", NOERROR, [rr(f"db-1.{DB}", "A", "10.1.0.11")], note="ready unset"),
    Row(
        f"db-1.{DB}",
        "AAAA",
        NOERROR,
        [rr(f"db-1.{DB}", "AAAA", "fd00:1::11")],
        note="conditions {}",
    ),
    nxdomain(f"db-2.{DB}", note="ready false"),
    nxdomain(f"db-2.{DB}", "AAAA", note="ready false, v6"),
    nxdomain(f"db-3.{DB}", note="terminating"),
    nxdomain(f"db-4.{DB}", note="terminating, ready unset"),
    Row(
        f"10-1-0-14.{DB}",
        "A",
        NOERROR,
        [rr(f"10-1-0-14.{DB}", "A", "10.1.0.14")],
        note="IP-derived hostname",
    ),
    Row(
        f"10-1-0-15.{DB}",
        "A",
        NOERROR,
        [rr(f"10-1-0-15.{DB}", "A", "10.1.0.15")],
        note="from the third slice",
    ),
    Row(
        f"fd00-1--14.{DB}",
        "AAAA",
        NOERROR,
        [rr(f"fd00-1--14.{DB}", "AAAA", "fd00:1::14")],
        note="IP-derived IPv6 hostname",
    ),
    nodata(f"fd00-1--14.{DB}", "A"),
    nxdomain(f"10-1-0-12.{DB}", note="no derived name for a not-ready endpoint"),
    nxdomain(f"10-1-0-10.{DB}", note="an endpoint with a hostname has no derived name"),
    Row(
        f"_postgres._tcp.{DB}",
        "SRV",
        NOERROR,
        [srv(f"_postgres._tcp.{DB}", 5432, t) for t in DB_TARGETS],
        additional=DB_ADDITIONAL,
        note="one per ready endpoint, hostname targets, addresses in additional",
    ),
    Row(
        f"_PostGres._Tcp.{DB}",
        "SRV",
        NOERROR,
        [srv(f"_postgres._tcp.{DB}", 5432, t) for t in DB_TARGETS],
    ),
    nxdomain(f"_7000._tcp.{DB}", "SRV", note="unnamed port"),
    nxdomain(f"foo.db-0.{DB}", note="below an endpoint name"),
    nodata(f"db-0.{DB}", "SRV", note="endpoint name without SRV"),
    nodata(f"_tcp.{DB}", "SRV", note="empty non-terminal"),
    Row(
        MANUAL,
        "A",
        NOERROR,
        [rr(MANUAL, "A", "192.168.5.1"), rr(MANUAL, "A", "192.168.5.2")],
        note="selectorless, hand-made slice",
    ),
    Row(f"legacy.{MANUAL}", "A", NOERROR, [rr(f"legacy.{MANUAL}", "A", "192.168.5.2")]),
    Row(f"192-168-5-1.{MANUAL}", "A", NOERROR, [rr(f"192-168-5-1.{MANUAL}", "A", "192.168.5.1")]),
    Row(
        f"_app._tcp.{MANUAL}",
        "SRV",
        NOERROR,
        [
            srv(f"_app._tcp.{MANUAL}", 7777, f"legacy.{MANUAL}"),
            srv(f"_app._tcp.{MANUAL}", 7777, f"192-168-5-1.{MANUAL}"),
        ],
    ),
    Row(
        KAFKA,
        "A",
        NOERROR,
        [rr(KAFKA, "A", "10.2.0.1"), rr(KAFKA, "A", "10.2.0.2")],
        note="publishNotReadyAddresses",
    ),
    Row(
        f"kafka-0.{KAFKA}",
        "A",
        NOERROR,
        [rr(f"kafka-0.{KAFKA}", "A", "10.2.0.1")],
        note="not ready but published",
    ),
    Row(
        f"_broker._tcp.{KAFKA}",
        "SRV",
        NOERROR,
        [srv(f"_broker._tcp.{KAFKA}", 9092, f"kafka-{n}.{KAFKA}") for n in (0, 1)],
    ),
    nxdomain(f"sleepy.data.svc.{Z}", note="headless, no ready endpoint"),
    nxdomain(f"sleepy.data.svc.{Z}", "AAAA", note="headless, no ready endpoint"),
    nxdomain(f"sleepy.data.svc.{Z}", "SRV", note="headless, no ready endpoint"),
    nxdomain(f"_http._tcp.sleepy.data.svc.{Z}", "SRV", note="headless, no ready endpoint"),
    nxdomain(f"sleepy-0.sleepy.data.svc.{Z}", note="not ready"),
    nxdomain(f"lonely.data.svc.{Z}", note="headless without any slice"),
]

EXTERNAL = [
    *(
        Row(
            SEARCH,
            qtype,
            NOERROR,
            [rr(SEARCH, "CNAME", "search.example.com.")],
            note="CNAME for every type",
        )
        for qtype in ("A", "AAAA", "MX", "TXT", "SRV", "CNAME", "PTR", "SOA", "NS")
    ),
    nxdomain(f"www.{SEARCH}", note="below an ExternalName"),
    nxdomain(f"_http._tcp.{SEARCH}", "SRV", note="below an ExternalName"),
    Row(
        ALIAS,
        "A",
        NOERROR,
        [rr(ALIAS, "CNAME", f"{WEB}."), rr(WEB, "A", "10.96.1.10")],
        note="in-zone target resolved in the same answer",
    ),
    Row(ALIAS, "AAAA", NOERROR, [rr(ALIAS, "CNAME", f"{WEB}."), rr(WEB, "AAAA", "fd00:96::10")]),
    Row(ALIAS, "CNAME", NOERROR, [rr(ALIAS, "CNAME", f"{WEB}.")]),
    Row(
        DANGLING,
        "A",
        NXDOMAIN,
        [rr(DANGLING, "CNAME", f"missing.shop.svc.{Z}.")],
        authority=ZONE_SOA,
        note="RFC 6604: rcode of the last name in the chain",
    ),
]

REVERSE = [
    Row(
        "10.1.96.10.in-addr.arpa",
        "PTR",
        NOERROR,
        [rr("10.1.96.10.in-addr.arpa", "PTR", f"{WEB}.")],
        note="ClusterIP v4",
    ),
    Row(WEB_V6_PTR, "PTR", NOERROR, [rr(WEB_V6_PTR, "PTR", f"{WEB}.")], note="ClusterIP v6"),
    Row(
        V6ONLY_PTR.upper().replace("IP6.ARPA", "ip6.arpa"),
        "PTR",
        NOERROR,
        [rr(V6ONLY_PTR, "PTR", f"{V6ONLY}.")],
        note="upper-case nibbles",
    ),
    Row(
        "1.0.96.10.in-addr.arpa",
        "PTR",
        NOERROR,
        [rr("1.0.96.10.in-addr.arpa", "PTR", f"kubernetes.default.svc.{Z}.")],
    ),
    Row(
        "10.0.1.10.in-addr.arpa",
        "PTR",
        NOERROR,
        [rr("10.0.1.10.in-addr.arpa", "PTR", f"db-0.{DB}.")],
        note="headless, deduplicated",
    ),
    Row(
        "14.0.1.10.in-addr.arpa",
        "PTR",
        NOERROR,
        [rr("14.0.1.10.in-addr.arpa", "PTR", f"10-1-0-14.{DB}.")],
        note="IP-derived name",
    ),
    Row(DB1_V6_PTR, "PTR", NOERROR, [rr(DB1_V6_PTR, "PTR", f"db-1.{DB}.")], note="headless v6"),
    Row(
        "1.0.2.10.in-addr.arpa",
        "PTR",
        NOERROR,
        [rr("1.0.2.10.in-addr.arpa", "PTR", f"kafka-0.{KAFKA}.")],
        note="published not-ready",
    ),
    Row("12.0.1.10.in-addr.arpa", "PTR", NXDOMAIN, authority=ANY_SOA, note="not ready"),
    Row("13.0.1.10.in-addr.arpa", "PTR", NXDOMAIN, authority=ANY_SOA, note="terminating"),
    Row(DB2_V6_PTR, "PTR", NXDOMAIN, authority=ANY_SOA, note="not ready, v6"),
    Row("1.0.3.10.in-addr.arpa", "PTR", NXDOMAIN, authority=ANY_SOA, note="no ready endpoint"),
    Row("10.1.96.10.in-addr.arpa", "A", NOERROR, authority=ANY_SOA, note="PTR owner: NODATA"),
]

APEX_AND_STRUCTURE = [
    Row(f"dns-version.{Z}", "TXT", NOERROR, [rr(f"dns-version.{Z}", "TXT", '"1.1.0"', 28800)]),
    nodata(f"dns-version.{Z}", "A"),
    nodata(Z, "A", note="apex has no A"),
    nodata(Z, "AAAA"),
    nodata(Z, "MX"),
    nodata(f"svc.{Z}", "A", note="empty non-terminal"),
    nodata(f"svc.{Z}", "AAAA", note="empty non-terminal"),
    nodata(f"svc.{Z}", "SOA", note="not a zone cut"),
    nodata(f"svc.{Z}", "NS", note="not a zone cut"),
    nodata(f"shop.svc.{Z}", "A", note="namespace: empty non-terminal"),
    nodata(f"shop.svc.{Z}", "SRV"),
    nodata(f"empty.svc.{Z}", "A", note="namespace without services"),
    nodata(f"pod.{Z}", "A", note="empty non-terminal"),
    nodata(f"shop.pod.{Z}", "A", note="existing namespace under pod"),
    nxdomain(f"nope.svc.{Z}", note="namespace does not exist"),
    nxdomain(f"web.nope.svc.{Z}", note="under a missing namespace"),
    nxdomain(f"nope.pod.{Z}", note="missing namespace under pod"),
    nxdomain(f"nothing.{Z}"),
    nxdomain(f"www.example.com.shop.svc.{Z}", note="search-path expansion"),
    nxdomain(f"www.example.com.shop.svc.{Z}", "AAAA", note="search-path expansion"),
    nxdomain(f"www.example.com.svc.{Z}", note="search-path expansion"),
    nxdomain(f"www.example.com.{Z}", note="search-path expansion"),
    nxdomain(f"{WEB}.shop.svc.{Z}", note="search-path expansion of a service name"),
    nxdomain(f"www.example.com.empty.svc.{Z}", note="namespace without services"),
]

PODS_INSECURE = [
    Row(
        f"10-244-1-5.shop.pod.{Z}",
        "A",
        NOERROR,
        [rr(f"10-244-1-5.shop.pod.{Z}", "A", "10.244.1.5")],
    ),
    Row(
        f"1-2-3-4.shop.pod.{Z}",
        "A",
        NOERROR,
        [rr(f"1-2-3-4.shop.pod.{Z}", "A", "1.2.3.4")],
        note="insecure: any IP",
    ),
    Row(
        f"1-2-3-4.empty.pod.{Z}",
        "A",
        NOERROR,
        [rr(f"1-2-3-4.empty.pod.{Z}", "A", "1.2.3.4")],
        note="namespace without services",
    ),
    Row(
        f"fd00-244--5.shop.pod.{Z}",
        "AAAA",
        NOERROR,
        [rr(f"fd00-244--5.shop.pod.{Z}", "AAAA", "fd00:244::5")],
        note="IPv6, - for :",
    ),
    nodata(f"1-2-3-4.shop.pod.{Z}", "AAAA", note="v4 pod name, AAAA"),
    nodata(f"fd00-244--5.shop.pod.{Z}", "A", note="v6 pod name, A"),
    nxdomain(f"1-2-3-4.nope.pod.{Z}", note="namespace does not exist"),
    nxdomain(f"1-2-3.shop.pod.{Z}", note="not an IP"),
    nxdomain(f"256-1-1-1.shop.pod.{Z}", note="not an IP"),
    nxdomain(f"web.shop.pod.{Z}", note="not an IP"),
    nxdomain(f"x.1-2-3-4.shop.pod.{Z}", note="below a pod name"),
]

OUTSIDE = [
    Row("example.com", "A", REFUSED, aa=False),
    Row("local", "SOA", REFUSED, aa=False),
    Row("xcluster.local", "A", REFUSED, aa=False, note="suffix without a label boundary"),
    Row("cluster.local.example.com", "A", REFUSED, aa=False),
    Row(".", "NS", REFUSED, aa=False),
]

ALL = [
    *CLUSTER_IP,
    *SRV_CLUSTER_IP,
    *HEADLESS,
    *EXTERNAL,
    *REVERSE,
    *APEX_AND_STRUCTURE,
    *PODS_INSECURE,
    *OUTSIDE,
]


@pytest.mark.parametrize("row", ALL, ids=[row.id for row in ALL])
def test_udp(addr: Address, row: Row) -> None:
    check(row, ask(addr, row.qname, row.qtype))


@pytest.mark.parametrize("row", ALL, ids=[row.id for row in ALL])
def test_tcp_with_edns(addr: Address, row: Row) -> None:
    """The same table over TCP with EDNS: transport and OPT do not change the answer."""
    reply = ask(addr, row.qname, row.qtype, tcp=True, edns=0)
    check(row, reply)
    assert reply.msg.edns == 0


@pytest.mark.parametrize(
    "qname", ["4.3.2.1.in-addr.arpa", "9.9.9.10.in-addr.arpa", "1.0.0.0.0.0.0.0.ip6.arpa"]
)
def test_reverse_names_the_cluster_does_not_own(addr: Address, qname: str) -> None:
    """Not a cluster address: either refused (not ours) or an authoritative NXDOMAIN with an
    SOA; never an answer, never a silent drop."""
    reply = ask(addr, qname, "PTR")
    assert reply.rcode_text in (NXDOMAIN, REFUSED)
    assert reply.msg.answer == []
    if reply.rcode_text == NXDOMAIN:
        assert reply.aa
        assert reply.authority_types == ["SOA"]
