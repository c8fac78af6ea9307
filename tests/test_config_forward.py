"""Forward and cache settings: defaults, kube-dns ConfigMap keys, errors that name the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubedns.config import ConfigError, HostPort, from_kube_dns_configmap, load


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kubedns.yaml"
    path.write_text(text)
    return path


def test_defaults_match_coredns() -> None:
    config = load()
    assert config.forward.upstreams == ()  # meaning: /etc/resolv.conf
    assert config.forward.policy == "random"
    assert config.forward.max_concurrent == 1000
    assert config.cache.servfail_ttl == 5 and not config.cache.serve_stale


def test_file_settings_are_converted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
forward:
  upstreams: ["10.0.0.10:53", "[2001:db8::53]:53"]
  policy: round_robin
  stub_domains: {corp.internal: ["10.150.0.2:53"]}
cache: {size: 100, min_ttl: 0, serve_stale: true}
""",
    )
    config = load(path)
    assert config.forward.upstreams == (HostPort("10.0.0.10", 53), HostPort("2001:db8::53", 53))
    assert config.forward.stub_domains == {"corp.internal": (HostPort("10.150.0.2", 53),)}
    assert config.cache.size == 100 and config.cache.serve_stale


def test_kube_dns_configmap_keys(tmp_path: Path) -> None:
    configmap = {
        "stubDomains": json.dumps({"acme.local": ["1.2.3.4"], "corp": ["10.0.0.2:5353"]}),
        "upstreamNameservers": json.dumps(["8.8.8.8", "[2001:db8::1]:53"]),
    }
    raw = from_kube_dns_configmap(configmap)
    assert raw == {
        "upstreams": ["8.8.8.8:53", "[2001:db8::1]:53"],
        "stub_domains": {"acme.local": ["1.2.3.4:53"], "corp": ["10.0.0.2:5353"]},
    }
    path = write(tmp_path, "forward:\n  kube_dns_configmap: " + json.dumps(configmap) + "\n")
    config = load(path)
    assert config.forward.stub_domains["corp"] == (HostPort("10.0.0.2", 5353),)
    assert config.forward.upstreams[0] == HostPort("8.8.8.8", 53)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"forward.upstreams": [f"10.0.0.{i}:53" for i in range(16)]}, "forward.upstreams"),
        ({"forward.policy": "fastest"}, "forward.policy"),
        ({"forward.upstreams": ["10.0.0.1"]}, "forward.upstreams"),
        ({"forward.upstreams": ["10.0.0.1:0"]}, "port 0"),
        ({"forward.timeout": 0}, "forward.timeout"),
        ({"forward.max_concurrent": 0}, "forward.max_concurrent"),
        ({"forward.stub_domains": {"svc.cluster.local": ["10.0.0.1:53"]}}, "cluster zone"),
        ({"forward.stub_domains": {"corp": []}}, "forward.stub_domains.corp"),
        ({"forward.stub_domains": {"a..b": ["10.0.0.1:53"]}}, "not a valid DNS name"),
        ({"forward.stub_domains": {"a.b": ["10.0.0.1:53"], "A.B.": ["10.0.0.2:53"]}}, "repeats"),
        ({"cache.servfail_ttl": 6}, "cache.servfail_ttl"),
        ({"cache.min_ttl": 100, "cache.max_ttl": 10}, "cache.min_ttl"),
        ({"cache.size": -1}, "cache.size"),
        ({"forward.kube_dns_configmap": {"stubDomains": "{not json"}}, "stubDomains"),
        ({"forward.kube_dns_configmap": {"federations": "{}"}}, "federations"),
        (
            {
                "forward.kube_dns_configmap": {"upstreamNameservers": '["1.1.1.1"]'},
                "forward.upstreams": ["8.8.8.8:53"],
            },
            "both set",
        ),
    ],
)
def test_bad_values_name_the_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load(overrides=overrides)
