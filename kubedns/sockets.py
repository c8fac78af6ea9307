"""Listening sockets made the same way for DNS over UDP and TCP and the ops endpoint.

A listener on ``::`` (``[::]:PORT``) is dual-stack: IPV6_V6ONLY is cleared explicitly, so
IPv4 clients reach it as v4-mapped addresses (``::ffff:10.0.0.1``) whatever the host's
``net.ipv6.bindv6only``. asyncio's ``create_server`` sets IPV6_V6ONLY on every AF_INET6
listener, which left TCP IPv6-only while UDP on the same address answered IPv4: truncation
fallback and NodeLocal DNSCache (which asks cluster names over TCP) then failed for IPv4 clients
of a pod listening on ``[::]:53``. So stream listeners are made here and handed over with
``sock=``. A specific IPv6 address keeps the host's default: only IPv6 clients can reach it.
"""

from __future__ import annotations

import ipaddress
import socket

BACKLOG = socket.SOMAXCONN
"""Connections the kernel queues before they are accepted. The kernel caps it at
``net.core.somaxconn``, as Go's listeners (CoreDNS) ask; asyncio's default of 100 is short for
a burst of node-local caches reconnecting after a restart."""


def family_of(host: str) -> socket.AddressFamily:
    """AF_INET6 for an IPv6 host (``::``, ``::1``), else AF_INET."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def is_any_ipv6(host: str) -> bool:
    """Whether ``host`` is the IPv6 unspecified address, however it is written."""
    try:
        return ipaddress.ip_address(host) == ipaddress.IPv6Address("::")
    except ValueError:
        return False


def datagram_socket(host: str, port: int) -> socket.socket:
    """A UDP socket bound to ``host:port``; dual-stack on ``::``."""
    return _bound(host, port, socket.SOCK_DGRAM)


def stream_listener(host: str, port: int, *, backlog: int = BACKLOG) -> socket.socket:
    """A listening TCP socket on ``host:port`` (non-blocking, SO_REUSEADDR so a restart
    binds while old connections are in TIME_WAIT); dual-stack on ``::``."""
    sock = _bound(host, port, socket.SOCK_STREAM)
    try:
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _bound(host: str, port: int, kind: socket.SocketKind) -> socket.socket:
    family = family_of(host)
    info = socket.getaddrinfo(host, port, family, kind)
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if is_any_ipv6(host):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(info[0][4])
    except BaseException:
        sock.close()
        raise
    return sock


def unmapped(host: str) -> str:
    """A client address as one client: ``::ffff:10.0.0.1`` (an IPv4 client of a dual-stack
    socket) becomes ``10.0.0.1``, as Go's ``net.IP.String`` (CoreDNS) writes it."""
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host
