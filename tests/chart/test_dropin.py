"""The chart as a drop-in for CoreDNS: what clusters already run around their DNS selects the
kubedns pods, on a port kubedns really listens on.

Each test renders the chart with the real helm and checks it against real manifests stored in
fixtures/ (their sources are in their header comments): NodeLocal DNSCache's
kube-dns-upstream Service, an "allow DNS" NetworkPolicy, kube-prometheus-stack's CoreDNS
Service. "Listens on" is read from the ConfigMap's config file, as kubedns reads it, not from
the declared containerPort.
"""

from __future__ import annotations

import pytest
import yaml

from tests.chart import cluster
from tests.chart.tools import Obj, load_fixture, one, render

KUBE_SYSTEM = {"kubernetes.io/metadata.name": "kube-system"}


def dns_deployment(objects: list[Obj]) -> Obj:
    return one(objects, "Deployment", "kubedns")


def test_dns_pods_carry_k8s_app_and_the_service_selects_only_by_it() -> None:
    objects = render()
    service = one(objects, "Service", "kube-dns")
    assert service["spec"]["selector"] == {"k8s-app": "kube-dns"}
    assert cluster.pod_labels(dns_deployment(objects))["k8s-app"] == "kube-dns"
    # The app.kubernetes.io labels stay, and the Deployment's (immutable) selector is its own.
    labels = cluster.pod_labels(dns_deployment(objects))
    assert labels["app.kubernetes.io/name"] == "kubedns"
    assert "k8s-app" not in dns_deployment(objects)["spec"]["selector"]["matchLabels"]


def test_k8s_app_label_is_overridable_for_pods_and_selector() -> None:
    objects = render("--set", "k8sAppLabel=kubedns-side")
    service = one(objects, "Service", "kube-dns")
    assert service["spec"]["selector"] == {"k8s-app": "kubedns-side"}
    assert cluster.pod_labels(dns_deployment(objects))["k8s-app"] == "kubedns-side"
    # The webhook and other pods never carry the DNS label.
    webhook = render(
        *("--set", "webhook.enabled=true", "--set", "service.clusterIP=10.96.0.10"),
        *("--set", "webhook.caBundle=Cg==", "--set", "autoscaler.enabled=true"),
    )
    assert len([d for d in webhook if d["kind"] == "Deployment"]) == 3
    for d in webhook:
        if d["kind"] == "Deployment" and d["metadata"]["name"] != "kubedns":
            assert cluster.pod_labels(d).get("k8s-app") != "kube-dns"


def test_ports_are_named_as_coredns_names_them_and_listen_on_53() -> None:
    objects = render()
    c = cluster.container(dns_deployment(objects))
    ports = {(p["name"], p["protocol"], p["containerPort"]) for p in c["ports"]}
    assert ports == {("dns", "UDP", 53), ("dns-tcp", "TCP", 53), ("metrics", "TCP", 9153)}
    config = yaml.safe_load(one(objects, "ConfigMap", "kubedns")["data"]["config.yaml"])
    assert config["listen"] == "0.0.0.0:53"
    assert config["ops"]["listen"] == "0.0.0.0:9153"
    service = one(objects, "Service", "kube-dns")
    assert {(p["name"], p["protocol"], p["port"]) for p in service["spec"]["ports"]} == {
        ("dns", "UDP", 53),
        ("dns-tcp", "TCP", 53),
        ("metrics", "TCP", 9153),
    }


def test_port_53_comes_from_the_sysctl_with_net_bind_service_the_only_added_capability() -> None:
    objects = render()
    pod = dns_deployment(objects)["spec"]["template"]["spec"]
    assert {"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"} in pod["securityContext"][
        "sysctls"
    ]
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = cluster.container(dns_deployment(objects))["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert sc["allowPrivilegeEscalation"] is False


def test_unprivileged_port_needs_no_sysctl_and_no_capability() -> None:
    objects = render("--set", "dnsPort.unprivileged=true")
    pod = dns_deployment(objects)["spec"]["template"]["spec"]
    assert "sysctls" not in pod["securityContext"]
    assert cluster.container(dns_deployment(objects))["securityContext"]["capabilities"] == {
        "drop": ["ALL"]
    }
    # The Service still reaches what kubedns listens on, through the named target ports.
    (reach,) = cluster.reached(one(objects, "Service", "kube-dns"), objects).values()
    assert reach.is_served()
    assert reach.listening == {("UDP", 5353), ("TCP", 5353)}


@pytest.mark.parametrize("unprivileged", [False, True])
def test_nodelocal_dnscache_upstream_service_reaches_listening_kubedns_pods(
    unprivileged: bool,
) -> None:
    objects = render("--set", f"dnsPort.unprivileged={str(unprivileged).lower()}")
    upstream = one(load_fixture("nodelocaldns.yaml"), "Service", "kube-dns-upstream")
    reach = cluster.reached(upstream, objects)
    # It selects the kubedns pods either way; it reaches a listening port on 53 only (its
    # targetPort is the number 53): the documented cost of dnsPort.unprivileged.
    assert set(reach) == {"kubedns"}
    assert reach["kubedns"].is_served() is not unprivileged


@pytest.mark.parametrize("unprivileged", [False, True])
def test_allow_dns_network_policy_admits_the_port_kubedns_listens_on(unprivileged: bool) -> None:
    objects = render("--set", f"dnsPort.unprivileged={str(unprivileged).lower()}")
    (policy,) = load_fixture("networkpolicy-allow-dns.yaml")
    d = dns_deployment(objects)
    allowed = cluster.allows(
        policy, namespace="kube-system", namespace_labels=KUBE_SYSTEM, pod=cluster.pod_labels(d)
    )
    listening = cluster.listening(d, objects)
    # The policy names the pod port, after the Service's translation.
    assert listening <= allowed if not unprivileged else not listening & allowed
    assert allowed == {("UDP", 53), ("TCP", 53)}


def test_kube_prometheus_stack_scrapes_the_metrics_port() -> None:
    objects = render()
    (scrape,) = load_fixture("kube-prometheus-stack-coredns.yaml")
    d = dns_deployment(objects)
    assert cluster.matches(scrape["spec"]["selector"], cluster.pod_labels(d))
    c = cluster.container(d)
    (port,) = scrape["spec"]["ports"]
    config = yaml.safe_load(one(objects, "ConfigMap", "kubedns")["data"]["config.yaml"])
    assert cluster.target(port, c) == int(config["ops"]["listen"].rsplit(":", 1)[1]) == 9153


def test_kubeadm_service_reaches_kubedns_as_it_reaches_coredns() -> None:
    """kubeadm re-applies its kube-dns Service on `kubeadm upgrade`: kubedns pods still serve
    behind it (numeric targetPort 53), and CoreDNS pods behind the chart's Service."""
    objects = render()
    kubeadm = load_fixture("kubeadm-coredns.yaml")
    both = objects + [o for o in kubeadm if o["kind"] != "Service"]
    for service in (one(kubeadm, "Service", "kube-dns"), one(objects, "Service", "kube-dns")):
        reach = cluster.reached(service, both)
        assert set(reach) == {"kubedns", "coredns"}
        assert all(r.is_served() for r in reach.values()), reach
