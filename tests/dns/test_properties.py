"""Properties of the DNS codec against inputs a client chooses."""

from __future__ import annotations

import dns.message
import dns.name

from kubedns.dns.query import parse_query


def test_only_ascii_letters_are_folded_in_a_qname() -> None:
    """RFC 4343: DNS names compare case-insensitively for ASCII letters only. ``\\xc0`` and
    ``\\xe0`` are different labels; folding them (as ``str.lower`` on latin-1 did) made the
    stages that read ``qname`` see one name where the reply cache's key sees two."""
    upper, lower = (
        parse_query(dns.message.make_query(dns.name.Name([label, b"Ex", b""]), "A").to_wire())
        for label in (b"\xc0", b"\xe0")
    )
    assert upper is not None and lower is not None
    assert (upper.qname, lower.qname) == ("\xc0.ex", "\xe0.ex")
    assert upper.key != lower.key
