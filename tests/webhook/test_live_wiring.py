"""The webhook's ``--kubeconfig`` path: the real API watch, against the fake API server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from kubedns.config import WatchConfig, load
from kubedns.webhook.runner import WebhookStartError, live_source
from kubedns.webhook.store import ServiceCatalog
from tests import kubeobjects as k
from tests.fakeapi import FakeApiServer

FAST = {"watch.backoff_base": 0.01, "watch.backoff_cap": 0.05, "watch.read_timeout": 5}


async def eventually(check: object, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_the_watch_feeds_the_catalogue(fake: FakeApiServer, tmp_path: Path) -> None:
    fake.create(k.service("shop", "web", "10.0.0.7"))
    fake.create(
        {"kind": "ConfigMap", "metadata": {"namespace": "shop", "name": "env"}, "data": {"A": "1"}}
    )
    kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
    config = load(None, {"kubeconfig": str(kubeconfig), **FAST})
    assert isinstance(config.watch, WatchConfig)
    catalog = ServiceCatalog()
    run = live_source(config, catalog)
    stop = asyncio.Event()
    task = asyncio.create_task(run(stop))
    try:
        await eventually(lambda: catalog.is_synced)
        assert [s.name for s in catalog.services_for("shop")] == ["web"]
        fake.create(k.service("shop", "api", "10.0.0.8"))
        await eventually(lambda: len(catalog.services_for("shop")) == 2)
    finally:
        stop.set()
        await task


def test_unusable_kubeconfig_is_a_start_error(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    with pytest.raises(WebhookStartError):
        live_source(load(None, {"kubeconfig": str(missing)}), ServiceCatalog())
