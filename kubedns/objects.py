"""Raw Kubernetes API objects in, small frozen values out.

Only the fields DNS (and the webhook) need survive this module: every field kept costs memory
times the size of the cluster. The readiness rules for endpoints live here and nowhere else.
A malformed object raises ``ObjectError`` naming ``namespace/name`` and the field.
"""

from __future__ import annotations

import ipaddress
import sys
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
    cluster_ip: str = ""
    """``spec.clusterIP`` exactly as the API spells it (not normalised), empty when headless or
    ExternalName. The kubelet writes this string into service environment variables, so the
    webhook must reproduce it byte for byte (``2001:DB8::`` stays upper case)."""

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
    """One address of an EndpointSlice endpoint. The API allows several addresses per endpoint
    (the controller writes one); each becomes its own value here, with the same hostname and
    readiness, which is all DNS distinguishes, and a string costs less than a tuple of one
    times fifty thousand endpoints."""

    address: str
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
            # Only ``data``: the kubelet's envFrom reads ``data`` and never ``binaryData``.
            return ConfigMap(
                reader.namespace, reader.name, tuple(sorted(reader.mapping(raw, "data")))
            )
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
        # Namespaces and names repeat across thousands of objects (and in the slices' service
        # label): one shared string each instead of one per JSON document.
        self.namespace = sys.intern(namespace)
        self.name = sys.intern(name)

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
        """A string field, interned: port names, protocols and types repeat everywhere."""
        value = parent.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.fail(path + key, f"must be a string, not {value!r}")
        return sys.intern(value)

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
            self.fail(path, f"must be an IP address, not {value!r}")


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
    primary = _primary_cluster_ip(spec) if cluster_ips else ""
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
        cluster_ip=primary,
    )


def _primary_cluster_ip(spec: Mapping[str, Any]) -> str:
    """The raw primary address: ``spec.clusterIP``, else the first of ``spec.clusterIPs``.

    Only called once ``_cluster_ips`` has validated the values, so both are strings here.
    """
    single = spec.get("clusterIP")
    if isinstance(single, str) and single:
        return single
    listed = spec.get("clusterIPs")
    return str(listed[0]) if isinstance(listed, list) and listed else ""


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
    service_name = sys.intern(service_name)
    address_type = reader.text(reader.raw, "addressType", "")
    endpoints = tuple(
        endpoint
        for i, raw in enumerate(reader.items(reader.raw, "endpoints", ""))
        for endpoint in _endpoints(reader, raw, f"endpoints[{i}].", skip_ips=address_type == "FQDN")
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


def _endpoints(
    reader: _Reader, raw: Mapping[str, Any], path: str, *, skip_ips: bool
) -> list[Endpoint]:
    addresses = raw.get("addresses")
    if not isinstance(addresses, list):
        reader.fail(path + "addresses", "must be a list")
    # FQDN slices (deprecated) carry names, not IPs; DNS cannot answer A records from them.
    if skip_ips:
        return []
    ips = [reader.ip(a, f"{path}addresses[{i}]") for i, a in enumerate(addresses)]
    conditions = reader.mapping(raw, "conditions", path)
    ready = conditions.get("ready") is not False and conditions.get("terminating") is not True
    hostname = reader.text(raw, "hostname", path).lower()
    return [Endpoint(ip, hostname, ready) for ip in ips]


def _pod_ips(reader: _Reader) -> tuple[str, ...]:
    status = reader.mapping(reader.raw, "status")
    listed = [p.get("ip") for p in reader.items(status, "podIPs", "status.")]
    if not listed and status.get("podIP"):
        listed = [status.get("podIP")]
    return tuple(reader.ip(ip, f"status.podIPs[{i}].ip") for i, ip in enumerate(listed))
