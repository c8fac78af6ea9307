"""Service variables, checked against the cases of the kubelet's own tests
(``envvars_test.go`` TestFromServices, ``kubelet_pods_test.go`` TestMakeEnvironmentVariables)."""

from __future__ import annotations

import pytest

from kubedns.objects import Service
from kubedns.webhook.envvars import env_name, from_services, select_services, service_variables
from tests.webhook.helpers import service

KUBELET_SERVICES = [
    service("test", "foo-bar", "1.2.3.4", [("", 8080, "TCP")]),
    service("test", "abc-123", "5.6.7.8", [("u-d-p", 8081, "UDP"), ("t-c-p", 8081, "TCP")]),
    service("test", "q-u-u-x", "9.8.7.6", [("", 8082, "TCP"), ("8083", 8083, "TCP")]),
    service("test", "svrc-clusterip-none", "None", [("", 8082, "TCP")]),
    service("test", "svrc-clusterip-empty", "", [("", 8082, "TCP")]),
    service("test", "super-ipv6", "2001:DB8::", [("u-d-p", 8084, "UDP"), ("t-c-p", 8084, "TCP")]),
    service("test", "sctp-1", "1.2.3.4", [("ctp", 777, "SCTP")]),
]

KUBELET_EXPECTED = [
    ("FOO_BAR_SERVICE_HOST", "1.2.3.4"),
    ("FOO_BAR_SERVICE_PORT", "8080"),
    ("FOO_BAR_PORT", "tcp://1.2.3.4:8080"),
    ("FOO_BAR_PORT_8080_TCP", "tcp://1.2.3.4:8080"),
    ("FOO_BAR_PORT_8080_TCP_PROTO", "tcp"),
    ("FOO_BAR_PORT_8080_TCP_PORT", "8080"),
    ("FOO_BAR_PORT_8080_TCP_ADDR", "1.2.3.4"),
    ("ABC_123_SERVICE_HOST", "5.6.7.8"),
    ("ABC_123_SERVICE_PORT", "8081"),
    ("ABC_123_SERVICE_PORT_U_D_P", "8081"),
    ("ABC_123_SERVICE_PORT_T_C_P", "8081"),
    ("ABC_123_PORT", "udp://5.6.7.8:8081"),
    ("ABC_123_PORT_8081_UDP", "udp://5.6.7.8:8081"),
    ("ABC_123_PORT_8081_UDP_PROTO", "udp"),
    ("ABC_123_PORT_8081_UDP_PORT", "8081"),
    ("ABC_123_PORT_8081_UDP_ADDR", "5.6.7.8"),
    ("ABC_123_PORT_8081_TCP", "tcp://5.6.7.8:8081"),
    ("ABC_123_PORT_8081_TCP_PROTO", "tcp"),
    ("ABC_123_PORT_8081_TCP_PORT", "8081"),
    ("ABC_123_PORT_8081_TCP_ADDR", "5.6.7.8"),
    ("Q_U_U_X_SERVICE_HOST", "9.8.7.6"),
    ("Q_U_U_X_SERVICE_PORT", "8082"),
    ("Q_U_U_X_SERVICE_PORT_8083", "8083"),
    ("Q_U_U_X_PORT", "tcp://9.8.7.6:8082"),
    ("Q_U_U_X_PORT_8082_TCP", "tcp://9.8.7.6:8082"),
    ("Q_U_U_X_PORT_8082_TCP_PROTO", "tcp"),
    ("Q_U_U_X_PORT_8082_TCP_PORT", "8082"),
    ("Q_U_U_X_PORT_8082_TCP_ADDR", "9.8.7.6"),
    ("Q_U_U_X_PORT_8083_TCP", "tcp://9.8.7.6:8083"),
    ("Q_U_U_X_PORT_8083_TCP_PROTO", "tcp"),
    ("Q_U_U_X_PORT_8083_TCP_PORT", "8083"),
    ("Q_U_U_X_PORT_8083_TCP_ADDR", "9.8.7.6"),
    ("SUPER_IPV6_SERVICE_HOST", "2001:DB8::"),
    ("SUPER_IPV6_SERVICE_PORT", "8084"),
    ("SUPER_IPV6_SERVICE_PORT_U_D_P", "8084"),
    ("SUPER_IPV6_SERVICE_PORT_T_C_P", "8084"),
    ("SUPER_IPV6_PORT", "udp://[2001:DB8::]:8084"),
    ("SUPER_IPV6_PORT_8084_UDP", "udp://[2001:DB8::]:8084"),
    ("SUPER_IPV6_PORT_8084_UDP_PROTO", "udp"),
    ("SUPER_IPV6_PORT_8084_UDP_PORT", "8084"),
    ("SUPER_IPV6_PORT_8084_UDP_ADDR", "2001:DB8::"),
    ("SUPER_IPV6_PORT_8084_TCP", "tcp://[2001:DB8::]:8084"),
    ("SUPER_IPV6_PORT_8084_TCP_PROTO", "tcp"),
    ("SUPER_IPV6_PORT_8084_TCP_PORT", "8084"),
    ("SUPER_IPV6_PORT_8084_TCP_ADDR", "2001:DB8::"),
    ("SCTP_1_SERVICE_HOST", "1.2.3.4"),
    ("SCTP_1_SERVICE_PORT", "777"),
    ("SCTP_1_SERVICE_PORT_CTP", "777"),
    ("SCTP_1_PORT", "sctp://1.2.3.4:777"),
    ("SCTP_1_PORT_777_SCTP", "sctp://1.2.3.4:777"),
    ("SCTP_1_PORT_777_SCTP_PROTO", "sctp"),
    ("SCTP_1_PORT_777_SCTP_PORT", "777"),
    ("SCTP_1_PORT_777_SCTP_ADDR", "1.2.3.4"),
]


def test_from_services_matches_the_kubelet_table() -> None:
    assert list(from_services(KUBELET_SERVICES).items()) == KUBELET_EXPECTED


# The service set of the kubelet's TestMakeEnvironmentVariables, duplicates included: the
# kubelet lists every object, so ``select_services`` must cope with the same name twice.
POD_SERVICES = [
    service("default", "kubernetes", "1.2.3.1", [("", 8081, "TCP")]),
    service("test1", "test", "1.2.3.3", [("", 8083, "TCP")]),
    service("test2", "kubernetes", "1.2.3.4", [("", 8084, "TCP")]),
    service("test2", "test", "1.2.3.5", [("", 8085, "TCP")]),
    service("test2", "test", "None", [("", 8085, "TCP")]),
    service("test2", "test", "", [("", 8085, "TCP")]),
    service("default", "not-special", "1.2.3.8", [("", 8088, "TCP")]),
    service("default", "not-special", "None", [("", 8088, "TCP")]),
    service("default", "not-special", "", [("", 8088, "TCP")]),
]


def _hosts(namespace: str, links: bool, services: list[Service] = POD_SERVICES) -> dict[str, str]:
    chosen = select_services(services, namespace=namespace, enable_service_links=links)
    return {name: v for name, v in from_services(chosen).items() if name.endswith("_SERVICE_HOST")}


@pytest.mark.parametrize(
    ("namespace", "links", "hosts"),
    [
        # Links on: the namespace's services plus the master service from default.
        ("test1", True, {"KUBERNETES_SERVICE_HOST": "1.2.3.1", "TEST_SERVICE_HOST": "1.2.3.3"}),
        # A `kubernetes` service in the pod's own namespace wins over the master one.
        ("test2", True, {"KUBERNETES_SERVICE_HOST": "1.2.3.4", "TEST_SERVICE_HOST": "1.2.3.5"}),
        # A pod in default sees every service of default.
        (
            "default",
            True,
            {"KUBERNETES_SERVICE_HOST": "1.2.3.1", "NOT_SPECIAL_SERVICE_HOST": "1.2.3.8"},
        ),
        # Links off: the master service only, from default, even where the namespace has one.
        ("test1", False, {"KUBERNETES_SERVICE_HOST": "1.2.3.1"}),
        ("test2", False, {"KUBERNETES_SERVICE_HOST": "1.2.3.1"}),
        ("default", False, {"KUBERNETES_SERVICE_HOST": "1.2.3.1"}),
        # A namespace with nothing of its own still gets the master service.
        ("empty", True, {"KUBERNETES_SERVICE_HOST": "1.2.3.1"}),
    ],
)
def test_which_services_a_pod_sees(namespace: str, links: bool, hosts: dict[str, str]) -> None:
    assert _hosts(namespace, links) == hosts


def test_master_service_order_in_the_list_does_not_matter() -> None:
    reordered = list(reversed(POD_SERVICES))
    assert _hosts("test2", True, reordered)["KUBERNETES_SERVICE_HOST"] == "1.2.3.4"
    assert _hosts("test2", False, reordered)["KUBERNETES_SERVICE_HOST"] == "1.2.3.1"


def test_kubelet_variables_for_one_service_in_pod_order() -> None:
    chosen = select_services(POD_SERVICES, namespace="test1", enable_service_links=True)
    assert list(from_services(chosen).items()) == [
        ("KUBERNETES_SERVICE_HOST", "1.2.3.1"),
        ("KUBERNETES_SERVICE_PORT", "8081"),
        ("KUBERNETES_PORT", "tcp://1.2.3.1:8081"),
        ("KUBERNETES_PORT_8081_TCP", "tcp://1.2.3.1:8081"),
        ("KUBERNETES_PORT_8081_TCP_PROTO", "tcp"),
        ("KUBERNETES_PORT_8081_TCP_PORT", "8081"),
        ("KUBERNETES_PORT_8081_TCP_ADDR", "1.2.3.1"),
        ("TEST_SERVICE_HOST", "1.2.3.3"),
        ("TEST_SERVICE_PORT", "8083"),
        ("TEST_PORT", "tcp://1.2.3.3:8083"),
        ("TEST_PORT_8083_TCP", "tcp://1.2.3.3:8083"),
        ("TEST_PORT_8083_TCP_PROTO", "tcp"),
        ("TEST_PORT_8083_TCP_PORT", "8083"),
        ("TEST_PORT_8083_TCP_ADDR", "1.2.3.3"),
    ]


def test_headless_and_external_services_are_skipped() -> None:
    services = [
        service("ns", "headless", "None"),
        service("ns", "external", "", service_type="ExternalName"),
        service("ns", "node-port", "10.0.0.7", [("http", 80, "TCP")], service_type="NodePort"),
        service("ns", "lb", "10.0.0.8", [("", 443, "TCP")], service_type="LoadBalancer"),
    ]
    chosen = select_services(services, namespace="ns", enable_service_links=True)
    assert [s.name for s in chosen] == ["lb", "node-port"]


def test_dual_stack_uses_the_primary_cluster_ip_only() -> None:
    raw = service("ns", "dual", "fd00::10", [("", 80, "TCP")])
    dual = Service(
        raw.namespace,
        raw.name,
        raw.type,
        ("fd00::10", "10.0.0.10"),
        raw.ports,
        cluster_ip="fd00::10",
    )
    variables = dict(service_variables(dual))
    assert variables["DUAL_SERVICE_HOST"] == "fd00::10"
    assert variables["DUAL_PORT"] == "tcp://[fd00::10]:80"
    assert "10.0.0.10" not in "".join(variables.values())


def test_values_come_from_port_and_first_port_is_the_default() -> None:
    svc = service("ns", "web", "10.0.0.1", [("metrics", 9090, "TCP"), ("dns", 53, "UDP")])
    variables = dict(service_variables(svc))
    assert variables["WEB_SERVICE_PORT"] == "9090"
    assert variables["WEB_SERVICE_PORT_METRICS"] == "9090"
    assert variables["WEB_SERVICE_PORT_DNS"] == "53"
    assert variables["WEB_PORT_53_UDP"] == "udp://10.0.0.1:53"


def test_colliding_names_take_the_later_service_in_name_order_and_keep_position() -> None:
    foo = service("ns", "foo", "10.0.0.1", [("", 80, "TCP")])
    clash = service("ns", "foo-port-80-tcp", "10.0.0.2", [("", 99, "TCP")])
    chosen = select_services([clash, foo], namespace="ns", enable_service_links=True)
    variables = from_services(chosen)
    # Both produce FOO_PORT_80_TCP_PORT: foo as its port-80 link variable ("80"), the other as
    # its first-port URL. "foo" sorts first, so "foo-port-80-tcp" (later) gives the value.
    assert variables["FOO_PORT_80_TCP_PORT"] == "tcp://10.0.0.2:99"
    names = list(variables)
    assert names.index("FOO_PORT_80_TCP_PORT") < names.index("FOO_PORT_80_TCP_ADDR")
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("text", "name"), [("redis-master", "REDIS_MASTER"), ("a-b-c", "A_B_C"), ("x1", "X1")]
)
def test_env_name(text: str, name: str) -> None:
    assert env_name(text) == name
