"""Which pool serves a name: the stub domain with the longest matching suffix, else the default.

Sans-I/O and generic over the pool type, so the routing rule is tested with plain values.
Matching is on whole labels (``corp.internal`` serves ``a.corp.internal``, never
``acorp.internal``) and case-insensitive.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


def canonical(name: str) -> str:
    """Lowercase, no trailing dot; the root is the empty string."""
    return name.lower().rstrip(".")


class StubRouter(Generic[T]):
    """Maps a query name to the pool of its longest matching stub domain, or the default."""

    def __init__(self, default: T, stubs: Mapping[str, T]) -> None:
        self._default = default
        self._stubs = {canonical(domain): pool for domain, pool in stubs.items()}

    def route(self, qname: str) -> T:
        """The pool for ``qname``: its longest matching stub domain, else the default."""
        labels = canonical(qname).split(".")
        # Walk from the full name towards the root: the first hit is the longest suffix.
        for start in range(len(labels)):
            pool = self._stubs.get(".".join(labels[start:]))
            if pool is not None:
                return pool
        return self._default

    def pools(self) -> list[T]:
        return [self._default, *self._stubs.values()]
