"""The forwarder: everything outside the cluster zone, answered from the cache or upstreams.

The contract with the answer path is in the codec's terms: ``lookup(query)`` answers without
I/O (a cache entry, or a local refusal), ``forward(query)`` awaits the upstreams; both give a
``Template`` the answer path renders for the client like any other reply (its ID, letter
case, size limit and EDNS). The upstream's records and rcode are relayed as they were, never
re-encoded; only AA is cleared, TTLs are aged when served from cache, and the upstream's OPT
is replaced by ours (its options belong to its conversation with us). Identical queries in
flight share one upstream exchange.

Failure answers, decided here and nowhere else:
  * more than ``max_concurrent`` queries waiting on upstreams: REFUSED at once, as CoreDNS's
    ``max_concurrent`` does. Every waiting query counts, a follower of a shared exchange too:
    each holds a task, a client's reply and its place in the transports' pending sets, so one
    popular name on a silent upstream must not pile them up without limit. REFUSED rather
    than SERVFAIL because it tells a stub resolver to try its next nameserver now, and no
    cache treats it as an answer about the name.
  * every upstream failed within the deadline: a stale answer if serve-stale is on and one is
    kept (RFC 8767), else SERVFAIL.
  * a name under ``never_forward`` (the cluster zone): REFUSED, defence in depth so a cluster
    name cannot leak upstream even if a caller routes it here.
  * our own loop probe coming back: SERVFAIL, without forwarding it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Self

from kubedns import metrics
from kubedns.config import MAX_UPSTREAMS, CacheConfig, ForwardConfig, HostPort, RepliesConfig
from kubedns.dns.query import Query, QueryError, build_query, parse_query, question_of
from kubedns.dns.render import render
from kubedns.dns.template import RR, Template, answer_records, error_template
from kubedns.dns.wire import NOERROR, REFUSED, SERVFAIL, WireError, name_to_wire, type_name
from kubedns.forward import resolvconf
from kubedns.forward.cache import CacheKey, Entry, ReplyCache
from kubedns.forward.loop import LoopGuard, probe_name
from kubedns.forward.pool import AllUpstreamsFailedError, Pool, PoolSettings
from kubedns.forward.stubs import StubRouter, canonical
from kubedns.forward.upstream import ForwardError, new_id
from kubedns.logs import ERRORS, Throttle

log = logging.getLogger(__name__)

Clock = Callable[[], float]

FAILURE_LOG_INTERVAL = 10.0
"""Seconds between two info lines about queries every upstream failed; the rest go to debug."""

_TYPE_HINFO = 13  # what CoreDNS's loop plugin asks for: no resolver has data for it


class SelfForwardError(ForwardError):
    """Every upstream configured for a domain is our own listener."""


class Forwarder:
    """Resolves names outside the cluster zone through a cache and upstream pools.

    Args:
        forward: upstreams, policy, deadline, limits and stub domains.
        cache: the cache of forwarded answers.
        listen: our own listen addresses; upstreams equal to them are dropped (never forward
            to ourselves) and reported in ``warnings``.
        clock: monotonic seconds for the cache and the failure log's rate (injectable for
            tests). Upstream deadlines use
            the event loop's clock, as asyncio time-outs do.
        resolv_conf: where default upstreams come from when ``forward.upstreams`` is empty.
        never_forward: zones (the cluster domain) whose names are refused, never sent upstream.
        reply_cache: a cache to keep rather than start empty (a config reload that changed
            neither ``cache`` nor where names go); it must have been built from ``cache``.
    """

    def __init__(
        self,
        forward: ForwardConfig,
        cache: CacheConfig,
        *,
        listen: Sequence[HostPort] = (),
        clock: Clock = time.monotonic,
        resolv_conf: Path = resolvconf.DEFAULT_RESOLV_CONF,
        never_forward: Sequence[str] = (),
        replies: RepliesConfig | None = None,
        reply_cache: ReplyCache | None = None,
    ) -> None:
        replies = replies or RepliesConfig()
        self._udp_size = replies.udp_size
        self._rotate = replies.rotate
        self._config = forward
        self._cache_config = cache
        self._clock = clock
        self._listen = tuple(listen)
        # Wire-format suffixes: a name in a zone always ends with the zone's wire form, so the
        # check needs no text conversion on the hot path. (A label holding a length byte could
        # match too; refusing such a name is the safe direction.)
        self._never = tuple(name_to_wire(zone).lower() for zone in never_forward)
        self.warnings: list[str] = []
        settings = PoolSettings(forward.policy, forward.max_fails, forward.health_check_interval)
        default = self._pool(".", self._default_upstreams(forward, resolv_conf), settings)
        stubs = {
            domain: self._pool(canonical(domain), servers, settings)
            for domain, servers in forward.stub_domains.items()
        }
        self._router: StubRouter[Pool] = StubRouter(default, stubs)
        self._cache = reply_cache or ReplyCache(cache, clock=clock)
        self._guard = LoopGuard()
        self._in_flight = 0
        self._pending: dict[CacheKey, asyncio.Future[Template]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # One line per interval: a failing upstream fails every query, and the names are
        # the clients' (the metrics count every failure).
        self._failures = Throttle(log, interval=FAILURE_LOG_INTERVAL, clock=clock)

    # -- construction ---------------------------------------------------------------------

    def _default_upstreams(self, forward: ForwardConfig, path: Path) -> tuple[HostPort, ...]:
        if forward.upstreams:
            return forward.upstreams
        try:
            found = resolvconf.nameservers(path)
        except resolvconf.ResolvConfError as exc:
            raise ForwardError(str(exc)) from exc
        if len(found) > MAX_UPSTREAMS:
            self._warn(f"{path} names {len(found)} nameservers; using the first 15")
        for address in found:
            # Only resolv.conf gets this warning: a configured loopback upstream is a
            # deliberate choice (a node-local cache sidecar), a copied one usually is not.
            if resolvconf.is_loopback(address) and not resolvconf.is_self(address, self._listen):
                self._warn(resolvconf.loopback_warning(address, path))
        return found[:MAX_UPSTREAMS]

    def _pool(self, name: str, addresses: Sequence[HostPort], settings: PoolSettings) -> Pool:
        usable = []
        for address in addresses:
            if resolvconf.is_self(address, self._listen):
                self._warn(f"upstream {address} for {name} is our own listener; not used")
                continue
            usable.append(address)
        if not usable:
            raise SelfForwardError(
                f"every upstream for {name} ({', '.join(map(str, addresses))}) is kubedns "
                "itself; forwarding there would loop. Configure forward.upstreams"
            )
        return Pool(name, usable, settings)

    def _warn(self, message: str) -> None:
        log.warning("%s", message)
        self.warnings.append(message)

    def zone_of(self, qname: str) -> str:
        """The metrics ``zone`` of ``qname``: its stub domain with a trailing dot, else ``"."``
        (CoreDNS users give each stub domain a server block of its own)."""
        name = self._router.route(qname).name
        return "." if name in (".", "") else name + "."

    @property
    def pools(self) -> list[Pool]:
        """The default pool first, then one per stub domain."""
        return self._router.pools()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start one named health-probe task per pool."""
        for pool in self._router.pools():
            name = f"forward-health {pool.name}"
            self._tasks.append(asyncio.create_task(pool.watch_health(), name=name))

    async def close(self) -> None:
        """Cancel the health tasks and wait until they are gone."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- answering ------------------------------------------------------------------------

    def lookup(self, query: Query) -> Entry | Template | None:
        """The answer when it needs no I/O: a fresh cache entry (aged by the caller, who may
        keep rendering it until it expires), a refusal or loop SERVFAIL; else None."""
        if self._guard.is_active and self._guard.notice(query.qname + "."):
            ERRORS.note(
                "forwarding loop",
                "SERVFAIL %s. %s: forwarding loop: our probe came back, an upstream forwards "
                "to us", query.qname, type_name(query.qtype),
            )  # fmt: skip
            return error_template(SERVFAIL, recursion_available=True)
        if self._is_never_forwarded(query.folded_name):
            return error_template(REFUSED, recursion_available=True)
        return self._cache.lookup(CacheKey.of(query))

    async def forward(self, query: Query) -> Template:
        """The upstreams' answer to ``query`` (after ``lookup`` found none), as relayed: the
        upstream's records and rcode, our own EDNS, AA cleared."""
        metrics.CACHE_STATS.misses += 1  # counted here, not in lookup: every miss comes here once
        if self._in_flight >= self._config.max_concurrent:
            metrics.FORWARD_MAX_CONCURRENT_REJECTS.inc()
            ERRORS.note(
                "max_concurrent exceeded",
                "REFUSED %s. %s: max_concurrent exceeded: %d queries already wait on upstreams",
                query.qname, type_name(query.qtype), self._config.max_concurrent,
            )  # fmt: skip
            return error_template(REFUSED, recursion_available=True)
        key = CacheKey.of(query)
        shared = self._pending.get(key)
        self._in_flight += 1
        try:
            if shared is not None:
                # shield: a follower giving up must not cancel the answer others wait for.
                return await asyncio.shield(shared)
            return await self._lead(query, key)
        except AllUpstreamsFailedError as exc:
            return self._fail(key, query, exc)
        finally:
            self._in_flight -= 1

    async def resolve(self, data: bytes, *, udp_limit: int | None = None) -> bytes:
        """The reply to one client query in wire format, for callers holding bytes (tests,
        tools); the server's answer path calls ``lookup`` and ``forward`` with its parsed query.

        With ``udp_limit`` the reply is sized for a UDP client of that size, without it for
        TCP. Raises ``WireError`` (a ``ValueError``) if ``data`` is not a standard query.
        """
        query = self._parse(data, udp_limit)
        found = self.lookup(query)
        template = self._now(found) if found is not None else await self.forward(query)
        return render(template, query, udp_size=self._udp_size)

    def answer_now(self, data: bytes, *, udp_limit: int | None = None) -> bytes | None:
        """``resolve`` without I/O: the reply for a cache hit or a refused name, else None."""
        query = self._parse(data, udp_limit)
        found = self.lookup(query)
        return None if found is None else render(self._now(found), query, udp_size=self._udp_size)

    def _parse(self, data: bytes, udp_limit: int | None) -> Query:
        try:
            query = parse_query(data, tcp=udp_limit is None, udp_size=udp_limit or self._udp_size)
        except QueryError as exc:
            raise WireError(f"not a standard query with one question ({exc})") from exc
        if query is None:
            raise WireError("not a query")
        return query

    def _now(self, found: Entry | Template) -> Template:
        return found.served(self._clock()) if isinstance(found, Entry) else found

    async def _lead(self, query: Query, key: CacheKey) -> Template:
        """Ask the upstreams once for everyone who asks the same question meanwhile.

        Coalescing (as dnsmasq does) keeps a burst of identical queries, such as many pods
        starting at once, from becoming a burst of identical upstream queries. Followers cost
        no upstream traffic but hold a ``max_concurrent`` slot each, as the leader does; so
        ``_pending`` (one entry per leader) never holds more than ``max_concurrent`` entries.
        """
        shared: asyncio.Future[Template] = asyncio.get_running_loop().create_future()
        self._pending[key] = shared
        pool = self._router.route(query.qname)
        deadline = asyncio.get_running_loop().time() + self._config.timeout
        try:
            scanned = await pool.exchange(
                query.question,
                lambda qid: build_query(
                    query.question, qid=qid, do=query.do, cd=query.cd, udp_size=self._udp_size
                ),
                deadline=deadline,
            )
        except BaseException as exc:
            if not isinstance(exc, AllUpstreamsFailedError):
                exc = AllUpstreamsFailedError(f"{query.qname}.: abandoned ({exc!r})")
            shared.set_exception(exc)
            shared.exception()  # retrieved: there may be no follower to do it
            raise
        finally:
            del self._pending[key]
        template = scanned.template
        if not self._rotate:
            template = replace(template, group=(0, 0))
        shared.set_result(template)
        self._cache.store(key, scanned, template)
        return template

    def _fail(self, key: CacheKey, query: Query, exc: AllUpstreamsFailedError) -> Template:
        stale = self._cache.stale(key)
        if stale is not None:
            self._failures.note("%s; served a stale answer", exc)
            return stale.template.aged(fixed=self._cache_config.stale_answer_ttl)
        reason = "upstream " + ", ".join(exc.reasons)
        ERRORS.note(
            reason, "SERVFAIL %s. %s: %s (%s)", query.qname, type_name(query.qtype), reason, exc
        )
        return error_template(SERVFAIL, recursion_available=True)

    def _is_never_forwarded(self, folded: bytes) -> bool:
        return any(folded.endswith(zone) for zone in self._never)

    @property
    def timeout(self) -> float:
        """Seconds a client query may spend on upstreams (``forward.timeout``)."""
        return self._config.timeout

    @property
    def reply_cache(self) -> ReplyCache:
        """The cache of forwarded answers (a reload may hand it to the next forwarder)."""
        return self._cache

    @property
    def in_flight(self) -> int:
        """Client queries waiting on upstreams right now, followers of a shared exchange
        included: at most ``forward.max_concurrent``."""
        return self._in_flight

    @property
    def exchanges(self) -> int:
        """Upstream exchanges in flight (each shared by one or more queries)."""
        return len(self._pending)

    async def resolve_addresses(self, name: str, qtype: int) -> list[RR]:
        """The answer section for ``name``/``qtype`` through cache, stub domains and upstreams.

        For chasing an ExternalName target: the CNAME chain the upstream gave, if any, then the
        A/AAAA records, with TTLs as served. Empty when the name does not resolve (NXDOMAIN,
        NODATA, SERVFAIL) or its answer cannot be read: the caller still answers with its
        CNAME, as CoreDNS does.
        """
        question = question_of(name, qtype)
        query = self._parse(build_query(question, qid=new_id()), None)
        found = self.lookup(query)
        template = self._now(found) if found is not None else await self.forward(query)
        if template.rcode != NOERROR:
            return []
        try:
            return answer_records(template, question)
        except WireError:
            return []

    # -- loop detection -------------------------------------------------------------------

    async def detect_loop(self, *, timeout: float = 2.0) -> bool:
        """Send a random probe name through every pool; True if one came back to us.

        Run it once the listeners are up (a loop can only be seen by our own listener) and
        report a True result loudly: CoreDNS's ``loop`` plugin exits, we leave that choice to
        the app. ``kubedns_forward_loop_detected`` is set either way.
        """
        looped = False
        for pool in self._router.pools():
            name = probe_name()
            question = question_of(name, _TYPE_HINFO)
            self._guard.expect(name)
            try:
                await pool.exchange(
                    question,
                    lambda qid: build_query(question, qid=qid),  # noqa: B023
                    deadline=asyncio.get_running_loop().time() + timeout,
                )
            except AllUpstreamsFailedError:
                pass  # no answer is not a loop; the health checks report dead upstreams
            finally:
                came_back = self._guard.finish(name)
            if came_back:
                looped = True
                log.error(
                    "forwarding loop: probe %s sent to %s came back to kubedns %d time(s); "
                    "an upstream forwards to us (often a node resolv.conf naming a local stub "
                    "resolver). Fix forward.upstreams",
                    name,
                    pool,
                    came_back,
                )
        metrics.FORWARD_LOOP_DETECTED.set(int(looped))
        return looped
