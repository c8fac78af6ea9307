"""Reloading the configuration while serving: on SIGHUP, and when the config file changes.

Kubernetes updates a mounted ConfigMap by writing a new timestamped directory and swapping the
``..data`` symlink, so ``config.yaml`` (a symlink into ``..data``) changes content without any
write to the file itself. So the file is polled: read every ``reload.interval`` seconds and
hashed (SHA-512, as CoreDNS's ``reload`` plugin does); a new hash is reloaded, the same hash
does nothing. SIGHUP reloads at once, even if the content looks unchanged (it also retries a
config that failed before); applying an unchanged config changes nothing.

A reload is all or nothing. The new content is parsed and validated exactly as at start (the
command-line flags still override it), and the new forwarder is built and started, before
anything running is touched; any error keeps the running config, logs the message that
``kubedns check-config`` prints and counts a failed reload. Then everything is swapped in one
step on the event loop, between two queries. Forwarded queries in flight finish on the old
forwarder, which is closed once they are done: no query is dropped.

Settings bound to sockets or to the cluster watch (``RESTART_KEYS``) cannot change in place;
a change to them is named in the log and the rest of the new config still applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from kubedns import limits, logs, metrics
from kubedns.answer.cluster import ClusterZone
from kubedns.config import Config, ConfigError, load
from kubedns.sources.events import Replace, watched_kinds
from kubedns.sources.snapshot import SnapshotError, load_snapshot

if TYPE_CHECKING:
    from kubedns.app import Server
    from kubedns.forward import Forwarder

log = logging.getLogger(__name__)
T = TypeVar("T")

HASH = "sha512"
"""The hash of the config file's bytes, as CoreDNS's ``coredns_reload_version_info`` labels it."""

RESTART_KEYS = (
    "listen",
    "ops.listen",
    "snapshot",
    "kubeconfig",
    "cluster_domain",
    "dns_service",
    "udp.batch",
    "watch",
)
"""Dotted keys that take effect only at start: the listening sockets, the source of cluster
data and its watch settings, and the zone the record index was built for."""

RETIRE_POLL = 0.05
"""Seconds between two looks at a replaced forwarder's queries in flight."""


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """Where the running config comes from: the file (if any) and the flags over it."""

    path: Path | None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def read(self) -> bytes:
        """The file's bytes now (empty without a file); ``ConfigError`` if it cannot be read.
        Following the symlinks at each read is what sees a ConfigMap's ``..data`` swap."""
        if self.path is None:
            return b""
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {self.path}: {exc.strerror}") from exc

    def parse(self, data: bytes) -> Config:
        """``data`` (read by ``read``) with the flags over it, validated as ``config.load``."""
        if self.path is None:
            return load(None, self.overrides)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {self.path} is not UTF-8: {exc}") from exc
        return load(self.path, self.overrides, text=text)


def digest(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest()


def _get(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def _set(config: Any, dotted: str, value: Any) -> Any:
    """``config`` with the field at ``dotted`` replaced (frozen dataclasses all the way)."""
    head, _, rest = dotted.partition(".")
    if rest:
        value = _set(getattr(config, head), rest, value)
    return dataclasses.replace(config, **{head: value})


def needs_restart(running: Config, new: Config) -> list[str]:
    """The keys whose change only a restart applies, among those that differ.

    ``pods`` is one of them when it moves to or from ``verified`` while the API is watched:
    that mode adds the Pod list and watch, and the watched kinds (and the index's readiness,
    which waits for each of them) are fixed when the source starts. Serving a snapshot, the
    Pods are read from it again instead; ``disabled`` and ``insecure`` answer from the index
    as it is, so moving between them applies at once."""
    changed = [key for key in RESTART_KEYS if _get(running, key) != _get(new, key)]
    if running.snapshot is None and _pods_kind_changes(running, new):
        changed.append("pods")
    return changed


def _pods_kind_changes(running: Config, new: Config) -> bool:
    """Whether the index must start or stop keeping Pods."""
    return (running.pods == "verified") != (new.pods == "verified")


def pod_events(config: Config) -> list[Replace]:
    """What the index must apply to keep the Pods ``config`` needs: every Pod of the served
    snapshot for ``verified``, none otherwise (freeing their memory)."""
    if config.pods != "verified" or config.snapshot is None:
        return [Replace("Pod", ())]
    try:
        return load_snapshot(config.snapshot, kinds=("Pod",))
    except SnapshotError as exc:
        raise ConfigError(str(exc)) from exc


def changed_sections(running: Config, new: Config) -> list[str]:
    """The top-level settings that differ (for the log line of a reload)."""
    names = [f.name for f in dataclasses.fields(Config)]
    return [name for name in names if getattr(running, name) != getattr(new, name)]


def applicable(running: Config, new: Config) -> tuple[Config, list[str]]:
    """``new`` with every restart-only key kept at its running value, and those keys."""
    restart = needs_restart(running, new)
    for key in restart:
        new = _set(new, key, _get(running, key))
    # A limit the start lowered to fit the open-files limit is fitted again, not undone.
    return limits.fit_to_open_files(new), restart


def _routing(config: Config) -> tuple[object, ...]:
    """What decides where a forwarded name goes: a change drops cached answers, which came
    from the old upstreams (an operator replacing a broken resolver wants its answers gone)."""
    forward = config.forward
    return (forward.enabled, forward.upstreams, forward.stub_domains)


def _forwarder_changed(running: Config, new: Config) -> bool:
    return (
        running.forward != new.forward
        or running.cache != new.cache
        or running.replies != new.replies
    )


def _keeps_cache(running: Config, new: Config) -> bool:
    """Whether the forwarded answers cached so far stay valid under ``new``: same cache
    bounds, same upstreams, and the same reply settings the entries were shaped by."""
    return (
        running.cache == new.cache
        and running.replies == new.replies
        and _routing(running) == _routing(new)
    )


@dataclass(frozen=True, slots=True)
class Applied:
    """What a reload did: the top-level settings it changed, and the changed ones it could
    not apply (they wait for a restart)."""

    changed: list[str]
    restart: list[str]


async def apply(server: Server, new: Config) -> Applied:
    """Make ``new`` the running config of ``server``, but for the restart-only keys.

    Everything that can fail (reading the snapshot's Pods, building the forwarder, which
    reads resolv.conf and refuses to forward to ourselves) happens before the swap, so a
    failure leaves the server as it was; the forwarder is built last, so a cancelled reload
    leaves no forwarder behind.
    """
    running = server.config
    target, restart = applicable(running, new)
    changed = changed_sections(running, target)
    pods: list[Replace] = []
    if _pods_kind_changes(running, target):  # serving a snapshot: it is read again
        pods = await in_thread(functools.partial(pod_events, target))
    forwarder: Forwarder | None = None
    rebuild = _forwarder_changed(running, target)
    if rebuild:
        old = server.forwarder
        keep = old.reply_cache if old is not None and _keeps_cache(running, target) else None
        forwarder = server.build_forwarder(target, reply_cache=keep)
        if forwarder is not None:
            await forwarder.start()
    # From here on nothing awaits: queries see the old config or the new one, never a mix.
    if target.logging != running.logging:
        logs.setup(target.logging)
    server.config = target
    if pods:
        for event in pods:
            server.index.apply(event)
        server.kinds = watched_kinds(pods=target.pods)
        server.index.require(server.kinds)
    if (target.ttl, target.pods, target.replies) != (running.ttl, running.pods, running.replies):
        server.responder.reconfigure(ClusterZone(server.index, target), target.replies)
    server.set_limits(target)
    if rebuild:
        new_upstreams = destinations(forwarder) != destinations(server.forwarder)
        server.swap_forwarder(forwarder, new_upstreams=new_upstreams)
    return Applied(changed, restart)


async def retire(old: Forwarder, *, timeout: float) -> None:
    """Close a replaced forwarder once its forwarded queries are answered (at most
    ``timeout``: its own deadline plus a margin). Until then its health probes keep running,
    so a query in flight still fails over as before the reload."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while old.in_flight and loop.time() < deadline:
        await asyncio.sleep(RETIRE_POLL)
    await old.close()


def destinations(forwarder: Forwarder | None) -> set[tuple[str, str]]:
    """Where ``forwarder`` sends names: (pool domain, upstream) pairs."""
    if forwarder is None:
        return set()
    return {(pool.name, upstream.label) for pool in forwarder.pools for upstream in pool.upstreams}


def forget_upstreams(old: Forwarder, *, keep: Forwarder | None) -> None:
    """Drop the per-upstream series of upstreams ``old`` had and ``keep`` has not, so a
    removed upstream does not stay on dashboards as up (or down) forever."""
    gone = {label for _, label in destinations(old)} - {label for _, label in destinations(keep)}
    for label in gone:
        with contextlib.suppress(KeyError):  # never set: nothing to drop
            metrics.FORWARD_UPSTREAM_UP.remove(label)


async def in_thread(work: Callable[[], T]) -> T:
    """``work()`` in a daemon thread: a hung volume (a network file system) must stop neither
    the event loop answering queries nor the process exiting (asyncio's executor threads
    are joined at exit)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not done.done():  # else the reloader was cancelled meanwhile
            outcome()

    def run() -> None:
        try:
            result = work()
        except Exception as exc:
            outcome = functools.partial(done.set_exception, exc)
        else:
            outcome = functools.partial(done.set_result, result)
        with contextlib.suppress(RuntimeError):  # the loop closed: we are exiting
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name="config-read", daemon=True).start()
    return await done


class Reloader:
    """Reloads ``source`` into a running server: on ``request()`` (SIGHUP) and on a change of
    the file, seen by reading it every ``reload.interval`` seconds.

    Args:
        source: the config file and the flags over it.
        content: the digest of the bytes the running config was loaded from.
    """

    def __init__(self, source: ConfigSource, *, content: str) -> None:
        self.source = source
        self._seen = content
        """The digest (or read error) last acted on: a poll that finds it again does nothing."""
        self._wake = asyncio.Event()
        self._forced = False
        metrics.CONFIG_LAST_RELOAD_SUCCESSFUL.set(1)
        metrics.CONFIG_LAST_RELOAD_SUCCESS.set(time.time())
        self._record_version(content)

    def request(self) -> None:
        """Reload now (the SIGHUP handler); a reload under way finishes first."""
        log.info("SIGHUP: reloading the configuration")
        self._forced = True
        self._wake.set()

    async def run(self, server: Server) -> None:
        """Forever (cancel it to stop): wait for a request or the next poll, reload if due.

        Cancelling is safe: the only wait inside a reload is the read of the file; applying
        it never yields to the event loop, so it is done whole or not begun."""
        while True:
            interval = server.config.reload.interval
            with contextlib.suppress(TimeoutError):  # the poll is due
                await asyncio.wait_for(self._wake.wait(), interval or None)
            self._wake.clear()
            forced, self._forced = self._forced, False
            if forced and self.source.path is None:
                log.info("no config file (--config) to reload; the flags stay as they are")
                continue
            await self.reload(server, forced=forced)

    async def reload(self, server: Server, *, forced: bool) -> bool:
        """Read the file and apply it if it changed (or if ``forced``); True if applied."""
        try:
            data = await in_thread(self.source.read)
        except ConfigError as exc:
            # Remembered like a digest, so a file missing for an hour is reported once.
            seen, self._seen = self._seen, f"error: {exc}"
            if forced or seen != self._seen:
                self._failed(f"config error: {exc}")
            return False
        content = digest(data)
        if content == self._seen and not forced:
            return False
        self._seen = content
        try:
            new = self.source.parse(data)
        except ConfigError as exc:
            self._failed(f"config error: {exc}")  # worded as check-config and serve print it
            return False
        try:
            applied = await apply(server, new)
        except ConfigError as exc:  # the new forwarder refused it (self-forwarding, ...)
            self._failed(str(exc))
            return False
        except Exception as exc:  # a bug: say so loudly, but keep serving and reloading
            log.exception("config reload failed unexpectedly")
            self._failed(f"internal error: {exc!r}")
            return False
        self._succeeded(content, applied)
        return True

    def _failed(self, message: str) -> None:
        log.error("config reload failed, the running config stays: %s", message)
        metrics.CONFIG_RELOADS.labels("failed").inc()
        metrics.RELOAD_FAILED.inc()
        metrics.CONFIG_LAST_RELOAD_SUCCESSFUL.set(0)

    def _succeeded(self, content: str, applied: Applied) -> None:
        metrics.CONFIG_RELOADS.labels("success").inc()
        metrics.CONFIG_LAST_RELOAD_SUCCESSFUL.set(1)
        metrics.CONFIG_LAST_RELOAD_SUCCESS.set(time.time())
        self._record_version(content)
        log.info(
            "config reloaded from %s (%s %s): %s",
            self.source.path,
            HASH,
            content[:16],
            "changed " + ", ".join(applied.changed) if applied.changed else "nothing changed",
        )
        if applied.restart:
            log.warning(
                "config reload: %s changed but take effect only at a restart; "
                "everything else is applied",
                ", ".join(applied.restart),
            )

    def _record_version(self, content: str) -> None:
        if self.source.path is None:
            return  # no file, no hash: the flags cannot change while running
        metrics.RELOAD_VERSION.clear()
        metrics.RELOAD_VERSION.labels(HASH, content).set(1)
