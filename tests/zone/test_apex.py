"""The zone apex (SOA, NS), the SOA serial, ANY (RFC 8482) and AA on every zone answer."""

from __future__ import annotations

import dns.rdatatype
import pytest

from kubedns.objects import from_raw
from kubedns.sources.events import Upsert
from tests.zone.dnsclient import Address, ask
from tests.zone.server import ServerThread, running
from tests.zone.table import Row, check_soa_authority
from tests.zone.test_answers import ALL, WEB, Z


def soa_serial(addr: Address, qname: str = Z, qtype: str = "SOA") -> int:
    reply = ask(addr, qname, qtype)
    section = reply.msg.answer if qtype == "SOA" else reply.msg.authority
    (rrset,) = [r for r in section if r.rdtype == dns.rdatatype.SOA]
    return int(rrset[0].serial)


def test_soa_at_apex(addr: Address) -> None:
    reply = ask(addr, Z, "SOA")
    assert reply.rcode_text == "NOERROR"
    assert reply.aa
    (rrset,) = reply.msg.answer
    assert rrset.name.to_text() == f"{Z}."
    assert rrset.rdtype == dns.rdatatype.SOA
    soa = rrset[0]
    assert soa.minimum == 5
    assert soa.mname.to_text().endswith(f".{Z}.")
    assert 0 < soa.serial < 2**32


def test_soa_case_insensitive(addr: Address) -> None:
    reply = ask(addr, "CLUSTER.Local", "SOA")
    assert reply.rcode_text == "NOERROR"
    assert reply.counts.an == 1


def test_ns_at_apex_with_glue(addr: Address) -> None:
    reply = ask(addr, Z, "NS")
    assert reply.rcode_text == "NOERROR"
    assert reply.aa
    (rrset,) = reply.msg.answer
    assert rrset.rdtype == dns.rdatatype.NS
    (target,) = [rd.target.to_text() for rd in rrset]
    # The nameserver's own name resolves, to the kube-dns ClusterIP.
    glue = ask(addr, target, "A")
    assert glue.rcode_text == "NOERROR"
    assert glue.answer == [f"{target} 5 in a 10.96.0.10"]
    if reply.additional:
        assert reply.additional == [f"{target} 5 in a 10.96.0.10"]


def test_soa_serial_stable_across_queries(addr: Address) -> None:
    first = soa_serial(addr)
    assert {soa_serial(addr) for _ in range(5)} == {first}
    assert soa_serial(addr, f"nothing.{Z}", "A") == first
    assert soa_serial(addr, f"svc.{Z}", "A") == first


def test_soa_serial_same_over_tcp(addr: Address) -> None:
    reply = ask(addr, Z, "SOA", tcp=True)
    assert int(reply.msg.answer[0][0].serial) == soa_serial(addr)


@pytest.mark.parametrize(
    ("qname", "types"),
    [
        (Z, {"SOA"}),
        (WEB, {"A", "AAAA"}),
        (f"_http._tcp.{WEB}", {"SRV"}),
        (f"search.ext.svc.{Z}", {"CNAME"}),
        (f"dns-version.{Z}", {"TXT"}),
        ("10.1.96.10.in-addr.arpa", {"PTR"}),
        (f"10-244-1-5.shop.pod.{Z}", {"A"}),
    ],
)
def test_any_answers_one_rrset(addr: Address, qname: str, types: set[str]) -> None:
    """RFC 8482: ANY gets one RRset (or a synthesised HINFO), never the whole node."""
    reply = ask(addr, qname, "ANY")
    assert reply.rcode_text == "NOERROR"
    assert reply.aa
    rrsets = reply.msg.answer
    assert len(rrsets) == 1
    rtype = dns.rdatatype.to_text(rrsets[0].rdtype)
    assert rtype in types | {"HINFO"}


@pytest.mark.parametrize("qname", [f"svc.{Z}", f"shop.svc.{Z}", f"_tcp.{WEB}"])
def test_any_at_empty_non_terminal_is_nodata(addr: Address, qname: str) -> None:
    reply = ask(addr, qname, "ANY")
    assert reply.rcode_text == "NOERROR"
    assert reply.msg.answer == []
    check_soa_authority(reply, zone=f"{Z}.", ttl=5)


def test_any_missing_name_is_nxdomain(addr: Address) -> None:
    reply = ask(addr, f"nothing.shop.svc.{Z}", "ANY")
    assert reply.rcode_text == "NXDOMAIN"
    check_soa_authority(reply, zone=f"{Z}.", ttl=5)


@pytest.mark.parametrize("row", [r for r in ALL if r.rcode != "REFUSED"], ids=lambda r: r.id)
def test_every_zone_answer_is_authoritative_and_not_recursive(addr: Address, row: object) -> None:
    assert isinstance(row, Row)
    reply = ask(addr, row.qname, row.qtype)
    assert reply.aa
    assert not reply.flags & 0x0080, "RA set, but nothing is forwarded yet"


def test_soa_serial_moves_only_on_visible_change() -> None:
    """Apply events through the server's own index (the seam the API watch will use)."""
    metadata = {"namespace": "shop", "name": "late"}
    spec = {"clusterIP": "10.96.9.9", "ports": [{"name": "http", "port": 80}]}
    service = {"kind": "Service", "metadata": metadata, "spec": spec}
    relabelled = {"kind": "Service", "metadata": {**metadata, "labels": {"a": "b"}}, "spec": spec}
    with running() as thread:
        before = soa_serial(thread.address)
        assert ask(thread.address, f"late.shop.svc.{Z}").rcode_text == "NXDOMAIN"
        apply(thread, Upsert(from_raw("Service", service)))
        after = soa_serial(thread.address)
        assert after > before
        assert ask(thread.address, f"late.shop.svc.{Z}").answer == [
            f"late.shop.svc.{Z}. 5 in a 10.96.9.9"
        ]
        apply(thread, Upsert(from_raw("Service", relabelled)))
        assert soa_serial(thread.address) == after, "an invisible change moved the serial"


def apply(thread: ServerThread, event: Upsert) -> None:
    thread.call(thread.server.index.apply, event)
