"""Every kubedns setting, in one place.

Settings are nested frozen dataclasses. ``load()`` reads an optional YAML file, applies command
line overrides on top, and validates everything before anything starts: a bad value raises
``ConfigError`` naming the dotted key and what is allowed. Nothing here exits the process.

The file uses the same names as the dataclass fields (``snake_case``), for example::

    cluster_domain: cluster.local
    listen: 0.0.0.0:53
    ttl: {records: 5}
    pods: insecure
"""

from __future__ import annotations

import dataclasses
import ipaddress
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

PodsMode = Literal["disabled", "insecure", "verified"]
LogFormat = Literal["json", "text"]
LogLevel = Literal["debug", "info", "warning", "error"]


class ConfigError(ValueError):
    """A setting is missing, unknown or out of range; the message names the key."""


@dataclass(frozen=True, slots=True)
class HostPort:
    """An address to bind or to send to. IPv6 hosts are written ``[::1]:53``."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TTLConfig:
    """Time-to-live values in seconds for answers from the cluster zone."""

    records: int = 5
    """A, AAAA, SRV, PTR and CNAME records of services and pods (kube-dns and CoreDNS use 5 s)."""
    dns_version: int = 28800
    """The ``dns-version`` TXT record, which never changes while the server runs."""
    negative: int = 5
    """SOA minimum, which resolvers use as the TTL of NXDOMAIN and NODATA (RFC 2308)."""


@dataclass(frozen=True, slots=True)
class TCPConfig:
    """DNS over TCP limits (RFC 7766)."""

    idle_timeout: float = 10.0
    """Seconds a connection may sit idle between queries before it is closed."""
    max_connections: int = 1000
    """Connections beyond this are closed at once, so a flood cannot exhaust descriptors."""


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: LogLevel = "info"
    format: LogFormat = "json"
    """``json`` (one object a line, for log pipelines) or ``text`` (for a terminal)."""


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """How the live API source lists and watches (see ``kubedns.sources.kube``)."""

    page_size: int = 500
    """Objects per list page (``limit``); client-go's pager default. Bounds the memory of one
    response and the time the API server spends on one request in a large cluster."""
    watch_timeout: float = 300.0
    """Seconds the API server keeps one watch open (``timeoutSeconds``, randomised up to twice
    this like client-go so watches of many replicas do not all reconnect at once)."""
    read_timeout: float = 90.0
    """Seconds without a byte on an open watch before the connection counts as dead. Longer
    than the API server's bookmark interval (about 60 s), so an idle but healthy watch is kept."""
    connect_timeout: float = 5.0
    """Seconds to establish a connection to the API server before retrying."""
    list_timeout: float = 60.0
    """Seconds a list request may go without receiving a byte before it counts as failed;
    generous, because the API server may take a while to assemble a large page."""
    backoff_base: float = 0.5
    """Seconds before the first retry after a failure; doubles with each failure in a row."""
    backoff_cap: float = 30.0
    """Longest wait between retries in seconds, so recovery is noticed soon after an outage."""
    sync_timeout: float = 5.0
    """Seconds to wait at start for the initial lists before serving anyway (CoreDNS waits 5 s);
    until synced, unknown cluster names get SERVFAIL rather than NXDOMAIN."""
    stop_timeout: float = 2.0
    """Seconds to wait for worker threads to finish at shutdown before abandoning them (they are
    daemon threads, so they never hold the process open)."""


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; every field has a default that suits a cluster."""

    cluster_domain: str = "cluster.local"
    """The zone kubedns is authoritative for; the kubelet's ``--cluster-domain``."""
    listen: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", 5353))
    """Where DNS is served; both UDP and TCP bind this address and port."""
    snapshot: Path | None = None
    """A ``kubectl get ... -o yaml`` dump to serve instead of a live cluster."""
    kubeconfig: Path | None = None
    """A kubeconfig for the live API watch when not running inside a pod."""
    pods: PodsMode = "insecure"
    """Pod A records ``1-2-3-4.<ns>.pod.<zone>``: ``disabled``, ``insecure`` (any IP in an
    existing namespace, as kubeadm's CoreDNS) or ``verified`` (only IPs of that namespace's
    pods)."""
    dns_service: str = "kube-system/kube-dns"
    """``namespace/name`` of our own Service; its ClusterIPs answer for the NS target."""
    ttl: TTLConfig = field(default_factory=TTLConfig)
    tcp: TCPConfig = field(default_factory=TCPConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)

    @property
    def zone(self) -> str:
        """The cluster domain in canonical form: lowercase, no trailing dot."""
        return self.cluster_domain.lower().rstrip(".")


def parse_host_port(text: str, *, default_port: int | None = None) -> HostPort:
    """``HOST:PORT``, ``[V6]:PORT`` or (with a default port) a bare host."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not [IPv6]:PORT")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not port_text:
        if default_port is None:
            raise ValueError(f"{text!r} has no port; write HOST:PORT")
        return HostPort(_check_ip(host), default_port)
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} in {text!r} is not 0-65535")
    return HostPort(_check_ip(host), int(port_text))


def _check_ip(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None


def load(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read ``path`` (YAML), apply ``overrides`` (dotted keys) and validate the result."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_file(path)
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    config: Config = _build(Config, raw, prefix="")
    _validate(config)
    return config


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, not {type(data).__name__}")
    return data


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def _build(cls: type[Any], raw: Any, *, prefix: str) -> Any:
    """Turn a mapping into dataclass ``cls``, converting and checking each field by its type."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        allowed = ", ".join(sorted(known))
        raise ConfigError(f"unknown setting {prefix}{unknown[0]} (allowed here: {allowed})")
    values = {name: _convert(hints[name], raw[name], key=prefix + name) for name in raw}
    return cls(**values)


def _convert(hint: Any, value: Any, *, key: str) -> Any:
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        return None if value is None else _convert(options[0], value, key=key)
    if origin is Literal:
        if value not in get_args(hint):
            allowed = ", ".join(repr(a) for a in get_args(hint))
            raise ConfigError(f"{key} is {value!r}; allowed values: {allowed}")
        return value
    if dataclasses.is_dataclass(hint) and hint is not HostPort:
        return _build(typing.cast(type[Any], hint), value, prefix=key + ".")
    return _convert_scalar(hint, value, key=key)


def _convert_scalar(hint: Any, value: Any, *, key: str) -> Any:
    origin = get_origin(hint)
    if hint is HostPort:
        return value if isinstance(value, HostPort) else _host_port(value, key=key)
    if hint is Path:
        if not isinstance(value, str | Path) or not str(value):
            raise ConfigError(f"{key} must be a file path")
        return Path(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, not {value!r}")
        return value
    if hint is int or hint is float:
        return _number(hint, value, key=key)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, not {value!r}")
        return value
    if origin is tuple:
        (item,) = get_args(hint)[:1]
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list")
        return tuple(_convert(item, v, key=f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or origin is Mapping:
        key_type, value_type = get_args(hint)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping")
        return {
            _convert(key_type, k, key=key): _convert(value_type, v, key=f"{key}.{k}")
            for k, v in value.items()
        }
    raise ConfigError(f"{key}: unsupported setting type {hint!r}")  # a bug in this module


def _host_port(value: Any, *, key: str) -> HostPort:
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be HOST:PORT, not {value!r}")
    try:
        return parse_host_port(value)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _number(hint: type[Any], value: Any, *, key: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key} must be a number, not {value!r}")
    if hint is int and not float(value).is_integer():
        raise ConfigError(f"{key} must be a whole number, not {value!r}")
    if value < 0:
        raise ConfigError(f"{key} must not be negative, got {value!r}")
    return hint(value)


def _validate(config: Config) -> None:
    """Cross-field and range checks that types alone cannot express."""
    labels = config.zone.split(".")
    if not config.zone or any(not label or len(label) > 63 for label in labels):
        raise ConfigError(f"cluster_domain {config.cluster_domain!r} is not a valid DNS name")
    if config.snapshot is not None and config.kubeconfig is not None:
        raise ConfigError("snapshot and kubeconfig are exclusive: serve a file or a cluster")
    namespace, sep, name = config.dns_service.partition("/")
    if not sep or not namespace or not name:
        raise ConfigError(f"dns_service {config.dns_service!r} must be namespace/name")
    if config.ttl.records > 2**31 - 1 or config.ttl.negative > 2**31 - 1:
        raise ConfigError("ttl values must fit in 31 bits (RFC 2181)")
    if config.tcp.max_connections < 1:
        raise ConfigError("tcp.max_connections must be at least 1")
    _validate_watch(config.watch)


def _validate_watch(watch: WatchConfig) -> None:
    if watch.page_size < 1:
        raise ConfigError("watch.page_size must be at least 1")
    for key in ("watch_timeout", "read_timeout", "connect_timeout", "list_timeout"):
        if getattr(watch, key) <= 0:
            raise ConfigError(f"watch.{key} must be more than 0 seconds")
    if watch.backoff_cap < watch.backoff_base:
        raise ConfigError("watch.backoff_cap must not be less than watch.backoff_base")
