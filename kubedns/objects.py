"""Raw Kubernetes API objects in, small frozen values out.

Only the fields DNS (and the webhook) need survive this module: every field kept costs memory
times the size of the cluster. The readiness rules for endpoints live here and nowhere else.
A malformed object raises ``ObjectError`` naming ``namespace/name`` and the field.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

Kind = Literal["Namespace", "Service", "EndpointSlice", "Pod", "ConfigMap"]
KINDS: tuple[Kind, ...] = ("Namespace", "Service", "EndpointSlice", "Pod", "ConfigMap")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class ObjectError(ValueError):
    """An API object lacks a field DNS needs, or holds a value of the wrong shape."""

    def __init__(self, kind: str, ref: str, field: str, problem: str) -> None:
        super().__init__(f"{kind} {ref}: field {field} {problem}")
        self.kind = kind
        self.ref = ref
        self.field = field


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str

    @property
    def key(self) -> tuple[str, str]:
        return ("", self.name)


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    """Empty for an unnamed port (which gets no SRV record)."""
    port: int
    protocol: str
    """Upper case, as the API spells it: TCP, UDP or SCTP."""


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    type: str
    cluster_ips: tuple[str, ...]
    """Empty when headless (``clusterIP: None``) or ExternalName; primary family first."""
    ports: tuple[ServicePort, ...]
    external_name: str = ""
    publish_not_ready: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def is_external(self) -> bool:
        return self.type == "ExternalName"

    @property
    def is_headless(self) -> bool:
        return not self.is_external and not self.cluster_ips


@dataclass(frozen=True, slots=True)
class Endpoint:
    addresses: tuple[str, ...]
    hostname: str
    """Empty when the endpoint has none; DNS then derives one from the IP."""
    ready: bool
    """``conditions.ready`` true or unset, and not terminating."""


@dataclass(frozen=True, slots=True)
class EndpointPort:
    name: str
    port: int
    protocol: str


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    namespace: str
    name: str
    service_name: str
    """From the ``kubernetes.io/service-name`` label; empty for slices owned by no Service."""
    endpoints: tuple[Endpoint, ...]
    ports: tuple[EndpointPort, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    ips: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class ConfigMap:
    """Only the keys: the webhook needs to know which variables ``envFrom`` defines."""

    namespace: str
    name: str
    keys: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


SlimObject = Namespace | Service | EndpointSlice | Pod | ConfigMap


def is_published(endpoint: Endpoint, service: Service | None) -> bool:
    """Whether DNS answers with this endpoint: ready ones always, all of them when the Service
    sets ``publishNotReadyAddresses`` (the StatefulSet peer-discovery case)."""
    return endpoint.ready or (service is not None and service.publish_not_ready)


def from_raw(kind: str, raw: Mapping[str, Any]) -> SlimObject:
    """Slim one API object of a known kind; raises ``ObjectError`` when it is malformed."""
    reader = _Reader(kind, raw)
    match kind:
        case "Namespace":
            return Namespace(name=reader.name)
        case "Service":
            return _service(reader)
        case "EndpointSlice":
            return _endpoint_slice(reader)
        case "Pod":
            return Pod(reader.namespace, reader.name, _pod_ips(reader))
        case "ConfigMap":
            data = {**reader.mapping(raw, "data"), **reader.mapping(raw, "binaryData")}
            return ConfigMap(reader.namespace, reader.name, tuple(sorted(data)))
    raise ValueError(f"kind {kind!r} is not one kubedns reads")


def object_ref(raw: Mapping[str, Any]) -> tuple[str, str]:
    """``(namespace, name)`` of a raw object, tolerating a missing metadata block."""
    meta = raw.get("metadata")
    if not isinstance(meta, Mapping):
        return ("", "")
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class _Reader:
    """Typed access to one raw object that reports errors with the object's reference."""

    def __init__(self, kind: str, raw: Mapping[str, Any]) -> None:
        self.kind = kind
        self.raw = raw
        namespace, name = object_ref(raw)
        self.ref = f"{namespace}/{name}" if namespace else name or "<unnamed>"
        if not name:
            self.fail("metadata.name", "is missing")
        if kind != "Namespace" and not namespace:
            self.fail("metadata.namespace", "is missing")
        self.namespace = namespace
        self.name = name

    def fail(self, field: str, problem: str) -> NoReturn:
        raise ObjectError(self.kind, self.ref, field, problem)

    def mapping(self, parent: Mapping[str, Any], key: str, path: str = "") -> Mapping[str, Any]:
        value = parent.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path + key, "must be a mapping")
        return value

    def items(self, parent: Mapping[str, Any], key: str, path: str) -> list[Mapping[str, Any]]:
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            self.fail(path + key, "must be a list of mappings")
        return value

    def text(self, parent: Mapping[str, Any], key: str, path: str) -> str:
        value = parent.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.fail(path + key, f"must be a string, not {value!r}")
        return value

    def port(self, parent: Mapping[str, Any], path: str, *, required: bool) -> int:
        value = parent.get("port")
        if value is None and not required:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            self.fail(path + "port", f"must be a port number 1-65535, not {value!r}")
        return value

    def ip(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            self.fail(path, f"must be an IP address, not {value!r}")
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return self.fail(path, f"must be an IP address, not {value!r}")


def _service(reader: _Reader) -> Service:
    spec = reader.mapping(reader.raw, "spec")
    service_type = reader.text(spec, "type", "spec.") or "ClusterIP"
    if service_type == "ExternalName":
        external = reader.text(spec, "externalName", "spec.").rstrip(".").lower()
        if not external:
            reader.fail("spec.externalName", "is missing for an ExternalName service")
        cluster_ips: tuple[str, ...] = ()
    else:
        external = ""
        cluster_ips = _cluster_ips(reader, spec)
    ports = tuple(
        ServicePort(
            name=reader.text(p, "name", f"spec.ports[{i}]."),
            port=reader.port(p, f"spec.ports[{i}].", required=True),
            protocol=(reader.text(p, "protocol", f"spec.ports[{i}].") or "TCP").upper(),
        )
        for i, p in enumerate(reader.items(spec, "ports", "spec."))
    )
    return Service(
        namespace=reader.namespace,
        name=reader.name,
        type=service_type,
        cluster_ips=cluster_ips,
        ports=ports,
        external_name=external,
        publish_not_ready=spec.get("publishNotReadyAddresses") is True,
    )


def _cluster_ips(reader: _Reader, spec: Mapping[str, Any]) -> tuple[str, ...]:
    """``spec.clusterIPs`` (dual-stack, primary first), else ``spec.clusterIP``; None → ()."""
    listed = spec.get("clusterIPs")
    if listed is None:
        single = spec.get("clusterIP")
        listed = [] if single in (None, "") else [single]
    if not isinstance(listed, list):
        reader.fail("spec.clusterIPs", "must be a list")
    if any(ip == "None" for ip in listed):
        return ()
    ips = [reader.ip(ip, f"spec.clusterIPs[{i}]") for i, ip in enumerate(listed)]
    return tuple(dict.fromkeys(ips))


def _endpoint_slice(reader: _Reader) -> EndpointSlice:
    labels = reader.mapping(reader.mapping(reader.raw, "metadata"), "labels", "metadata.")
    service_name = labels.get(SERVICE_NAME_LABEL, "")
    if not isinstance(service_name, str):
        reader.fail(f"metadata.labels[{SERVICE_NAME_LABEL}]", "must be a string")
    address_type = reader.text(reader.raw, "addressType", "")
    endpoints = tuple(
        _endpoint(reader, raw, f"endpoints[{i}].", skip_ips=address_type == "FQDN")
        for i, raw in enumerate(reader.items(reader.raw, "endpoints", ""))
    )
    ports = tuple(
        EndpointPort(
            name=reader.text(p, "name", f"ports[{i}]."),
            port=reader.port(p, f"ports[{i}].", required=False),
            protocol=(reader.text(p, "protocol", f"ports[{i}].") or "TCP").upper(),
        )
        for i, p in enumerate(reader.items(reader.raw, "ports", ""))
    )
    return EndpointSlice(reader.namespace, reader.name, service_name, endpoints, ports)


def _endpoint(reader: _Reader, raw: Mapping[str, Any], path: str, *, skip_ips: bool) -> Endpoint:
    addresses = raw.get("addresses")
    if not isinstance(addresses, list):
        reader.fail(path + "addresses", "must be a list")
    # FQDN slices (deprecated) carry names, not IPs; DNS cannot answer A records from them.
    ips = (
        ()
        if skip_ips
        else tuple(reader.ip(a, f"{path}addresses[{i}]") for i, a in enumerate(addresses))
    )
    conditions = reader.mapping(raw, "conditions", path)
    ready = conditions.get("ready") is not False and conditions.get("terminating") is not True
    return Endpoint(ips, reader.text(raw, "hostname", path).lower(), ready)


def _pod_ips(reader: _Reader) -> tuple[str, ...]:
    status = reader.mapping(reader.raw, "status")
    listed = [p.get("ip") for p in reader.items(status, "podIPs", "status.")]
    if not listed and status.get("podIP"):
        listed = [status.get("podIP")]
    return tuple(reader.ip(ip, f"status.podIPs[{i}].ip") for i, ip in enumerate(listed))
