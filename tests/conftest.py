"""Shared fixtures: the fake API server and a real ``kubernetes`` client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.client import ApiClient

from kubedns.config import HostPort
from kubedns.forward import resolvconf
from kubedns.sources.kube import api_client_from
from tests.fakeapi import FakeApiServer


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api(fake: FakeApiServer, tmp_path: Path) -> Iterator[ApiClient]:
    client = api_client_from(fake.write_kubeconfig(tmp_path / "kubeconfig"), environ={})
    try:
        yield client
    finally:
        client.close()  # type: ignore[no-untyped-call]


@pytest.fixture(autouse=True)
def _never_the_machines_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests send DNS only to loopback: a server built without explicit upstreams (and with
    forwarding on) would forward to the machine's resolver, so that is an error in tests."""
    real = resolvconf.nameservers

    def guarded(path: Path = resolvconf.DEFAULT_RESOLV_CONF) -> tuple[HostPort, ...]:
        if Path(path) == resolvconf.DEFAULT_RESOLV_CONF:
            raise AssertionError(
                "a test built a forwarder on /etc/resolv.conf: give forward.upstreams on "
                "loopback or set forward.enabled false"
            )
        return real(path)

    monkeypatch.setattr(resolvconf, "nameservers", guarded)
