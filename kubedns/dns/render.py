"""Where a template meets a query: the one place that decides size, truncation, rotation and
EDNS of every reply we send, error replies included.

Size (DNS Flag Day 2020): a UDP reply is at most the client's EDNS payload size, capped at our
UDP size (1232 by default, also what our OPT advertises), and 512 without EDNS; over TCP at
most 65535. A reply that does not fit keeps the longest run of whole records that does, in
order (answer, authority, additional), as CoreDNS's ``Truncate``: a client that never retries
over TCP (musl before 1.2.4) still gets what fits. TC is set when an answer or authority
record was left out; leaving out additional records needs no TC (RFC 2181 section 9).

EDNS (RFC 6891): a query with an OPT gets one back, whatever the rcode: version 0, our UDP
size, the client's DO bit echoed, the upper rcode bits, no options.

Rotation: a template's group (a multi-record A, AAAA or SRV RRset) starts one record further
on in each reply from the same ``Prepared``. The group's bytes are kept twice over, so any
rotation, and any truncated window of it, is one slice.
"""

from __future__ import annotations

import bisect
import random
import struct
from itertools import accumulate

from kubedns.dns.query import Edns, Query, QueryError
from kubedns.dns.template import Template, error_template
from kubedns.dns.wire import (
    CD,
    HEADER_SIZE,
    OPCODE_MASK,
    QR,
    RD,
    TC,
    opt_record,
)

_FLAGS_COUNTS = struct.Struct("!HHHHH")
"""The header after the ID: flags, then the four section counts."""


def render(template: Template, query: Query, *, udp_size: int) -> bytes:
    """``template`` as the reply to ``query``, once (no rotation state kept)."""
    return Prepared(template, query, udp_size=udp_size).render(
        query.id.to_bytes(2, "big"), query.question
    )


def render_error(error: QueryError, *, udp_size: int, recursion_available: bool) -> bytes:
    """The reply to a packet that failed to parse as a query we answer (FORMERR, NOTIMP):
    the question echoed when it parsed, an OPT when the packet's OPT was sound."""
    template = error_template(error.rcode, recursion_available=recursion_available)
    flags = QR | (error.flags & (OPCODE_MASK | RD | CD)) | template.flags
    opt = _opt_for(error.edns, template, udp_size)
    counts = _FLAGS_COUNTS.pack(flags, 1 if error.question else 0, 0, 0, 1 if opt else 0)
    return error.id.to_bytes(2, "big") + counts + error.question + opt


def _opt_for(edns: Edns | None, template: Template, udp_size: int) -> bytes:
    if edns is None:
        return b""
    return opt_record(udp_size=udp_size, do=edns.do, ext_rcode=template.ext_rcode)


class Prepared:
    """A template fitted to one shape of query (size limit, EDNS, DO, RD, CD), ready to answer
    every query of that shape: ``render(id, question)`` patches in the message ID and the
    question as the client wrote it (same length: the same name up to letter case)."""

    __slots__ = (
        "_after",
        "_before",
        "_before_counts",
        "_cum",
        "_doubled",
        "_flags",
        "_group_budget",
        "_head",
        "_n",
        "_opt",
        "_section",
        "_tail",
        "_turn",
        "_whole_head",
        "size",
    )

    def __init__(self, template: Template, query: Query, *, udp_size: int) -> None:
        self._flags = QR | (query.flags & (OPCODE_MASK | RD | CD)) | template.flags
        self._opt = _opt_for(query.edns, template, udp_size)
        budget = query.limit - HEADER_SIZE - len(query.question) - len(self._opt)
        first, count = template.group
        self._turn = 0
        self._n = 0
        self._after: bytes | None = None
        before, before_counts, truncated = _fit(template, range(first if count > 1 else 0), budget)
        if count < 2 or truncated:  # nothing to rotate, or the group cannot even start
            indexes = range(len(template.records)) if count < 2 else range(first)
            body, counts, truncated = _fit(template, indexes, budget)
            counts[2] += len(self._opt) and 1
            head = _FLAGS_COUNTS.pack(self._flags | (TC if truncated else 0), 1, *counts)
            self._head, self._tail = head, body + self._opt
            self.size = len(head) + len(query.question) + len(self._tail) + 2
            return
        group = template.records[first : first + count]
        self._n = count
        # Start anywhere: a reply cache refilled after every index change must not favour the
        # first endpoint.
        self._turn = random.randrange(count)
        self._before = before
        self._before_counts = before_counts
        before_counts[2] += len(self._opt) and 1
        self._section = _section_of(template, first)
        self._doubled = b"".join(group + group)
        self._cum = [0, *accumulate(len(r) for r in group + group)]
        self._group_budget = budget - len(before)
        left = self._group_budget - self._cum[count]
        if left >= 0:
            indexes = range(first + count, len(template.records))
            self._after, after_counts, truncated = _fit(template, indexes, left)
            whole = [b + a for b, a in zip(before_counts, after_counts, strict=True)]
            whole[self._section] += count
            self._whole_head = _FLAGS_COUNTS.pack(self._flags | (TC if truncated else 0), 1, *whole)
        self.size = len(query.question) + len(before) + len(self._doubled) + 64

    @property
    def is_fixed_size(self) -> bool:
        """Whether every render is as long as the first: all but a truncated rotation, whose
        window of whole records changes with the turn (SRV targets differ in length)."""
        return not self._n or self._after is not None

    def render(self, msg_id: bytes, question: bytes) -> bytes:
        """The reply bytes for a query with this ID and question (both as sent)."""
        if not self._n:
            return msg_id + self._head + question + self._tail
        turn = self._turn
        self._turn = turn + 1 if turn + 1 < self._n else 0
        cum = self._cum
        start = cum[turn]
        if self._after is not None:
            window = self._doubled[start : cum[turn + self._n]]
            tail = self._after + self._opt
            return msg_id + self._whole_head + question + self._before + window + tail
        end = bisect.bisect_right(cum, start + self._group_budget, turn, turn + self._n) - 1
        counts = list(self._before_counts)
        counts[self._section] += end - turn
        head = _FLAGS_COUNTS.pack(self._flags | TC, 1, *counts)
        return msg_id + head + question + self._before + self._doubled[start : cum[end]] + self._opt


def _section_of(template: Template, index: int) -> int:
    answer, authority, _ = template.counts
    return 0 if index < answer else 1 if index < answer + authority else 2


def _fit(template: Template, indexes: range, budget: int) -> tuple[bytes, list[int], bool]:
    """The longest run of ``template``'s records at ``indexes`` within ``budget`` bytes, their
    counts per section, and whether an answer or authority record was left out."""
    records = template.records
    taken: list[bytes] = []
    counts = [0, 0, 0]
    used = 0
    for index in indexes:
        used += len(records[index])
        if used > budget:
            answer, authority, _ = template.counts
            return b"".join(taken), counts, index < answer + authority
        taken.append(records[index])
        counts[_section_of(template, index)] += 1
    return b"".join(taken), counts, False
