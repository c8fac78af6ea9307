"""CoreDNS's DNS request families, scraped from a real server after real queries: names, label
sets, label values and buckets as CoreDNS exports them (``plugin/metrics/vars``)."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import AsyncIterator

import aiohttp
import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from kubedns import metrics
from kubedns.app import Server
from kubedns.config import ConfigError, HostPort, load
from tests.forward.conftest import dnsmasq  # noqa: F401 (a fixture)
from tests.test_ops import make_server

FAMILIES = {
    "coredns_dns_requests": ("counter", {"server", "zone", "view", "proto", "family", "type"}),
    "coredns_dns_responses": ("counter", {"server", "zone", "view", "rcode", "plugin"}),
    "coredns_dns_do_requests": ("counter", {"server", "zone", "view"}),
    "coredns_dns_request_duration_seconds": ("histogram", {"server", "zone", "view", "type"}),
    "coredns_dns_request_size_bytes": ("histogram", {"server", "zone", "view", "proto"}),
    "coredns_dns_response_size_bytes": ("histogram", {"server", "zone", "view", "proto"}),
}
TIME_BOUNDS = [0.00025 * 2**i for i in range(16)]  # CoreDNS plugin.TimeBuckets
SIZE_BOUNDS = [0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3]
KNOWN_TYPES = {
    "A", "AAAA", "CNAME", "DNSKEY", "DS", "MX", "NSEC3", "NSEC", "NS", "PTR", "RRSIG", "SOA",
    "SRV", "TXT", "HTTPS", "IXFR", "AXFR", "ANY",
}  # fmt: skip


@pytest_asyncio.fixture
async def forwarding(dnsmasq: HostPort) -> AsyncIterator[Server]:  # noqa: F811
    """Cluster names from the demo snapshot, everything else from a real dnsmasq, and
    example.org as a stub domain (its own ``zone`` label)."""
    server = make_server(
        **{
            "forward.upstreams": [str(dnsmasq)],
            "forward.stub_domains": {"example.org": [str(dnsmasq)]},
        }
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def scrape(server: Server) -> dict[str, list[Sample]]:
    """This server's samples (its ``server`` label) of the request families, by family."""
    assert server.ops is not None
    url = f"http://{server.ops.address}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        text = await response.text()
    found: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in FAMILIES:
            continue
        kind, labels = FAMILIES[family.name]
        assert family.type == kind, family.name
        mine = [s for s in family.samples if s.labels.get("server") == server_label(server)]
        for sample in mine:
            assert set(sample.labels) - {"le"} == labels, (family.name, sample.labels)
        found[family.name] = mine
    assert set(found) == set(FAMILIES)
    return found


def server_label(server: Server) -> str:
    return f"dns://{server.address}"


def total(samples: list[Sample], suffix: str = "", **labels: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name.endswith(suffix) and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def udp(server: Server, query: dns.message.Message, host: str = "") -> dns.message.Message:
    host = host or server.address.host
    return await dns.asyncquery.udp(query, host, port=server.address.port, timeout=3)


async def tcp(server: Server, query: dns.message.Message) -> dns.message.Message:
    return await dns.asyncquery.tcp(query, server.address.host, port=server.address.port, timeout=3)


async def raw_udp(server: Server, packets: list[bytes]) -> list[bytes]:
    """Send every packet from one socket, then read as many replies (the server runs on
    this event loop, so the socket must not block it)."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for packet in packets:
            await loop.sock_sendto(sock, packet, (server.address.host, server.address.port))
        return [await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout=5) for _ in packets]


async def test_every_family_with_coredns_labels_and_buckets(forwarding: Server) -> None:
    server = forwarding
    q = dns.message.make_query
    replies = [
        await udp(server, q("web.shop.svc.cluster.local", "A")),
        await udp(server, q("web.shop.svc.cluster.local", "A")),  # a fast-path hit
        await udp(server, q("missing.shop.svc.cluster.local", "AAAA")),
        await tcp(server, q("web.shop.svc.cluster.local", "A")),
        await udp(server, q("db.shop.svc.cluster.local", "A", want_dnssec=True)),
        await udp(server, q("web.shop.svc.cluster.local", dns.rdatatype.RdataType.make(65000))),
        await udp(server, q("www.example.com", "A")),  # forwarded, then from the cache
        await udp(server, q("www.example.com", "A")),
        await udp(server, q("www.example.org", "A")),  # the stub domain
        await udp(server, q("payments.shop.svc.cluster.local", "A")),  # ExternalName, chased
    ]
    rcodes = [r.rcode() for r in replies]
    assert rcodes == [0, 0, dns.rcode.NXDOMAIN, 0, 0, 0, 0, 0, 0, 0]
    assert len(replies[-1].answer) == 2  # the CNAME and the target's address from upstream
    # Two questions: FORMERR, written by the server itself.
    two = struct.pack("!HHHHHH", 7, 0x0100, 2, 0, 0, 0) + b"\x01a\x00\x00\x01\x00\x01" * 2
    (formerr,) = await raw_udp(server, [two])
    assert formerr[3] & 0xF == dns.rcode.FORMERR

    m = await scrape(server)
    requests = m["coredns_dns_requests"]
    assert total(requests) == 11
    assert {s.labels["view"] for s in requests} == {""}
    assert {s.labels["family"] for s in requests} == {"1"}
    assert total(requests, zone=".", proto="udp", type="A") == 6
    assert total(requests, zone=".", proto="tcp", type="A") == 1
    assert total(requests, zone=".", type="AAAA") == 1
    assert total(requests, zone=".", type="other") == 2  # TYPE65000, and FORMERR's no question
    assert total(requests, zone="example.org.", proto="udp", type="A") == 1

    responses = m["coredns_dns_responses"]
    assert total(responses) == 11
    assert total(responses, zone=".", rcode="NOERROR", plugin="kubernetes") == 6
    assert total(responses, zone=".", rcode="NXDOMAIN", plugin="kubernetes") == 1
    assert total(responses, zone=".", rcode="NOERROR", plugin="forward") == 1
    assert total(responses, zone=".", rcode="NOERROR", plugin="cache") == 1
    assert total(responses, zone="example.org.", rcode="NOERROR", plugin="forward") == 1
    assert total(responses, zone=".", rcode="FORMERR", plugin="") == 1

    assert total(m["coredns_dns_do_requests"]) == 1
    assert total(m["coredns_dns_do_requests"], zone=".", view="") == 1

    durations = m["coredns_dns_request_duration_seconds"]
    check_buckets(durations, TIME_BOUNDS, ("zone", "type"))
    assert total(durations, "_count") == 11
    assert total(durations, "_count", zone=".", type="A") == 7
    assert total(durations, "_count", zone="example.org.", type="A") == 1
    assert total(durations, "_sum") > 0

    for name in ("coredns_dns_request_size_bytes", "coredns_dns_response_size_bytes"):
        sizes = m[name]
        check_buckets(sizes, SIZE_BOUNDS, ("zone", "proto"))
        assert total(sizes, "_count") == 11
        assert total(sizes, "_count", proto="tcp") == 1
    request_bytes = len(q("web.shop.svc.cluster.local", "A").to_wire())
    tcp_sizes = [s for s in m["coredns_dns_request_size_bytes"] if s.labels["proto"] == "tcp"]
    assert total(tcp_sizes, "_sum") == request_bytes
    assert total(tcp_sizes, "_bucket", le="0.0") == 0
    assert total(tcp_sizes, "_bucket", le="100.0") == 1


def check_buckets(samples: list[Sample], bounds: list[float], keys: tuple[str, ...]) -> None:
    """Each label set has exactly CoreDNS's bucket bounds, cumulative, ending at _count."""
    by_set: dict[tuple[str, ...], list[Sample]] = {}
    for sample in samples:
        if sample.name.endswith("_bucket"):
            by_set.setdefault(tuple(sample.labels[k] for k in keys), []).append(sample)
    assert by_set
    for buckets in by_set.values():
        les = [float(s.labels["le"]) for s in buckets]
        assert les == [*bounds, float("inf")]
        values = [s.value for s in buckets]
        assert values == sorted(values)


async def test_fast_path_hits_are_counted_one_by_one(forwarding: Server) -> None:
    query = dns.message.make_query("web.shop.svc.cluster.local", "A")
    for _ in range(50):
        await udp(forwarding, query)
    padded = dns.message.make_query("web.shop.svc.cluster.local", "A", use_edns=0)
    plain_edns = len(padded.to_wire())
    padded.use_edns(0, options=[dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\0" * 40)])
    for _ in range(3):  # the same stored reply, a request 44 bytes longer than it was made for
        await udp(forwarding, padded)
    m = await scrape(forwarding)
    assert total(m["coredns_dns_requests"], type="A", proto="udp") == 53
    assert total(m["coredns_dns_responses"], rcode="NOERROR", plugin="kubernetes") == 53
    sizes = m["coredns_dns_request_size_bytes"]
    assert total(sizes, "_sum") == 50 * len(query.to_wire()) + 3 * (plain_edns + 44)


async def test_hostile_query_types_cannot_create_label_values(forwarding: Server) -> None:
    rng = random.Random(10)
    types = rng.sample(range(1, 65536), 1000)
    answered = 0
    for start in range(0, len(types), 50):  # bursts the socket buffers take whole
        packets = [
            struct.pack("!HHHHHH", qtype, 0, 1, 0, 0, 0)
            + b"\x01x\x00"
            + struct.pack("!HH", qtype, 1)
            for qtype in types[start : start + 50]
        ]
        answered += len(await raw_udp(forwarding, packets))
    m = await scrape(forwarding)
    type_labels = {s.labels["type"] for s in m["coredns_dns_requests"]}
    assert type_labels <= KNOWN_TYPES | {"other"}
    assert "other" in type_labels
    assert total(m["coredns_dns_requests"]) == answered == len(types)
    durations = {s.labels["type"] for s in m["coredns_dns_request_duration_seconds"]}
    assert durations <= KNOWN_TYPES | {"other"}


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")
@pytest.mark.parametrize("batch", [True, False])
async def test_family_by_client_on_a_dual_stack_listener(batch: bool) -> None:
    server = make_server(listen="[::]:0", **{"udp.batch": batch})
    await server.start()
    try:
        q = dns.message.make_query("web.shop.svc.cluster.local", "A")
        for host in ("127.0.0.1", "::1", "127.0.0.1"):
            await udp(server, q, host)
        for host in ("127.0.0.1", "::1"):  # TCP is dual-stack too (kubedns.sockets)
            await dns.asyncquery.tcp(q, host, port=server.address.port, timeout=3)
        m = await scrape(server)
    finally:
        await server.stop()
    requests = m["coredns_dns_requests"]
    assert total(requests, proto="udp", family="1") == 2
    assert total(requests, proto="udp", family="2") == 1
    assert total(requests, proto="tcp", family="1") == 1
    assert total(requests, proto="tcp", family="2") == 1
    assert server_label(server) == f"dns://[::]:{server.address.port}"


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")
async def test_ipv6_listener_counts_family_2() -> None:
    server = make_server(listen="[::1]:0")
    await server.start()
    try:
        await udp(server, dns.message.make_query("web.shop.svc.cluster.local", "A"))
        m = await scrape(server)
    finally:
        await server.stop()
    assert total(m["coredns_dns_requests"], family="2", proto="udp", type="A") == 1


async def test_request_metrics_off() -> None:
    server = make_server(**{"ops.request_metrics": False})
    await server.start()
    try:
        await udp(server, dns.message.make_query("web.shop.svc.cluster.local", "A"))
        m = await scrape(server)
    finally:
        await server.stop()
    assert all(not samples for samples in m.values())


async def test_profiles_past_the_bound_are_still_counted_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics, "MAX_PROFILES", 2)  # the third profile on finds no slot
    server = make_server()
    await server.start()
    try:
        names = [f"{'x' * n}.shop.svc.cluster.local" for n in range(1, 9)]  # 8 sizes: 8 profiles
        sent = [dns.message.make_query(name, "A") for name in names * 2]  # stored, then hits
        for query in sent:
            await udp(server, query)
        m = await scrape(server)
    finally:
        await server.stop()
    assert server.tally is not None and len(server.tally.profiles) == 2
    assert total(m["coredns_dns_requests"], type="A", proto="udp") == len(sent)
    assert total(m["coredns_dns_responses"], rcode="NXDOMAIN", plugin="kubernetes") == len(sent)
    sizes = m["coredns_dns_request_size_bytes"]
    assert total(sizes, "_sum") == sum(len(q.to_wire()) for q in sent)
    assert total(m["coredns_dns_request_duration_seconds"], "_count") == len(sent)


def test_the_switch_is_validated() -> None:
    assert load(None, {}).ops.request_metrics is True
    with pytest.raises(ConfigError, match=r"ops\.request_metrics must be true or false"):
        load(None, {"ops.request_metrics": "off"})
