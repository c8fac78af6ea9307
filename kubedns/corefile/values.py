"""Corefile values: server keys, zones, durations and numbers, read as CoreDNS reads them.

Each reader raises ``ValueError`` with a message fit to show the operator next to the line.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

DEFAULT_PORT = 53

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_BARE_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_KEY_PORT = re.compile(r"(?P<zone>[^:]*):(?P<port>\d+)")
_MAX_SECONDS = 2**31 - 1


@dataclass(frozen=True, slots=True)
class ServerKey:
    """``[scheme://]zone[:port]`` of a server block, the zone canonical ("" is the root)."""

    scheme: str
    zone: str
    port: int


def server_key(text: str) -> ServerKey:
    """``.:53``, ``dns://cluster.local:53``, ``corp.example``, ``10.0.0.0/8:53`` ..."""
    if has_env_reference(text):
        raise ValueError(f"environment substitution in {text!r} is not done here")
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "dns", text
    port = DEFAULT_PORT
    if (found := _KEY_PORT.fullmatch(rest)) is not None:
        rest, port = found["zone"], int(found["port"])
        if not 0 < port <= 65535:
            raise ValueError(f"port {port} in {text!r} is not 1-65535")
    return ServerKey(scheme.lower(), zone(rest or "."), port)


def zone(text: str) -> str:
    """A zone as CoreDNS takes it: a name, or a CIDR that stands for its reverse zone."""
    if "/" in text:
        return _reverse_zone(text)
    name = text.lower().rstrip(".")
    if name and not is_dns_name(name):
        raise ValueError(f"{text!r} is not a valid DNS name")
    return name


def _reverse_zone(text: str) -> str:
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is neither a DNS name nor a CIDR") from None
    bits = 8 if network.version == 4 else 4
    if network.prefixlen % bits:
        raise ValueError(
            f"{text!r} does not end on a {'octet' if bits == 8 else 'nibble'} boundary, so it "
            "is not one reverse zone"
        )
    if network.version == 4:
        labels = str(network.network_address).split(".")[: network.prefixlen // 8]
        return ".".join([*reversed(labels), "in-addr", "arpa"])
    nibbles = network.network_address.exploded.replace(":", "")[: network.prefixlen // 4]
    return ".".join([*reversed(nibbles), "ip6", "arpa"])


def has_env_reference(text: str) -> bool:
    """Does ``text`` hold ``{$VAR}`` or ``{%VAR%}``, which CoreDNS fills from its environment?"""
    return "{$" in text or "{%" in text


def is_dns_name(name: str) -> bool:
    labels = name.split(".")
    return len(name) <= 253 and all(0 < len(label) <= 63 for label in labels)


def is_reverse(name: str) -> bool:
    return any(name == root or name.endswith("." + root) for root in ("in-addr.arpa", "ip6.arpa"))


def is_within(name: str, parent: str) -> bool:
    """Is ``name`` ``parent`` or below it (both canonical; "" is the root)."""
    return not parent or name == parent or name.endswith("." + parent)


def seconds(text: str) -> float:
    """A Go duration (``5s``, ``1m30s``, ``500ms``) or a bare number of seconds."""
    if _BARE_NUMBER.fullmatch(text):
        total = float(text)
    else:
        total, pos = 0.0, 0
        while pos < len(text):
            part = _DURATION_PART.match(text, pos)
            if part is None:
                raise ValueError(f"{text!r} is not a duration (like 5s, 1m30s or 500ms)")
            total += float(part[1]) * _SECONDS[part[2]]
            pos = part.end()
        if not text:
            raise ValueError("an empty duration")
    if total > _MAX_SECONDS:
        raise ValueError(f"{text!r} is longer than {_MAX_SECONDS} seconds")
    return total


def whole(text: str, *, low: int = 0, high: int = _MAX_SECONDS) -> int:
    """A whole number between ``low`` and ``high``."""
    if not text.isdigit() or not text.isascii() or len(text) > 12:
        raise ValueError(f"{text!r} is not a whole number")
    number = int(text)
    if not low <= number <= high:
        raise ValueError(f"{number} is outside {low}-{high}")
    return number
