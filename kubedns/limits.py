"""The open-files limit: raised to the hard limit at start, and the TCP connection cap fitted
under it with room for the forwarder's sockets.

Every TCP client connection and every forwarded exchange (one fresh socket each, RFC 5452)
holds a descriptor. Under the common limit of 1,024, 1,000 idle TCP connections left no
descriptor for upstream sockets: forwarded queries failed with ``EMFILE``. So the TCP cap is
what is left once the forwarder's share and a fixed reserve are set aside.
"""

from __future__ import annotations

import dataclasses
import logging

from kubedns.config import Config

log = logging.getLogger(__name__)

RESERVED_FILES = 64
"""Descriptors kept for all but client connections and upstream exchanges: standard streams,
the listeners, the event loop's own, the ops server and its scrapes, health probes, the API
watch, the log file."""

MIN_TCP_CONNECTIONS = 8
"""The TCP cap never goes below this, whatever the limit: TCP is the fallback for truncated
replies and must stay usable."""

UNLIMITED_TARGET = 1 << 20
"""The soft limit asked for when the hard limit is unlimited (Linux's default ``nr_open``)."""


def raise_open_files() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (logged); return the soft limit now
    in force. Where there is no such limit (not POSIX) a large number is returned."""
    try:
        import resource  # noqa: PLC0415  (POSIX only)
    except ImportError:
        return UNLIMITED_TARGET
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return UNLIMITED_TARGET
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("open-files limit stays at %d: cannot raise it to %d (%s)", soft, target, exc)
        return soft
    log.info("open-files limit raised from %d to %d (the hard limit)", soft, target)
    return target


def fit_tcp_connections(max_connections: int, *, open_files: int, forwarded: int) -> int:
    """The TCP connection cap that fits ``open_files`` with ``forwarded`` exchanges in flight
    (at most half of what is left after ``RESERVED_FILES``) and the reserve."""
    budget = open_files - RESERVED_FILES
    forward_share = min(forwarded, budget // 2)
    return min(max_connections, max(budget - forward_share, MIN_TCP_CONNECTIONS))


def fit_to_open_files(config: Config) -> Config:
    """Raise the open-files limit, then return ``config`` with ``tcp.max_connections``
    lowered (and logged) if the configured cap would not fit under it."""
    open_files = raise_open_files()
    forwarded = config.forward.max_concurrent if config.forward.enabled else 0
    wanted = config.tcp.max_connections
    fitted = fit_tcp_connections(wanted, open_files=open_files, forwarded=forwarded)
    if fitted == wanted:
        return config
    log.warning(
        "tcp.max_connections lowered from %d to %d to fit the open-files limit of %d "
        "(forward.max_concurrent %d, %d reserved); raise the hard limit (ulimit -Hn) to keep it",
        wanted,
        fitted,
        open_files,
        forwarded,
        RESERVED_FILES,
    )
    return dataclasses.replace(config, tcp=dataclasses.replace(config.tcp, max_connections=fitted))
