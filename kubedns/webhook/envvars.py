"""The legacy Docker-links service variables, computed as the kubelet computes them.

The kubelet gives every container ``<SVC>_SERVICE_HOST`` and friends for the Services of its
namespace (when ``enableServiceLinks`` is true or unset) plus the master ``kubernetes`` Service
of ``default`` (always). These functions reproduce those rules on slim ``Service`` values, with
no I/O, so the webhook can write the same variables into the pod at admission.

Order and collisions. The kubelet collects variables in a Go map, so its order (and the winner
when two Services produce the same name) is random. Here Services are taken in order of name
and each Service yields its variables in the kubelet's per-service order (``_SERVICE_HOST``,
``_SERVICE_PORT``, ``_SERVICE_PORT_<NAME>`` for each named port, ``_PORT``, then per port
``_PORT_<port>_<PROTO>`` with ``_PROTO``, ``_PORT``, ``_ADDR``). When two Services produce the
same name (``foo`` port 80 and a Service named ``foo-port-80-tcp`` both give
``FOO_PORT_80_TCP_PORT``), the variable keeps its first position and the value of the Service
later in name order: exactly what the kubelet's map assignment does when fed in that order.
"""

from __future__ import annotations

from collections.abc import Iterable

from kubedns.objects import Service, ServicePort

MASTER_NAMESPACE = "default"
MASTER_SERVICES = frozenset({"kubernetes"})
"""Services of ``default`` every pod sees, whatever its ``enableServiceLinks`` says."""


def has_service_ip(service: Service) -> bool:
    """Whether the kubelet makes variables for it: a cluster IP is set (not headless, not
    ExternalName). A Service without ports is skipped too: validation forbids it for
    ClusterIP Services, and the kubelet would index a port that is not there."""
    return bool(service.cluster_ip) and bool(service.ports)


def select_services(
    services: Iterable[Service], *, namespace: str, enable_service_links: bool
) -> list[Service]:
    """The Services whose variables a pod in ``namespace`` gets, in order of name.

    The master Services come from ``default`` always; with links on, every Service of the
    pod's own namespace is added, and one named ``kubernetes`` there replaces the master one.
    """
    chosen: dict[str, Service] = {}
    for service in services:
        if not has_service_ip(service):
            continue
        if service.namespace == MASTER_NAMESPACE and service.name in MASTER_SERVICES:
            chosen.setdefault(service.name, service)
        elif service.namespace == namespace and enable_service_links:
            chosen[service.name] = service
    return [chosen[name] for name in sorted(chosen)]


def env_name(text: str) -> str:
    """A Service or port name as a variable name part: upper case, ``-`` becomes ``_``."""
    return text.replace("-", "_").upper()


def from_services(services: Iterable[Service]) -> dict[str, str]:
    """Variables for ``services`` in the given order; a later Service overwrites a name's value."""
    variables: dict[str, str] = {}
    for service in services:
        if has_service_ip(service):
            variables.update(service_variables(service))
    return variables


def service_variables(service: Service) -> list[tuple[str, str]]:
    """The variables of one Service, in the kubelet's order."""
    prefix = env_name(service.name)
    host = service.cluster_ip
    first = service.ports[0]
    result = [
        (f"{prefix}_SERVICE_HOST", host),
        (f"{prefix}_SERVICE_PORT", str(first.port)),
    ]
    result += [
        (f"{prefix}_SERVICE_PORT_{env_name(port.name)}", str(port.port))
        for port in service.ports
        if port.name
    ]
    result.append((f"{prefix}_PORT", _url(first, host)))
    for port in service.ports:
        link = f"{prefix}_PORT_{port.port}_{port.protocol.upper()}"
        result += [
            (link, _url(port, host)),
            (f"{link}_PROTO", port.protocol.lower()),
            (f"{link}_PORT", str(port.port)),
            (f"{link}_ADDR", host),
        ]
    return result


def _url(port: ServicePort, host: str) -> str:
    """``proto://host:port``; an IPv6 host goes in brackets, as Go's ``net.JoinHostPort``."""
    bracketed = f"[{host}]" if ":" in host else host
    return f"{port.protocol.lower()}://{bracketed}:{port.port}"
