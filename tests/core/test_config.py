"""Config loading: defaults, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubedns.config import ConfigError, HostPort, load, parse_host_port


def test_defaults_suit_a_cluster() -> None:
    config = load()
    assert config.zone == "cluster.local"
    assert config.listen == HostPort("127.0.0.1", 5353)
    assert config.ttl.records == 5
    assert config.pods == "insecure"


def test_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "kubedns.yaml"
    path.write_text("cluster_domain: Corp.Example.\nttl: {records: 30}\npods: verified\n")
    config = load(path, {"pods": "disabled", "listen": "[::1]:53"})
    assert config.zone == "corp.example"
    assert config.ttl.records == 30
    assert config.pods == "disabled"
    assert config.listen == HostPort("::1", 53)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pods: maybe\n", "pods is 'maybe'; allowed values: 'disabled', 'insecure', 'verified'"),
        ("ttl: {records: -1}\n", "ttl.records must be 0 to 2147483647, got -1"),
        ("ttl: {records: 1.5}\n", "ttl.records must be a whole number"),
        ("ttl: {recrods: 5}\n", "unknown setting ttl.recrods"),
        ("listen: 127.0.0.1\n", "listen: '127.0.0.1' has no port"),
        ("listen: 'localhost:53'\n", "listen: 'localhost' is not an IP address"),
        ("listen: '127.0.0.1:70000'\n", "is not 0-65535"),
        ("cluster_domain: 'a..b'\n", "cluster_domain 'a..b' is not a valid DNS name"),
        ("tcp: 5\n", "tcp must be a mapping"),
        ("dns_service: kube-dns\n", "dns_service 'kube-dns' must be namespace/name"),
        ("- a\n- b\n", "must hold a mapping"),
        ("ttl: {records: [\n", "is not valid YAML"),
        ("reload: {interval: -1}\n", "reload.interval must be 0 to 86400, got -1"),
        ("reload: {interval: 90000}\n", "reload.interval must be 0 to 86400, got 90000"),
        ("reload: {interval: fast}\n", "reload.interval must be a number"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert message in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path / "absent.yaml")


def test_a_file_not_in_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("cluster_domain: caf\u00e9.local\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="is not UTF-8"):
        load(path)


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load(path) == load()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1:53", HostPort("10.0.0.1", 53)),
        ("[fd00::1]:5353", HostPort("fd00::1", 5353)),
        ("10.0.0.1", HostPort("10.0.0.1", 53)),
        ("[fd00::1]", HostPort("fd00::1", 53)),
        ("fd00::1", HostPort("fd00::1", 53)),
    ],
)
def test_host_port_forms(text: str, expected: HostPort) -> None:
    assert parse_host_port(text, default_port=53) == expected
