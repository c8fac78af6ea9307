"""Authoritative answers for the cluster zone and the reverse zones, without I/O.

Given a lowercase name and a type, choose the records, the rcode and the SOA for negative
answers (RFC 2308): an existing name without the type is NODATA, a missing one NXDOMAIN, and
empty non-terminals exist. Before the first full list of the cluster a missing name gets
SERVFAIL, because a cached NXDOMAIN for a service that does exist is worse than a retry.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kubedns.config import Config
from kubedns.dns.template import RR, Reply, Soa, Srv
from kubedns.dns.wire import NOERROR, NXDOMAIN, SERVFAIL
from kubedns.index import RecordIndex
from kubedns.records import AAAA, ANY, CNAME, NS, PTR, SOA, SRV, TXT, A, Rdata

SCHEMA_VERSION = "1.1.0"
REVERSE_ZONES = ("in-addr.arpa", "ip6.arpa")
ANY_PREFERENCE = (CNAME, A, AAAA, SRV, PTR, TXT)
MAX_CHAIN = 8


@dataclass(frozen=True, slots=True)
class Outcome:
    """An authoritative reply, plus the out-of-zone CNAME target a resolver may chase."""

    reply: Reply
    external_target: str = ""


class ClusterZone:
    """Answers for ``<zone>`` and, for names the cluster owns, ``in-addr.arpa``/``ip6.arpa``."""

    def __init__(self, index: RecordIndex, config: Config) -> None:
        self.index = index
        self.zone = config.zone
        self.suffix = "." + self.zone
        self.ttl = config.ttl
        self.pods = config.pods
        self.nameserver = index.names.nameserver

    def covers(self, qname: str) -> bool:
        """Whether ``qname`` lies in the cluster zone (never forwarded)."""
        return qname == self.zone or qname.endswith(self.suffix)

    def reverse_zone_of(self, qname: str) -> str:
        for zone in REVERSE_ZONES:
            if qname == zone or qname.endswith("." + zone):
                return zone
        return ""

    def owns_reverse(self, qname: str) -> bool:
        """Whether a reverse-zone name belongs to the cluster (a Service or endpoint IP)."""
        return self.index.exists(qname)

    def answer(self, qname: str, qtype: int) -> Outcome:
        """The authoritative answer for a name in the cluster or reverse zones."""
        if self.covers(qname):
            relative = qname[: -len(self.suffix)] if qname != self.zone else ""
            return self._in_zone(qname, relative, qtype)
        apex = self.reverse_zone_of(qname)
        if qname == apex:
            return self._apex(apex, qtype)
        return self._lookup(qname, qtype, apex=apex)

    def _in_zone(self, qname: str, relative: str, qtype: int) -> Outcome:
        if relative == "":
            return self._apex(self.zone, qtype)
        if relative == "dns-version":
            txt = RR(qname, TXT, self.ttl.dns_version, SCHEMA_VERSION)
            return self._positive([txt]) if qtype in (TXT, ANY) else self._nodata(self.zone)
        if relative.endswith(".pod"):
            return self._pod(qname, relative.removesuffix(".pod"), qtype)
        return self._lookup(qname, qtype, apex=self.zone)

    def _apex(self, apex: str, qtype: int) -> Outcome:
        """SOA and NS at the cluster zone or a reverse zone we answer for."""
        if qtype in (SOA, ANY):
            return self._positive([self._soa(apex)])
        if qtype == NS:
            answer = [RR(apex, NS, self.ttl.records, self.nameserver)]
            return self._positive(answer, additional=self._addresses(self.nameserver))
        return self._nodata(apex)

    def _lookup(self, qname: str, qtype: int, *, apex: str) -> Outcome:
        answer: list[RR] = []
        name = qname
        for _ in range(MAX_CHAIN):
            rrsets = self.index.records(name)
            if rrsets is None:
                break
            cname = rrsets.get(CNAME)
            if cname and qtype != CNAME:
                target = str(cname[0])
                answer.append(RR(name, CNAME, self.ttl.records, target))
                if not self.covers(target):
                    return Outcome(self._reply(answer), external_target=target)
                name = target
                continue
            chosen = self._choose(rrsets, qtype)
            if chosen is None:
                return self._negative(name, apex, with_answer=answer)
            answer.extend(RR(name, chosen, self.ttl.records, r) for r in rrsets[chosen])
            return self._positive(answer, additional=self._srv_additional(rrsets, chosen))
        # A missing name, or a CNAME chain ending on one (its rcode is the last name's, RFC 6604).
        return self._negative(name, apex, with_answer=answer)

    def _choose(self, rrsets: dict[int, tuple[Rdata, ...]], qtype: int) -> int | None:
        """The type to answer with; for ANY one RRset only (RFC 8482)."""
        if qtype == ANY:
            return next((t for t in ANY_PREFERENCE if t in rrsets), None)
        return qtype if qtype in rrsets else None

    def _pod(self, qname: str, relative: str, qtype: int) -> Outcome:
        """``<ip-label>.<ns>.pod.<zone>`` A/AAAA records, per the ``pods`` setting."""
        label, _, namespace = relative.rpartition(".")
        if self.pods == "disabled" or "." in label:
            return self._negative(qname, self.zone)
        if not label:  # <ns>.pod.<zone>: an empty non-terminal when the namespace exists
            exists = self.index.namespace_exists(namespace)
            return self._nodata(self.zone) if exists else self._negative(qname, self.zone)
        ip = _pod_ip(label)
        if ip is None or not self._pod_exists(namespace, ip):
            return self._negative(qname, self.zone)
        rtype = AAAA if ":" in ip else A
        if qtype not in (rtype, ANY):
            return self._nodata(self.zone)
        return self._positive([RR(qname, rtype, self.ttl.records, ip)])

    def _pod_exists(self, namespace: str, ip: str) -> bool:
        if self.pods == "verified":
            return self.index.pod_has_ip(namespace, ip)
        return self.index.namespace_exists(namespace)

    def _srv_additional(self, rrsets: dict[int, tuple[Rdata, ...]], qtype: int) -> list[RR]:
        if qtype != SRV:
            return []
        targets = dict.fromkeys(r.target for r in rrsets[SRV] if isinstance(r, Srv))
        return [rr for target in targets for rr in self._addresses(target)]

    def _addresses(self, name: str) -> list[RR]:
        rrsets = self.index.records(name) or {}
        return [
            RR(name, rtype, self.ttl.records, rdata)
            for rtype in (A, AAAA)
            for rdata in rrsets.get(rtype, ())
        ]

    # -- reply shapes ---------------------------------------------------------------------

    def _soa(self, apex: str) -> RR:
        ttl = self.ttl.negative
        soa = Soa(
            mname=self.nameserver,
            rname=f"hostmaster.{self.zone}",
            serial=self.index.serial & 0xFFFFFFFF,
            refresh=7200,
            retry=1800,
            expire=86400,
            minimum=ttl,
        )
        return RR(apex, SOA, ttl, soa)

    def _reply(self, answer: list[RR], rcode: int = NOERROR) -> Reply:
        return Reply(rcode=rcode, authoritative=True, answer=answer)

    def _positive(self, answer: list[RR], additional: list[RR] | None = None) -> Outcome:
        return Outcome(Reply(authoritative=True, answer=answer, additional=additional or ()))

    def _nodata(self, apex: str) -> Outcome:
        return Outcome(Reply(authoritative=True, authority=[self._soa(apex)]))

    def _negative(self, qname: str, apex: str, with_answer: list[RR] | None = None) -> Outcome:
        """NODATA for a name that exists, else NXDOMAIN; but SERVFAIL for a missing name while
        the cluster has not been listed completely yet."""
        exists = self.index.exists(qname)
        if not exists and not self.index.is_synced:
            return Outcome(Reply(rcode=SERVFAIL))
        return Outcome(
            Reply(
                rcode=NOERROR if exists else NXDOMAIN,
                authoritative=True,
                answer=with_answer or (),
                authority=[self._soa(apex)],
            )
        )


def _pod_ip(label: str) -> str | None:
    """``10-1-2-3`` -> ``10.1.2.3``; IPv6 labels use ``-`` for ``:``. None if not an IP."""
    for text in (label.replace("-", "."), label.replace("-", ":")):
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            continue
    return None
