"""From query bytes to reply bytes: the answer path's front door, still without I/O.

``Responder.respond`` returns ready bytes for everything it can answer synchronously (the
cluster zone, forward-cache hits, errors) and an awaitable only for what must wait on an
upstream. It is the one place where an exception becomes SERVFAIL and where a packet becomes
FORMERR, NOTIMP, BADVERS or REFUSED; the codec (``kubedns.dns``) decides how every reply
looks on the wire.

The fast path: a reply depends only on the question (case-folded) and the query's shape (RD,
CD, EDNS, DO, size limit) — never on the message ID, the name's letter case or EDNS options
we ignore — and, for the zone, on the index generation; for a forwarded answer, on its age
in whole seconds. So ready replies are kept per ``cache_key`` and a hit costs one walk of the
name, one dict lookup and a few slices. Zone answers are also kept as templates per question,
so a query of a new shape re-fits stored records instead of encoding them again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Generic, Protocol, TypeVar

from kubedns import metrics
from kubedns.answer.cluster import ClusterZone, Outcome
from kubedns.config import RepliesConfig
from kubedns.dns.query import Query, QueryError, cache_key, parse_query
from kubedns.dns.render import Prepared, render, render_error
from kubedns.dns.template import RR, Template, encode, error_template
from kubedns.dns.wire import BADVERS, CLASS_IN, HEADER_SIZE, REFUSED, SERVFAIL
from kubedns.records import AAAA, AXFR, IXFR, A

log = logging.getLogger(__name__)

Response = bytes | None | Awaitable[bytes | None]
Clock = Callable[[], float]
V = TypeVar("V")

TEMPLATE_MIN_RECORDS = 8
"""Templates of more records than this are kept, so a query of a new shape (another EDNS
size) re-fits them instead of encoding again; smaller ones are cheaper to build again than
to keep (most names in a cluster's working set are one record or a negative answer)."""
ENTRY_OVERHEAD = 200
"""Bytes a stored entry costs beyond its key and its reply (dict slots, the objects)."""


class CachedAnswer(Protocol):
    """A forward-cache entry as the fast path sees it."""

    @property
    def template(self) -> Template: ...

    @property
    def kind(self) -> str: ...

    @property
    def stored_at(self) -> float: ...

    @property
    def expires(self) -> float: ...


class Fallback(Protocol):
    """The resolver behind the cluster zone (the forwarder), in the codec's terms."""

    def lookup(self, query: Query) -> CachedAnswer | Template | None:
        """A cache entry or a local answer (refusal) without I/O, else None."""

    async def forward(self, query: Query) -> Template:
        """The upstreams' answer."""

    async def resolve_addresses(self, name: str, qtype: int) -> list[RR]:
        """The answer records for chasing an out-of-zone CNAME target."""


class BoundedStore(Generic[V]):
    """A dict bounded in bytes as well as by what fits: the oldest entries go first.

    ``entries`` is the dict itself, read directly by the hot path."""

    def __init__(self, budget: int) -> None:
        self.entries: dict[bytes, V] = {}
        self._sizes: dict[bytes, int] = {}
        self.budget = budget
        self.bytes = 0

    def put(self, key: bytes, value: V, size: int) -> None:
        size += len(key) + ENTRY_OVERHEAD
        if size > self.budget:
            return
        self.pop(key)
        self.entries[key] = value
        self._sizes[key] = size
        self.bytes += size
        while self.bytes > self.budget:
            oldest = next(iter(self._sizes))
            self.bytes -= self._sizes.pop(oldest)
            del self.entries[oldest]

    def pop(self, key: bytes) -> None:
        size = self._sizes.pop(key, None)
        if size is not None:
            self.bytes -= size
            del self.entries[key]

    def clear(self) -> None:
        self.entries.clear()
        self._sizes.clear()
        self.bytes = 0


class _ForwardedReply:
    """A forward-cache entry fitted to one query shape; re-fitted once a second as it ages."""

    __slots__ = ("_age", "_answer", "_prepared", "_query", "_udp_size", "expires")

    def __init__(self, answer: CachedAnswer, query: Query, *, udp_size: int, now: float) -> None:
        self._answer = answer
        self._query = query
        self._udp_size = udp_size
        self.expires = answer.expires
        self._age = -1
        self._prepared = self._fit(now)

    def _fit(self, now: float) -> Prepared:
        age = int(now - self._answer.stored_at)
        if age != self._age:
            self._age = age
            aged = self._answer.template.aged(seconds=age)
            self._prepared = Prepared(aged, self._query, udp_size=self._udp_size)
        return self._prepared

    @property
    def size(self) -> int:
        return self._answer.template.size * 3 + len(self._query.question)

    def render(self, msg_id: bytes, question: bytes, now: float, *, counted: bool = False) -> bytes:
        """The reply for a hit; counted as a cache hit unless the lookup already did."""
        if not counted:
            metrics.CACHE_HITS.counts[self._answer.kind] += 1
        return self._fit(now).render(msg_id, question)


class Responder:
    """Turns one query packet into the reply bytes (or None to stay silent)."""

    def __init__(
        self,
        zone: ClusterZone,
        *,
        fallback: Fallback | None = None,
        replies: RepliesConfig | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._clock = clock
        self._fallback = fallback
        self.reconfigure(zone, replies or RepliesConfig())

    def reconfigure(self, zone: ClusterZone, replies: RepliesConfig) -> None:
        """Answer with ``zone`` (its TTLs, its pods mode) and ``replies`` from now on (a config
        reload). Every stored reply was shaped by the old ones, so all are forgotten; a
        forwarded query in flight is still answered, sized by the new settings."""
        self.zone = zone
        self._index = zone.index
        self._udp_size = replies.udp_size
        self._rotate = replies.rotate
        budget = replies.cache_bytes
        self._zone_replies: BoundedStore[Prepared] = BoundedStore(budget // 2)
        self._forwarded: BoundedStore[_ForwardedReply] = BoundedStore(budget // 4)
        self._templates: BoundedStore[Template] = BoundedStore(budget // 4)
        self._generation = -1

    @property
    def fallback(self) -> Fallback | None:
        return self._fallback

    @fallback.setter
    def fallback(self, fallback: Fallback | None) -> None:
        """Changing the fallback changes RA and where names go: forget every stored reply."""
        self._fallback = fallback
        self._forget_zone()
        self._forwarded.clear()

    def _forget_zone(self) -> None:
        self._zone_replies.clear()
        self._templates.clear()
        self._generation = self._index.generation

    def respond(self, data: bytes, *, tcp: bool) -> Response:
        """The reply now (bytes), nothing (None: drop), or an awaitable for a forwarded one."""
        if data.__class__ is not bytes:
            data = bytes(data)  # a bytearray or memoryview slice would make unhashable keys
        try:  # free in Python 3.11 until something raises: the fast path is covered too
            found = cache_key(data, tcp, self._udp_size)
            if found is not None:
                key, end = found
                if self._generation != self._index.generation:
                    self._forget_zone()
                prepared = self._zone_replies.entries.get(key)
                if prepared is not None:
                    return prepared.render(data[:2], data[HEADER_SIZE:end])
                forwarded = self._forwarded.entries.get(key)
                if forwarded is not None:
                    now = self._clock()
                    if now < forwarded.expires:
                        return forwarded.render(data[:2], data[HEADER_SIZE:end], now)
                    self._forwarded.pop(key)
            return self._respond_slow(data, tcp=tcp)
        except Exception:
            metrics.PANICS.inc()
            log.exception("unexpected error answering a query; replying SERVFAIL")
            return self._servfail(data, tcp=tcp)

    @property
    def _recursion_available(self) -> bool:
        return self._fallback is not None

    def _respond_slow(self, data: bytes, *, tcp: bool) -> Response:
        try:
            query = parse_query(data, tcp=tcp, udp_size=self._udp_size)
        except QueryError as error:
            return render_error(
                error, udp_size=self._udp_size, recursion_available=self._recursion_available
            )
        if query is None:
            return None
        if query.edns is not None and query.edns.version != 0:
            return self._error(BADVERS, query)
        if query.qclass != CLASS_IN or query.qtype in (AXFR, IXFR):
            return self._error(REFUSED, query)
        template_key = query.folded_name + query.question[-4:]
        template = self._templates.entries.get(template_key)
        if template is None:
            outcome = self._authoritative(query)
            if outcome is None:
                return self._forward(query)
            fallback = self._fallback
            if outcome.external_target and fallback and query.qtype in (A, AAAA):
                return self._chase(fallback, query, outcome)
            template = self._encode(query, outcome.reply.answer, outcome)
            if len(template.records) > TEMPLATE_MIN_RECORDS:
                self._templates.put(template_key, template, template.size * 2)
        prepared = Prepared(template, query, udp_size=self._udp_size)
        if query.key is not None:
            self._zone_replies.put(query.key, prepared, prepared.size)
        return prepared.render(data[:2], query.question)

    def _encode(self, query: Query, answer: Sequence[RR], outcome: Outcome) -> Template:
        reply = replace(outcome.reply, answer=answer, recursion_available=self._recursion_available)
        return encode(query.question, reply, rotate=self._rotate)

    def _error(self, rcode: int, query: Query) -> bytes:
        template = error_template(rcode, recursion_available=self._recursion_available)
        return render(template, query, udp_size=self._udp_size)

    def _authoritative(self, query: Query) -> Outcome | None:
        """The cluster's own answer, or None when the name belongs upstream."""
        zone = self.zone
        qname = query.qname
        if zone.covers(qname):
            return zone.answer(qname, query.qtype)
        if zone.reverse_zone_of(qname) and (self._fallback is None or zone.owns_reverse(qname)):
            return zone.answer(qname, query.qtype)
        return None

    def _forward(self, query: Query) -> Response:
        """A cache hit now, else an awaitable for the upstream's answer."""
        fallback = self._fallback
        if fallback is None:
            return self._error(REFUSED, query)
        found = fallback.lookup(query)
        if found is None:
            return self._resolve(fallback, query)
        if isinstance(found, Template):
            return render(found, query, udp_size=self._udp_size)
        forwarded = _ForwardedReply(found, query, udp_size=self._udp_size, now=self._clock())
        if query.key is not None:
            self._forwarded.put(query.key, forwarded, forwarded.size)
        msg_id = query.id.to_bytes(2, "big")
        return forwarded.render(msg_id, query.question, self._clock(), counted=True)

    async def _resolve(self, fallback: Fallback, query: Query) -> bytes:
        try:
            template = await fallback.forward(query)
        except Exception:
            metrics.PANICS.inc()
            log.exception("unexpected error forwarding %s; replying SERVFAIL", query.qname)
            template = error_template(SERVFAIL, recursion_available=True)
        return render(template, query, udp_size=self._udp_size)

    async def _chase(self, fallback: Fallback, query: Query, outcome: Outcome) -> bytes:
        """Append an out-of-zone CNAME target's addresses, resolved upstream (as CoreDNS)."""
        try:
            found = await fallback.resolve_addresses(outcome.external_target, query.qtype)
        except Exception:
            metrics.PANICS.inc()
            log.exception("unexpected error chasing %s; answering the CNAME alone", query.qname)
            found = []
        template = self._encode(query, [*outcome.reply.answer, *found], outcome)
        return render(template, query, udp_size=self._udp_size)

    def _servfail(self, data: bytes, *, tcp: bool) -> bytes | None:
        """The last line of defence: SERVFAIL echoing the question when the packet allows it."""
        try:
            query = parse_query(data, tcp=tcp, udp_size=self._udp_size)
        except QueryError as failed:
            failed.rcode = SERVFAIL
            return render_error(failed, udp_size=self._udp_size, recursion_available=False)
        except Exception:
            return None
        if query is None:
            return None
        servfail = QueryError(
            SERVFAIL, id=query.id, flags=query.flags, question=query.question, edns=query.edns
        )
        return render_error(
            servfail, udp_size=self._udp_size, recursion_available=self._recursion_available
        )
