"""The forwarder: everything outside the cluster zone, answered from the cache or upstreams.

``resolve(query) -> reply`` is the contract with the answer path: wire bytes in, wire bytes
out, the client's ID and question letter case echoed, the upstream's answer relayed as it was
(rcode, sections, EDNS, DO/CD; only AA cleared and TTLs aged when served from cache).
``answer_now`` is its synchronous fast path for cache hits. Identical queries in flight share
one upstream exchange.

Failure answers, decided here and nowhere else:
  * more than ``max_concurrent`` queries waiting on upstreams: REFUSED at once, as CoreDNS's
    ``max_concurrent`` does. REFUSED rather than SERVFAIL because it tells a stub resolver to
    try its next nameserver now, and no cache treats it as an answer about the name.
  * every upstream failed within the deadline: a stale answer if serve-stale is on and one is
    kept (RFC 8767), else SERVFAIL.
  * a name under ``never_forward`` (the cluster zone): REFUSED, defence in depth so a cluster
    name cannot leak upstream even if a caller routes it here.
  * our own loop probe coming back: SERVFAIL, without forwarding it again.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

import dnslib

from kubedns import metrics
from kubedns.config import MAX_UPSTREAMS, CacheConfig, ForwardConfig, HostPort
from kubedns.forward import resolvconf, wire
from kubedns.forward.cache import CacheKey, ReplyCache
from kubedns.forward.loop import LoopGuard, probe_name
from kubedns.forward.pool import AllUpstreamsFailedError, Pool, PoolSettings
from kubedns.forward.stubs import StubRouter, canonical
from kubedns.forward.upstream import ForwardError, new_id
from kubedns.forward.wire import Message, Question

log = logging.getLogger(__name__)

Clock = Callable[[], float]

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
        clock: monotonic seconds for the cache (injectable for tests). Upstream deadlines use
            the event loop's clock, as asyncio time-outs do.
        resolv_conf: where default upstreams come from when ``forward.upstreams`` is empty.
        never_forward: zones (the cluster domain) whose names are refused, never sent upstream.
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
    ) -> None:
        self._config = forward
        self._cache_config = cache
        self._clock = clock
        self._listen = tuple(listen)
        # Wire-format suffixes: a name in a zone always ends with the zone's wire form, so the
        # check needs no text conversion on the hot path. (A label holding a length byte could
        # match too; refusing such a name is the safe direction.)
        self._never = tuple(wire.name_to_wire(zone).lower() for zone in never_forward)
        self.warnings: list[str] = []
        settings = PoolSettings(forward.policy, forward.max_fails, forward.health_check_interval)
        default = self._pool(".", self._default_upstreams(forward, resolv_conf), settings)
        stubs = {
            domain: self._pool(canonical(domain), servers, settings)
            for domain, servers in forward.stub_domains.items()
        }
        self._router: StubRouter[Pool] = StubRouter(default, stubs)
        self._cache = ReplyCache(cache, clock=clock)
        self._guard = LoopGuard()
        self._in_flight = 0
        self._pending: dict[CacheKey, asyncio.Future[tuple[bytes, Message]]] = {}
        self._tasks: list[asyncio.Task[None]] = []

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

    async def resolve(self, query: bytes, *, udp_limit: int | None = None) -> bytes:
        """The reply to one client query (wire format in and out).

        With ``udp_limit`` (the UDP client's size: 512, or its EDNS payload size), a larger
        reply is cut to header, question and OPT with TC set, so the client retries over TCP.
        Without it the reply is whole, as a TCP client needs it.

        Raises ``wire.WireError`` (a ``ValueError``) if ``query`` is not a standard query with
        one question; the transport answers FORMERR or drops, as for any malformed packet.
        """
        scanned, question = self._check(query)
        reply = self._answer_locally(scanned, question)
        if reply is None:
            reply = await self._forward(scanned, question)
        return _fit(reply, udp_limit)

    def answer_now(self, query: bytes, *, udp_limit: int | None = None) -> bytes | None:
        """The reply if it needs no I/O (cache hit, refused name), else None: call ``resolve``.

        Synchronous, so a UDP transport can answer cache hits inside ``datagram_received``
        without creating a task per query. Raises ``wire.WireError`` as ``resolve`` does.
        """
        scanned, question = self._check(query)
        reply = self._answer_locally(scanned, question)
        return None if reply is None else _fit(reply, udp_limit)

    def _check(self, query: bytes) -> tuple[Message, Question]:
        scanned = wire.scan(query)
        question = scanned.question
        if question is None or scanned.is_response or scanned.opcode != 0:
            raise wire.WireError("not a standard query with one question")
        return scanned, question

    def _answer_locally(self, scanned: Message, question: Question) -> bytes | None:
        if self._guard.is_active and self._guard.notice(question.to_text()):
            log.error("loop probe %s came back: an upstream forwards to us", question.to_text())
            return wire.error_reply(scanned, rcode=wire.SERVFAIL)
        if self._is_never_forwarded(question.folded):
            return wire.error_reply(scanned, rcode=wire.REFUSED)
        entry = self._cache.lookup(CacheKey.from_query(scanned, question))
        if entry is None:
            return None
        return entry.render(now=self._clock(), qid=scanned.id, question=question)

    async def _forward(self, scanned: Message, question: Question) -> bytes:
        metrics.CACHE_MISSES.inc()  # counted here, not in lookup: answer_now may run first
        key = CacheKey.from_query(scanned, question)
        shared = self._pending.get(key)
        try:
            if shared is not None:
                # shield: a follower giving up must not cancel the answer others wait for.
                reply, replied = await asyncio.shield(shared)
            elif self._in_flight >= self._config.max_concurrent:
                metrics.FORWARD_MAX_CONCURRENT_REJECTS.inc()
                return wire.error_reply(scanned, rcode=wire.REFUSED)
            else:
                reply, replied = await self._lead(scanned, question, key)
        except AllUpstreamsFailedError as exc:
            log.info("%s", exc)
            return self._fail(scanned, question, key)
        return bytes(wire.to_client(reply, replied, qid=scanned.id, question=question))

    async def _lead(
        self, scanned: Message, question: Question, key: CacheKey
    ) -> tuple[bytes, Message]:
        """Ask the upstreams once for everyone who asks the same question meanwhile.

        Coalescing (as dnsmasq does) keeps a burst of identical queries, such as many pods
        starting at once, from becoming a burst of identical upstream queries. Only the leader
        holds a ``max_concurrent`` slot: followers cost no upstream traffic.
        """
        shared: asyncio.Future[tuple[bytes, Message]] = asyncio.get_running_loop().create_future()
        self._pending[key] = shared
        pool = self._router.route(question.to_text())
        deadline = asyncio.get_running_loop().time() + self._config.timeout
        self._in_flight += 1
        try:
            result = await pool.exchange(
                question,
                lambda qid: wire.build_query(question, qid=qid, template=scanned),
                deadline=deadline,
            )
        except BaseException as exc:
            if not isinstance(exc, AllUpstreamsFailedError):
                exc = AllUpstreamsFailedError(f"{question.to_text()}: abandoned ({exc!r})")
            shared.set_exception(exc)
            shared.exception()  # retrieved: there may be no follower to do it
            raise
        finally:
            self._in_flight -= 1
            del self._pending[key]
        shared.set_result(result)
        self._cache.store(key, *result)
        return result

    def _fail(self, scanned: Message, question: Question, key: CacheKey) -> bytes:
        stale = self._cache.stale(key)
        if stale is not None:
            return stale.render(
                now=self._clock(),
                qid=scanned.id,
                question=question,
                stale_ttl=self._cache_config.stale_answer_ttl,
            )
        return wire.error_reply(scanned, rcode=wire.SERVFAIL)

    def _is_never_forwarded(self, folded: bytes) -> bool:
        return any(folded.endswith(zone) for zone in self._never)

    @property
    def in_flight(self) -> int:
        """Client queries waiting on upstreams right now."""
        return self._in_flight

    async def resolve_addresses(self, name: str, qtype: int) -> list[dnslib.RR]:
        """The answer section for ``name``/``qtype`` through cache, stub domains and upstreams.

        For chasing an ExternalName target: the CNAME chain the upstream gave, if any, then the
        A/AAAA records, with TTLs as served. Empty when the name does not resolve (NXDOMAIN,
        NODATA, SERVFAIL): the caller still answers with its CNAME, as CoreDNS does.
        """
        question = Question(wire.name_to_wire(name), qtype, wire.CLASS_IN)
        query = struct.pack("!HHHHHH", new_id(), 0x0100, 1, 0, 0, 0) + question.to_wire()
        reply = dnslib.DNSRecord.parse(await self.resolve(query))
        if reply.header.rcode != wire.NOERROR:
            return []
        return list(reply.rr)

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
            question = Question(wire.name_to_wire(name), _TYPE_HINFO, wire.CLASS_IN)
            query = struct.pack("!HHHHHH", 0, 0x0100, 1, 0, 0, 0) + question.to_wire()
            template = wire.scan(query)
            self._guard.expect(name)
            try:
                await pool.exchange(
                    question,
                    lambda qid: wire.build_query(question, qid=qid, template=template),  # noqa: B023
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


def _fit(reply: bytes, udp_limit: int | None) -> bytes:
    if udp_limit is not None and len(reply) > udp_limit:
        return wire.fit_udp(reply, wire.scan(reply), limit=udp_limit)
    return reply
