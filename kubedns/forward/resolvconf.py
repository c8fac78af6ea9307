"""Default upstreams from resolv.conf, and the checks that keep us from forwarding to ourselves.

Forwarding to our own listener turns one query into a storm until every deadline runs out.
The classic path there is a node whose resolv.conf names a loopback stub resolver
(systemd-resolved's 127.0.0.53): inside a pod, 127.0.0.53 is the pod's own loopback, where
nothing listens, or, with host networking, a resolver that may well ask us back.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from pathlib import Path

from kubedns.config import HostPort

log = logging.getLogger(__name__)

DEFAULT_RESOLV_CONF = Path("/etc/resolv.conf")


class ResolvConfError(ValueError):
    """resolv.conf cannot be read or names no usable nameserver."""


def nameservers(path: Path = DEFAULT_RESOLV_CONF) -> tuple[HostPort, ...]:
    """The ``nameserver`` lines of a resolv.conf, port 53, in file order (glibc uses 3 max,
    we keep all: the forwarder's own limit applies)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ResolvConfError(f"cannot read {path}: {exc.strerror}") from exc
    found: list[HostPort] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        host = fields[1].split("%", 1)[0]  # drop an IPv6 zone id (fe80::1%eth0)
        try:
            found.append(HostPort(str(ipaddress.ip_address(host)), 53))
        except ValueError:
            log.warning("%s line %d: %r is not an IP address; skipped", path, number, fields[1])
    if not found:
        raise ResolvConfError(f"{path} names no nameserver; configure forward.upstreams")
    return tuple(found)


def is_self(upstream: HostPort, listen: Sequence[HostPort]) -> bool:
    """Would sending to ``upstream`` reach one of our own ``listen`` sockets?

    A wildcard listener (0.0.0.0, ::) on the same port receives on every local address, so
    any loopback or unspecified upstream on that port is us too. Other local interface
    addresses are not enumerated here; the runtime loop probe catches those.
    """
    target = ipaddress.ip_address(upstream.host)
    for ours in listen:
        if ours.port != upstream.port:
            continue
        here = ipaddress.ip_address(ours.host)
        if here == target or target.is_unspecified:
            return True
        if here.is_unspecified and target.is_loopback:
            return True
    return False


def is_loopback(upstream: HostPort) -> bool:
    return ipaddress.ip_address(upstream.host).is_loopback


def loopback_warning(upstream: HostPort, path: Path) -> str:
    return (
        f"nameserver {upstream.host} in {path} is a loopback address: in a pod this is the "
        "pod itself, not the "
        "node's resolver (typically systemd-resolved's 127.0.0.53 copied from the node); "
        "queries will fail or loop. Set forward.upstreams or point the kubelet's --resolv-conf "
        "at /run/systemd/resolve/resolv.conf"
    )
