"""Resolver configuration, checked against the cases of the kubelet's ``dns_test.go``
(TestParseResolvConf, TestGetPodDNS, TestGetPodDNSCustom, the search-limit tests)."""

from __future__ import annotations

from typing import Any

import pytest

from kubedns.webhook.dnsconfig import (
    DNSSettings,
    ResolvConf,
    cluster_dns_config,
    fit_nameservers,
    fit_searches,
    merge_options,
    parse_resolv_conf,
    usable_node_searches,
    uses_cluster_dns,
)


@pytest.mark.parametrize(
    ("text", "nameservers", "searches", "options"),
    [
        ("", [], [], []),
        (" ", [], [], []),
        ("\n", [], [], []),
        ("\t\n\t", [], [], []),
        ("#comment\n", [], [], []),
        (" #comment\n", [], [], []),
        ("#comment\n#comment", [], [], []),
        ("nameserver 1.2.3.4", ["1.2.3.4"], [], []),
        (" nameserver 1.2.3.4", ["1.2.3.4"], [], []),
        ("\tnameserver 1.2.3.4", ["1.2.3.4"], [], []),
        ("nameserver\t1.2.3.4", ["1.2.3.4"], [], []),
        ("nameserver \t 1.2.3.4", ["1.2.3.4"], [], []),
        ("nameserver 1.2.3.4\nnameserver 5.6.7.8", ["1.2.3.4", "5.6.7.8"], [], []),
        ("nameserver 1.2.3.4 #comment", ["1.2.3.4"], [], []),
        ("search ", [], [], []),
        ("search .", [], [], []),
        ("search foo", [], ["foo"], []),
        ("search foo bar", [], ["foo", "bar"], []),
        ("search foo. bar", [], ["foo", "bar"], []),
        ("search foo bar bat\n", [], ["foo", "bar", "bat"], []),
        ("search foo\nsearch bar", [], ["bar"], []),
        ("nameserver 1.2.3.4\nsearch foo bar", ["1.2.3.4"], ["foo", "bar"], []),
        (
            "nameserver 1.2.3.4\nsearch foo\nnameserver 5.6.7.8\nsearch bar",
            ["1.2.3.4", "5.6.7.8"],
            ["bar"],
            [],
        ),
        ("#comment\nnameserver 1.2.3.4\n#comment\nsearch foo\ncomment", ["1.2.3.4"], ["foo"], []),
        ("options ndots:5 attempts:2", [], [], ["ndots:5", "attempts:2"]),
        ("options ndots:1\noptions ndots:5 attempts:3", [], [], ["ndots:5", "attempts:3"]),
        (
            "nameserver 1.2.3.4\nsearch foo\nnameserver 5.6.7.8\nsearch bar\n"
            "options ndots:5 attempts:4",
            ["1.2.3.4", "5.6.7.8"],
            ["bar"],
            ["ndots:5", "attempts:4"],
        ),
        # The kubelet never turns `domain` into a search entry.
        ("domain corp.example\nnameserver 1.2.3.4", ["1.2.3.4"], [], []),
        # A bare `nameserver` line adds nothing (the kubelet reports it as an error).
        ("nameserver\nnameserver 9.9.9.9", ["9.9.9.9"], [], []),
    ],
)
def test_parse_resolv_conf(
    text: str, nameservers: list[str], searches: list[str], options: list[str]
) -> None:
    parsed = parse_resolv_conf(text)
    assert parsed == ResolvConf(tuple(nameservers), tuple(searches), tuple(options))


NODE = parse_resolv_conf("nameserver 8.8.8.8\nsearch host.domain\noptions rotate\n")
SETTINGS = DNSSettings(cluster_dns=("10.0.0.10",), cluster_domain="cluster.local", node=NODE)
CLUSTER_SEARCHES = ["testns.svc.cluster.local", "svc.cluster.local", "cluster.local"]


@pytest.mark.parametrize(
    ("policy", "host_network", "cluster_dns", "expected"),
    [
        ("ClusterFirst", False, ("10.0.0.10",), True),
        ("", False, ("10.0.0.10",), True),  # the API default is ClusterFirst
        ("ClusterFirst", True, ("10.0.0.10",), False),  # falls back to Default on the host
        ("ClusterFirstWithHostNet", True, ("10.0.0.10",), True),
        ("ClusterFirstWithHostNet", False, ("10.0.0.10",), True),
        ("Default", False, ("10.0.0.10",), False),
        ("None", False, ("10.0.0.10",), False),
        ("ClusterFirst", False, (), False),  # no cluster DNS: the kubelet uses the node's
        ("ClusterFirstWithHostNet", True, (), False),
    ],
)
def test_which_pods_use_cluster_dns(
    policy: str, host_network: bool, cluster_dns: tuple[str, ...], expected: bool
) -> None:
    settings = DNSSettings(cluster_dns=cluster_dns, cluster_domain="cluster.local", node=NODE)
    assert uses_cluster_dns(policy=policy, host_network=host_network, settings=settings) is expected


def test_cluster_first_without_dns_config() -> None:
    assert cluster_dns_config(namespace="testns", user=None, settings=SETTINGS) == {
        "nameservers": ["10.0.0.10"],
        "searches": [*CLUSTER_SEARCHES, "host.domain"],
        # The node's options are not inherited: ClusterFirst sets exactly ndots:5.
        "options": [{"name": "ndots", "value": "5"}],
    }


def test_cluster_first_merges_the_users_dns_config() -> None:
    user: dict[str, Any] = {
        "nameservers": ["10.0.0.11"],
        "searches": ["my.domain"],
        "options": [{"name": "ndots", "value": "3"}, {"name": "debug"}],
    }
    assert cluster_dns_config(namespace="testns", user=user, settings=SETTINGS) == {
        "nameservers": ["10.0.0.10", "10.0.0.11"],
        "searches": [*CLUSTER_SEARCHES, "host.domain", "my.domain"],
        "options": [{"name": "ndots", "value": "3"}, {"name": "debug"}],
    }


def test_users_duplicates_are_removed_and_empty_option_value_is_bare() -> None:
    user: dict[str, Any] = {
        "nameservers": ["10.0.0.10", "10.0.0.12"],
        "searches": ["svc.cluster.local", "host.domain", "x.example"],
        "options": [{"name": "ndots", "value": ""}, {"name": "edns0"}, {"name": "edns0"}],
    }
    assert cluster_dns_config(namespace="testns", user=user, settings=SETTINGS) == {
        "nameservers": ["10.0.0.10", "10.0.0.12"],
        "searches": [*CLUSTER_SEARCHES, "host.domain", "x.example"],
        "options": [{"name": "ndots"}, {"name": "edns0"}],
    }


def test_node_searches_already_in_the_cluster_list_appear_once() -> None:
    node = parse_resolv_conf("search cluster.local. corp.example\n")
    settings = DNSSettings(cluster_dns=("10.0.0.10",), cluster_domain="cluster.local", node=node)
    config = cluster_dns_config(namespace="testns", user=None, settings=settings)
    assert config["searches"] == [*CLUSTER_SEARCHES, "corp.example"]


def test_no_cluster_domain_keeps_only_the_node_searches() -> None:
    settings = DNSSettings(cluster_dns=("10.0.0.10",), cluster_domain="", node=NODE)
    config = cluster_dns_config(namespace="testns", user=None, settings=settings)
    assert config["searches"] == ["host.domain"]


def test_no_searches_at_all_omits_the_field() -> None:
    settings = DNSSettings(cluster_dns=("10.0.0.10",), cluster_domain="", node=ResolvConf())
    config = cluster_dns_config(namespace="testns", user=None, settings=settings)
    assert "searches" not in config


def test_nameservers_beyond_three_are_dropped() -> None:
    user = {"nameservers": ["10.0.0.11", "10.0.0.12", "10.0.0.13"]}
    settings = DNSSettings(("10.0.0.10", "fd00::10"), "cluster.local", ResolvConf())
    config = cluster_dns_config(namespace="ns", user=user, settings=settings)
    assert config["nameservers"] == ["10.0.0.10", "fd00::10", "10.0.0.11"]
    assert fit_nameservers(["a", "b"]) == ["a", "b"]


@pytest.mark.parametrize(
    ("searches", "expected"),
    [
        (["ns.svc.t", "svc.t", "t"], ["ns.svc.t", "svc.t", "t"]),
        ([f"d{i}" for i in range(33)], [f"d{i}" for i in range(32)]),
        # Entries over 253 characters are dropped, the ones after them kept.
        (["a", "b" * 254, "c"], ["a", "c"]),
        (["a", "b" * 253], ["a", "b" * 253]),
        # Whole entries cut from the end until the line fits 2048 characters.
        (["x" * 250] * 9, ["x" * 250] * 8),
        ([f"{i}" + "y" * 203 for i in range(10)], [f"{i}" + "y" * 203 for i in range(9)]),
        # Exactly 2048 characters (8 x 226 + 232 + 8 spaces) fits; one more does not.
        (["z" * 226] * 8 + ["z" * 232], ["z" * 226] * 8 + ["z" * 232]),
        (["z" * 226] * 8 + ["z" * 233], ["z" * 226] * 8),
    ],
)
def test_search_limits(searches: list[str], expected: list[str]) -> None:
    # Distinct entries are not required here: limits apply after de-duplication.
    assert fit_searches(searches) == expected


def test_limits_apply_to_the_merged_result() -> None:
    user = {"searches": [f"s{i}.example" for i in range(40)]}
    config = cluster_dns_config(namespace="testns", user=user, settings=SETTINGS)
    assert len(config["searches"]) == 32
    assert config["searches"][:4] == [*CLUSTER_SEARCHES, "host.domain"]


def test_node_searches_are_made_acceptable_to_the_api_before_they_reach_a_pod() -> None:
    node = parse_resolv_conf("search good.example Bad.Example under_score.example a..b\n")
    assert usable_node_searches(node).searches == ("good.example", "bad.example")
    long = parse_resolv_conf("search " + "a" * 300 + "\n")
    assert usable_node_searches(long).searches == ("a" * 300,)  # left to fit_searches


@pytest.mark.parametrize(
    ("base", "overrides", "expected"),
    [
        # The cases of the kubelet's TestMergeDNSOptions (which compares them as sets; the
        # order here is the webhook's documented first-seen order).
        (["ndots:5", "debug"], [], ["ndots:5", "debug"]),
        (
            ["ndots:5", "debug"],
            [("single-request", None), ("attempts", "3")],
            ["ndots:5", "debug", "single-request", "attempts:3"],
        ),
        (
            ["ndots:5", "debug"],
            [("ndots", "3"), ("debug", None), ("single-request", None), ("attempts", "3")],
            ["ndots:3", "debug", "single-request", "attempts:3"],
        ),
    ],
)
def test_merge_options(
    base: list[str], overrides: list[tuple[str, str | None]], expected: list[str]
) -> None:
    assert merge_options(base, overrides) == expected
