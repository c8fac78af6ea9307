"""Reloading the config of a running ``kubedns serve``: SIGHUP, and a ConfigMap update.

The config lives in a directory laid out as the kubelet mounts a ConfigMap: ``config.yaml`` is
a symlink to ``..data/config.yaml``, ``..data`` a symlink to a timestamped directory, and an
update writes a new directory and swaps ``..data`` atomically. The upstreams are two real
dnsmasq processes that answer the same name differently, so where a query went is in its
answer. Every wait is for a log line, a reply or a metric, bounded only against a hang.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import threading
import urllib.request
from collections.abc import AsyncIterator, Generator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from kubedns.config import HostPort
from kubedns.logs import escape
from tests.forward.conftest import _run, dnsmasq_argv
from tests.forward.fakes import free_port
from tests.test_stop_signals import COMMAND, WAIT, Kubedns, bound_address
from tests.zone.server import CLUSTER

PROBE = "probe.example"
FIRST, SECOND = "192.0.2.1", "192.0.2.2"
CLUSTER_NAME = "web.shop.svc.cluster.local"
PICKED = 0
"""The DNS and ops ports in a test's config: the kernel picks them at the bind and
``serving`` reads them from the log, so no other process can take them first. A reload that
keeps the config's ``listen`` keeps the sockets (restart-only settings)."""


def _dnsmasq(answer: str) -> Generator[HostPort, None, None]:
    def argv(port: int) -> list[str]:
        return dnsmasq_argv(port, "--local-ttl=1", f"--address=/{PROBE}/{answer}")

    yield from _run(argv)


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[HostPort, HostPort]]:
    """Two dnsmasq: the first answers probe.example (and below) with FIRST, the other SECOND."""
    first, second = _dnsmasq(FIRST), _dnsmasq(SECOND)
    try:
        yield next(first), next(second)
    finally:
        for started in (first, second):
            started.close()


class ConfigMapVolume:
    """A directory as the kubelet mounts a ConfigMap, updated the way the kubelet does it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "config.yaml"
        self._versions = itertools.count()

    def publish(self, settings: dict[str, Any] | str) -> None:
        """Write a new timestamped directory, swap ``..data`` to it, drop the old one."""
        text = settings if isinstance(settings, str) else json.dumps(settings)
        version = self.root / f"..2026_12_01_00_00_00.{next(self._versions):04d}"
        version.mkdir()
        (version / "config.yaml").write_text(text)
        data = self.root / "..data"
        old = data.resolve() if data.is_symlink() else None
        staging = self.root / "..data_tmp"
        staging.symlink_to(version.name)
        staging.replace(data)  # rename(2): atomic, as the kubelet's AtomicWriter
        if not self.path.is_symlink():
            self.path.symlink_to("..data/config.yaml")
        if old is not None:
            for file in old.iterdir():
                file.unlink()
            old.rmdir()


class Reloading(Kubedns):
    """A ``kubedns serve --config`` process, its ops port, and helpers to wait on it."""

    ops: HostPort

    async def wait_for_lines(self, text: str, count: int) -> list[str]:
        """Wait until ``count`` lines contain ``text``; all of them."""
        async with asyncio.timeout(WAIT):
            while True:
                found = [line for line in self.lines if text in line]
                if len(found) >= count:
                    return found
                if self._reader.done():
                    raise AssertionError(f"{count} lines with {text!r} not in {self.lines}")
                self._new_line.clear()
                await self._new_line.wait()

    async def reloaded(self, count: int) -> None:
        await self.wait_for_lines("config reloaded from", count)

    def hangup(self) -> None:
        os.kill(self.process.pid, signal.SIGHUP)

    def metrics(self) -> dict[str, float]:
        """The scraped samples, ``name{labels}`` -> value."""
        url = f"http://{self.ops}/metrics"
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples


def base_config(upstream: HostPort, port: int, ops: int, **settings: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "listen": f"127.0.0.1:{port}",
        "snapshot": str(CLUSTER),
        "ops": {"listen": f"127.0.0.1:{ops}"},
        "reload": {"interval": 0.1},
        "forward": {"upstreams": [str(upstream)]},
        "logging": {"format": "text"},
    }
    config.update(settings)
    return config


@asynccontextmanager
async def serving(volume: ConfigMapVolume) -> AsyncIterator[Reloading]:
    process = await asyncio.create_subprocess_exec(
        *COMMAND,
        "serve",
        "--config",
        str(volume.path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    server = Reloading(process, HostPort("", 0))
    try:
        server.address = bound_address(await server.wait_for_line("serving DNS on"))
        server.ops = bound_address(await server.wait_for_line("serving /metrics"))
        yield server
        # After any reloads (old forwarders retired or retiring), a clean stop.
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        assert await server.wait_exit() == 0
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), WAIT)
        if process.returncode is None:
            process.kill()
            await process.wait()
        with suppress(BaseException):
            await server._reader


@pytest.fixture
def volume(tmp_path: Path) -> ConfigMapVolume:
    root = tmp_path / "config"
    root.mkdir()
    return ConfigMapVolume(root)


async def ask(server: Kubedns, name: str, rdtype: str = "A") -> dns.message.Message:
    """One query over UDP, answered or the test fails (after WAIT, against a hang)."""
    query = dns.message.make_query(name, rdtype)
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((server.address.host, server.address.port))
        await loop.sock_sendall(sock, query.to_wire())
        async with asyncio.timeout(WAIT):
            while True:
                reply = dns.message.from_wire(await loop.sock_recv(sock, 65535))
                if reply.id == query.id:
                    return reply


async def address_of(server: Kubedns, name: str) -> str:
    reply = await ask(server, name)
    assert reply.rcode() == dns.rcode.NOERROR, reply
    return str(reply.answer[-1][0])


async def ttl_of(server: Kubedns, name: str) -> int:
    reply = await ask(server, name)
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer, reply
    return int(reply.answer[0].ttl)


async def test_a_configmap_update_moves_forwarding_to_the_new_upstream(
    volume: ConfigMapVolume, upstreams: tuple[HostPort, HostPort]
) -> None:
    first, second = upstreams
    port, ops = PICKED, PICKED
    volume.publish(base_config(first, port, ops))
    async with serving(volume) as server:
        assert await address_of(server, PROBE) == FIRST
        volume.publish(base_config(second, port, ops))
        await server.reloaded(1)
        # Cached answers came from the old upstream: the new one answers at once.
        assert await address_of(server, PROBE) == SECOND
        assert await address_of(server, f"other.{PROBE}") == SECOND
        samples = server.metrics()
        assert samples['kubedns_config_reloads_total{result="success"}'] == 1
        assert samples['kubedns_config_reloads_total{result="failed"}'] == 0
        assert samples["kubedns_config_last_reload_successful"] == 1


def total(samples: dict[str, float], family: str, *, having: str = "") -> float:
    """The sum of a family's samples whose labels contain ``having`` (whatever other labels
    the family carries)."""
    return sum(
        value
        for name, value in samples.items()
        if name.partition("{")[0] == family and having in name
    )


async def test_stub_domains_and_pods_mode_reload(
    volume: ConfigMapVolume, upstreams: tuple[HostPort, HostPort]
) -> None:
    first, second = upstreams
    port, ops = PICKED, PICKED
    pod = "10-244-1-5.shop.pod.cluster.local"
    volume.publish(base_config(first, port, ops))
    async with serving(volume) as server:
        assert await address_of(server, f"www.{PROBE}") == FIRST
        assert await address_of(server, pod) == "10.244.1.5"
        stubs = {"upstreams": [str(first)], "stub_domains": {f"www.{PROBE}": [str(second)]}}
        volume.publish(base_config(first, port, ops, forward=stubs, pods="disabled"))
        await server.reloaded(1)
        assert await address_of(server, f"www.{PROBE}") == SECOND
        assert await address_of(server, PROBE) == FIRST
        assert (await ask(server, pod)).rcode() == dns.rcode.NXDOMAIN


async def test_pods_verified_and_back_while_serving_a_snapshot(
    volume: ConfigMapVolume, upstreams: tuple[HostPort, HostPort]
) -> None:
    first, _ = upstreams
    port, ops = PICKED, PICKED
    real, unknown = "10-244-1-5.shop.pod.cluster.local", "10-244-9-9.shop.pod.cluster.local"
    volume.publish(base_config(first, port, ops))
    async with serving(volume) as server:
        assert await address_of(server, unknown) == "10.244.9.9"  # insecure: any IP
        volume.publish(base_config(first, port, ops, pods="verified"))
        await server.reloaded(1)
        assert (await ask(server, unknown)).rcode() == dns.rcode.NXDOMAIN
        assert await address_of(server, real) == "10.244.1.5"
        with urllib.request.urlopen(f"http://{server.ops}/ready", timeout=WAIT) as ready:
            assert ready.status == 200  # the Pods were listed (read) before they counted
        volume.publish(base_config(first, port, ops, pods="insecure"))
        await server.reloaded(2)
        assert await address_of(server, unknown) == "10.244.9.9"


async def test_a_snapshot_broken_since_the_start_fails_the_switch_to_verified(
    volume: ConfigMapVolume, upstreams: tuple[HostPort, HostPort], tmp_path: Path
) -> None:
    first, _ = upstreams
    port, ops = PICKED, PICKED
    snapshot = tmp_path / "cluster.yaml"
    snapshot.write_text(CLUSTER.read_text())
    unknown = "10-244-9-9.shop.pod.cluster.local"
    volume.publish(base_config(first, port, ops, snapshot=str(snapshot)))
    async with serving(volume) as server:
        snapshot.write_text("items: [\n")
        volume.publish(base_config(first, port, ops, snapshot=str(snapshot), pods="verified"))
        (line,) = await server.wait_for_lines("config reload failed", 1)
        assert str(snapshot) in line
        assert line.rstrip().endswith("stays: " + escape(check_config_message(volume.path)))
        assert await address_of(server, unknown) == "10.244.9.9"  # still insecure


async def test_the_forward_cache_is_kept_unless_its_settings_or_upstreams_change(
    volume: ConfigMapVolume, upstreams: tuple[HostPort, HostPort]
) -> None:
    first, second = upstreams
    port, ops = PICKED, PICKED
    volume.publish(base_config(first, port, ops))
    async with serving(volume) as server:
        await address_of(server, PROBE)  # now cached
        before = server.metrics()
        slower = {"upstreams": [str(first)], "timeout": 3.0, "policy": "sequential"}
        volume.publish(base_config(first, port, ops, forward=slower))
        await server.reloaded(1)
        assert await address_of(server, PROBE) == FIRST
        after = server.metrics()
        requests = "coredns_forward_requests_total"
        assert total(after, requests) == total(before, requests)  # answered from the cache
        hits = "coredns_cache_hits_total"
        assert total(after, hits) == total(before, hits) + 1
        # Other cache settings: a new, empty cache.
        volume.publish(base_config(first, port, ops, forward=slower, cache={"size": 100}))
        await server.reloaded(2)
        assert total(server.metrics(), "coredns_cache_entries") == 0
        assert await address_of(server, PROBE) == FIRST
        assert total(server.metrics(), requests) == total(after, requests) + 1
        # Another upstream: the old one's series goes once it has nothing in flight.
        volume.publish(base_config(second, port, ops))
        await server.reloaded(3)
        up = "kubedns_forward_upstream_up"
        async with asyncio.timeout(WAIT):
            while total(server.metrics(), up, having=f'"{first}"'):
                await asyncio.sleep(0.05)
        assert total(server.metrics(), up, having=f'"{second}"') == 1


async def test_sighup_applies_an_edit_when_polling_is_off(
    volume: ConfigMapVolume, upstreams: tuple[HostPort, HostPort]
) -> None:
    first, _ = upstreams
    port, ops = PICKED, PICKED
    volume.publish(base_config(first, port, ops, reload={"interval": 0}))
    async with serving(volume) as server:
        assert await ttl_of(server, CLUSTER_NAME) == 5
        volume.publish(base_config(first, port, ops, reload={"interval": 0}, ttl={"records": 42}))
        server.hangup()
        await server.reloaded(1)
        # The zone's stored replies were made with the old TTL: they are gone.
        assert await ttl_of(server, CLUSTER_NAME) == 42
        assert "changed ttl" in (await server.wait_for_lines("config reloaded from", 1))[0]


async def test_sighup_with_unchanged_content_reapplies_nothing(
    volume: ConfigMapVolume, upstreams: tuple[HostPort, HostPort]
) -> None:
    first, _ = upstreams
    port, ops = PICKED, PICKED
    volume.publish(base_config(first, port, ops))
    async with serving(volume) as server:
        server.hangup()
        (line,) = await server.wait_for_lines("config reloaded from", 1)
        assert "nothing changed" in line
        assert await address_of(server, PROBE) == FIRST


def check_config_message(path: Path) -> str:
    done = subprocess.run(
        [*COMMAND, "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done
    # Its message (which may span lines) follows any log lines it wrote first.
    lines = done.stderr.strip().splitlines()
    first = max(i for i, line in enumerate(lines) if line.startswith("kubedns: "))
    return "\n".join(lines[first:]).removeprefix("kubedns: ")


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ("ttl: {records: [}\n", "not valid YAML"),
        ({"ttl": {"records": -1}}, "ttl.records must be 0 to 2147483647, got -1"),
        ({"pods": "sometimes"}, "pods is 'sometimes'"),
    ],
    ids=["syntax", "bad-value", "bad-choice"],
)
async def test_an_invalid_config_keeps_the_running_one(
    volume: ConfigMapVolume,
    upstreams: tuple[HostPort, HostPort],
    broken: dict[str, Any] | str,
    reason: str,
) -> None:
    first, second = upstreams
    port, ops = PICKED, PICKED
    volume.publish(base_config(first, port, ops))
    async with serving(volume) as server:
        if isinstance(broken, dict):
            broken = json.dumps(base_config(second, port, ops, **broken))
        volume.publish(broken)
        (line,) = await server.wait_for_lines("config reload failed", 1)
        assert reason in line
        # What check-config prints, word for word (newlines escaped: one record, one line).
        assert line.rstrip().endswith("stays: " + escape(check_config_message(volume.path)))
        assert await address_of(server, PROBE) == FIRST
        samples = server.metrics()
        assert samples['kubedns_config_reloads_total{result="failed"}'] == 1
        assert samples["coredns_reload_failed_total"] == 1
        assert samples["kubedns_config_last_reload_successful"] == 0
        # Fixed again: applied, and the failure is over.
        volume.publish(base_config(second, port, ops))
        await server.reloaded(1)
        assert await address_of(server, PROBE) == SECOND
        assert server.metrics()["kubedns_config_last_reload_successful"] == 1


async def test_upstreams_that_are_kubedns_itself_keep_the_running_config(
    volume: ConfigMapVolume, upstreams: tuple[HostPort, HostPort]
) -> None:
    first, _ = upstreams
    # The config names the DNS port: check-config, which binds nothing, must see the loop too.
    port, ops = free_port(), PICKED
    volume.publish(base_config(first, port, ops))
    async with serving(volume) as server:
        volume.publish(base_config(server.address, port, ops))
        (line,) = await server.wait_for_lines("config reload failed", 1)
        assert "is kubedns itself" in line
        assert line.rstrip().endswith("stays: " + escape(check_config_message(volume.path)))
        assert await address_of(server, PROBE) == FIRST


async def test_a_missing_file_is_a_failed_reload_once(
    volume: ConfigMapVolume, upstreams: tuple[HostPort, HostPort]
) -> None:
    first, _ = upstreams
    port, ops = PICKED, PICKED
    volume.publish(base_config(first, port, ops))
    async with serving(volume) as server:
        (volume.root / "..data").unlink()
        (line,) = await server.wait_for_lines("config reload failed", 1)
        assert "cannot read config file" in line
        server.hangup()  # a SIGHUP tries again, and fails again
        await server.wait_for_lines("config reload failed", 2)
        assert await address_of(server, PROBE) == FIRST
        assert server.metrics()['kubedns_config_reloads_total{result="failed"}'] == 2


async def test_a_hung_config_read_blocks_neither_answers_nor_the_exit(
    volume: ConfigMapVolume, upstreams: tuple[HostPort, HostPort]
) -> None:
    first, _ = upstreams
    port, ops = PICKED, PICKED
    volume.publish(base_config(first, port, ops))
    async with serving(volume) as server:
        # A FIFO as config.yaml: reading it blocks, as on a hung network volume.
        hung = volume.root / "..2026_12_01_00_00_00.hung"
        hung.mkdir()
        os.mkfifo(hung / "config.yaml")
        staging = volume.root / "..data_tmp"
        staging.symlink_to(hung.name)
        staging.replace(volume.root / "..data")
        writer = await opened_by_a_reader(hung / "config.yaml")
        try:
            # kubedns now waits in read() for bytes that never come.
            assert await address_of(server, PROBE) == FIRST
            assert await ttl_of(server, CLUSTER_NAME) == 5
            server.process.send_signal(signal.SIGTERM)
            assert await server.wait_exit() == 0
        finally:
            os.close(writer)


async def opened_by_a_reader(fifo: Path) -> int:
    """Open ``fifo`` for writing once someone opens it for reading (the poll of kubedns)."""
    async with asyncio.timeout(WAIT):
        while True:
            try:
                return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader yet
                await asyncio.sleep(0.05)


async def test_a_changed_listen_address_is_named_and_the_rest_applies(
    volume: ConfigMapVolume, upstreams: tuple[HostPort, HostPort]
) -> None:
    first, _ = upstreams
    port, ops = PICKED, PICKED
    volume.publish(base_config(first, port, ops))
    async with serving(volume) as server:
        changed = base_config(first, port, ops, ttl={"records": 7})
        changed["listen"] = f"127.0.0.1:{free_port()}"
        changed["ops"] = {"listen": f"127.0.0.1:{free_port()}", "lame_duck": 0.5}
        volume.publish(changed)
        (line,) = await server.wait_for_lines("take effect only at a restart", 1)
        assert "listen, ops.listen changed" in line
        assert await ttl_of(server, CLUSTER_NAME) == 7  # served on the old address still
        assert server.metrics()['kubedns_config_reloads_total{result="success"}'] == 1


async def test_tcp_limits_change_in_place(
    volume: ConfigMapVolume, upstreams: tuple[HostPort, HostPort]
) -> None:
    first, _ = upstreams
    port, ops = PICKED, PICKED
    patient = {"idle_timeout": 300.0, "max_lifetime": 600.0}  # far beyond WAIT
    volume.publish(base_config(first, port, ops, tcp=patient))
    async with serving(volume) as server:
        volume.publish(base_config(first, port, ops, tcp={**patient, "idle_timeout": 0.2}))
        await server.reloaded(1)
        reader, writer = await asyncio.open_connection(server.address.host, server.address.port)
        try:
            async with asyncio.timeout(WAIT):  # closed by the server for idling, as now set
                assert await reader.read() == b""
        finally:
            writer.close()


async def test_logging_settings_change_in_place(
    volume: ConfigMapVolume, upstreams: tuple[HostPort, HostPort]
) -> None:
    first, _ = upstreams
    port, ops = PICKED, PICKED
    volume.publish(base_config(first, port, ops))
    async with serving(volume) as server:
        quiet = base_config(first, port, ops, logging={"format": "json", "level": "warning"})
        quiet["listen"] = f"127.0.0.1:{free_port()}"  # for a warning line to look at
        volume.publish(quiet)
        (line,) = await server.wait_for_lines("take effect only at a restart", 1)
        entry = json.loads(line)  # the new format
        assert entry["level"] == "warning" and entry["logger"] == "kubedns.reload"
        # Logged (at info) just before it, under the new level: so not at all.
        assert not [text for text in server.lines if "config reloaded from" in text]


async def test_the_query_log_turns_on_and_off_in_place(
    volume: ConfigMapVolume, upstreams: tuple[HostPort, HostPort]
) -> None:
    first, _ = upstreams
    port, ops = PICKED, PICKED
    volume.publish(base_config(first, port, ops))
    async with serving(volume) as server:
        quiet = await ask(server, CLUSTER_NAME)
        volume.publish(base_config(first, port, ops, logging={"format": "text", "queries": True}))
        await server.reloaded(1)
        logged = await ask(server, CLUSTER_NAME)
        (line,) = await server.wait_for_lines(f' - {logged.id} "A IN {CLUSTER_NAME}. udp ', 1)
        assert "kubedns.queries" in line and " NOERROR qr,aa,rd" in line
        volume.publish(base_config(first, port, ops))
        await server.reloaded(2)
        again = await ask(server, CLUSTER_NAME)
        await ask(server, PROBE)  # a line after it, had it been logged
        assert not [text for text in server.lines if f" - {again.id} " in text]
        assert not [text for text in server.lines if f" - {quiet.id} " in text]


async def test_no_query_is_lost_while_reloading_under_load(
    volume: ConfigMapVolume, upstreams: tuple[HostPort, HostPort]
) -> None:
    first, second = upstreams
    port, ops = PICKED, PICKED
    volume.publish(base_config(first, port, ops))
    async with serving(volume) as server:
        load = Load(server.address)
        load.start()
        try:
            for step in range(8):
                await load.answered_more(100)
                upstream = second if step % 2 == 0 else first
                settings: dict[str, Any] = {"ttl": {"records": 5 + step}}
                if step % 3 == 2:
                    settings["forward"] = {"upstreams": [str(upstream)], "timeout": 3.0 + step}
                    settings["cache"] = {"size": 1000 + step}
                volume.publish(base_config(upstream, port, ops, **settings))
                if step % 2:
                    server.hangup()  # a SIGHUP and a poll may both see it: one or two reloads
                await server.reloaded(step + 1)
            await load.answered_more(100)
        finally:
            load.stop()
        assert load.sent > 1000
        assert load.lost == [], f"{len(load.lost)} of {load.sent} queries got no reply"
        assert load.bad == [], load.bad[:5]


class Load:
    """A steady stream of UDP queries, each with its own ID, at most ``WINDOW`` unanswered:
    cluster names, a popular forwarded name, and forwarded names never asked before (so they
    are in flight upstream when a reload swaps the forwarder)."""

    WINDOW = 32
    DRAIN = 30.0
    """Seconds to wait, after the last query, for replies still on their way: a bound on a
    hang, far above any round trip on loopback."""

    def __init__(self, address: HostPort) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect((address.host, address.port))
        self.sock.setblocking(False)
        self.pending: dict[int, str] = {}
        self.answered = 0
        self.sent = 0
        self.lost: list[str] = []
        self.bad: list[str] = []
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    async def answered_more(self, count: int) -> None:
        with self._lock:
            target = self.answered + count
        async with asyncio.timeout(WAIT):
            while True:
                with self._lock:
                    if self.answered >= target or not self._thread.is_alive():
                        return
                await asyncio.sleep(0.01)

    def _name(self, number: int) -> str:
        return (CLUSTER_NAME, PROBE, f"q{number}.{PROBE}")[number % 3]

    def _run(self) -> None:
        while not self._stop.is_set():
            if len(self.pending) < self.WINDOW:
                self._send(next(self._ids))
            self._receive(0 if len(self.pending) < self.WINDOW else 1.0)
        while self.pending and self._receive(self.DRAIN):
            pass
        self.lost = sorted(self.pending.values())

    def _send(self, number: int) -> None:
        name = self._name(number)
        query = dns.message.make_query(name, "A", id=number & 0xFFFF)
        self.pending[query.id] = name
        self.sock.send(query.to_wire())
        self.sent += 1

    def _receive(self, timeout: float) -> bool:
        """Take every reply that is there (waiting up to ``timeout`` for the first)."""
        if not select.select([self.sock], [], [], timeout)[0]:
            return False
        while True:
            try:
                reply = dns.message.from_wire(self.sock.recv(65535))
            except BlockingIOError:
                return True
            name = self.pending.pop(reply.id, None)
            if name is None:
                self.bad.append(f"unexpected reply {reply.id}")
                continue
            if reply.rcode() != dns.rcode.NOERROR or not reply.answer:
                self.bad.append(f"{name}: {dns.rcode.to_text(reply.rcode())}")
            with self._lock:
                self.answered += 1
