"""Raw Kubernetes API objects in, small frozen values out.

Only the fields DNS (and the webhook) need survive this module: every field kept costs memory
times the size of the cluster. The readiness rules for endpoints live here and nowhere else.
A malformed object raises ``ObjectError`` naming ``namespace/name`` and the field; names, IPs,
ExternalNames, hostnames and the slice's service label are checked as the API server checks them,
so a snapshot holds only what a cluster could, and the live watch skips (and counts) the rest.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

Kind = Literal["Namespace", "Service", "EndpointSlice", "Pod", "ConfigMap"]
KINDS: tuple[Kind, ...] = ("Namespace", "Service", "EndpointSlice", "Pod", "ConfigMap")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")

# The API server's name rules (k8s.io/apimachinery/pkg/util/validation). A snapshot is checked
# as strictly as the API server checks what it stores, so a file that loads here is one a real
# cluster could have produced; and a name DNS cannot spell never reaches the index.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_MAX_LABEL = 63
_MAX_SUBDOMAIN = 253


def is_dns1123_label(text: str) -> bool:
    """Lower-case letters, digits and inner hyphens, 1-63 characters (namespaces, hostnames)."""
    return len(text) <= _MAX_LABEL and _DNS1123_LABEL.fullmatch(text) is not None


def is_dns1035_label(text: str) -> bool:
    """A DNS-1123 label that starts with a letter (Service names)."""
    return len(text) <= _MAX_LABEL and _DNS1035_LABEL.fullmatch(text) is not None


def is_dns1123_subdomain(text: str) -> bool:
    """Dot-separated DNS-1123 labels, at most 253 characters (most object names)."""
    return 0 < len(text) <= _MAX_SUBDOMAIN and all(
        _DNS1123_LABEL.fullmatch(label) is not None and len(label) <= _MAX_LABEL
        for label in text.split(".")
    )


def is_label_value(text: str) -> bool:
    """A label value: at most 63 characters, alphanumeric at both ends, ``-_.`` inside."""
    return len(text) <= _MAX_LABEL and _LABEL_VALUE.fullmatch(text) is not None


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
    """From the ``kubernetes.io/service-name`` label, which ``from_raw`` requires."""
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
        if namespace and not is_dns1123_label(namespace):
            self.fail("metadata.namespace", f"must be a DNS-1123 label, not {namespace!r}")
        if kind == "Namespace" and not is_dns1123_label(name):
            self.fail("metadata.name", f"must be a DNS-1123 label, not {name!r}")
        if kind == "Service" and not is_dns1035_label(name):
            self.fail(
                "metadata.name",
                f"must be a DNS-1035 label (lower case, starting with a letter), not {name!r}",
            )
        if kind not in ("Namespace", "Service") and not is_dns1123_subdomain(name):
            self.fail("metadata.name", f"must be a DNS-1123 subdomain, not {name!r}")
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

    def ip(self, value: Any, path: str, *, family: str = "") -> str:
        """A valid address, normalised; of ``family`` (``IPv4``/``IPv6``) when one is given."""
        if not isinstance(value, str):
            self.fail(path, f"must be an IP address, not {value!r}")
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            self.fail(path, f"must be an IP address, not {value!r}")
        if family and f"IPv{address.version}" != family:
            self.fail(path, f"must be an {family} address, not {value!r}")
        return str(address)


def _service(reader: _Reader) -> Service:
    spec = reader.mapping(reader.raw, "spec")
    service_type = reader.text(spec, "type", "spec.") or "ClusterIP"
    if service_type == "ExternalName":
        raw_external = reader.text(spec, "externalName", "spec.")
        # The API server allows one trailing dot (a fully qualified name) and nothing else.
        external = raw_external.removesuffix(".")
        if not external:
            reader.fail("spec.externalName", "is missing for an ExternalName service")
        if not is_dns1123_subdomain(external):
            reader.fail(
                "spec.externalName",
                f"must be a lower-case DNS name (a DNS-1123 subdomain), not {raw_external!r}",
            )
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
    single = spec.get("clusterIP")
    if listed and single not in (None, "") and single != listed[0]:
        reader.fail("spec.clusterIP", f"must equal spec.clusterIPs[0], not {single!r}")
    if listed == ["None"]:
        return ()
    if "None" in listed:
        reader.fail("spec.clusterIPs", "may hold None only as its one entry (headless)")
    if len(listed) > 2:
        reader.fail("spec.clusterIPs", "may hold at most two addresses (one per family)")
    ips = [reader.ip(ip, f"spec.clusterIPs[{i}]") for i, ip in enumerate(listed)]
    if (
        len(ips) == 2
        and ipaddress.ip_address(ips[0]).version == ipaddress.ip_address(ips[1]).version
    ):
        reader.fail("spec.clusterIPs", f"must be one address of each family, not {listed!r}")
    return tuple(ips)


def _endpoint_slice(reader: _Reader) -> EndpointSlice:
    address_type = reader.text(reader.raw, "addressType", "")
    if address_type not in ADDRESS_TYPES:
        reader.fail(
            "addressType", f"must be one of {', '.join(ADDRESS_TYPES)}, not {address_type!r}"
        )
    endpoints = tuple(
        endpoint
        for i, raw in enumerate(reader.items(reader.raw, "endpoints", ""))
        for endpoint in _endpoints(reader, raw, f"endpoints[{i}].", address_type=address_type)
    )
    ports = tuple(
        EndpointPort(
            name=reader.text(p, "name", f"ports[{i}]."),
            port=reader.port(p, f"ports[{i}].", required=False),
            protocol=(reader.text(p, "protocol", f"ports[{i}].") or "TCP").upper(),
        )
        for i, p in enumerate(reader.items(reader.raw, "ports", ""))
    )
    return EndpointSlice(reader.namespace, reader.name, _service_label(reader), endpoints, ports)


def _service_label(reader: _Reader) -> str:
    """The owning Service, from the label the EndpointSlice controller sets.

    Checked after the body, so a slice that is wrong in several ways names its body first.
    """
    labels = reader.mapping(reader.mapping(reader.raw, "metadata"), "labels", "metadata.")
    service_name = labels.get(SERVICE_NAME_LABEL)
    label = f"metadata.labels[{SERVICE_NAME_LABEL}]"
    if service_name is None or service_name == "":
        reader.fail(label, "is missing: the slice belongs to no Service")
    if not isinstance(service_name, str) or not is_label_value(service_name):
        reader.fail(label, f"must be a label value, not {service_name!r}")
    return sys.intern(service_name)


def _endpoints(
    reader: _Reader, raw: Mapping[str, Any], path: str, *, address_type: str
) -> list[Endpoint]:
    addresses = raw.get("addresses")
    if not isinstance(addresses, list):
        reader.fail(path + "addresses", "must be a list")
    # FQDN slices (deprecated) carry names, not IPs; DNS cannot answer A records from them.
    if address_type == "FQDN":
        return []
    ips = [
        reader.ip(a, f"{path}addresses[{i}]", family=address_type) for i, a in enumerate(addresses)
    ]
    conditions = reader.mapping(raw, "conditions", path)
    ready = conditions.get("ready") is not False and conditions.get("terminating") is not True
    hostname = reader.text(raw, "hostname", path)
    if hostname and not is_dns1123_label(hostname):
        reader.fail(path + "hostname", f"must be a DNS-1123 label, not {hostname!r}")
    return [Endpoint(ip, hostname, ready) for ip in ips]


def _pod_ips(reader: _Reader) -> tuple[str, ...]:
    status = reader.mapping(reader.raw, "status")
    listed = [p.get("ip") for p in reader.items(status, "podIPs", "status.")]
    if not listed and status.get("podIP"):
        listed = [status.get("podIP")]
    return tuple(reader.ip(ip, f"status.podIPs[{i}].ip") for i, ip in enumerate(listed))
