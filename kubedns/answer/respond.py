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

Metrics (``metrics.Tally``): every reply is counted here, where it is known who wrote it. A
stored reply carries its labels, its slot and the request size it was made for, so a hit of
that size is counted with one list increment; the transport ends each batch with
``Tally.settle``. A reply that waits on an upstream is counted when it is ready, timed from the
query's arrival.

Every SERVFAIL made here goes to the error log with its reason (``logs.ERRORS``, consolidated
per reason); the forwarder logs its own (upstreams failed, loop, max_concurrent).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Generic, NamedTuple, Protocol, TypeVar

from kubedns import metrics
from kubedns.answer.cluster import ClusterZone, Outcome
from kubedns.config import RepliesConfig
from kubedns.dns.query import Query, QueryError, cache_key, parse_query
from kubedns.dns.render import Prepared, render, render_error
from kubedns.dns.template import RR, Template, encode, error_template, is_local_error
from kubedns.dns.wire import BADVERS, CLASS_IN, HEADER_SIZE, REFUSED, SERVFAIL, type_name
from kubedns.logs import ERRORS
from kubedns.metrics import CACHE, FORWARD, KUBERNETES, SERVER, Labels, Tally, type_index
from kubedns.records import AAAA, AXFR, IXFR, A

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

    def zone_of(self, qname: str) -> str:
        """The metrics ``zone`` of a forwarded name: its stub domain with a trailing dot, else
        ``"."`` (CoreDNS users give each stub domain its own server block)."""


def _labels(query: Query, proto: int, rcode: int, plugin: int, *, zone: int = 0) -> Labels:
    """The metric labels of a reply to ``query`` (proto: 0 UDP, 1 TCP)."""
    return (zone, type_index(query.qtype), proto, int(query.do), rcode, plugin)


def _log_upstream_servfail(query: Query, how: str) -> None:
    reason = "upstream answered SERVFAIL"
    qtype = type_name(query.qtype)
    ERRORS.note(reason, "SERVFAIL %s. %s: %s (%s)", query.qname, qtype, reason, how)


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


class _Stored(Prepared):
    """A zone reply kept for the fast path, with what counting a hit needs (``_keep``)."""

    __slots__ = ("labels", "request_size", "slot")

    def __init__(self, template: Template, query: Query, *, udp_size: int) -> None:
        super().__init__(template, query, udp_size=udp_size)
        self.labels: Labels = (0, 0, 0, 0, 0, 0)
        self.slot = -1
        self.request_size = -1
        """The request size ``slot`` counts; -1: every hit is counted the slower way."""


class _Meter(NamedTuple):
    """What counting a reply that waits on an upstream needs, taken when its query came."""

    request_size: int
    proto: int
    family: int
    started: float


class _ForwardedReply:
    """A forward-cache entry fitted to one query shape; re-fitted once a second as it ages."""

    __slots__ = (
        "_age", "_answer", "_prepared", "_query", "_udp_size", "expires",
        "labels", "request_size", "slot",
    )  # fmt: skip

    def __init__(self, answer: CachedAnswer, query: Query, *, udp_size: int, now: float) -> None:
        self._answer = answer
        self._query = query
        self._udp_size = udp_size
        self.expires = answer.expires
        self._age = -1
        self._prepared = self._fit(now)
        self.labels: Labels = (0, 0, 0, 0, 0, 0)
        self.slot = -1
        self.request_size = -1

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

    @property
    def is_fixed_size(self) -> bool:
        return self._prepared.is_fixed_size

    def render(self, msg_id: bytes, question: bytes, now: float, *, counted: bool = False) -> bytes:
        """The reply for a hit; counted as a cache hit unless the lookup already did."""
        if not counted:
            metrics.CACHE_STATS.hits[self._answer.kind] += 1
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
        tally: Tally | None = None,
    ) -> None:
        self._clock = clock
        self._fallback = fallback
        self.tally = tally
        """Where replies are counted; None: DNS request metrics are off. Kept by
        ``reconfigure``: the counts outlive a config reload."""
        self._pending = tally.pending if tally is not None else None
        self._touched = tally.touched if tally is not None else []
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
        self._zone_replies: BoundedStore[_Stored] = BoundedStore(budget // 2)
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
                    reply = prepared.render(data[:2], data[HEADER_SIZE:end])
                    pending = self._pending
                    if pending is not None:  # inline: a method call costs as much as the rest
                        if len(data) == prepared.request_size:
                            slot = prepared.slot
                            count = pending[slot]
                            if not count:
                                self._touched.append(slot)
                            pending[slot] = count + 1
                        else:
                            self._count(prepared.labels, data, reply)
                    return reply
                forwarded = self._forwarded.entries.get(key)
                if forwarded is not None:
                    now = self._clock()
                    if now < forwarded.expires:
                        reply = forwarded.render(data[:2], data[HEADER_SIZE:end], now)
                        pending = self._pending
                        if pending is not None:
                            if len(data) == forwarded.request_size:
                                slot = forwarded.slot
                                count = pending[slot]
                                if not count:
                                    self._touched.append(slot)
                                pending[slot] = count + 1
                            else:
                                self._count(forwarded.labels, data, reply)
                        return reply
                    self._forwarded.pop(key)
            return self._respond_slow(data, tcp=tcp)
        except Exception as exc:
            metrics.PANICS.inc()
            ERRORS.note(
                "internal error", "SERVFAIL: unexpected error answering a query", exc_info=exc
            )
            return self._servfail(data, tcp=tcp)

    @property
    def _recursion_available(self) -> bool:
        return self._fallback is not None

    # -- counting ---------------------------------------------------------------------------

    def _count(self, labels: Labels, data: bytes, reply: bytes) -> int:
        """Count a synchronous reply: its slot, or -1 (metrics off, or counted without one)."""
        tally = self.tally
        if tally is None:
            return -1
        return tally.count((*labels, len(data), len(reply)))

    def _error_labels(self, error: QueryError, tcp: bool) -> Labels:
        qtype = int.from_bytes(error.question[-4:-2], "big") if error.question else 0
        do = int(error.edns is not None and error.edns.do)
        return (0, type_index(qtype), int(tcp), do, error.rcode, SERVER)

    def _keep(self, entry: _Stored | _ForwardedReply, labels: Labels, slot: int, size: int) -> None:
        """Give a stored reply what its hits need to be counted on the fast path."""
        entry.labels = labels
        entry.slot = slot
        entry.request_size = size if slot >= 0 and entry.is_fixed_size else -1

    def _meter(self, data: bytes, tcp: bool) -> _Meter | None:
        tally = self.tally
        if tally is None:
            return None
        return _Meter(len(data), int(tcp), tally.family, time.perf_counter())

    def _observe(
        self, meter: _Meter | None, query: Query, reply: bytes, answer: Template, plugin: int,
        *, zone: int = 0,
    ) -> None:  # fmt: skip
        """Count a reply that waited on an upstream, timed from its query's arrival."""
        tally = self.tally
        if tally is None or meter is None:
            return
        labels = _labels(query, meter.proto, answer.rcode, plugin, zone=zone)
        profile = (*labels, meter.request_size, len(reply))
        tally.observe(profile, family=meter.family, elapsed=time.perf_counter() - meter.started)

    # -- the full path ----------------------------------------------------------------------

    def _respond_slow(self, data: bytes, *, tcp: bool) -> Response:
        try:
            query = parse_query(data, tcp=tcp, udp_size=self._udp_size)
        except QueryError as error:
            reply = render_error(
                error, udp_size=self._udp_size, recursion_available=self._recursion_available
            )
            self._count(self._error_labels(error, tcp), data, reply)
            return reply
        if query is None:
            return None
        proto = int(tcp)
        if query.edns is not None and query.edns.version != 0:
            return self._error(BADVERS, query, data, proto)
        if query.qclass != CLASS_IN or query.qtype in (AXFR, IXFR):
            return self._error(REFUSED, query, data, proto)
        template_key = query.folded_name + query.question[-4:]
        template = self._templates.entries.get(template_key)
        if template is None:
            outcome = self._authoritative(query)
            if outcome is None:
                return self._forward(query, data, proto)
            fallback = self._fallback
            if outcome.external_target and fallback and query.qtype in (A, AAAA):
                return self._chase(fallback, query, outcome, self._meter(data, tcp))
            template = self._encode(query, outcome.reply.answer, outcome)
            if len(template.records) > TEMPLATE_MIN_RECORDS:
                self._templates.put(template_key, template, template.size * 2)
        prepared = _Stored(template, query, udp_size=self._udp_size)
        reply = prepared.render(data[:2], query.question)
        # A SERVFAIL (a cluster name asked before the first lists are in) is said by the
        # server, as CoreDNS's errors path does; it is never kept, so each one is seen here.
        servfail = template.rcode == SERVFAIL
        if servfail:
            ERRORS.note(
                "cluster not listed yet",
                "SERVFAIL %s. %s: cluster not listed yet (the first lists are not in)",
                query.qname, type_name(query.qtype),
            )  # fmt: skip
        labels = _labels(query, proto, template.rcode, SERVER if servfail else KUBERNETES)
        slot = self._count(labels, data, reply)
        if query.key is not None and not servfail:
            self._keep(prepared, labels, slot, len(data))
            self._zone_replies.put(query.key, prepared, prepared.size)
        return reply

    def _encode(self, query: Query, answer: Sequence[RR], outcome: Outcome) -> Template:
        reply = replace(outcome.reply, answer=answer, recursion_available=self._recursion_available)
        return encode(query.question, reply, rotate=self._rotate)

    def _error(self, rcode: int, query: Query, data: bytes, proto: int) -> bytes:
        template = error_template(rcode, recursion_available=self._recursion_available)
        reply = render(template, query, udp_size=self._udp_size)
        self._count(_labels(query, proto, rcode, SERVER), data, reply)
        return reply

    def _authoritative(self, query: Query) -> Outcome | None:
        """The cluster's own answer, or None when the name belongs upstream."""
        zone = self.zone
        qname = query.qname
        if zone.covers(qname):
            return zone.answer(qname, query.qtype)
        if zone.reverse_zone_of(qname) and (self._fallback is None or zone.owns_reverse(qname)):
            return zone.answer(qname, query.qtype)
        return None

    def _forward(self, query: Query, data: bytes, proto: int) -> Response:
        """A cache hit now, else an awaitable for the upstream's answer."""
        fallback = self._fallback
        if fallback is None:
            return self._error(REFUSED, query, data, proto)
        found = fallback.lookup(query)
        if found is None:
            return self._resolve(fallback, query, self._meter(data, bool(proto)))
        zone = self._zone_index(fallback, query)
        if isinstance(found, Template):  # a refusal or a loop probe: said by the server
            reply = render(found, query, udp_size=self._udp_size)
            self._count(_labels(query, proto, found.rcode, SERVER, zone=zone), data, reply)
            return reply
        forwarded = _ForwardedReply(found, query, udp_size=self._udp_size, now=self._clock())
        msg_id = query.id.to_bytes(2, "big")
        reply = forwarded.render(msg_id, query.question, self._clock(), counted=True)
        labels = _labels(query, proto, found.template.rcode, CACHE, zone=zone)
        slot = self._count(labels, data, reply)
        if found.template.rcode == SERVFAIL:  # kept off the fast path, so each one is logged
            _log_upstream_servfail(query, "from the cache")
        elif query.key is not None:
            self._keep(forwarded, labels, slot, len(data))
            self._forwarded.put(query.key, forwarded, forwarded.size)
        return reply

    def _zone_index(self, fallback: Fallback, query: Query) -> int:
        tally = self.tally
        return 0 if tally is None else tally.zone(fallback.zone_of(query.qname))

    async def _resolve(self, fallback: Fallback, query: Query, meter: _Meter | None) -> bytes:
        try:
            template = await fallback.forward(query)
        except Exception as exc:
            metrics.PANICS.inc()
            ERRORS.note(
                "internal error", "SERVFAIL %s. %s: unexpected error forwarding",
                query.qname, type_name(query.qtype), exc_info=exc,
            )  # fmt: skip
            template = error_template(SERVFAIL, recursion_available=True)
        if template.rcode == SERVFAIL and not is_local_error(template):
            _log_upstream_servfail(query, "relayed")
        reply = render(template, query, udp_size=self._udp_size)
        if meter is not None:
            plugin = SERVER if is_local_error(template) else FORWARD
            zone = self._zone_index(fallback, query)
            self._observe(meter, query, reply, template, plugin, zone=zone)
        return reply

    async def _chase(
        self, fallback: Fallback, query: Query, outcome: Outcome, meter: _Meter | None
    ) -> bytes:
        """Append an out-of-zone CNAME target's addresses, resolved upstream (as CoreDNS)."""
        try:
            found = await fallback.resolve_addresses(outcome.external_target, query.qtype)
        except Exception as exc:
            metrics.PANICS.inc()
            ERRORS.note(
                "internal error", "%s. %s: unexpected error chasing %s; answering the CNAME alone",
                query.qname, type_name(query.qtype), outcome.external_target, exc_info=exc,
            )  # fmt: skip
            found = []
        template = self._encode(query, [*outcome.reply.answer, *found], outcome)
        reply = render(template, query, udp_size=self._udp_size)
        self._observe(meter, query, reply, template, KUBERNETES)
        return reply

    def _servfail(self, data: bytes, *, tcp: bool) -> bytes | None:
        """The last line of defence: SERVFAIL echoing the question when the packet allows it."""
        try:
            query = parse_query(data, tcp=tcp, udp_size=self._udp_size)
        except QueryError as failed:
            failed.rcode = SERVFAIL
            reply = render_error(failed, udp_size=self._udp_size, recursion_available=False)
            self._count(self._error_labels(failed, tcp), data, reply)
            return reply
        except Exception:
            return None
        if query is None:
            return None
        servfail = QueryError(
            SERVFAIL, id=query.id, flags=query.flags, question=query.question, edns=query.edns
        )
        reply = render_error(
            servfail, udp_size=self._udp_size, recursion_available=self._recursion_available
        )
        self._count(self._error_labels(servfail, tcp), data, reply)
        return reply
