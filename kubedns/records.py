"""What DNS records one Service contributes to the cluster zone (the Kubernetes DNS schema).

Pure functions from slim objects to ``{owner name: {qtype: rdata tuple}}``. Owner names are
lowercase, absolute and written without the trailing dot. The record index stores one such
contribution per Service and merges them; nothing here knows about sockets or wire format.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from kubedns.dns.template import Srv
from kubedns.objects import EndpointSlice, Service, is_published

A, NS, CNAME, SOA, PTR, HINFO, TXT, AAAA, SRV, OPT, ANY = 1, 2, 5, 6, 12, 13, 16, 28, 33, 41, 255
AXFR, IXFR = 252, 251


Rdata = str | Srv
"""A, AAAA: the address text; CNAME, PTR, NS: the target name; TXT: the text; SRV: ``Srv``."""
RRsets = dict[int, tuple[Rdata, ...]]
StoredRRsets = tuple[int, tuple[Rdata, ...]] | RRsets
"""How the index keeps a name's records: most names own a single RRset, and a ``(qtype,
rdata)`` pair costs a quarter of a one-entry dict (about 10 MB on a 10,000-Service cluster)."""
Contribution = dict[str, StoredRRsets]


def compact(rrsets: RRsets) -> StoredRRsets:
    """The stored form: a pair for a single RRset, the dict otherwise (none, or several)."""
    if len(rrsets) == 1:
        ((qtype, rdata),) = rrsets.items()
        return (qtype, rdata)
    return rrsets


def expand(stored: StoredRRsets) -> RRsets:
    """Back to ``{qtype: rdata}``."""
    return {stored[0]: stored[1]} if isinstance(stored, tuple) else stored


@dataclass(frozen=True, slots=True)
class ZoneNames:
    """The fixed names of one cluster zone."""

    zone: str

    def service(self, service: Service) -> str:
        return f"{service.name}.{service.namespace}.svc.{self.zone}"

    def namespace(self, namespace: str) -> str:
        return f"{namespace}.svc.{self.zone}"

    @property
    def nameserver(self) -> str:
        return f"ns.dns.{self.zone}"


def reverse_name(ip: str) -> str:
    """``10.0.0.1`` -> ``1.0.0.10.in-addr.arpa``; IPv6 gets all 32 nibbles under ip6.arpa."""
    return ipaddress.ip_address(ip).reverse_pointer


def address_type(ip: str) -> int:
    return AAAA if ":" in ip else A


def endpoint_label(ip: str) -> str:
    """The stable hostname of an endpoint without one: ``10.1.2.3`` -> ``10-1-2-3``."""
    return ip.replace(".", "-").replace(":", "-")


def service_records(
    service: Service, slices: Iterable[EndpointSlice], names: ZoneNames
) -> Contribution:
    """Every record the schema gives ``service``, built from its EndpointSlices if headless."""
    if service.is_external:
        return {names.service(service): {CNAME: (service.external_name,)}}
    builder = _Builder()
    base = names.service(service)
    if service.is_headless:
        _headless(builder, service, slices, base)
    else:
        _cluster_ip(builder, service, base)
    return builder.finish()


def _cluster_ip(builder: _Builder, service: Service, base: str) -> None:
    for ip in service.cluster_ips:
        builder.add(base, address_type(ip), ip)
        builder.add(reverse_name(ip), PTR, base)
    for port in service.ports:
        builder.add_srv(base, port.name, port.protocol, port.port, base)


def _headless(
    builder: _Builder, service: Service, slices: Iterable[EndpointSlice], base: str
) -> None:
    seen: set[tuple[str, str]] = set()
    for endpoint_slice in slices:
        for endpoint in endpoint_slice.endpoints:
            if not is_published(endpoint, service):
                continue
            ip = endpoint.address
            hostname = endpoint.hostname or endpoint_label(ip)
            if (hostname, ip) in seen:
                continue
            seen.add((hostname, ip))
            host = f"{hostname}.{base}"
            builder.add(base, address_type(ip), ip)
            builder.add(host, address_type(ip), ip)
            builder.add(reverse_name(ip), PTR, host)
            for port in endpoint_slice.ports:
                builder.add_srv(base, port.name, port.protocol, port.port, host)


class _Builder:
    """Collects records in insertion order without duplicates, then sets SRV weights."""

    def __init__(self) -> None:
        self.records: dict[str, dict[int, dict[Rdata, None]]] = {}

    def add(self, name: str, qtype: int, rdata: Rdata) -> None:
        self.records.setdefault(name, {}).setdefault(qtype, {})[rdata] = None

    def add_srv(self, base: str, port_name: str, protocol: str, port: int, target: str) -> None:
        """SRV at ``_<port>._<proto>.<base>``, and at the service name itself as CoreDNS does,
        for named ports only: the schema gives unnamed ports no SRV record. Port 0 (unset in a
        slice) gets none either."""
        if not port or not port_name:
            return
        srv = Srv(0, 0, port, target)
        self.add(base, SRV, srv)
        self.add(f"_{port_name.lower()}._{protocol.lower()}.{base}", SRV, srv)

    def finish(self) -> Contribution:
        return {
            name: compact(
                {qtype: _weighted(qtype, tuple(rdata)) for qtype, rdata in rrsets.items()}
            )
            for name, rrsets in self.records.items()
        }


def _weighted(qtype: int, rdata: tuple[Rdata, ...]) -> tuple[Rdata, ...]:
    """Spread SRV weight evenly (RFC 2782 leaves the values to us; CoreDNS does the same)."""
    if qtype != SRV:
        return rdata
    weight = max(1, 100 // len(rdata))
    return tuple(r._replace(weight=weight) if isinstance(r, Srv) else r for r in rdata)
