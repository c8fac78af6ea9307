"""The cache of forwarded answers: what to keep, for how long, and how it looks when served.

Sans-I/O: time comes from an injected clock, so expiry is tested by moving a number. Two LRU
stores (positive ``success`` and negative ``denial``, as CoreDNS), each bounded by
``CacheConfig.size`` entries and ``CacheConfig.max_bytes`` bytes (``entry_bytes``): clients
choose the names, and with them how large each answer is. An entry keeps the upstream's
records as a ``Template`` with the TTL of each record as clamped when stored; on the way out
each TTL is lowered by the whole seconds the entry has aged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

from cachetools import TLRUCache

from kubedns import metrics
from kubedns.config import CacheConfig
from kubedns.dns.query import Query
from kubedns.dns.template import Scanned, Template
from kubedns.dns.wire import NOERROR, NXDOMAIN, SERVFAIL

Kind = Literal["success", "denial"]
Clock = Callable[[], float]
KINDS: tuple[Kind, ...] = ("success", "denial")


class CacheKey(NamedTuple):
    """What makes two queries share an answer (a tuple: hashed and compared in C).

    DO and CD change what an upstream returns (signatures, unvalidated data). Whether the client
    used EDNS does not: we always ask upstreams with EDNS and write our own OPT for each client.
    """

    name: bytes
    qtype: int
    qclass: int
    dnssec_ok: bool
    checking_disabled: bool

    @classmethod
    def of(cls, query: Query) -> CacheKey:
        return cls(query.folded_name, query.qtype, query.qclass, query.do, query.cd)


@dataclass(frozen=True, slots=True)
class Entry:
    """An upstream reply as stored; the template's TTLs are the clamped ones."""

    template: Template
    kind: Kind
    stored_at: float
    lifetime: int

    @property
    def expires(self) -> float:
        return self.stored_at + self.lifetime

    def is_fresh(self, now: float) -> bool:
        return now < self.expires

    def age(self, now: float) -> int:
        """Whole seconds since it was stored: what every TTL is lowered by."""
        return int(now - self.stored_at)

    def served(self, now: float) -> Template:
        return self.template.aged(seconds=self.age(now))


@dataclass(frozen=True, slots=True)
class Lifetime:
    """How a reply would be cached: its kind, seconds fresh, and the TTL of each record."""

    kind: Kind
    seconds: int
    ttls: tuple[int, ...]


def lifetime_of(scanned: Scanned, config: CacheConfig) -> Lifetime | None:
    """The caching decision for one upstream reply, or None if it must not be cached.

    Positive: each TTL clamped to [min_ttl, max_ttl], fresh for the smallest. Negative
    (NXDOMAIN, NODATA): RFC 2308, the smaller of the SOA's TTL and its MINIMUM, capped by
    negative_max_ttl; without an SOA there is no TTL to trust, so it is not cached.
    SERVFAIL: servfail_ttl. Truncated replies and other rcodes are never cached.
    """
    if scanned.is_truncated:
        return None
    ttls = list(scanned.template.ttls)
    rcode = scanned.rcode
    if rcode == SERVFAIL:
        return _capped("denial", ttls, config.servfail_ttl)
    if rcode == NXDOMAIN or (rcode == NOERROR and not scanned.template.answer_count):
        if scanned.soa_minimum is None:
            return None
        return _capped("denial", ttls, min(scanned.soa_minimum, config.negative_max_ttl))
    if rcode != NOERROR:
        return None
    clamped = tuple(min(max(ttl, config.min_ttl), config.max_ttl) for ttl in ttls)
    seconds = min(clamped)
    return Lifetime("success", seconds, clamped) if seconds > 0 else None


def _capped(kind: Kind, ttls: list[int], cap: int) -> Lifetime | None:
    if cap <= 0:
        return None
    return Lifetime(kind, cap, tuple(min(ttl, cap) for ttl in ttls))


ENTRY_OVERHEAD = 600
"""Bytes an entry costs besides its records (measured with tracemalloc, CPython 3.11): the key
and its name, the ``Entry`` and ``Template`` objects, their tuples, and the cache's own
bookkeeping."""
RECORD_OVERHEAD = 100
"""Bytes each record costs besides its wire bytes: the ``bytes`` object and its TTL slots."""


def entry_bytes(entry: Entry) -> int:
    """What one entry is charged against ``CacheConfig.max_bytes``."""
    template = entry.template
    return ENTRY_OVERHEAD + template.size + RECORD_OVERHEAD * len(template.records)


class _Store(TLRUCache[CacheKey, Entry]):
    """A TLRU cache bounded in bytes (cachetools' ``maxsize`` with ``getsizeof``) and in
    entries (kept here); counts capacity evictions (not expiries) for the metric."""

    def __init__(
        self,
        kind: Kind,
        *,
        entries: int,
        max_bytes: int,
        ttu: Callable[[CacheKey, Entry, float], float],
        clock: Clock,
    ) -> None:
        super().__init__(maxsize=max_bytes, ttu=ttu, timer=clock, getsizeof=entry_bytes)
        self.kind = kind
        self.max_entries = entries

    def put(self, key: CacheKey, entry: Entry) -> bool:
        """Store ``entry``, evicting the least recently used to stay within both bounds;
        False (and any older entry for ``key`` dropped) if it alone exceeds the byte bound."""
        if entry_bytes(entry) > self.maxsize:
            self.pop(key, None)
            return False
        self.expire()
        if key not in self:
            while len(self) >= self.max_entries:
                self.popitem()
        self[key] = entry  # cachetools evicts the least recently used past maxsize bytes
        return True

    def popitem(self) -> tuple[CacheKey, Entry]:
        # cachetools calls popitem only to make room: that is an eviction, not an expiry.
        item = super().popitem()
        metrics.CACHE_STATS.evictions[self.kind] += 1
        return item


class ReplyCache:
    """Forwarded replies by ``CacheKey``; entries outlive expiry only when serve-stale is on."""

    def __init__(self, config: CacheConfig, *, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._stores: dict[Kind, _Store] = {}
        if config.size > 0:
            self._stores = {
                kind: _Store(
                    kind,
                    entries=config.size,
                    max_bytes=config.max_bytes,
                    ttu=self._keep_until,
                    clock=clock,
                )
                for kind in KINDS
            }
        self._report()  # a new cache (at start or a reload) starts empty

    def _keep_until(self, _key: CacheKey, entry: Entry, _now: float) -> float:
        stale = self._config.stale_max_age if self._config.serve_stale else 0
        return entry.expires + stale

    def lookup(self, key: CacheKey) -> Entry | None:
        """A fresh entry, counted as a hit; otherwise None (the caller counts the miss once it
        really goes upstream, so a probe followed by a forward counts one)."""
        now = self._clock()
        for store in self._stores.values():
            try:
                entry = store[key]  # one lookup; get() would do two
            except KeyError:
                continue
            if entry.is_fresh(now):
                metrics.CACHE_STATS.hits[entry.kind] += 1
                return entry
        return None

    def stale(self, key: CacheKey) -> Entry | None:
        """An expired entry still within ``stale_max_age``, if serve-stale is on (RFC 8767)."""
        if not self._config.serve_stale:
            return None
        for store in self._stores.values():
            entry = store.get(key)
            if entry is not None:
                metrics.CACHE_STATS.served_stale += 1
                return entry
        return None

    def store(self, key: CacheKey, scanned: Scanned, template: Template) -> bool:
        """Keep ``template`` (the relayable form of ``scanned``) if the caching rules allow it;
        True if it was stored."""
        if not self._stores:
            return False
        lifetime = lifetime_of(scanned, self._config)
        if lifetime is None:
            return False
        clamped = replace(template, ttls=lifetime.ttls).aged()
        entry = Entry(clamped, lifetime.kind, self._clock(), lifetime.seconds)
        for kind, store in self._stores.items():
            if kind != entry.kind:
                store.pop(key, None)  # a name that now exists must not stay negative
        stored = self._stores[entry.kind].put(key, entry)
        self._report()
        return stored

    def _report(self) -> None:
        # Every type, stores or not: a cache of size 0 replacing a full one must show 0.
        for kind in KINDS:
            store = self._stores.get(kind)
            metrics.CACHE_STATS.entries[kind] = 0 if store is None else len(store)
            metrics.CACHE_BYTES.labels(kind).set(0 if store is None else int(store.currsize))

    def __len__(self) -> int:
        return sum(len(store) for store in self._stores.values())

    @property
    def total_bytes(self) -> int:
        """Bytes charged for all entries (``entry_bytes``), both kinds together."""
        return sum(int(store.currsize) for store in self._stores.values())
