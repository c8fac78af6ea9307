"""The row type of the zone tables and the one function that checks a row against a reply."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import dns.rdatatype

from tests.zone.dnsclient import Reply

NOERROR, NXDOMAIN, REFUSED = "NOERROR", "NXDOMAIN", "REFUSED"
ZONE_SOA = "zone"
"""``authority`` value: exactly one SOA, owned by the zone apex, TTL and minimum = negative TTL."""
ANY_SOA = "any-soa"
"""``authority`` value: exactly one SOA (reverse zones: the owner is the implementation's)."""


@dataclass(frozen=True)
class Row:
    """One question and everything the reply must say.

    ``answer`` holds ``name ttl IN type rdata`` lines (lowercase; SRV rdata is ``port target``)
    and is compared as a multiset together with ANCOUNT, so duplicates fail. ``additional`` is
    only checked when given. ``authority`` is None (empty), ``ZONE_SOA`` or ``ANY_SOA``.
    """

    qname: str
    qtype: str
    rcode: str
    answer: Iterable[str] = ()
    authority: str | None = None
    additional: Iterable[str] | None = None
    aa: bool = True
    note: str = field(default="", compare=False)

    @property
    def id(self) -> str:
        return f"{self.qname}/{self.qtype}" + (f" ({self.note})" if self.note else "")


def check(row: Row, reply: Reply, *, zone: str = "cluster.local.", negative_ttl: int = 5) -> None:
    assert reply.rcode_text == row.rcode, (reply.rcode_text, reply.answer, reply.authority)
    assert reply.aa is row.aa
    assert not reply.tc
    assert reply.answer == sorted(row.answer)
    assert reply.counts.an == len(reply.answer), "duplicate records in the answer section"
    if row.additional is not None:
        if len(reply.raw) > 512 - 40:
            # Near the 512-byte limit of plain UDP an optional additional record may be left
            # out (RFC 2181 9, no TC); what is there must be right, and TCP carries it all.
            assert set(reply.additional) <= set(row.additional)
        else:
            assert reply.additional == sorted(row.additional)
        assert reply.counts.ar == len(reply.additional) + (1 if reply.msg.edns >= 0 else 0)
    if row.authority is None:
        assert reply.msg.authority == []
        return
    check_soa_authority(reply, zone=zone if row.authority == ZONE_SOA else None, ttl=negative_ttl)


def check_soa_authority(reply: Reply, *, zone: str | None, ttl: int) -> None:
    """RFC 2308: one SOA in the authority section, its TTL the negative TTL (SOA minimum)."""
    assert reply.authority_types == ["SOA"]
    (rrset,) = reply.msg.authority
    assert len(rrset) == 1
    if zone is not None:
        assert rrset.name.to_text().lower() == zone.lower()
    soa = rrset[0]
    assert rrset.rdtype == dns.rdatatype.SOA
    assert soa.minimum == ttl
    assert rrset.ttl == min(ttl, soa.minimum)
