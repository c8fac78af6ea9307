"""Regressions found by the spec-derived suite: labels holding dots, OPT on NOTIMP, the
serial and verified pods, SRV for unnamed ports, the reverse zones' SOA, binding port 0, and
draining TCP handlers at stop. Each test failed before its fix."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

import dns.rcode
import yaml

from kubedns import config as kubedns_config
from kubedns.app import Server
from kubedns.objects import from_raw
from kubedns.sources.events import Delete, Upsert
from tests.zone.dnsclient import (
    Address,
    ask,
    make_query,
    opt_record,
    parse,
    raw_query,
    tcp_frame,
    udp_exchange,
    wire_name,
)
from tests.zone.server import CLUSTER, running

# Labels holding a literal dot (``web\.shop``) are legal DNS (RFC 1035 3.1, RFC 2181 11).


def test_label_with_dot_is_not_two_labels(addr: Address) -> None:
    """B1: ``web\\.shop.svc.cluster.local`` (4 labels) is answered as ``web.shop.svc...``."""
    query = raw_query(b"\x08web.shop\x03svc\x07cluster\x05local\x00", 1)
    reply = parse(udp_exchange(addr, query))
    assert reply.rcode_text == "NXDOMAIN", reply.answer


def test_label_with_dot_keeps_names_intact(addr: Address) -> None:
    """B2: the negative answer to ``kubernetes\\.default.svc.cluster.local AAAA`` names its SOA
    ``local.`` with mname ``ns.dns.local.``: compression pointers land on the wrong labels."""
    query = raw_query(b"\x12kubernetes.default\x03svc\x07cluster\x05local\x00", 28)
    reply = parse(udp_exchange(addr, query))
    (soa,) = reply.msg.authority
    assert soa.name.to_text() == "cluster.local.", reply.authority


def test_label_with_dots_gets_a_reply(addr: Address) -> None:
    """B3: ``a\\.b\\.c\\.d\\.e\\.f.cluster.local A`` gets no reply at all (IndexError in
    wire._Writer.question, and again in the SERVFAIL fallback, which then returns None)."""
    query = raw_query(b"\x0ba.b.c.d.e.f\x07cluster\x05local\x00", 1)
    reply = parse(udp_exchange(addr, query, timeout=1.0))
    assert reply.rcode_text == "NXDOMAIN"


def test_notimp_to_edns_query_carries_opt(addr: Address) -> None:
    """B4: RFC 6891 6.1.1: an OPT in the request means an OPT in the response (NOTIMP too)."""
    query = raw_query(
        wire_name("web.shop.svc.cluster.local"), flags=2 << 11, arcount=1, tail=opt_record()
    )
    reply = parse(udp_exchange(addr, query))
    assert reply.msg.rcode() == dns.rcode.NOTIMP
    assert reply.msg.edns == 0


def test_serial_moves_when_a_verified_pod_appears() -> None:
    """B5: with ``pods: verified`` a new Pod changes what DNS answers, but not the serial."""
    pod = {
        "kind": "Pod",
        "metadata": {"name": "new", "namespace": "shop"},
        "status": {"podIP": "10.244.9.9"},
    }
    with running(pods="verified") as thread:

        def serial() -> int:
            reply = ask(thread.address, "cluster.local", "SOA")
            return int(reply.msg.answer[0][0].serial)

        before = serial()
        assert ask(thread.address, "10-244-9-9.shop.pod.cluster.local").rcode_text == "NXDOMAIN"
        thread.call(thread.server.index.apply, Upsert(from_raw("Pod", pod)))
        assert ask(thread.address, "10-244-9-9.shop.pod.cluster.local").rcode_text == "NOERROR"
        assert serial() != before


def test_no_srv_for_unnamed_ports_at_the_service_name(addr: Address) -> None:
    """D1: the schema: "Unnamed ports do not have an SRV record"; the bare service name answers
    SRV with every port, the unnamed 8080 included."""
    reply = ask(addr, "web.shop.svc.cluster.local", "SRV")
    assert not any(" 8080 " in line for line in reply.answer), reply.answer


def test_reverse_soa_owner_is_consistent(addr: Address) -> None:
    """D2: NXDOMAIN under in-addr.arpa carries an SOA owned by ``in-addr.arpa``, yet asking
    ``in-addr.arpa SOA`` returns NODATA, denying that very SOA."""
    negative = ask(addr, "4.3.2.1.in-addr.arpa", "PTR")
    (soa,) = negative.msg.authority
    apex = ask(addr, soa.name.to_text(), "SOA")
    assert apex.msg.answer, (negative.authority, apex.authority)


def test_port_zero_start_is_reliable() -> None:
    """B6: with port 0, UDP gets a free port and TCP is then bound to the same number, which
    another TCP socket may hold: ``OSError: [Errno 98] ... address already in use``. Hog a
    few thousand TCP ports so the collision happens within a few starts."""
    hogs: list[socket.socket] = []
    try:
        for _ in range(3000):
            hog = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            hog.bind(("127.0.0.1", 0))
            hogs.append(hog)
        for _ in range(40):
            asyncio.run(_start_and_stop())
    finally:
        for hog in hogs:
            hog.close()


async def _start_and_stop() -> None:
    settings = kubedns_config.load(
        None, {"snapshot": str(CLUSTER), "listen": "127.0.0.1:0", "forward.enabled": False}
    )
    server = Server(settings)
    server.load_sources()
    await server.start()
    await server.stop()


def test_stop_awaits_tcp_handlers() -> None:
    """D3: after ``Server.stop()`` the handler of a TCP connection that is still open keeps
    running (Python 3.11's ``asyncio.Server.wait_closed`` does not wait for connections), so an
    embedding loop that closes then logs "Task was destroyed but it is pending!"."""
    asyncio.run(_stop_with_open_connection())


async def _stop_with_open_connection() -> None:
    settings = kubedns_config.load(
        None, {"snapshot": str(CLUSTER), "listen": "127.0.0.1:0", "forward.enabled": False}
    )
    server = Server(settings)
    server.load_sources()
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
    writer.write(tcp_frame(make_query("web.shop.svc.cluster.local", "A").to_wire()))
    await writer.drain()
    (length,) = struct.unpack("!H", await reader.readexactly(2))
    await reader.readexactly(length)
    await server.stop()
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    writer.close()
    assert not leftover, leftover


def test_verified_pod_namespace_is_not_nxdomain(tmp_path: Path) -> None:
    """B7: RFC 8020: with ``pods: verified`` and a Pod in a namespace that has no Namespace
    object and no Service (a snapshot of ``kubectl get services,endpointslices,pods``, or a
    watch where Pods arrive first), ``<ip>.ghost.pod.<zone>`` answers but its parent
    ``ghost.pod.<zone>`` is NXDOMAIN, denying everything below it."""
    snapshot = tmp_path / "ghost.yaml"
    snapshot.write_text(
        yaml.safe_dump(
            {
                "kind": "Pod",
                "metadata": {"name": "g", "namespace": "ghost"},
                "status": {"podIP": "10.244.3.3"},
            }
        )
    )
    with running(pods="verified", snapshot=str(snapshot)) as thread:
        child = ask(thread.address, "10-244-3-3.ghost.pod.cluster.local", "A")
        assert child.rcode_text == "NOERROR"
        parent = ask(thread.address, "ghost.pod.cluster.local", "A")
        assert parent.rcode_text == "NOERROR", "NXDOMAIN above an existing name"


def test_namespace_event_without_visible_change_keeps_serial() -> None:
    """D4: deleting (or re-adding) the Namespace object of a namespace that still has Services
    changes nothing DNS answers (``shop.svc`` stays NODATA, pods still answer), yet the serial
    moves."""
    with running() as thread:

        def serial() -> int:
            return int(ask(thread.address, "cluster.local", "SOA").msg.answer[0][0].serial)

        before = serial()
        thread.call(thread.server.index.apply, Delete("Namespace", "", "shop"))
        assert ask(thread.address, "shop.svc.cluster.local").rcode_text == "NOERROR"
        assert ask(thread.address, "1-2-3-4.shop.pod.cluster.local").rcode_text == "NOERROR"
        assert serial() == before
