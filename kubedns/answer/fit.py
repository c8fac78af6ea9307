"""Fitting a reply into the client's size limit: the one place truncation is decided.

RFC 2181 section 9: the TC bit means required records were left out. Dropping the additional
section does not need it; when the answer itself does not fit, no partial RRset is sent: the
client gets TC with empty sections and retries over TCP (RFC 7766).
"""

from __future__ import annotations

from dataclasses import replace

from kubedns.answer.query import Query
from kubedns.answer.wire import Reply, encode

TCP_LIMIT = 65535


def fit(query: Query, reply: Reply, *, limit: int) -> bytes:
    """Encode ``reply`` in at most ``limit`` bytes, trimming and setting TC as needed."""
    wire = encode(query, reply)
    if len(wire) <= limit:
        return wire
    if reply.additional:
        wire = encode(query, replace(reply, additional=()))
        if len(wire) <= limit:
            return wire
    return encode(query, replace(reply, answer=(), authority=(), additional=(), truncated=True))
