"""A set of upstreams serving one domain: which to try, in what order, within one deadline.

Healthy upstreams are tried in policy order; down ones are skipped while any healthy one is
left, and tried anyway when all are down (a dead pool must not turn into instant SERVFAIL for
every query while the probes catch up). A SERVFAIL or REFUSED reply moves on to the next
upstream, since another resolver may do better, but proves the upstream alive; if nobody does
better, the last such reply is relayed. The client's deadline is split across the attempts
left, so one black-holed upstream cannot eat the time the next one needs.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kubedns import metrics
from kubedns.config import ForwardPolicy, HostPort
from kubedns.dns.template import Scanned
from kubedns.dns.wire import REFUSED, SERVFAIL, wire_to_text
from kubedns.forward.upstream import ForwardError, Upstream, UpstreamError, new_id, reply_check

log = logging.getLogger(__name__)

MIN_ATTEMPT_TIMEOUT = 0.5
"""Seconds an attempt gets at least (if the deadline allows): splitting a 5 s deadline over
15 upstreams must not leave each less than a plausible round trip to a distant resolver."""

_RETRY_RCODES = frozenset({SERVFAIL, REFUSED})


class AllUpstreamsFailedError(ForwardError):
    """No upstream gave a reply within the deadline; ``reasons`` says how each one failed
    (``timeout``, ``refused``...; ``deadline`` when none could be tried in time)."""

    def __init__(self, message: str, reasons: Sequence[str] = ("deadline",)) -> None:
        super().__init__(message)
        self.reasons = tuple(sorted(set(reasons))) or ("deadline",)


@dataclass(frozen=True, slots=True)
class PoolSettings:
    policy: ForwardPolicy
    max_fails: int
    health_check_interval: float


class Pool:
    """Upstreams for one domain (the default ``.``, or a stub domain) with a policy."""

    def __init__(self, name: str, addresses: Sequence[HostPort], settings: PoolSettings) -> None:
        if not addresses:
            raise ValueError(f"pool {name!r} has no upstreams")
        self.name = name
        self.upstreams = tuple(Upstream(a, max_fails=settings.max_fails) for a in addresses)
        self._settings = settings
        self._next = 0  # round_robin cursor
        self._random = random.Random()

    def __repr__(self) -> str:
        return f"Pool({self.name!r}, {list(self.upstreams)})"

    def order(self) -> list[Upstream]:
        """Upstreams to try for one query: healthy ones in policy order, or all if none is."""
        ordered = list(self.upstreams)
        if self._settings.policy == "random":
            self._random.shuffle(ordered)
        elif self._settings.policy == "round_robin":
            start = self._next % len(ordered)
            self._next = start + 1
            ordered = ordered[start:] + ordered[:start]
        healthy = [u for u in ordered if not u.is_down]
        if healthy:
            return healthy
        metrics.FORWARD_HEALTHCHECK_BROKEN.inc()
        return ordered

    async def exchange(
        self, question: bytes, build: Callable[[int], bytes], *, deadline: float
    ) -> Scanned:
        """Ask upstreams in turn until one gives a usable reply or ``deadline`` (loop time).

        ``build(qid)`` makes the query bytes for a fresh ID; every attempt gets its own ID.
        """
        loop = asyncio.get_running_loop()
        candidates = self.order()
        fallback: Scanned | None = None
        errors: list[str] = []
        reasons: list[str] = []
        for index, upstream in enumerate(candidates):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            share = remaining / (len(candidates) - index)
            timeout = min(remaining, max(share, MIN_ATTEMPT_TIMEOUT))
            qid = new_id()
            accept = reply_check(qid, question, on_garbage=upstream.garbage)
            try:
                reply = await upstream.exchange(build(qid), accept, timeout=timeout)
            except UpstreamError as exc:
                errors.append(str(exc))
                reasons.append(exc.reason)
                continue
            if reply.rcode not in _RETRY_RCODES:
                return reply
            fallback = reply
        if fallback is not None:
            return fallback
        raise AllUpstreamsFailedError(
            f"{wire_to_text(question[:-4]) or '.'} via pool {self.name}: "
            + ("; ".join(errors) or "deadline"),
            reasons,
        )

    async def watch_health(self) -> None:
        """Forever: probe every down upstream each interval until it answers again."""
        interval = self._settings.health_check_interval
        while True:
            await asyncio.sleep(interval)
            down = [u for u in self.upstreams if u.is_down]
            if down:
                timeout = max(interval, MIN_ATTEMPT_TIMEOUT)
                await asyncio.gather(*(u.probe(timeout=timeout) for u in down))
