"""What a reload may apply in place and what waits for a restart (``kubedns.reload``), as a
table over the config; the running server is exercised in ``tests/test_reload.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubedns.config import Config, HostPort, load
from kubedns.reload import RESTART_KEYS, ConfigSource, applicable, changed_sections, digest

RUNNING = load()


def changed(**settings: Any) -> Config:
    return load(None, settings)


@pytest.mark.parametrize(
    ("settings", "restart", "applied"),
    [
        ({"listen": "127.0.0.1:53"}, ["listen"], []),
        ({"ops.listen": "127.0.0.1:9153"}, ["ops.listen"], []),
        ({"cluster_domain": "example.local"}, ["cluster_domain"], []),
        ({"dns_service": "dns/kubedns"}, ["dns_service"], []),
        ({"udp.batch": False}, ["udp.batch"], []),
        ({"watch.page_size": 100}, ["watch"], []),
        ({"pods": "verified"}, ["pods"], []),  # watching the API (serving a snapshot: below)
        ({"pods": "disabled"}, [], ["pods"]),
        ({"ttl.records": 30, "listen": "127.0.0.1:53"}, ["listen"], ["ttl"]),
        ({"forward.upstreams": ["10.0.0.2:53"]}, [], ["forward"]),
        ({"logging.level": "debug", "ops.lame_duck": 2.0}, [], ["logging", "ops"]),
        ({"reload.interval": 0}, [], ["reload"]),
    ],
)
def test_restart_keys_are_kept_and_named(
    settings: dict[str, Any], restart: list[str], applied: list[str]
) -> None:
    target, named = applicable(RUNNING, changed(**settings))
    assert named == restart
    assert changed_sections(RUNNING, target) == applied
    for key in named:
        assert getattr(target, key.split(".")[0]) == getattr(RUNNING, key.split(".")[0])


def test_pods_to_verified_applies_in_place_when_serving_a_snapshot() -> None:
    running = changed(snapshot="cluster.yaml")
    target, named = applicable(running, changed(snapshot="cluster.yaml", pods="verified"))
    assert named == []
    assert target.pods == "verified"


@pytest.mark.parametrize("key", RESTART_KEYS)
def test_every_restart_key_names_a_setting(key: str) -> None:
    *parents, last = key.split(".")
    node: Any = RUNNING
    for part in parents:
        node = getattr(node, part)
    assert hasattr(node, last), f"{key} is no setting"


def test_flags_override_the_file_at_every_reload(tmp_path: Path) -> None:
    path = tmp_path / "kubedns.yaml"
    source = ConfigSource(path, {"forward.upstreams": [HostPort("10.0.0.9", 53)]})
    path.write_text("forward: {upstreams: ['10.0.0.2:53']}\nttl: {records: 9}\n")
    data = source.read()
    config = source.parse(data)
    assert config.forward.upstreams == (HostPort("10.0.0.9", 53),)
    assert config.ttl.records == 9
    assert digest(data) != digest(b"")
