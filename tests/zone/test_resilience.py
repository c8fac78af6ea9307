"""The last line of defence and the TCP limits (RFC 7766): an unexpected error becomes SERVFAIL
plus a log line and the server keeps serving; idle connections are closed; connections beyond
the cap are closed at once."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from kubedns.answer.cluster import Outcome
from tests.zone.dnsclient import ask, make_query, parse, tcp_connect, tcp_frame, tcp_read
from tests.zone.server import ServerThread, running

WEB = "web.shop.svc.cluster.local"


@pytest.fixture
def fragile() -> Iterator[ServerThread]:
    """A server of its own whose tests may break its answer path."""
    with running(**{"tcp.max_connections": 2, "tcp.idle_timeout": 0.3}) as thread:
        yield thread


def test_unexpected_error_is_servfail_and_logged(
    fragile: ServerThread, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    zone = fragile.server.responder.zone
    real_answer = zone.answer

    def broken(qname: str, qtype: int) -> Outcome:
        if qname.startswith("boom."):
            raise RuntimeError("injected fault")
        return real_answer(qname, qtype)

    monkeypatch.setattr(zone, "answer", broken)
    with caplog.at_level(logging.ERROR):
        for tcp in (False, True):
            reply = ask(fragile.address, "Boom.shop.svc.cluster.local", "A", tcp=tcp)
            assert reply.rcode_text == "SERVFAIL"
            assert reply.msg.question[0].name.to_text() == "Boom.shop.svc.cluster.local."
            assert reply.msg.answer == []
    assert any("injected fault" in (r.exc_text or str(r.exc_info)) for r in caplog.records)
    # The same question again is not served from a cache of the failure, and others work.
    assert ask(fragile.address, WEB, "A").answer == [f"{WEB}. 5 in a 10.96.1.10"]
    monkeypatch.setattr(zone, "answer", real_answer)
    assert ask(fragile.address, "boom.shop.svc.cluster.local", "A").rcode_text == "NXDOMAIN"


def test_idle_tcp_connection_is_closed(fragile: ServerThread) -> None:
    with tcp_connect(fragile.address) as sock:
        sock.settimeout(10)
        sock.sendall(tcp_frame(make_query(WEB, "A").to_wire()))
        assert parse(tcp_read(sock)).answer
        # Then stay silent: the server closes its side (EOF), it does not wait forever.
        assert _read_until_closed(sock) == b""


def test_a_connection_beyond_the_cap_closes_the_idlest(fragile: ServerThread) -> None:
    """RFC 7766 section 6.2.3: at the cap the idlest connection makes room for the new one
    (tests/transport/test_tcp_fairness.py covers the details)."""
    first = tcp_connect(fragile.address)
    second = tcp_connect(fragile.address)
    try:
        for sock in (first, second):
            sock.sendall(tcp_frame(make_query(WEB, "A").to_wire()))
            assert parse(tcp_read(sock)).answer
        with tcp_connect(fragile.address) as third:
            third.settimeout(10)
            third.sendall(tcp_frame(make_query(WEB, "A").to_wire()))
            assert parse(tcp_read(third)).answer
        first.settimeout(10)
        assert _read_until_closed(first) == b""
    finally:
        first.close()
        second.close()
    # UDP is not affected by the TCP cap.
    assert ask(fragile.address, WEB, "A").answer


def _read_until_closed(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65535)
    except ConnectionResetError:
        return b""
