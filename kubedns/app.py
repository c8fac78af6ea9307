"""The composition root: builds the index, the answer chain and the listeners, and runs them.

The chain is fixed and written once here: the cluster zone answers what it owns; everything
else goes to the fallback (REFUSED until a forwarder is configured).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import signal
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubedns import limits, logs, metrics, sockets
from kubedns.answer.cluster import ClusterZone
from kubedns.answer.respond import Responder
from kubedns.config import Config, ConfigError, HostPort
from kubedns.forward import Forwarder, ForwardError, SelfForwardError
from kubedns.forward.cache import ReplyCache
from kubedns.index import RecordIndex
from kubedns.reload import ConfigSource, Reloader, digest, forget_upstreams, retire
from kubedns.sources.events import watched_kinds
from kubedns.sources.snapshot import load_snapshot
from kubedns.transport import udp
from kubedns.transport.querylog import QueryLog
from kubedns.transport.tcp import TCPServer

if TYPE_CHECKING:
    from kubedns.ops import OpsServer
    from kubedns.sources.kube import KubeSource

log = logging.getLogger(__name__)
SNAPSHOT_KINDS = watched_kinds(pods="verified")


@dataclass
class Server:
    """One running kubedns: start, serve, stop. Tests drive it in-process."""

    config: Config
    index: RecordIndex = field(init=False)
    responder: Responder = field(init=False)
    address: HostPort = field(init=False)
    _udp: udp.UDPListener | None = field(init=False, default=None)
    _tcp: asyncio.Server | None = field(init=False, default=None)
    _tcp_handler: TCPServer | None = field(init=False, default=None)
    forwarder: Forwarder | None = field(init=False, default=None)
    ops: OpsServer | None = field(init=False, default=None)
    stopping: bool = field(init=False, default=False)
    source: KubeSource | None = field(init=False, default=None)
    _stop_source: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        namespace, _, name = self.config.dns_service.partition("/")
        self.kinds = watched_kinds(pods=self.config.pods)
        self.index = RecordIndex(
            zone=self.config.zone, dns_service=(namespace, name), required_kinds=self.kinds
        )
        self.address = self.config.listen
        self.forwarder = self.build_forwarder(self.config)
        self.tally = metrics.Tally() if self.config.ops.request_metrics else None
        self.query_log = QueryLog(enabled=self.config.logging.queries)
        settings = self.config.logging
        logs.ERRORS.configure(lines=settings.error_lines, interval=settings.error_interval)
        self.responder = Responder(
            ClusterZone(self.index, self.config),
            fallback=self.forwarder,
            replies=self.config.replies,
            tally=self.tally,
        )
        index = self.index
        metrics.ZONE_SERIAL.set_function(lambda: index.serial & 0xFFFFFFFF)
        metrics.SYNCED.set_function(lambda: int(index.is_synced))
        metrics.ZONE_OWNER_NAMES.set_function(index.owner_count)
        if self.config.ops.listen is not None:
            # Imported only when configured: aiohttp costs about 10 MB and 0.1 s at start.
            from kubedns.ops import OpsServer  # noqa: PLC0415

            self.ops = OpsServer(self.config.ops.listen, is_ready=self.is_ready)

    def is_ready(self) -> bool:
        """Synced and not shutting down: what ``/ready`` reports."""
        return self.index.is_synced and not self.stopping

    def build_forwarder(
        self, config: Config, *, reply_cache: ReplyCache | None = None
    ) -> Forwarder | None:
        """The fixed chain's last link. Without configured upstreams the node's resolv.conf is
        used; if that names none, names outside the cluster are REFUSED (and logged here)."""
        if not config.forward.enabled:
            return None
        try:
            return Forwarder(
                config.forward,
                config.cache,
                # The bound address too: with port 0 the kernel chose it after the start.
                listen=[config.listen, self.address],
                never_forward=[config.zone],
                replies=config.replies,
                reply_cache=reply_cache,
            )
        except SelfForwardError as exc:
            raise ConfigError(str(exc)) from exc
        except ForwardError as exc:
            if config.forward.upstreams:
                raise ConfigError(str(exc)) from exc
            log.warning("forwarding off, names outside %s get REFUSED: %s", config.zone, exc)
            return None

    def load_sources(self) -> None:
        """Load the snapshot into the index, or prepare the API watch (started by ``start``).

        A broken snapshot or unusable credentials stop the start here, before any socket."""
        if self.config.snapshot is not None:
            # Every kind DNS can use is validated, so a broken Pod stops the start even in a
            # mode that does not keep Pods; only the watched kinds reach the index.
            for event in load_snapshot(self.config.snapshot, kinds=SNAPSHOT_KINDS):
                if event.kind in self.kinds:
                    self.index.apply(event)
            log.info("loaded snapshot %s (serial %d)", self.config.snapshot, self.index.serial)
            release_freed_memory()
            return
        # Imported here: the kubernetes client costs about 20 MB of RSS and 0.3 s to import,
        # which a server answering from a snapshot never needs.
        from kubedns.sources.kube import (  # noqa: PLC0415
            KubeConfigError,
            KubeSource,
            api_client_from,
        )

        try:
            api = api_client_from(self.config.kubeconfig)
        except KubeConfigError as exc:
            raise ConfigError(
                f"no cluster data: {exc}. Give --kubeconfig FILE, run in a pod, "
                "or serve a dump with --snapshot FILE"
            ) from exc
        self.source = KubeSource(
            api, kinds=self.kinds, sink=self.index.apply, settings=self.config.watch
        )

    async def start(self) -> None:
        """Start the watch and wait (bounded) for its first lists, then open the listeners."""
        self.config = limits.fit_to_open_files(self.config)  # before any connection is taken
        if self.source is not None:
            self._spawn(self.source.run(self._stop_source), name="kube-source")
            if await self.source.wait_synced():
                log.info("cluster listed (serial %d)", self.index.serial)
                release_freed_memory()
        await self._listen()
        self._spawn(_flush_error_log(), name="error-log-flush")
        if self.ops is not None:
            await self.ops.start()
        if self.forwarder is not None:
            await self.forwarder.start()
            self._spawn(self._check_loop(self.forwarder), name="forward-loop-check")

    async def _listen(self) -> None:
        """Bind UDP and TCP on one port. With port 0 the kernel picks the UDP port, and that
        port may be taken for TCP, so a few fresh picks are tried before giving up."""
        listen = self.config.listen
        attempts = 20 if listen.port == 0 else 1
        for attempt in range(attempts):
            try:
                await self._bind(listen)
                break
            except OSError:
                self._close_listeners()
                if attempt == attempts - 1:
                    raise
        log.info("serving DNS on %s (udp and tcp), zone %s", self.address, self.config.zone)

    async def _bind(self, listen: HostPort) -> None:
        self._udp = await udp.listen(
            self.responder,
            listen.host,
            listen.port,
            batch=self.config.udp.batch,
            max_pending=udp_pending_limit(self.config),
            tally=self.tally,
            query_log=self.query_log,
        )
        _enlarge_receive_buffer(self._udp.socket)
        port = self._udp.socket.getsockname()[1]
        self._tcp_handler = TCPServer(
            self.responder, self.config.tcp, tally=self.tally, query_log=self.query_log
        )
        # Our own socket: create_server would make a listener on "::" IPv6-only.
        listener = sockets.stream_listener(listen.host, port)
        try:
            self._tcp = await asyncio.get_running_loop().create_server(
                self._tcp_handler, sock=listener
            )
        except BaseException:
            listener.close()
            raise
        self.address = HostPort(listen.host, port)
        server = f"dns://{self.address}"  # CoreDNS's server label
        metrics.CACHE_STATS.server = server
        if self.tally is not None:
            self.tally.server = server
            metrics.REQUESTS.add(self.tally)

    def _close_listeners(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
        if self._tcp_handler is not None:
            self._tcp_handler.close_all()
        if self._udp is not None:
            self._udp.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None], *, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check_loop(self, forwarder: Forwarder) -> None:
        """CoreDNS's ``loop`` check: if our probe comes back, stop forwarding rather than
        amplify every query around the loop; names outside the cluster then get REFUSED."""
        if await forwarder.detect_loop() and self.responder.fallback is forwarder:
            log.error("forwarding disabled: fix the upstreams and reload or restart kubedns")
            self.responder.fallback = None

    # -- reload hooks (kubedns.reload decides what changes; these do it) -------------------

    def swap_forwarder(self, forwarder: Forwarder | None, *, new_upstreams: bool) -> None:
        """Send names outside the cluster to ``forwarder`` (started) from the next query on.
        The old one finishes the queries it holds and is closed after them.

        With ``new_upstreams`` the loop check runs again; without, forwarding that a detected
        loop turned off stays off (the same upstreams would loop again)."""
        old, self.forwarder = self.forwarder, forwarder
        looped = old is not None and self.responder.fallback is None
        if new_upstreams or not looped:
            self.responder.fallback = forwarder
        if old is not None:
            self._spawn(self._retire(old), name="forward-retire")
        if forwarder is not None and new_upstreams:
            self._spawn(self._check_loop(forwarder), name="forward-loop-check")

    async def _retire(self, old: Forwarder) -> None:
        await retire(old, timeout=old.timeout + DRAIN_MARGIN)
        forget_upstreams(old, keep=self.forwarder)

    def set_limits(self, config: Config) -> None:
        """Transport limits and timeouts from now on (for open TCP connections too)."""
        if self._tcp_handler is not None:
            self._tcp_handler.settings = config.tcp
        if self._udp is not None:
            self._udp.max_pending = udp_pending_limit(config)

    async def stop(self) -> None:
        """Not ready, a lame-duck period, stop taking queries, finish and send every reply
        in flight, close, then stop the watch through its stop event (last, so answers stay
        current to the end).

        Taking no more queries keeps the sockets open: the UDP socket stops being read but
        still sends, and TCP stops accepting and reading while its connections write the
        replies they owe. A forwarded query gives up after ``forward.timeout`` (with SERVFAIL,
        or a stale answer), so the drain waits that long, plus a margin, before closing.
        """
        self.stopping = True
        if self.config.ops.lame_duck > 0:
            log.info(
                "lame duck: answering %.1f s more while /ready fails", self.config.ops.lame_duck
            )
            await asyncio.sleep(self.config.ops.lame_duck)
        self._close_listeners()
        timeout = self.config.forward.timeout + DRAIN_MARGIN
        log.info("taking no more queries; sending the replies in flight (at most %.1f s)", timeout)
        drains = []
        if self._udp is not None:
            drains.append(self._udp.drain(timeout))
        if self._tcp_handler is not None:
            drains.append(self._tcp_handler.drain(timeout))
        await asyncio.gather(*drains)
        if self._tcp is not None:
            await self._tcp.wait_closed()
        if self.forwarder is not None:
            await self.forwarder.close()
        self._stop_source.set()
        for task in self._tasks:
            if task.get_name() in ("forward-loop-check", "error-log-flush"):
                task.cancel()  # the watch ends by the stop event, these have no such thing
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ops is not None:
            await self.ops.stop()
        logs.ERRORS.flush_all()
        log.info("stopped")


async def _flush_error_log() -> None:
    """Write the error log's summaries once their interval is over, even if no further
    error comes to trigger them."""
    while True:
        await asyncio.sleep(ERROR_LOG_TICK)
        logs.ERRORS.flush()


ERROR_LOG_TICK = 1.0
"""Seconds between two looks for error-log intervals that are over."""


def udp_pending_limit(config: Config) -> int:
    """Forwarded UDP queries awaited at once. The forwarder answers REFUSED past
    ``max_concurrent`` itself; see kubedns.transport.udp for why twice that."""
    return 2 * config.forward.max_concurrent


DRAIN_MARGIN = 1.0
"""Seconds the shutdown drain waits past ``forward.timeout``: time for a forwarded query that
timed out to be answered (SERVFAIL or stale) and its reply sent."""


def release_freed_memory() -> None:
    """Return the heap freed after the initial lists to the OS. Decoding tens of thousands of
    objects leaves free memory that glibc keeps for reuse, and the process will not need it
    again; RSS is what the scheduler's limits and the operator's dashboards see."""
    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc (musl, macOS): nothing to trim


UDP_RECEIVE_BUFFER = 4 << 20
"""Bytes of kernel buffer for queries waiting to be read. A burst of thousands of queries in
flight overflows the default (about 200 KiB) and the kernel drops them (bench/zone.py's burst
load showed drops equal to RcvbufErrors); the kernel caps this at net.core.rmem_max."""


SO_RCVBUFFORCE = 33
"""Linux's SO_RCVBUFFORCE (Python does not export it): past net.core.rmem_max, with
CAP_NET_ADMIN."""


def _enlarge_receive_buffer(sock: socket.socket | None) -> None:
    """Ask for ``UDP_RECEIVE_BUFFER``; with CAP_NET_ADMIN even past net.core.rmem_max, else up
    to it (the kernel caps a plain request silently)."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, UDP_RECEIVE_BUFFER)
        return
    except OSError:
        pass  # not permitted (no CAP_NET_ADMIN) or not Linux
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
    except OSError as exc:
        log.warning("cannot enlarge the UDP receive buffer: %s", exc)


async def run(config: Config, source: ConfigSource | None = None, *, content: str = "") -> None:
    """Serve until SIGTERM or SIGINT; reload ``source`` on SIGHUP and when the file changes.

    ``content`` is the digest of the file's bytes ``config`` was loaded from."""
    # Handlers first: a signal that comes while the server starts must not take the default
    # action (SIGHUP's ends the process); a SIGHUP during the start reloads once it is done.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _on_stop_signal, signum, stop)
    reloader = Reloader(source or ConfigSource(None), content=content or digest(b""))
    loop.add_signal_handler(signal.SIGHUP, reloader.request)
    server = Server(config)
    server.load_sources()
    await server.start()
    reloading = asyncio.create_task(reloader.run(server), name="config-reload")
    try:
        await stop.wait()
    finally:
        reloading.cancel()  # a reload is applied whole or not at all; see Reloader.run
        await asyncio.gather(reloading, return_exceptions=True)
        await server.stop()


def _on_stop_signal(signum: int, stop: asyncio.Event) -> None:
    if not stop.is_set():
        log.info("%s: stopping", _name(signum))
    stop.set()


def _name(signum: int) -> str:
    return signal.Signals(signum).name
