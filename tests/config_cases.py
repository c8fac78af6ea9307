"""Config values to try on both judges: the generated JSON Schema and ``config.load()``.

Each bad case names the JSON pointer a schema validator reports (helm: ``at '/config/...'``)
and the dotted key kubedns names; the two must agree on every case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Bad:
    config: dict[str, Any]
    pointer: str
    """Where the schema complains, below the config: ``cache/size``."""
    key: str
    """What kubedns's message names: ``cache.size``."""


BAD = {
    "size not a number": Bad({"cache": {"size": "abc"}}, "cache/size", "cache.size"),
    "negative ttl": Bad({"ttl": {"records": -1}}, "ttl/records", "ttl.records"),
    "negative min_ttl": Bad({"cache": {"min_ttl": -5}}, "cache/min_ttl", "cache.min_ttl"),
    "ttl past 31 bits": Bad({"cache": {"max_ttl": 2**31}}, "cache/max_ttl", "cache.max_ttl"),
    "fractional ttl": Bad({"ttl": {"negative": 1.5}}, "ttl/negative", "ttl.negative"),
    "unknown pods mode": Bad({"pods": "sometimes"}, "pods", "pods"),
    "unknown policy": Bad({"forward": {"policy": "fastest"}}, "forward/policy", "forward.policy"),
    "unknown log level": Bad({"logging": {"level": "verbose"}}, "logging/level", "logging.level"),
    "unknown key": Bad({"cache": {"sizes": 5}}, "cache", "cache.sizes"),
    "unknown section": Bad({"metricz": {}}, "", "metricz"),
    "section not a mapping": Bad({"logging": "text"}, "logging", "logging"),
    "port out of range": Bad(
        {"forward": {"upstreams": ["10.0.0.1:70000"]}}, "forward/upstreams/0", "forward.upstreams"
    ),
    "upstream port 0": Bad(
        {"forward": {"upstreams": ["10.0.0.1:0"]}}, "forward/upstreams/0", "forward.upstreams"
    ),
    "upstream by name": Bad(
        {"forward": {"upstreams": ["dns.google:53"]}}, "forward/upstreams/0", "forward.upstreams"
    ),
    "upstream without port": Bad(
        {"forward": {"upstreams": ["10.0.0.1"]}}, "forward/upstreams/0", "forward.upstreams"
    ),
    "bad IPv6 upstream": Bad(
        {"forward": {"upstreams": ["[fd00:::1]:53"]}}, "forward/upstreams/0", "forward.upstreams"
    ),
    "16 upstreams": Bad(
        {"forward": {"upstreams": [f"10.0.0.{i}:53" for i in range(16)]}},
        "forward/upstreams",
        "forward.upstreams",
    ),
    "stub domain without upstreams": Bad(
        {"forward": {"stub_domains": {"corp": []}}},
        "forward/stub_domains/corp",
        "forward.stub_domains.corp",
    ),
    "stub domain not a name": Bad(
        {"forward": {"stub_domains": {"a..b": ["10.0.0.1:53"]}}},
        "forward/stub_domains",
        "forward.stub_domains",
    ),
    "bool as a string": Bad({"udp": {"batch": "true"}}, "udp/batch", "udp.batch"),
    "number as a bool": Bad(
        {"tcp": {"max_connections": True}}, "tcp/max_connections", "tcp.max_connections"
    ),
    "udp size too small": Bad(
        {"replies": {"udp_size": 100}}, "replies/udp_size", "replies.udp_size"
    ),
    "servfail ttl over 5": Bad(
        {"cache": {"servfail_ttl": 30}}, "cache/servfail_ttl", "cache.servfail_ttl"
    ),
    "zero timeout": Bad({"tcp": {"idle_timeout": 0}}, "tcp/idle_timeout", "tcp.idle_timeout"),
    "zero page size": Bad({"watch": {"page_size": 0}}, "watch/page_size", "watch.page_size"),
    "bad cluster domain": Bad({"cluster_domain": "a..b"}, "cluster_domain", "cluster_domain"),
    "dns_service without namespace": Bad({"dns_service": "kube-dns"}, "dns_service", "dns_service"),
    "annotation with a space": Bad(
        {"webhook": {"opt_out_annotation": "a b"}},
        "webhook/opt_out_annotation",
        "webhook.opt_out_annotation",
    ),
    "negative lame duck": Bad({"ops": {"lame_duck": -1}}, "ops/lame_duck", "ops.lame_duck"),
    "list not a list": Bad(
        {"forward": {"upstreams": "10.0.0.1:53"}}, "forward/upstreams", "forward.upstreams"
    ),
}

GOOD = {
    "empty": {},
    "every section": {
        "cluster_domain": "Corp.Example.",
        "pods": "verified",
        "dns_service": "kube-system/kube-dns",
        "ttl": {"records": 30, "dns_version": 0, "negative": 2**31 - 1},
        "tcp": {"idle_timeout": 2.5, "max_connections": 1, "write_timeout": 1},
        "udp": {"batch": False},
        "replies": {"udp_size": 4096, "rotate": False, "cache_bytes": 0},
        "logging": {"level": "debug", "format": "text"},
        "ops": {"lame_duck": 5},
        "forward": {
            "upstreams": ["10.0.0.2:53", "[fd00::53]:5353", "[::ffff:10.0.0.3]:053"],
            "policy": "round_robin",
            "stub_domains": {"corp.internal": ["10.150.0.2:53"], "Example.": ["10.0.0.9:54"]},
        },
        "cache": {"size": 0, "max_bytes": 0, "servfail_ttl": 0, "serve_stale": True},
        "watch": {"page_size": 1, "backoff_base": 0, "backoff_cap": 0},
        "webhook": {"opt_out_annotation": "example.com/dns-inject", "workers": 1},
    },
    "kube-dns ConfigMap keys": {
        "forward": {
            "kube_dns_configmap": {
                "upstreamNameservers": '["8.8.8.8"]',
                "stubDomains": '{"corp": ["10.0.0.2:5353"]}',
            }
        }
    },
}

CROSS_FIELD = {
    "min_ttl above max_ttl": ({"cache": {"min_ttl": 100, "max_ttl": 10}}, "cache.min_ttl"),
    "backoff cap below base": (
        {"watch": {"backoff_base": 5, "backoff_cap": 1}},
        "watch.backoff_cap",
    ),
    "stub domain in the cluster zone": (
        {"forward": {"stub_domains": {"svc.cluster.local": ["10.0.0.1:53"]}}},
        "forward.stub_domains.svc.cluster.local",
    ),
}
"""Values only ``load()`` refuses: the schema cannot relate two settings (config_schema's
docstring lists these)."""
