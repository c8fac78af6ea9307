"""Shared fixtures: the fake API server and a real ``kubernetes`` client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.client import ApiClient

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
