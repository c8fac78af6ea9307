"""WebhookConfig loading and the settings the mutation runs with."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubedns.config import ConfigError, HostPort, load
from kubedns.webhook.dnsconfig import parse_resolv_conf
from kubedns.webhook.runner import canonical_ip, mutate_settings


def test_defaults() -> None:
    webhook = load().webhook
    assert webhook.listen == HostPort("0.0.0.0", 8443)
    assert (webhook.cluster_dns, webhook.node_resolv_conf) == ((), None)
    assert (webhook.opt_out_annotation, webhook.marker_annotation) == (
        "kubedns.io/inject",
        "kubedns.io/injected",
    )


def test_file_settings(tmp_path: Path) -> None:
    path = tmp_path / "kubedns.yaml"
    path.write_text("webhook:\n  cluster_dns: [10.0.0.10]\n  node_resolv_conf: /host/resolv.conf\n")
    webhook = load(path).webhook
    assert webhook.cluster_dns == ("10.0.0.10",)
    assert webhook.node_resolv_conf == Path("/host/resolv.conf")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"webhook.cluster_dns": ["not-an-ip"]}, "webhook.cluster_dns[0]"),
        ({"webhook.cluster_dns": "10.0.0.10"}, "webhook.cluster_dns must be a list"),
        ({"webhook.opt_out_annotation": ""}, "webhook.opt_out_annotation"),
        ({"webhook.marker_annotation": "a/b/c"}, "webhook.marker_annotation"),
        ({"webhook.unknown": 1}, "webhook.unknown"),
    ],
)
def test_bad_values_name_the_key(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load(None, overrides)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("10.0.0.10", "10.0.0.10"), ("FD00::0010", "fd00::10"), ("::ffff:10.0.0.1", "10.0.0.1")],
)
def test_cluster_dns_is_written_as_the_kubelet_prints_it(text: str, canonical: str) -> None:
    assert canonical_ip(text) == canonical


def test_mutate_settings_dedupe_dns_and_strip_the_domain_dot() -> None:
    config = load(
        None,
        {"cluster_domain": "cluster.local.", "webhook.cluster_dns": ["10.0.0.10", "10.0.0.10"]},
    )
    settings = mutate_settings(config, parse_resolv_conf("search a.example B.example\n"))
    assert settings.dns.cluster_dns == ("10.0.0.10",)
    assert settings.dns.cluster_domain == "cluster.local"
    assert settings.dns.node.searches == ("a.example", "b.example")
