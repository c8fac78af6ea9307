"""Real resolvers as upstreams: dnsmasq and unbound on loopback, fixed local data, no internet."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import pytest

from kubedns.config import HostPort
from tests.forward.fakes import FakeClock, free_port

BIG_TXT = ["x" * 200 + str(i) for i in range(6)]
"""Six 200-byte strings: over 512 bytes, so a UDP reply without EDNS comes back truncated."""


def _binary(name: str) -> str:
    found = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if found is None:
        pytest.skip(f"{name} is not installed (CI installs it: apt-get install {name})")
    return found


PORT_ATTEMPTS = 5
"""Starts of a resolver on a fresh port when another process took the one picked for it."""


class PortTakenError(RuntimeError):
    """The resolver exited because its port was bound by another process after the pick."""


def _wait_ready(address: HostPort, process: subprocess.Popen[bytes]) -> None:
    query = dns.message.make_query("ready.invalid.", "A")
    for _ in range(100):
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            error = PortTakenError if "address already in use" in stderr.lower() else RuntimeError
            raise error(f"resolver exited early: {stderr!r}")
        try:
            dns.query.udp(query, address.host, port=address.port, timeout=0.1)
            return
        except (dns.exception.Timeout, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"resolver on {address} did not come up")


def _run(command: Callable[[int], list[str]]) -> Generator[HostPort, None, None]:
    """The resolver ``command(port)`` started, on 127.0.0.1 and a free port. A resolver cannot
    report a port the kernel picked, so the test picks it, and another process may bind it
    before the resolver does: only then (it says so as it exits) is a fresh port tried."""
    for attempt in range(PORT_ATTEMPTS):
        address = HostPort("127.0.0.1", free_port())
        argv = command(address.port)
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            try:
                _wait_ready(address, process)
            except PortTakenError:
                if attempt == PORT_ATTEMPTS - 1:
                    raise
                continue
            yield address
            return
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=5)
    raise AssertionError("unreachable")


def dnsmasq_argv(port: int, *data: str) -> list[str]:
    """A foreground dnsmasq on 127.0.0.1:``port`` that reads no system file (no resolv.conf,
    no hosts, no config) and answers only from ``data`` (its ``--address=``, ``--local=``, ...
    options)."""
    return [
        _binary("dnsmasq"),
        "--no-daemon",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        f"--port={port}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--pid-file=",
        "--user=root",
        "--group=root",
        *data,
    ]


@pytest.fixture(scope="session")
def dnsmasq() -> Iterator[HostPort]:
    """dnsmasq serving example.com (wildcard), example.org (local data only)."""

    def argv(port: int) -> list[str]:
        return dnsmasq_argv(
            port,
            "--local-ttl=300",
            "--local=/example.org/",
            "--address=/example.com/192.0.2.1",
            "--host-record=www.example.org,192.0.2.10,2001:db8::10",
            "--txt-record=txt.example.org,hello",
            "--cname=alias.example.org,www.example.org",
            "--txt-record=big.example.org," + ",".join(BIG_TXT),
        )

    yield from _run(argv)


UNBOUND_CONF = """
server:
  interface: 127.0.0.1
  port: {port}
  do-daemonize: no
  use-syslog: no
  logfile: ""
  username: ""
  chroot: ""
  directory: "{directory}"
  pidfile: ""
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "example.net." static
  local-data: "example.net. 3600 IN SOA ns.example.net. host.example.net. 1 3600 600 86400 60"
  local-data: "www.example.net. 300 IN A 192.0.2.20"
  local-data: "www.example.net. 300 IN AAAA 2001:db8::20"
  local-data: "deep.example.net. 300 IN A 192.0.2.21"
remote-control:
  control-enable: no
"""


@pytest.fixture(scope="session")
def unbound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostPort]:
    """unbound authoritative for example.net (static zone with an SOA, minimum 60 s)."""
    binary = _binary("unbound")
    directory = tmp_path_factory.mktemp("unbound")
    conf = directory / "unbound.conf"

    def argv(port: int) -> list[str]:
        conf.write_text(UNBOUND_CONF.format(port=port, directory=directory))
        return [binary, "-d", "-c", str(conf)]

    yield from _run(argv)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
