"""The cache of forwarded answers: what to keep, for how long, and how it looks when served.

Sans-I/O: time comes from an injected clock, so expiry is tested by moving a number. Two LRU
stores (positive ``success`` and negative ``denial``, as CoreDNS), each bounded by
``CacheConfig.size``. An entry keeps the upstream's bytes and the TTL of each record as clamped
when stored; on the way out each TTL is decremented by the whole seconds the entry has aged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from cachetools import TLRUCache

from kubedns import metrics
from kubedns.config import CacheConfig
from kubedns.forward import wire
from kubedns.forward.wire import Message, Question

Kind = Literal["success", "denial"]
Clock = Callable[[], float]


class CacheKey(NamedTuple):
    """What makes two queries share an answer (a tuple: hashed and compared in C).

    DO and CD change what an upstream returns (signatures, unvalidated data); whether the
    client used EDNS at all decides whether the reply may carry an OPT record (RFC 6891 7),
    so it is part of the key too.
    """

    name: bytes
    qtype: int
    qclass: int
    dnssec_ok: bool
    checking_disabled: bool
    edns: bool

    @classmethod
    def from_query(cls, query: Message, question: Question) -> CacheKey:
        return cls(
            question.folded,
            question.qtype,
            question.qclass,
            query.dnssec_ok,
            query.checking_disabled,
            query.has_edns,
        )


@dataclass(frozen=True, slots=True)
class Entry:
    """An upstream reply as stored; ``ttls`` line up with ``scanned.records``."""

    reply: bytes
    scanned: Message
    kind: Kind
    stored_at: float
    lifetime: int
    ttls: tuple[int, ...]

    @property
    def expires(self) -> float:
        return self.stored_at + self.lifetime

    def is_fresh(self, now: float) -> bool:
        return now < self.expires

    def render(self, *, now: float, qid: int, question: Question, stale_ttl: int = 0) -> bytes:
        """The reply for a client: its ID and letter case, TTLs aged (or ``stale_ttl``)."""
        out = wire.to_client(self.reply, self.scanned, qid=qid, question=question)
        if stale_ttl:
            ttls = [stale_ttl] * len(self.ttls)
        else:
            aged = int(now - self.stored_at)
            ttls = [ttl - aged for ttl in self.ttls]
        wire.set_ttls(out, self.scanned.records, ttls)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class Lifetime:
    """How a reply would be cached: its kind, seconds fresh, and the TTL of each record."""

    kind: Kind
    seconds: int
    ttls: tuple[int, ...]


def lifetime_of(reply: bytes, scanned: Message, config: CacheConfig) -> Lifetime | None:
    """The caching decision for one upstream reply, or None if it must not be cached.

    Positive: each TTL clamped to [min_ttl, max_ttl], fresh for the smallest. Negative
    (NXDOMAIN, NODATA): RFC 2308, the smaller of the SOA's TTL and its MINIMUM, capped by
    negative_max_ttl; without an SOA there is no TTL to trust, so it is not cached.
    SERVFAIL: servfail_ttl. Truncated replies and other rcodes are never cached.
    """
    if scanned.is_truncated:
        return None
    ttls = [r.ttl for r in scanned.records]
    if scanned.rcode == wire.SERVFAIL:
        return _capped("denial", ttls, config.servfail_ttl)
    answers = scanned.section(wire.SECTION_ANSWER)
    if scanned.rcode == wire.NXDOMAIN or (scanned.rcode == wire.NOERROR and not answers):
        negative = _negative_ttl(reply, scanned)
        if negative is None:
            return None
        return _capped("denial", ttls, min(negative, config.negative_max_ttl))
    if scanned.rcode != wire.NOERROR:
        return None
    clamped = tuple(min(max(ttl, config.min_ttl), config.max_ttl) for ttl in ttls)
    seconds = min(clamped)
    return Lifetime("success", seconds, clamped) if seconds > 0 else None


def _capped(kind: Kind, ttls: list[int], cap: int) -> Lifetime | None:
    if cap <= 0:
        return None
    return Lifetime(kind, cap, tuple(min(ttl, cap) for ttl in ttls))


def _negative_ttl(reply: bytes, scanned: Message) -> int | None:
    for record in scanned.section(wire.SECTION_AUTHORITY):
        if record.rtype == wire.TYPE_SOA:
            try:
                return min(record.ttl, wire.soa_minimum(reply, record))
            except wire.WireError:
                return None  # a mangled SOA gives no TTL to trust; relay, do not cache
    return None


class _Store(TLRUCache[CacheKey, Entry]):
    """A TLRU cache that counts capacity evictions (not expiries) for the metric."""

    def __init__(
        self, kind: Kind, size: int, ttu: Callable[[CacheKey, Entry, float], float], clock: Clock
    ) -> None:
        super().__init__(maxsize=size, ttu=ttu, timer=clock)
        self.kind = kind

    def popitem(self) -> tuple[CacheKey, Entry]:
        # cachetools calls popitem only to make room: that is an eviction, not an expiry.
        item = super().popitem()
        metrics.CACHE_EVICTIONS.labels(self.kind).inc()
        return item


class ReplyCache:
    """Forwarded replies by ``CacheKey``; entries outlive expiry only when serve-stale is on."""

    def __init__(self, config: CacheConfig, *, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._stores: dict[Kind, _Store] = {}
        self._hits = {kind: metrics.CACHE_HITS.labels(kind) for kind in ("success", "denial")}
        if config.size > 0:
            self._stores = {
                kind: _Store(kind, config.size, self._keep_until, clock)
                for kind in ("success", "denial")
            }

    def _keep_until(self, _key: CacheKey, entry: Entry, _now: float) -> float:
        stale = self._config.stale_max_age if self._config.serve_stale else 0
        return entry.expires + stale

    def lookup(self, key: CacheKey) -> Entry | None:
        """A fresh entry, counted as a hit; otherwise None (the caller counts the miss once it
        really goes upstream, so a fast-path probe followed by ``resolve`` counts one)."""
        now = self._clock()
        for store in self._stores.values():
            try:
                entry = store[key]  # one lookup; get() would do two
            except KeyError:
                continue
            if entry.is_fresh(now):
                self._hits[entry.kind].inc()
                return entry
        return None

    def stale(self, key: CacheKey) -> Entry | None:
        """An expired entry still within ``stale_max_age``, if serve-stale is on (RFC 8767)."""
        if not self._config.serve_stale:
            return None
        for store in self._stores.values():
            entry = store.get(key)
            if entry is not None:
                metrics.CACHE_SERVED_STALE.inc()
                return entry
        return None

    def store(self, key: CacheKey, reply: bytes, scanned: Message) -> bool:
        """Keep ``reply`` if the caching rules allow it; True if it was stored."""
        if not self._stores:
            return False
        lifetime = lifetime_of(reply, scanned, self._config)
        if lifetime is None:
            return False
        entry = Entry(reply, scanned, lifetime.kind, self._clock(), lifetime.seconds, lifetime.ttls)
        for kind, store in self._stores.items():
            if kind != entry.kind:
                store.pop(key, None)  # a name that now exists must not stay negative
        self._stores[entry.kind][key] = entry
        for kind, store in self._stores.items():
            metrics.CACHE_ENTRIES.labels(kind).set(len(store))
        return True

    def __len__(self) -> int:
        return sum(len(store) for store in self._stores.values())
