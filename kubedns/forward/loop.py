"""Forwarding-loop detection, as CoreDNS's ``loop`` plugin does it.

At start the forwarder sends a query for a random, never-existing name
(``<random>.<random>.kubedns-loop-probe.``) to each upstream pool. If the upstreams forward
it back to us, it arrives at our own listener and reaches ``Forwarder.resolve``, which asks
this guard first: a pending probe name is noticed and answered SERVFAIL at once, so the loop
cannot amplify. The probe reports a loop if its name was noticed.

The seam is therefore inside the forwarder: the app needs no transport hook, only the fixed
chain in which every name outside the cluster zone goes to ``Forwarder.resolve``.
"""

from __future__ import annotations

import secrets

PROBE_ZONE = "kubedns-loop-probe"


def probe_name() -> str:
    """A fresh name no resolver can have cached or can answer (64 random bits in two labels)."""
    return f"{secrets.token_hex(4)}.{secrets.token_hex(4)}.{PROBE_ZONE}."


class LoopGuard:
    """Probe names in flight and how often each came back to us."""

    def __init__(self) -> None:
        self._pending: dict[str, int] = {}

    def expect(self, name: str) -> None:
        self._pending[name.lower()] = 0

    @property
    def is_active(self) -> bool:
        """Is any probe in flight? Callers skip name conversion when not (the common case)."""
        return bool(self._pending)

    def notice(self, qname: str) -> bool:
        """Record an incoming query name; True if it is one of our probes (do not forward)."""
        key = qname.lower()
        if key not in self._pending:
            return False
        self._pending[key] += 1
        return True

    def finish(self, name: str) -> int:
        """Stop expecting ``name``; how many times it came back."""
        return self._pending.pop(name.lower(), 0)
