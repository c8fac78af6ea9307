"""Autoscaling, opt-in: an autoscaling/v2 HPA, or the cluster-proportional-autoscaler as the
kube-dns addon (kubernetes cluster/addons/dns-horizontal-autoscaler) runs it; never both."""

from __future__ import annotations

import json

import pytest

from tests.chart.tools import Obj, one, refused, render


def kinds(objects: list[Obj]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


def test_both_off_by_default_with_fixed_replicas() -> None:
    objects = render()
    assert one(objects, "Deployment", "kubedns")["spec"]["replicas"] == 2
    assert not {k for k, _ in kinds(objects)} & {"HorizontalPodAutoscaler"}
    assert ("Deployment", "kubedns-autoscaler") not in kinds(objects)


def test_hpa_scales_the_dns_deployment_on_cpu_and_optionally_memory() -> None:
    objects = render(
        *("--set", "hpa.enabled=true", "--set", "hpa.minReplicas=3", "--set", "hpa.maxReplicas=9"),
        *("--set", "hpa.targetCPUUtilizationPercentage=65"),
    )
    hpa = one(objects, "HorizontalPodAutoscaler", "kubedns")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "kubedns",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 9)
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
    assert targets == {"cpu": {"type": "Utilization", "averageUtilization": 65}}
    # The HPA owns replicas: the Deployment renders none (no live object to keep them from).
    assert "replicas" not in one(objects, "Deployment", "kubedns")["spec"]

    with_memory = render(
        "--set", "hpa.enabled=true", "--set", "hpa.targetMemoryUtilizationPercentage=80"
    )
    hpa = one(with_memory, "HorizontalPodAutoscaler", "kubedns")
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}


def test_cluster_proportional_autoscaler_as_the_addon_runs_it() -> None:
    objects = render(
        *("--set", "autoscaler.enabled=true", "--set", "autoscaler.linear.coresPerReplica=64"),
        *("--set", "autoscaler.linear.nodesPerReplica=4", "--set", "autoscaler.linear.max=12"),
    )
    assert "replicas" not in one(objects, "Deployment", "kubedns")["spec"]
    cpa = one(objects, "Deployment", "kubedns-autoscaler")
    pod = cpa["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"].startswith("registry.k8s.io/cpa/cluster-proportional-autoscaler:")
    linear = {
        "coresPerReplica": 64,
        "nodesPerReplica": 4,
        "min": 2,
        "max": 12,
        "preventSinglePointFailure": True,
        "includeUnschedulableNodes": True,
    }
    flags = c["command"]
    assert flags[0] == "/cluster-proportional-autoscaler"
    assert "--namespace=kube-system" in flags
    assert "--configmap=kubedns-autoscaler" in flags
    assert "--target=Deployment/kubedns" in flags
    assert {"--logtostderr=true", "--v=2"} <= set(flags)
    (default,) = [f for f in flags if f.startswith("--default-params=")]
    assert json.loads(default.split("=", 1)[1]) == {"linear": linear}
    configmap = one(objects, "ConfigMap", "kubedns-autoscaler")
    assert json.loads(configmap["data"]["linear"]) == linear
    assert pod["serviceAccountName"] == "kubedns-autoscaler"
    assert one(objects, "ServiceAccount", "kubedns-autoscaler")

    rules = {
        (kind, group, resource, tuple(r["verbs"]))
        for kind in ("ClusterRole", "Role")
        for r in one(objects, kind, "kubedns-autoscaler")["rules"]
        for group in r["apiGroups"]
        for resource in r["resources"]
    }
    assert rules == {
        ("ClusterRole", "", "nodes", ("list", "watch")),
        ("Role", "", "replicationcontrollers/scale", ("get", "update")),
        ("Role", "apps", "deployments/scale", ("get", "update")),
        ("Role", "apps", "replicasets/scale", ("get", "update")),
        ("Role", "", "configmaps", ("get", "create")),
    }
    for kind, role in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = one(objects, kind, "kubedns-autoscaler")
        assert binding["roleRef"]["kind"] == role
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "kubedns-autoscaler", "namespace": "kube-system"}
        ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hpa.enabled=true", "autoscaler.enabled=true"], "enable one of them"),
        (["hpa.enabled=true", "hpa.minReplicas=4", "hpa.maxReplicas=2"], "is above"),
        (["hpa.enabled=true", "hpa.targetCPUUtilizationPercentage=null"], "never scales"),
        (["autoscaler.enabled=true", "autoscaler.linear.nodesPerReplica=0"], "nodesPerReplica"),
        (["replicas=3"], "'replicas' not allowed"),
        (["hpa.enabled=true", "resources.requests=null"], "needs resources.requests.cpu"),
        (
            [
                "hpa.enabled=true",
                "hpa.targetCPUUtilizationPercentage=null",
                "hpa.targetMemoryUtilizationPercentage=80",
                "resources.requests.memory=null",
            ],
            "hpa.targetMemoryUtilizationPercentage needs resources.requests.memory",
        ),
    ],
)
def test_bad_autoscaling_values_are_refused_with_the_reason(args: list[str], message: str) -> None:
    assert message in refused(*[a for arg in args for a in ("--set", arg)])
