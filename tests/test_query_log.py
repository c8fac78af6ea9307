"""The per-query log (CoreDNS ``log`` format) and the consolidated error log (CoreDNS
``errors``), through a real server: real queries over UDP and TCP, lines read off the logging
module."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator

import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
import pytest_asyncio

from kubedns.answer.cluster import ClusterZone
from kubedns.answer.respond import Responder
from kubedns.app import Server
from kubedns.config import ConfigError, HostPort, load
from kubedns.index import RecordIndex
from kubedns.logs import ERRORS, JSONFormatter
from tests.forward.conftest import dnsmasq  # noqa: F401 (a fixture)
from tests.test_ops import make_server
from tests.test_request_metrics import scrape, total

LINE = re.compile(
    r'^(?P<remote>\S+):(?P<port>\d+) - (?P<id>\d+) "(?P<type>\S+) (?P<class>\S+) (?P<name>\S+) '
    r'(?P<proto>udp|tcp) (?P<size>\d+) (?P<do>true|false) (?P<bufsize>\d+)" (?P<rcode>[A-Z]+) '
    r"(?P<flags>[a-z,]+) (?P<rsize>\d+) (?P<duration>\d+(\.\d+)?)s$"
)


def query_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "kubedns.queries"]


@pytest_asyncio.fixture
async def logged(dnsmasq: HostPort, request: pytest.FixtureRequest) -> AsyncIterator[Server]:  # noqa: F811
    batch = getattr(request, "param", True)
    server = make_server(
        **{
            "logging.queries": True,
            "udp.batch": batch,
            "forward.upstreams": [str(dnsmasq)],
        }
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.mark.parametrize("logged", [True, False], indirect=True, ids=["batch", "dgram"])
async def test_one_line_per_query_in_coredns_format(
    logged: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kubedns.queries")
    port = logged.address.port
    plain = dns.message.make_query("Web.Shop.svc.cluster.local", "A", use_edns=False)
    dnssec = dns.message.make_query("db.shop.svc.cluster.local", "A", want_dnssec=True)
    dnssec.use_edns(0, dns.flags.DO, payload=1232)
    odd = dns.message.make_query("web.shop.svc.cluster.local", dns.rdatatype.RdataType.make(65000))
    forwarded = dns.message.make_query("www.example.com", "A", use_edns=False)
    over_tcp = dns.message.make_query("missing.shop.svc.cluster.local", "AAAA", use_edns=False)
    forwarded_tcp = dns.message.make_query("tcp.example.com", "A", use_edns=False)
    sent = [
        (plain, await dns.asyncquery.udp(plain, "127.0.0.1", port=port, timeout=3)),
        (dnssec, await dns.asyncquery.udp(dnssec, "127.0.0.1", port=port, timeout=3)),
        (odd, await dns.asyncquery.udp(odd, "127.0.0.1", port=port, timeout=3)),
        (forwarded, await dns.asyncquery.udp(forwarded, "127.0.0.1", port=port, timeout=3)),
        (over_tcp, await dns.asyncquery.tcp(over_tcp, "127.0.0.1", port=port, timeout=3)),
        (forwarded_tcp, await dns.asyncquery.tcp(forwarded_tcp, "127.0.0.1", port=port, timeout=3)),
    ]
    records = query_lines(caplog)
    assert len(records) == len(sent)
    by_id = {}
    for record in records:
        assert record.levelno == logging.INFO
        match = LINE.match(record.getMessage())
        assert match, record.getMessage()
        by_id[int(match["id"])] = match
    for query, reply in sent:
        line = by_id[query.id]
        assert line["remote"] == "127.0.0.1"
        assert int(line["size"]) == len(query.to_wire())
        assert int(line["rsize"]) == len(reply.to_wire())
        assert float(line["duration"]) >= 0
    first = by_id[plain.id]
    assert (first["type"], first["class"], first["name"]) == (
        "A",
        "IN",
        "web.shop.svc.cluster.local.",
    )
    assert (first["proto"], first["do"], first["bufsize"]) == ("udp", "false", "512")
    assert (first["rcode"], first["flags"]) == ("NOERROR", "qr,aa,rd,ra")
    assert (by_id[dnssec.id]["do"], by_id[dnssec.id]["bufsize"]) == ("true", "1232")
    assert by_id[odd.id]["type"] == "TYPE65000"
    assert by_id[forwarded.id]["flags"] == "qr,rd,ra"
    tcp = by_id[over_tcp.id]
    assert (tcp["proto"], tcp["bufsize"], tcp["rcode"]) == ("tcp", "65535", "NXDOMAIN")
    assert (by_id[forwarded_tcp.id]["proto"], by_id[forwarded_tcp.id]["rcode"]) == (
        "tcp",
        "NOERROR",
    )

    fields = json.loads(JSONFormatter().format(records[0]))
    assert fields["msg"] == records[0].getMessage()
    assert fields["name"] == "web.shop.svc.cluster.local." and fields["rcode"] == "NOERROR"
    assert fields["proto"] == "udp" and fields["do"] is False and fields["rsize"] > 0


async def test_names_are_escaped_so_a_line_stays_one_line(
    logged: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kubedns.queries")
    query = dns.message.make_query(dns.name.Name([b'a b\n\x01"', b"x", b""]), "A", use_edns=False)
    await dns.asyncquery.udp(query, "127.0.0.1", port=logged.address.port, timeout=3)
    (record,) = query_lines(caplog)
    line = record.getMessage()
    assert "\n" not in line and '"A IN a\\ b\\010\\001\\"' in line
    assert LINE.match(line.replace('\\"', "").replace("\\ ", "")), line


async def test_no_query_lines_when_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = make_server()
    await server.start()
    try:
        query = dns.message.make_query("web.shop.svc.cluster.local", "A")
        await dns.asyncquery.udp(query, "127.0.0.1", port=server.address.port, timeout=3)
        await dns.asyncquery.tcp(query, "127.0.0.1", port=server.address.port, timeout=3)
    finally:
        await server.stop()
    assert query_lines(caplog) == []


async def test_servfails_are_logged_with_their_reason_and_consolidated(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ERRORS, "_windows", {})
    monkeypatch.setattr(ERRORS, "lines", ERRORS.lines)  # restored after: Server sets both
    monkeypatch.setattr(ERRORS, "interval", ERRORS.interval)
    caplog.set_level(logging.INFO, logger="kubedns.errors")
    server = make_server(  # upstream: the loopback discard port, where nothing listens
        **{"logging.error_lines": 2, "logging.error_interval": 1.0, "forward.timeout": 1.0}
    )
    await server.start()
    try:
        queries = [
            dns.message.make_query(f"n{i}.example.net", "A", use_edns=False) for i in range(6)
        ]
        replies = await asyncio.gather(
            *(
                dns.asyncquery.udp(q, "127.0.0.1", port=server.address.port, timeout=5)
                for q in queries
            )
        )
        assert [r.rcode() for r in replies] == [dns.rcode.SERVFAIL] * 6
        summary = "4 errors like 'upstream refused' occurred in the last 1s"
        for _ in range(50):  # the summary comes once the interval is over
            if summary in error_lines(caplog):
                break
            await asyncio.sleep(0.1)
        responses = (await scrape(server))["coredns_dns_responses"]
    finally:
        await server.stop()
    lines = error_lines(caplog)
    assert all(r.levelno == logging.ERROR for r in caplog.records if r.name == "kubedns.errors")
    detailed = [line for line in lines if line.startswith("SERVFAIL ")]
    assert len(detailed) == 2
    assert all(
        re.match(r"SERVFAIL n\d\.example\.net\. A: upstream refused \(.*127\.0\.0\.1:9", line)
        for line in detailed
    ), detailed
    assert lines.count(summary) == 1
    # Made by the server (no upstream answered), as CoreDNS labels them: plugin "".
    assert total(responses, rcode="SERVFAIL", plugin="") == 6
    assert total(responses, rcode="SERVFAIL") == 6


def error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kubedns.errors"]


def test_cluster_names_before_the_first_lists_log_their_servfail(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ERRORS, "_windows", {})
    caplog.set_level(logging.INFO, logger="kubedns.errors")
    index = RecordIndex(zone="cluster.local")  # nothing listed yet
    responder = Responder(ClusterZone(index, load()))
    query = dns.message.make_query("web.shop.svc.cluster.local", "A")
    reply = responder.respond(query.to_wire(), tcp=False)
    assert isinstance(reply, bytes) and reply[3] & 0xF == dns.rcode.SERVFAIL
    assert error_lines(caplog) == [
        "SERVFAIL web.shop.svc.cluster.local. A: cluster not listed yet (the first lists are "
        "not in)"
    ]


def test_logging_keys_are_validated() -> None:
    config = load(None, {})
    assert (config.logging.queries, config.logging.error_lines) == (False, 5)
    assert load(None, {"logging.queries": True}).logging.queries is True
    with pytest.raises(ConfigError, match=r"logging\.queries must be true or false"):
        load(None, {"logging.queries": "yes"})
    with pytest.raises(ConfigError, match=r"logging\.error_interval must be more than 0"):
        load(None, {"logging.error_interval": 0})
    with pytest.raises(ConfigError, match=r"logging\.error_lines must be a whole number"):
        load(None, {"logging.error_lines": 1.5})
