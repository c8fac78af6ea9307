"""The ``--kubeconfig`` path, against a stand-in for ``kubedns.sources.kube``.

The real watch module is written on another branch; this fake has its described interface
(``api_client_from(kubeconfig)``, ``KubeSource(api, *, kinds, sink, settings)`` with
``async run(stop)``), so the wiring is checked now and keeps working once the real one lands.
"""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from kubedns.config import Config
from kubedns.sources.events import EventSink, Replace
from kubedns.webhook.runner import WebhookStartError, live_source
from kubedns.webhook.store import ServiceCatalog
from tests.webhook.helpers import service


@dataclass(frozen=True, slots=True)
class _ConfigWithWatch(Config):
    """Config as it is after the informer branch merges: with a ``watch`` section."""

    watch: str = "watch-settings"


class _KubeConfigError(RuntimeError):
    pass


class _FakeSource:
    created: ClassVar[list[_FakeSource]] = []

    def __init__(self, api: Any, *, kinds: tuple[str, ...], sink: EventSink, settings: Any) -> None:
        self.api, self.kinds, self.sink, self.settings = api, kinds, sink, settings
        self.stopped = False
        _FakeSource.created.append(self)

    async def run(self, stop: asyncio.Event) -> None:
        self.sink(Replace("Service", (service("default", "kubernetes", "10.0.0.1"),)))
        self.sink(Replace("ConfigMap", ()))
        await stop.wait()
        self.stopped = True


def _api_client_from(kubeconfig: Path | None) -> str:
    if kubeconfig == Path("/bad"):
        raise _KubeConfigError("kubeconfig /bad is unusable")
    return f"api for {kubeconfig}"


@pytest.fixture
def fake_kube(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    module = types.ModuleType("kubedns.sources.kube")
    module.__dict__.update(
        KubeSource=_FakeSource, api_client_from=_api_client_from, KubeConfigError=_KubeConfigError
    )
    monkeypatch.setitem(sys.modules, "kubedns.sources.kube", module)
    _FakeSource.created.clear()
    yield


async def test_the_watch_feeds_the_catalogue(fake_kube: None) -> None:
    catalog = ServiceCatalog()
    run = live_source(_ConfigWithWatch(kubeconfig=Path("/kc")), catalog)
    (source,) = _FakeSource.created
    assert (source.api, source.kinds, source.settings) == (
        "api for /kc",
        ("Service", "ConfigMap"),
        "watch-settings",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run(stop))
    await asyncio.sleep(0)
    assert catalog.is_synced
    assert [s.name for s in catalog.services_for("shop")] == ["kubernetes"]
    stop.set()
    await task
    assert source.stopped


def test_unusable_kubeconfig_is_a_start_error(fake_kube: None) -> None:
    with pytest.raises(WebhookStartError, match="/bad is unusable"):
        live_source(_ConfigWithWatch(kubeconfig=Path("/bad")), ServiceCatalog())
