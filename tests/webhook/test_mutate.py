"""The pod mutation: precedence, containers of every kind, opt-out, idempotence, IPv6."""

from __future__ import annotations

from typing import Any

import pytest

from kubedns.objects import ConfigMap, Service
from kubedns.webhook.dnsconfig import DNSSettings, parse_resolv_conf
from kubedns.webhook.envvars import service_variables
from kubedns.webhook.mutate import MutateSettings, Mutation, mutate
from kubedns.webhook.review import PatchOp
from tests.webhook.helpers import apply_patch, configmap, env, service

SETTINGS = MutateSettings(
    dns=DNSSettings(
        cluster_dns=("10.96.0.10",),
        cluster_domain="cluster.local",
        node=parse_resolv_conf("nameserver 1.1.1.1\nsearch corp.example\n"),
    ),
    opt_out_annotation="kubedns.io/inject",
    marker_annotation="kubedns.io/injected",
)
SERVICES = [
    service("default", "kubernetes", "10.96.0.1", [("https", 443, "TCP")]),
    service("shop", "redis-master", "10.96.0.11", [("", 6379, "TCP")]),
]
KUBERNETES_VARS = [
    ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
    ("KUBERNETES_SERVICE_PORT", "443"),
    ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
    ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
    ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
    ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
    ("KUBERNETES_PORT_443_TCP_PORT", "443"),
    ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
]
REDIS_VARS = [
    ("REDIS_MASTER_SERVICE_HOST", "10.96.0.11"),
    ("REDIS_MASTER_SERVICE_PORT", "6379"),
    ("REDIS_MASTER_PORT", "tcp://10.96.0.11:6379"),
    ("REDIS_MASTER_PORT_6379_TCP", "tcp://10.96.0.11:6379"),
    ("REDIS_MASTER_PORT_6379_TCP_PROTO", "tcp"),
    ("REDIS_MASTER_PORT_6379_TCP_PORT", "6379"),
    ("REDIS_MASTER_PORT_6379_TCP_ADDR", "10.96.0.11"),
]
CLUSTER_DNS_CONFIG = {
    "nameservers": ["10.96.0.10"],
    "searches": ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"],
    "options": [{"name": "ndots", "value": "5"}],
}


def pod(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "dnsPolicy": "ClusterFirst",
        "containers": [
            {"name": "app", "image": "app", "env": env([("FOO", "$(REDIS_MASTER_PORT)")])}
        ],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {**base, **spec},
    }


def run(
    subject: dict[str, Any],
    *,
    operation: str = "CREATE",
    subresource: str = "",
    old: dict[str, Any] | None = None,
    services: list[Service] = SERVICES,
    configmaps: dict[str, ConfigMap] | None = None,
    settings: MutateSettings = SETTINGS,
) -> list[PatchOp]:
    return decide(
        subject,
        operation=operation,
        subresource=subresource,
        old=old,
        services=services,
        configmaps=configmaps,
        settings=settings,
    ).patch


def decide(
    subject: dict[str, Any],
    *,
    operation: str = "CREATE",
    subresource: str = "",
    old: dict[str, Any] | None = None,
    services: list[Service] = SERVICES,
    configmaps: dict[str, ConfigMap] | None = None,
    settings: MutateSettings = SETTINGS,
) -> Mutation:
    return mutate(
        subject,
        operation=operation,
        subresource=subresource,
        namespace="shop",
        old_pod=old,
        services=services,
        configmaps=configmaps or {},
        settings=settings,
    )


def created(subject: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    patched: dict[str, Any] = apply_patch(subject, [dict(op) for op in run(subject, **kwargs)])
    return patched


def test_create_writes_resolver_and_variables_before_the_users() -> None:
    result = created(pod())
    assert result["spec"]["dnsPolicy"] == "None"
    assert result["spec"]["dnsConfig"] == CLUSTER_DNS_CONFIG
    assert result["spec"]["containers"][0]["env"] == env(
        [*KUBERNETES_VARS, *REDIS_VARS, ("FOO", "$(REDIS_MASTER_PORT)")]
    )
    assert result["metadata"]["annotations"] == {"kubedns.io/injected": "true"}


def test_container_env_and_envfrom_take_precedence() -> None:
    container = {
        "name": "app",
        "env": env([("REDIS_MASTER_SERVICE_HOST", "override")]),
        "envFrom": [
            {"configMapRef": {"name": "settings"}},
            {"configMapRef": {"name": "prefixed"}, "prefix": "REDIS_MASTER_"},
            {"configMapRef": {"name": "absent", "optional": True}},
            {"secretRef": {"name": "creds"}},
        ],
    }
    configmaps = {
        "settings": configmap("shop", "settings", ["KUBERNETES_SERVICE_PORT", "OTHER"]),
        "prefixed": configmap("shop", "prefixed", ["PORT"]),
    }
    result = created(pod(containers=[container]), configmaps=configmaps)
    names = [item["name"] for item in result["spec"]["containers"][0]["env"]]
    assert "KUBERNETES_SERVICE_PORT" not in names  # from envFrom
    assert "REDIS_MASTER_PORT" not in names  # from envFrom with a prefix
    assert names.count("REDIS_MASTER_SERVICE_HOST") == 1  # the user's own, kept last
    assert result["spec"]["containers"][0]["env"][-1]["value"] == "override"
    assert "REDIS_MASTER_SERVICE_PORT" in names
    assert len(names) == len(set(names))


def test_user_duplicates_are_left_as_they_are() -> None:
    container = {"name": "app", "env": env([("A", "1"), ("A", "2")])}
    result = created(pod(containers=[container]))
    assert result["spec"]["containers"][0]["env"][-2:] == env([("A", "1"), ("A", "2")])


def test_init_sidecar_and_regular_containers_are_injected() -> None:
    subject = pod(
        initContainers=[
            {"name": "init", "image": "x"},
            {"name": "sidecar", "image": "x", "restartPolicy": "Always"},
        ],
        containers=[{"name": "a", "image": "x"}, {"name": "b", "image": "x", "env": None}],
    )
    result = created(subject)
    expected = env([*KUBERNETES_VARS, *REDIS_VARS])
    for field in ("initContainers", "containers"):
        for container in result["spec"][field]:
            assert container["env"] == expected, container["name"]


def test_ephemeral_containers_only_new_ones_on_the_subresource() -> None:
    old = pod(ephemeralContainers=[{"name": "debug-1", "image": "busybox"}])
    old["metadata"]["annotations"] = {"kubedns.io/injected": "true"}
    new = pod(
        ephemeralContainers=[
            {"name": "debug-1", "image": "busybox"},
            {"name": "debug-2", "image": "busybox", "env": env([("X", "1")])},
        ]
    )
    new["metadata"]["annotations"] = {"kubedns.io/injected": "true"}
    ops = run(new, operation="UPDATE", subresource="ephemeralcontainers", old=old)
    assert [op["path"] for op in ops] == ["/spec/ephemeralContainers/1/env"]
    assert ops[0]["value"] == env([*KUBERNETES_VARS, *REDIS_VARS, ("X", "1")])


@pytest.mark.parametrize(
    ("operation", "subresource"),
    [("UPDATE", ""), ("UPDATE", "status"), ("DELETE", ""), ("CONNECT", "exec")],
)
def test_other_operations_are_left_alone(operation: str, subresource: str) -> None:
    assert run(pod(), operation=operation, subresource=subresource, old=pod()) == []


def test_opt_out_annotation_leaves_the_pod_alone() -> None:
    subject = pod()
    subject["metadata"]["annotations"] = {"kubedns.io/inject": "false"}
    assert run(subject) == []
    subject["metadata"]["annotations"] = {"kubedns.io/inject": "true"}
    assert run(subject) != []


def test_reinvocation_does_not_change_a_mutated_pod() -> None:
    once = created(pod())
    assert run(once) == []


def test_marker_is_added_next_to_existing_annotations() -> None:
    subject = pod()
    subject["metadata"]["annotations"] = {"team": "shop"}
    ops = run(subject)
    assert ops[-1] == {
        "op": "add",
        "path": "/metadata/annotations/kubedns.io~1injected",
        "value": "true",
    }


def test_enable_service_links_false_gives_only_the_master_service() -> None:
    result = created(pod(enableServiceLinks=False))
    assert result["spec"]["containers"][0]["env"][:-1] == env(KUBERNETES_VARS)


def test_ipv6_service_addresses_are_bracketed_in_urls() -> None:
    services = [*SERVICES, service("shop", "v6", "fd00:10:96::a", [("", 80, "TCP")])]
    result = created(pod(), services=services)
    values = {e["name"]: e["value"] for e in result["spec"]["containers"][0]["env"]}
    assert values["V6_SERVICE_HOST"] == "fd00:10:96::a"
    assert values["V6_PORT"] == "tcp://[fd00:10:96::a]:80"
    assert values["V6_PORT_80_TCP_ADDR"] == "fd00:10:96::a"


@pytest.mark.parametrize(
    "spec",
    [
        {"dnsPolicy": "Default"},
        {"dnsPolicy": "None", "dnsConfig": {"nameservers": ["9.9.9.9"]}},
        {"dnsPolicy": "ClusterFirst", "hostNetwork": True},
    ],
)
def test_policies_the_kubelet_does_not_point_at_cluster_dns_keep_their_dns(
    spec: dict[str, Any],
) -> None:
    subject = pod(**spec)
    result = created(subject)
    assert result["spec"].get("dnsPolicy") == subject["spec"]["dnsPolicy"]
    assert result["spec"].get("dnsConfig") == subject["spec"].get("dnsConfig")
    assert result["spec"]["containers"][0]["env"][0]["name"] == "KUBERNETES_SERVICE_HOST"


def test_host_network_with_cluster_first_with_host_net_gets_cluster_dns() -> None:
    result = created(pod(dnsPolicy="ClusterFirstWithHostNet", hostNetwork=True))
    assert result["spec"]["dnsPolicy"] == "None"
    assert result["spec"]["dnsConfig"] == CLUSTER_DNS_CONFIG


def test_nothing_to_do_means_no_patch_and_no_marker() -> None:
    subject = pod(dnsPolicy="Default", containers=[{"name": "a", "image": "x"}])
    assert run(subject, services=[]) == []


def _many_services(count: int) -> list[Service]:
    return [SERVICES[0]] + [
        service("shop", f"svc-{i:03d}", f"10.96.{i // 200}.{i % 200 + 20}", [("http", 80, "TCP")])
        for i in range(count)
    ]


def test_a_container_bomb_keeps_its_resolver_but_gets_no_variables() -> None:
    containers = [{"name": f"c{i}", "image": "app"} for i in range(1000)]
    decision = decide(pod(containers=containers), services=_many_services(200))
    assert decision.over_budget
    assert decision.env_bytes == 0
    patched = apply_patch(pod(containers=containers), [dict(op) for op in decision.patch])
    assert patched["spec"]["dnsConfig"] == CLUSTER_DNS_CONFIG
    assert all("env" not in c for c in patched["spec"]["containers"])
    assert patched["metadata"]["annotations"] == {"kubedns.io/injected": "true"}


def test_the_budget_counts_bytes_over_all_containers() -> None:
    two = [{"name": "a"}, {"name": "b"}]
    full = decide(pod(containers=two))
    assert not full.over_budget
    assert full.env_bytes > 0
    per_container = full.env_bytes // 2
    # Room for exactly two containers' variables: all in; one byte less: none.
    exact = MutateSettings(SETTINGS.dns, "kubedns.io/inject", "kubedns.io/injected", full.env_bytes)
    assert decide(pod(containers=two), settings=exact).patch == full.patch
    short = MutateSettings(
        SETTINGS.dns, "kubedns.io/inject", "kubedns.io/injected", full.env_bytes - 1
    )
    tight = decide(pod(containers=two), settings=short)
    assert tight.over_budget
    assert [op["path"] for op in tight.patch] == [
        "/spec/dnsPolicy",
        "/spec/dnsConfig",
        "/metadata/annotations",
    ]
    assert per_container * 2 == full.env_bytes


def test_the_budget_bounds_ephemeral_containers_too() -> None:
    ephemeral = [{"name": f"debug-{i}"} for i in range(1000)]
    decision = decide(
        pod(ephemeralContainers=ephemeral),
        operation="UPDATE",
        subresource="ephemeralcontainers",
        old=pod(),
        services=_many_services(200),
    )
    assert decision == Mutation(over_budget=True)


def test_containers_that_define_everything_cost_look_ups_not_bytes() -> None:
    services = _many_services(200)
    names = [name for s in services for name, _ in service_variables(s)]
    cm = configmap("shop", "all", names)
    container = {"name": "c", "envFrom": [{"configMapRef": {"name": "all"}}]}
    # 1,000 such containers add nothing, yet cost 1,000 x 3,600 look-ups: past MAX_CHECKS.
    decision = decide(pod(containers=[container] * 1000), services=services, configmaps={"all": cm})
    assert decision.over_budget


def _annotated(annotations: dict[str, str]) -> dict[str, Any]:
    subject = pod()
    subject["metadata"]["annotations"] = annotations
    return subject


@pytest.mark.parametrize(
    ("subject", "operation", "subresource", "skipped"),
    [
        (pod(), "CREATE", "", None),
        (_annotated({"kubedns.io/inject": "false"}), "CREATE", "", "opted_out"),
        (_annotated({"kubedns.io/inject": "false"}), "UPDATE", "ephemeralcontainers", "opted_out"),
        (_annotated({"kubedns.io/injected": "true"}), "CREATE", "", "already_injected"),
        (pod(), "UPDATE", "", "not_applicable"),
        (pod(), "DELETE", "", "not_applicable"),
        (pod(), "CREATE", "status", "not_applicable"),
        (pod(ephemeralContainers=[{"name": "debug"}]), "UPDATE", "ephemeralcontainers", None),
    ],
)
def test_a_pod_left_alone_on_purpose_says_why(
    subject: dict[str, Any], operation: str, subresource: str, skipped: str | None
) -> None:
    mutation = decide(subject, operation=operation, subresource=subresource, old=pod())
    assert mutation.skipped == skipped
    if skipped is not None:
        assert mutation.patch == []
