"""The ``watch`` section of the config: defaults, file values, and validation by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubedns import config
from kubedns.config import ConfigError, WatchConfig


def test_defaults_follow_client_go_and_coredns() -> None:
    watch = config.load().watch
    assert watch == WatchConfig()
    assert (watch.page_size, watch.sync_timeout) == (500, 5.0)
    assert watch.read_timeout > 60  # longer than the API server's bookmark interval


def test_values_come_from_the_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "kubedns.yaml"
    path.write_text("watch:\n  page_size: 100\n  backoff_cap: 10\n")
    watch = config.load(path, {"watch.sync_timeout": 1.5}).watch
    assert (watch.page_size, watch.backoff_cap, watch.sync_timeout) == (100, 10.0, 1.5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"watch.page_size": 0}, "watch.page_size must be at least 1"),
        ({"watch.page_size": 2.5}, "watch.page_size must be a whole number"),
        ({"watch.read_timeout": 0}, "watch.read_timeout must be more than 0"),
        ({"watch.connect_timeout": -1}, "watch.connect_timeout must be more than 0, got -1"),
        ({"watch.backoff_base": 5, "watch.backoff_cap": 1}, "watch.backoff_cap must not be less"),
        ({"watch.retries": 3}, "unknown setting watch.retries"),
    ],
)
def test_bad_values_name_the_key(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load(overrides=overrides)
