"""From query bytes to reply bytes: the answer path's front door, still without I/O.

``Responder.respond`` returns ready bytes for everything it can answer synchronously (the
cluster zone, errors) and an awaitable only for names it hands to the fallback resolver (the
forwarder). It is the one place where an exception becomes SERVFAIL and where a packet becomes
FORMERR, NOTIMP, BADVERS or REFUSED.

The fast path: a cluster answer depends only on the query bytes (less the message ID and the
name's letter case) and on the index, so replies are cached as wire bytes keyed by exactly
that, and dropped wholesale when the index generation moves. A hit costs one name walk, one
dict lookup and two slice assignments.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any, Protocol

from kubedns.answer.cluster import ClusterZone, Outcome
from kubedns.answer.fit import TCP_LIMIT, fit
from kubedns.answer.query import (
    BADVERS,
    CLASS_IN,
    FORMERR,
    RA,
    REFUSED,
    SERVFAIL,
    Query,
    QueryError,
    parse_query,
)
from kubedns.answer.wire import RR, Reply, encode, encode_error
from kubedns.records import AAAA, AXFR, CNAME, IXFR, A

log = logging.getLogger(__name__)

Response = bytes | None | Awaitable[bytes | None]
FAST_CACHE_LIMIT = 20_000


class Fallback(Protocol):
    """The resolver behind the cluster zone (the forwarder): wire bytes in, wire bytes out."""

    def answer_now(self, query: bytes, *, udp_limit: int | None = None) -> bytes | None:
        """The reply when it needs no I/O (a cache hit), else None."""

    async def resolve(self, query: bytes, *, udp_limit: int | None = None) -> bytes:
        """The reply to a client query; raises ValueError for a malformed one."""

    async def resolve_addresses(self, name: str, qtype: int) -> list[Any]:
        """The answer section (dnslib RRs) for chasing an out-of-zone CNAME target."""


class Responder:
    """Turns one query packet into the reply bytes (or None to stay silent)."""

    def __init__(self, zone: ClusterZone, *, fallback: Fallback | None = None) -> None:
        self.zone = zone
        self.fallback = fallback
        self._extra_flags = RA if fallback is not None else 0
        self._fast: tuple[dict[bytes, bytes], dict[bytes, bytes]] = ({}, {})
        self._generation = -1

    def respond(self, data: bytes, *, tcp: bool) -> Response:
        """The reply now (bytes), nothing (None: drop), or an awaitable for a forwarded one."""
        cache = self._fast[tcp]
        if self._generation != self.zone.index.generation:
            self._fast[0].clear()
            self._fast[1].clear()
            self._generation = self.zone.index.generation
        name_end = _name_end(data)
        key = data[2:12] + data[12:name_end].lower() + data[name_end:] if name_end else b""
        cached = cache.get(key) if key else None
        if cached is not None:
            reply = bytearray(cached)
            reply[0:2] = data[0:2]
            reply[12:name_end] = data[12:name_end]
            return bytes(reply)
        try:
            result = self._respond_slow(data, tcp=tcp)
        except Exception:
            log.exception("unexpected error answering a query; replying SERVFAIL")
            return _servfail(data)
        if isinstance(result, bytes) and key:
            if len(cache) >= FAST_CACHE_LIMIT:
                cache.clear()  # bounded without bookkeeping; a burst of unique names is rare
            cache[key] = result
            return result
        return result[0] if isinstance(result, tuple) else result

    def _respond_slow(self, data: bytes, *, tcp: bool) -> bytes | tuple[Response]:
        """Bytes that may be cached, or a one-tuple holding a reply that must not be."""
        try:
            query = parse_query(data)
        except QueryError as error:
            refusal = encode_error(
                error.id, error.flags, error.rcode, error.question, edns=error.edns
            )
            return (refusal,)
        if query is None:
            return (None,)
        limit = TCP_LIMIT if tcp else query.udp_limit
        if query.edns is not None and query.edns.version != 0:
            return fit(query, Reply(rcode=BADVERS), limit=limit)
        if query.qclass != CLASS_IN or query.qtype in (AXFR, IXFR):
            return self._refuse(query, limit)
        outcome = self._authoritative(query)
        if outcome is None:
            if self.fallback is None:
                return self._refuse(query, limit)
            return (self._forward(data, query, udp_limit=None if tcp else limit),)
        reply = replace(outcome.reply, extra_flags=self._extra_flags)
        if outcome.external_target and self.fallback and query.qtype in (A, AAAA):
            return (self._chase(query, reply, outcome.external_target, limit=limit),)
        return fit(query, reply, limit=limit)

    def _authoritative(self, query: Query) -> Outcome | None:
        """The cluster's own answer, or None when the name belongs upstream."""
        zone = self.zone
        qname = query.qname
        if zone.covers(qname):
            return zone.answer(qname, query.qtype)
        if zone.reverse_zone_of(qname) and (self.fallback is None or zone.owns_reverse(qname)):
            return zone.answer(qname, query.qtype)
        return None

    def _refuse(self, query: Query, limit: int) -> bytes:
        return fit(query, Reply(rcode=REFUSED, extra_flags=self._extra_flags), limit=limit)

    def _forward(self, data: bytes, query: Query, *, udp_limit: int | None) -> Response:
        """A cache hit now, else an awaitable for the upstream's answer."""
        assert self.fallback is not None
        try:
            cached = self.fallback.answer_now(data, udp_limit=udp_limit)
        except ValueError:
            return encode_error(query.id, query.flags, FORMERR, b"")
        if cached is not None:
            return cached
        return self._resolve(data, query, udp_limit=udp_limit)

    async def _resolve(self, data: bytes, query: Query, *, udp_limit: int | None) -> bytes:
        assert self.fallback is not None
        try:
            return await self.fallback.resolve(data, udp_limit=udp_limit)
        except Exception:
            log.exception("unexpected error forwarding %s; replying SERVFAIL", query.qname)
            return encode(query, Reply(rcode=SERVFAIL, extra_flags=self._extra_flags))

    async def _chase(self, query: Query, reply: Reply, target: str, *, limit: int) -> bytes:
        """Append an out-of-zone CNAME target's addresses, resolved upstream (as CoreDNS)."""
        assert self.fallback is not None
        try:
            found = await self.fallback.resolve_addresses(target, query.qtype)
        except Exception:
            log.exception("unexpected error chasing %s; answering the CNAME alone", target)
            found = []
        chased = [rr for rr in map(_from_dnslib, found) if rr is not None]
        return fit(query, replace(reply, answer=[*reply.answer, *chased]), limit=limit)


def _from_dnslib(rr: Any) -> RR | None:
    """A CNAME, A or AAAA record from the forwarder, in the encoder's terms."""
    name = str(rr.rname).rstrip(".").lower()
    if rr.rtype == CNAME:
        return RR(name, CNAME, rr.ttl, str(rr.rdata).rstrip(".").lower())
    if rr.rtype in (A, AAAA):
        return RR(name, rr.rtype, rr.ttl, str(rr.rdata))
    return None


def _name_end(data: bytes) -> int:
    """Offset just past the question name, or 0 when the packet is not a plain query."""
    pos = 12
    size = len(data)
    while pos < size:
        length = data[pos]
        if length == 0:
            return pos + 1
        if length > 63:
            return 0
        pos += length + 1
    return 0


def _servfail(data: bytes) -> bytes | None:
    """The last line of defence: SERVFAIL echoing the question when the packet allows it."""
    # No encode() here: the failure being handled may have come from encoding this query.
    try:
        query = parse_query(data)
    except QueryError as error:
        return encode_error(error.id, error.flags, SERVFAIL, error.question)
    except Exception:
        return None
    if query is None:
        return None
    question = query.qname_wire + struct.pack("!HH", query.qtype, query.qclass)
    return encode_error(query.id, query.flags, SERVFAIL, question)
