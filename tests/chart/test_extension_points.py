"""The extension points operators expect of a cluster DNS chart, rendered where they belong."""

from __future__ import annotations

from tests.chart import cluster
from tests.chart.tools import one, refused, render

DIGEST = "sha256:" + "ab" * 32


def test_extension_points_land_in_the_pod_and_service() -> None:
    objects = render(
        *("--set", f"image.digest={DIGEST}", "--set", "extraArgs[0]=--log-format=text"),
        *("--set", "extraEnv[0].name=TZ", "--set-string", "extraEnv[0].value=0"),
        *("--set", "extraVolumes[0].name=extra", "--set", "extraVolumes[0].emptyDir.medium=Memory"),
        *("--set", "extraVolumeMounts[0].name=extra"),
        *("--set", "extraVolumeMounts[0].mountPath=/var/run/extra"),
        *("--set", "podSecurityContext.fsGroup=65532"),
        *("--set", "securityContext.readOnlyRootFilesystem=true"),
        *(
            "--set",
            "livenessProbe.initialDelaySeconds=11",
            "--set",
            "readinessProbe.periodSeconds=7",
        ),
        *("--set", "readinessProbe.timeoutSeconds=3", "--set", "livenessProbe.failureThreshold=6"),
        *("--set", "service.type=NodePort", "--set", "service.ipFamilyPolicy=PreferDualStack"),
        *("--set", "service.trafficDistribution=PreferClose"),
        *("--set", "service.annotations.example\\.com/owner=dns"),
        *("--set", "podAnnotations.example\\.com/a=b", "--set", "podLabels.team=dns"),
        *("--set", "nodeSelector.pool=system"),
    )
    d = one(objects, "Deployment", "kubedns")
    pod = d["spec"]["template"]
    c = cluster.container(d)
    assert c["image"] == f"kubedns@{DIGEST}"
    assert c["args"] == ["serve", "--config", "/etc/kubedns/config.yaml", "--log-format=text"]
    assert c["env"] == [{"name": "TZ", "value": "0"}]
    assert {"name": "extra", "emptyDir": {"medium": "Memory"}} in pod["spec"]["volumes"]
    assert {"name": "extra", "mountPath": "/var/run/extra"} in c["volumeMounts"]
    assert pod["spec"]["securityContext"]["fsGroup"] == 65532
    # Values merge into the defaults; the chart's port-53 additions stay.
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert {"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"} in pod["spec"][
        "securityContext"
    ]["sysctls"]
    assert c["securityContext"]["capabilities"]["add"] == ["NET_BIND_SERVICE"]
    assert c["livenessProbe"]["initialDelaySeconds"] == 11
    assert c["livenessProbe"]["failureThreshold"] == 6
    assert (c["readinessProbe"]["periodSeconds"], c["readinessProbe"]["timeoutSeconds"]) == (7, 3)
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    assert pod["metadata"]["annotations"]["example.com/a"] == "b"
    assert pod["metadata"]["labels"]["team"] == "dns"
    assert pod["spec"]["nodeSelector"]["pool"] == "system"
    service = one(objects, "Service", "kube-dns")
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ipFamilyPolicy"] == "PreferDualStack"
    assert service["spec"]["trafficDistribution"] == "PreferClose"
    assert service["metadata"]["annotations"]["example.com/owner"] == "dns"


def test_a_sysctl_of_the_operator_is_kept_beside_the_charts() -> None:
    objects = render(
        *("--set", "podSecurityContext.sysctls[0].name=net.ipv4.ping_group_range"),
        *("--set", "podSecurityContext.sysctls[0].value=0 0"),
    )
    pod = one(objects, "Deployment", "kubedns")["spec"]["template"]["spec"]
    assert pod["securityContext"]["sysctls"] == [
        {"name": "net.ipv4.ping_group_range", "value": "0 0"},
        {"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"},
    ]


def test_without_a_digest_the_tag_defaults_to_the_app_version() -> None:
    c = cluster.container(one(render(), "Deployment", "kubedns"))
    assert c["image"] == "kubedns:0.1.0"


def test_a_number_as_env_value_is_refused_by_the_schema() -> None:
    """A number would render an EnvVar the API server refuses; helm says so first."""
    err = refused("--set", "extraEnv[0].name=TZ", "--set", "extraEnv[0].value=0")
    assert "/extraEnv/0/value" in err


def test_traffic_distribution_is_refused_before_kubernetes_1_31() -> None:
    err = refused("--set", "service.trafficDistribution=PreferClose", kube_version="1.30.4")
    assert "service.trafficDistribution needs Kubernetes 1.31 or later" in err
