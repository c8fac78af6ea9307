"""Shared servers for the zone tests: one per configuration, started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.zone.server import ServerThread, running


@pytest.fixture(scope="session")
def server() -> Iterator[ServerThread]:
    """Defaults: cluster.local, pods insecure, TTL 5."""
    with running() as thread:
        yield thread


@pytest.fixture(scope="session")
def addr(server: ServerThread) -> tuple[str, int]:
    return server.address
