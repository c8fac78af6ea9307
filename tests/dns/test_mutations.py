"""Mangled queries through the answer path: never an internal error, never an oversized
reply. Deterministic (seeded) byte flips, cuts and splices of real queries."""

from __future__ import annotations

import logging
import random

import dns.message
import pytest

from tests.dns.test_answer_path import BIG, cluster, responder

SEEDS = [
    dns.message.make_query(BIG, "A").to_wire(),
    dns.message.make_query(BIG, "SRV", use_edns=0, payload=4096, want_dnssec=True).to_wire(),
    dns.message.make_query(f"_http._tcp.{BIG}", "SRV", use_edns=0).to_wire(),
    dns.message.make_query("web.shop.svc.cluster.local", "AAAA", use_edns=0).to_wire(),
    dns.message.make_query("x.y.shop.svc.cluster.local", "A").to_wire(),
    dns.message.make_query("5.0.96.10.in-addr.arpa", "PTR", use_edns=0).to_wire(),
    dns.message.make_query("cluster.local", "SOA", use_edns=0).to_wire(),
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        match rng.randrange(4):
            case 0:
                out[rng.randrange(len(out))] = rng.randrange(256)
            case 1:
                del out[rng.randrange(len(out)) :]
            case 2:
                at = rng.randrange(len(out))
                out[at:at] = rng.randbytes(rng.randrange(1, 40))
            case _ if len(out) >= 12:
                out[rng.randrange(4, 12)] = rng.choice((0, 1, 2, 255))
            case _:
                pass
        if not out:
            out = bytearray(b"\x00")
    return bytes(out)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_mangled_queries_never_raise_or_overflow(
    tcp: bool, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(8)
    r = responder(cluster(endpoints=200))
    caplog.set_level(logging.ERROR)
    for _ in range(6000):
        data = mutate(rng, rng.choice(SEEDS))
        reply = r.respond(data, tcp=tcp)
        assert reply is None or isinstance(reply, bytes)
        if reply is None:
            continue
        assert reply[:2] == data[:2]
        assert len(reply) <= (65535 if tcp else 1232)
        try:
            parsed = dns.message.from_wire(reply, ignore_trailing=False)
        except dns.message.ShortHeader:
            pytest.fail(f"unparseable reply to {data.hex()}")
        except dns.exception.FormError:
            # dnspython refuses some replies that echo a mangled question; the header is ours.
            continue
        if not tcp and parsed.edns < 0:
            assert len(reply) <= 512
    assert not caplog.records, [record.getMessage() for record in caplog.records][:3]
