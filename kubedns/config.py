"""Every kubedns setting, in one place.

Settings are nested frozen dataclasses. ``load()`` reads an optional YAML file, applies command
line overrides on top, and validates everything before anything starts: a bad value raises
``ConfigError`` naming the dotted key and what is allowed. Nothing here exits the process.

Bounds and forms of single values are ``Annotated`` rules on the field types (``Range``,
``Length``, ``Pattern``, ``Address``): ``load()`` checks them, and ``kubedns.config_schema``
turns the same rules into the JSON Schema of the file (the Helm chart's values.schema.json).
Only checks across settings are written out, in ``_validate``.

The file uses the same names as the dataclass fields (``snake_case``), for example::

    cluster_domain: cluster.local
    listen: 0.0.0.0:53
    ttl: {records: 5}
    pods: insecure
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import types
import typing
from collections.abc import Mapping, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml

PodsMode = Literal["disabled", "insecure", "verified"]
LogFormat = Literal["json", "text"]
LogLevel = Literal["debug", "info", "warning", "error"]
ForwardPolicy = Literal["sequential", "random", "round_robin"]

MAX_UPSTREAMS = 15
"""CoreDNS's ``forward`` limit; more upstreams only lengthen the worst-case failover."""


class ConfigError(ValueError):
    """A setting is missing, unknown or out of range; the message names the key."""


# The textual addresses ``ipaddress`` accepts, as regular expressions for the schema's patterns
# (tests/test_config_schema.py checks that the two agree on generated addresses).
_H16 = "[0-9A-Fa-f]{1,4}"
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"


def _groups(count: int) -> str:
    """Exactly ``count`` hex groups joined by colons."""
    return "" if count == 0 else _H16 + f"(?::{_H16}){{{count - 1}}}"


def _ipv6_regex() -> str:
    """Every form ``ipaddress`` reads: eight groups, the last two possibly written as IPv4, or
    fewer around one ``::`` (which stands for one zero group or more); then ``%scope``."""
    forms = [_groups(8), f"{_groups(6)}:{_IPV4}"]
    for before in range(8):
        room = 7 - before  # groups that may follow "::"
        after = [f"{_H16}(?::{_H16}){{0,{room - 1}}}"] if room else []
        if room >= 2:
            after.append(f"(?:{_H16}:){{0,{room - 2}}}{_IPV4}")
        forms.append(f"{_groups(before)}::" + (f"(?:{'|'.join(after)})?" if after else ""))
    return f"(?:{'|'.join(forms)})(?:%[^%/\\]]+)?"


_IPV6 = _ipv6_regex()
# 0-65535 with any leading zeros, as int() reads the digits; the second form only from 1.
_PORT_FROM_1 = (
    "0*(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
)


# ---------------------------------------------------------------------------------------------
# Rules on a setting's value, attached to its type with ``Annotated``. Each rule both checks a
# converted value (``load()``) and says the same thing in JSON Schema (``config_schema``), so a
# bound is written once. A number setting without a ``Range`` must not be negative.


@dataclass(frozen=True, slots=True)
class Range:
    """Bounds of a number setting (inclusive unless ``exclusive_minimum``)."""

    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None

    def check(self, value: float, *, key: str) -> None:
        low_ok = self.minimum is None or value >= self.minimum
        above_ok = self.exclusive_minimum is None or value > self.exclusive_minimum
        high_ok = self.maximum is None or value <= self.maximum
        if not (low_ok and above_ok and high_ok):
            raise ConfigError(f"{key} must {self.describe()}, got {value!r}")

    def describe(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"be {_plain(self.minimum)} to {_plain(self.maximum)}"
        if self.maximum is not None:
            return f"be at most {_plain(self.maximum)}"
        if self.exclusive_minimum is not None:
            return f"be more than {_plain(self.exclusive_minimum)}"
        if self.minimum == 0:
            return "not be negative"
        return f"be at least {_plain(self.minimum or 0)}"

    def schema(self) -> dict[str, Any]:
        keywords = {
            "minimum": self.minimum,
            "exclusiveMinimum": self.exclusive_minimum,
            "maximum": self.maximum,
        }
        return {name: _plain(bound) for name, bound in keywords.items() if bound is not None}


NON_NEGATIVE = Range(minimum=0)
"""The rule of a number setting that names none: no count, size or duration is negative."""


@dataclass(frozen=True, slots=True)
class Length:
    """How many items a list setting may hold."""

    minimum: int = 0
    maximum: int | None = None

    def check(self, value: Sized, *, key: str) -> None:
        if len(value) < self.minimum or (self.maximum is not None and len(value) > self.maximum):
            raise ConfigError(f"{key} has {len(value)} entries; {self.describe()} allowed")

    def describe(self) -> str:
        if self.maximum is None:
            return f"at least {self.minimum}"
        if self.minimum == 0:
            return f"at most {self.maximum}"
        return f"{self.minimum} to {self.maximum}"

    def schema(self) -> dict[str, Any]:
        keywords = {"minItems": self.minimum or None, "maxItems": self.maximum}
        return {name: bound for name, bound in keywords.items() if bound is not None}


@dataclass(frozen=True, slots=True)
class Pattern:
    """The form of a string setting: a regular expression that Python's ``re`` and JSON Schema
    validators (Go's RE2 in helm) read alike, so it stays to plain classes, groups, repeats."""

    regex: str
    complaint: str
    """Said after the key and the value when it does not match: ``is not a valid DNS name``."""

    def check(self, value: str, *, key: str) -> None:
        if re.fullmatch(self.regex, value) is None:
            raise ConfigError(f"{key} {value!r} {self.complaint}")

    def schema(self) -> dict[str, Any]:
        return {"pattern": f"^(?:{self.regex})$"}


@dataclass(frozen=True, slots=True)
class Address:
    """A ``HOST:PORT`` setting (a ``HostPort``) and the lowest port it may name."""

    min_port: int = 0

    def check(self, value: HostPort, *, key: str) -> None:
        if value.port < self.min_port:
            raise ConfigError(
                f"{key}: {value} has port {value.port}; {self.min_port}-65535 allowed"
            )

    def schema(self) -> dict[str, Any]:
        port = _PORT_FROM_1 if self.min_port >= 1 else f"{_PORT_FROM_1}|0+"
        return {"pattern": f"^(?:{_IPV4}|\\[(?:{_IPV6}|{_IPV4})\\]):(?:{port})$"}


Rule = Range | Length | Pattern | Address


def _plain(number: float) -> float | int:
    """``5.0`` -> ``5``: bounds read as people write them, in messages and in the schema."""
    return int(number) if float(number).is_integer() else number


@dataclass(frozen=True, slots=True)
class HostPort:
    """An address to bind or to send to. IPv6 hosts are written ``[::1]:53``."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


# The kinds of value settings take, each with its rules (see ``Range`` and the rest above).
TTL = Annotated[int, Range(minimum=0, maximum=2**31 - 1)]
"""Seconds in a TTL field, which has 31 bits (RFC 2181 section 8)."""
Seconds = Annotated[float, Range(exclusive_minimum=0)]
"""A time-out or interval: zero would mean never waiting, or spinning."""
AtLeastOne = Annotated[int, Range(minimum=1)]
"""A limit that would stop all work at 0."""
Upstream = Annotated[HostPort, Address(min_port=1)]
"""Where queries are sent; port 0 would mean "any port" on a bind, no port at all here."""
Upstreams = Annotated[tuple[Upstream, ...], Length(maximum=MAX_UPSTREAMS)]
DNSName = Annotated[str, Pattern(r"[^.]{1,63}(?:\.[^.]{1,63})*\.?", "is not a valid DNS name")]
"""Labels of 1 to 63 characters, an optional final dot; matched case-insensitively."""
IPAddress = Annotated[str, Pattern(f"{_IPV4}|{_IPV6}", "is not an IP address")]
AnnotationName = Annotated[
    str,
    Pattern(
        r"(?:[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?",
        "is not an annotation name (an optional DNS prefix and '/', then up to 63 of "
        "[-A-Za-z0-9_.], starting and ending alphanumeric)",
    ),
]


@dataclass(frozen=True, slots=True)
class TTLConfig:
    """Time-to-live values in seconds for answers from the cluster zone."""

    records: TTL = 5
    """A, AAAA, SRV, PTR and CNAME records of services and pods (kube-dns and CoreDNS use 5 s)."""
    dns_version: TTL = 28800
    """The ``dns-version`` TXT record, which never changes while the server runs."""
    negative: TTL = 5
    """SOA minimum, which resolvers use as the TTL of NXDOMAIN and NODATA (RFC 2308)."""


@dataclass(frozen=True, slots=True)
class TCPConfig:
    """DNS over TCP limits (RFC 7766)."""

    idle_timeout: Seconds = 10.0
    """Seconds a connection may sit idle between queries before it is closed (CoreDNS
    ``timeouts`` plugin: idle 10 s)."""
    max_connections: AtLeastOne = 1000
    """Connections open at once. A new connection past it closes the idlest one that has no
    query pending, so a new client always gets in (RFC 7766 section 6.2.3); it is refused only
    when every connection has a query in flight. Lowered at start, and logged, when it would
    not fit the open-files limit with ``forward.max_concurrent`` exchanges."""
    max_connections_per_client: AtLeastOne = 100
    """Connections one source address may hold; its next one closes its own idlest (or is
    refused if all are busy), so one client cannot take the slots of the others. Generous:
    NodeLocal DNSCache opens one connection per concurrent query from one node address."""
    write_timeout: Seconds = 5.0
    """Seconds a connection may be unable to flush its replies (a client that does not read)
    before it is aborted (CoreDNS ``timeouts`` plugin: write 5 s)."""
    max_lifetime: Seconds = 60.0
    """Seconds after which a connection takes no more queries and closes once its pending
    ones are answered, so a trickle of queries cannot hold a slot forever. Clients reconnect
    (RFC 7766 section 6.2.3); CoreDNS closes a connection after 128 queries instead."""


@dataclass(frozen=True, slots=True)
class UDPConfig:
    """DNS over UDP."""

    batch: bool = True
    """Read and answer datagrams in batches, many per system call (``recvmmsg``/``sendmmsg``,
    Linux only; elsewhere this is ignored). False uses asyncio's datagram transport: one
    system call per query and one per reply, about 1.5 times the CPU per answer under load
    (``python -m bench.zone --dgram``)."""


@dataclass(frozen=True, slots=True)
class RepliesConfig:
    """How every reply is sized, ordered and kept, whatever answered it (zone or forwarder)."""

    udp_size: Annotated[int, Range(minimum=512, maximum=4096)] = 1232
    """Bytes: the largest UDP reply sent and the EDNS payload size advertised (DNS Flag Day
    2020; CoreDNS ``bufsize``). A client's smaller EDNS size wins; without EDNS it is 512. A
    reply that does not fit carries the records that fit, with TC set when answers were cut."""
    rotate: bool = True
    """Serve A, AAAA and equal-priority SRV RRsets of several records in a rotating order, so
    clients that take the first address spread over endpoints (CoreDNS ``loadbalance``)."""
    cache_bytes: int = 32 * 1024 * 1024
    """Bytes of ready-made replies kept for the fast path (both zone and forwarded answers),
    oldest dropped first; 0 turns the fast path off (every query takes the full path)."""


@dataclass(frozen=True, slots=True)
class OpsConfig:
    """The operations endpoint: ``/metrics`` (Prometheus), ``/health`` and ``/ready``."""

    listen: HostPort | None = None
    """HTTP address for the three paths; off when unset (the Helm chart sets ``0.0.0.0:9153``,
    CoreDNS's metrics port, so existing scrape configs keep working)."""
    lame_duck: float = 0.0
    """Seconds to keep answering after SIGTERM while ``/ready`` already says 503, so the
    Service stops routing here before the listeners close (CoreDNS ``health { lameduck }``)."""


MAX_RELOAD_INTERVAL = 86400.0
"""A day: an interval longer than this is a typo (milliseconds?) rather than a choice."""


@dataclass(frozen=True, slots=True)
class ReloadConfig:
    """Reloading the config file while serving (``kubedns serve --config FILE``; SIGHUP too)."""

    interval: Annotated[float, Range(minimum=0, maximum=MAX_RELOAD_INTERVAL)] = 5.0
    """Seconds between two reads of the config file; a changed content (a SHA-512 of the bytes,
    so the symlink swap of a mounted ConfigMap is seen too) is reloaded. 0 turns the polling
    off; SIGHUP still reloads. The kubelet takes about a minute to update a ConfigMap volume,
    so a few seconds here add little to that; reading a small file that often costs nothing."""


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """What is logged and how it is written (to standard error)."""

    level: LogLevel = "info"
    """The least severe level written: ``debug``, ``info``, ``warning`` or ``error``."""
    format: LogFormat = "json"
    """``json`` (one object a line, for log pipelines) or ``text`` (for a terminal)."""


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """The mutating admission webhook (``kubedns webhook``): resolv.conf and service variables.

    The DNS fields mirror the kubelet flags of the same meaning, so the webhook writes exactly
    what the kubelet on the node would have written (see ``kubedns/webhook/``).
    """

    listen: HostPort = field(default_factory=lambda: HostPort("0.0.0.0", 8443))
    """Where HTTPS is served (``POST /mutate``, ``GET /healthz``); 8443 needs no privileges."""
    tls_cert: Path | None = None
    """PEM certificate chain; re-read when the file changes (cert-manager rotates it)."""
    tls_key: Path | None = None
    """PEM private key matching ``tls_cert``; re-read together with it."""
    cluster_dns: tuple[IPAddress, ...] = ()
    """The kubelet's ``--cluster-dns``: nameserver IPs for ClusterFirst pods. Empty means none,
    and then, as on the kubelet, ClusterFirst pods keep the node's resolver (left alone)."""
    node_resolv_conf: Path | None = None
    """The kubelet's ``--resolv-conf``: the node's resolv.conf whose search domains ClusterFirst
    pods inherit. None (``--node-resolv-conf=``) means no node file, as the kubelet's empty
    value. The webhook's own /etc/resolv.conf is a pod's, so there is no useful default."""
    opt_out_annotation: AnnotationName = "kubedns.io/inject"
    """A pod annotated with this name and the value ``"false"`` is admitted unchanged."""
    marker_annotation: AnnotationName = "kubedns.io/injected"
    """Written on every pod the webhook changes, so a re-invocation leaves it alone."""
    max_body_bytes: AtLeastOne = 3 * 1024 * 1024
    """Largest AdmissionReview accepted (HTTP 413 past it); the API server's request limit is
    3 MiB, and a review carries one object of at most 1.5 MiB (twice for an UPDATE)."""
    max_env_bytes: AtLeastOne = 256 * 1024
    """Most bytes of service variables one patch may add, over all containers. Past it the pod
    keeps its resolver settings but gets no variables, with a warning the user sees; the API
    server could not store a pod grown past 1.5 MiB anyway."""
    max_connections: AtLeastOne = 256
    """Open connections at once, TLS handshakes included; more are closed at once."""
    handshake_timeout: Seconds = 10.0
    """Seconds a new connection has to finish its TLS handshake."""
    body_timeout: Seconds = 10.0
    """Seconds a client has to send a whole request body (so a trickle cannot hold a slot)."""
    idle_timeout: Seconds = 30.0
    """Seconds a connection may go with no request running before it is closed: idle
    keep-alive, and headers sent a byte at a time (aiohttp has no header timeout)."""
    max_reviews: AtLeastOne = 16
    """Reviews read and worked on at once; more wait with their bodies unread, so bodies in
    memory stay within ``max_reviews`` x ``max_body_bytes`` (48 MiB), not per connection."""
    workers: AtLeastOne = 2
    """Threads that decode and mutate reviews, off the event loop that answers /healthz."""


@dataclass(frozen=True, slots=True)
class ForwardConfig:
    """Where names outside the cluster zone are sent (CoreDNS ``forward``, kube-dns dnsmasq).

    A config file may also carry kube-dns's ConfigMap keys under ``forward.kube_dns_configmap``
    (``stubDomains`` and ``upstreamNameservers`` as the JSON strings kube-dns reads), so operators
    can migrate without rewriting; they are turned into ``stub_domains`` and ``upstreams``.
    """

    enabled: bool = True
    """Forward names outside the cluster zone. Off, kubedns is authoritative only: other names
    get REFUSED and unknown reverse names an authoritative NXDOMAIN."""
    upstreams: Upstreams = ()
    """Upstream resolvers, ``HOST:PORT``. Empty means the nameservers of ``/etc/resolv.conf``
    (the node's resolver, as the DNS pods run with dnsPolicy Default). At most 15."""
    policy: ForwardPolicy = "random"
    """Order in which upstreams are tried: ``sequential`` (list order, for a primary and its
    backups), ``random`` (spreads load; CoreDNS's default) or ``round_robin``."""
    timeout: Seconds = 5.0
    """Seconds one client query may spend on upstreams in total, split across the attempts;
    resolvers in pods retry after 5 s (resolv.conf default), so waiting longer helps nobody."""
    max_concurrent: AtLeastOne = 1000
    """Client queries waiting on upstreams at once; beyond this a query gets a fast REFUSED
    (as CoreDNS's ``max_concurrent``), so a slow upstream cannot pile up memory and tasks."""
    health_check_interval: Seconds = 0.5
    """Seconds between probes (``. IN NS``) of an upstream that is marked down (CoreDNS: 0.5)."""
    max_fails: AtLeastOne = 2
    """Consecutive failed exchanges after which an upstream is marked down and only probed
    until it answers again (CoreDNS's ``max_fails``)."""
    stub_domains: dict[
        DNSName, Annotated[tuple[Upstream, ...], Length(minimum=1, maximum=MAX_UPSTREAMS)]
    ] = field(default_factory=dict)
    """Per-domain upstreams (``corp.internal: ["10.150.0.2:53"]``); the longest matching
    suffix wins, as kube-dns's ``stubDomains``."""


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """The cache of forwarded answers (cluster answers are live and never cached here)."""

    size: int = 9984
    """Entries kept each for positive and for negative answers, least recently used evicted
    first (CoreDNS's default capacity). 0 turns the cache off."""
    max_bytes: int = 16 << 20
    """Bytes of answers kept each for positive and for negative answers, least recently used
    evicted first, whichever of this and ``size`` is reached first. Upstream answers can be
    large (64 KiB over TCP), so an entry count alone does not bound memory: names chosen by
    clients with 26 KB answers grew RSS by 330 MB. An answer larger than this is not kept."""
    min_ttl: TTL = 5
    """Seconds: positive answers are kept at least this long, so names with TTL 0 do not turn
    every query into an upstream query (CoreDNS ``success ... minttl``)."""
    max_ttl: TTL = 3600
    """Seconds: positive answers are kept at most this long, so a changed record is seen within
    an hour whatever its TTL says."""
    negative_max_ttl: TTL = 1800
    """Seconds: cap for NXDOMAIN and NODATA, whose TTL otherwise comes from the SOA (RFC 2308)."""
    servfail_ttl: Annotated[int, Range(minimum=0, maximum=5)] = 5
    """Seconds an upstream SERVFAIL is remembered (at most 5, RFC 2308 section 7.1), to shield a
    struggling upstream from retries without hiding its recovery. 0 disables."""
    serve_stale: bool = False
    """Answer from expired entries when every upstream fails (RFC 8767). Off by default: a
    stale answer can be wrong, and operators should choose it knowingly."""
    stale_max_age: TTL = 3600
    """Seconds after expiry an entry may still be served stale (CoreDNS ``serve_stale`` 1h)."""
    stale_answer_ttl: TTL = 30
    """TTL put on stale answers, so clients come back soon (RFC 8767 recommends 30 s)."""


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """How the live API source lists and watches (see ``kubedns.sources.kube``)."""

    page_size: AtLeastOne = 500
    """Objects per list page (``limit``); client-go's pager default. Bounds the memory of one
    response and the time the API server spends on one request in a large cluster."""
    watch_timeout: Seconds = 300.0
    """Seconds the API server keeps one watch open (``timeoutSeconds``, randomised up to twice
    this like client-go so watches of many replicas do not all reconnect at once)."""
    read_timeout: Seconds = 90.0
    """Seconds without a byte on an open watch before the connection counts as dead. Longer
    than the API server's bookmark interval (about 60 s), so an idle but healthy watch is kept."""
    connect_timeout: Seconds = 5.0
    """Seconds to establish a connection to the API server before retrying."""
    list_timeout: Seconds = 60.0
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

    cluster_domain: DNSName = "cluster.local"
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
    dns_service: Annotated[str, Pattern("[^/]+/[^/]+", "must be namespace/name")] = (
        "kube-system/kube-dns"
    )
    """``namespace/name`` of our own Service; its ClusterIPs answer for the NS target."""
    ttl: TTLConfig = field(default_factory=TTLConfig)
    tcp: TCPConfig = field(default_factory=TCPConfig)
    udp: UDPConfig = field(default_factory=UDPConfig)
    replies: RepliesConfig = field(default_factory=RepliesConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    reload: ReloadConfig = field(default_factory=ReloadConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    forward: ForwardConfig = field(default_factory=ForwardConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)

    @property
    def zone(self) -> str:
        """The cluster domain in canonical form: lowercase, no trailing dot."""
        return self.cluster_domain.lower().rstrip(".")


def parse_host_port(text: str, *, default_port: int | None = None) -> HostPort:
    """``HOST:PORT``, ``[V6]:PORT`` or (with a default port) a bare host."""
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
    if not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} in {text!r} is not 0-65535")
    return HostPort(_check_ip(host), int(port_text))


def _check_ip(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None


def load(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    text: str | None = None,
) -> Config:
    """Read ``path`` (YAML), apply ``overrides`` (dotted keys) and validate the result.

    With ``text`` that is the file's content, already read (a reload hashes and parses the
    same bytes); ``path`` then only names the file in messages."""
    raw: dict[str, Any] = {}
    if text is not None:
        raw = _parse_file(text, path)
    elif path is not None:
        raw = _read_file(path)
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    _expand_kube_dns_configmap(raw)
    config: Config = _build(Config, raw, prefix="")
    _validate(config)
    return config


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8: {exc}") from exc
    return _parse_file(text, path)


def _parse_file(text: str, path: Path | None) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
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
    hints = typing.get_type_hints(cls, include_extras=True)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        allowed = ", ".join(sorted(known))
        raise ConfigError(f"unknown setting {prefix}{unknown[0]} (allowed here: {allowed})")
    values = {name: _convert(hints[name], raw[name], key=prefix + name) for name in raw}
    return cls(**values)


def split_rules(hint: Any) -> tuple[Any, tuple[Rule, ...]]:
    """``Annotated[T, rule, ...]`` -> ``(T, rules)``, adding the rule a bare type implies:
    numbers must not be negative, an address may name any port."""
    base: Any = hint
    rules: tuple[Rule, ...] = ()
    if get_origin(hint) is Annotated:
        base, *extras = get_args(hint)
        rules = tuple(extra for extra in extras if isinstance(extra, Rule))
    if base in (int, float) and not any(isinstance(rule, Range) for rule in rules):
        rules += (NON_NEGATIVE,)
    if base is HostPort and not any(isinstance(rule, Address) for rule in rules):
        rules += (Address(),)
    return base, rules


def _convert(hint: Any, value: Any, *, key: str) -> Any:
    """Convert ``value`` to the type ``hint`` names, then check the rules it carries."""
    base, rules = split_rules(hint)
    converted = _convert_plain(base, value, key=key)
    for rule in rules:
        rule.check(converted, key=key)
    return converted


def _convert_plain(hint: Any, value: Any, *, key: str) -> Any:
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
    return hint(value)


def from_kube_dns_configmap(data: Mapping[str, Any]) -> dict[str, Any]:
    """kube-dns ConfigMap keys -> raw ``forward`` settings (``upstreams``, ``stub_domains``).

    ``stubDomains`` is a JSON map of domain -> list of ``ip[:port]``; ``upstreamNameservers`` a
    JSON list of ``ip[:port]``; a missing port means 53. Other kube-dns keys (``federations``)
    have no meaning here and are refused so nothing is silently dropped.
    """
    unknown = sorted(set(data) - {"stubDomains", "upstreamNameservers"})
    if unknown:
        raise ConfigError(
            f"forward.kube_dns_configmap.{unknown[0]} is not supported "
            "(allowed: stubDomains, upstreamNameservers)"
        )
    raw: dict[str, Any] = {}
    if "upstreamNameservers" in data:
        servers = _kube_dns_json(data, "upstreamNameservers", list)
        raw["upstreams"] = _kube_dns_servers(servers, key="upstreamNameservers")
    if "stubDomains" in data:
        stubs = _kube_dns_json(data, "stubDomains", dict)
        raw["stub_domains"] = {
            domain: _kube_dns_servers(servers, key=f"stubDomains.{domain}")
            for domain, servers in stubs.items()
        }
    return raw


def _kube_dns_json(data: Mapping[str, Any], key: str, kind: type[Any]) -> Any:
    value = data[key]
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as exc:
        raise ConfigError(f"forward.kube_dns_configmap.{key} is not valid JSON: {exc}") from None
    if not isinstance(parsed, kind):
        raise ConfigError(f"forward.kube_dns_configmap.{key} must be a JSON {kind.__name__}")
    return parsed


def _kube_dns_servers(servers: Any, *, key: str) -> list[str]:
    if not isinstance(servers, list):
        raise ConfigError(f"forward.kube_dns_configmap.{key} must be a list of ip[:port]")
    out = []
    for server in servers:
        try:
            out.append(str(parse_host_port(str(server).strip(), default_port=53)))
        except ValueError as exc:
            raise ConfigError(f"forward.kube_dns_configmap.{key}: {exc}") from None
    return out


def _expand_kube_dns_configmap(raw: dict[str, Any]) -> None:
    """Replace ``forward.kube_dns_configmap`` by the settings it stands for, in place."""
    forward = raw.get("forward")
    if not isinstance(forward, dict) or "kube_dns_configmap" not in forward:
        return
    configmap = forward.pop("kube_dns_configmap")
    if not isinstance(configmap, Mapping):
        raise ConfigError("forward.kube_dns_configmap must be a mapping of kube-dns keys")
    for name, value in from_kube_dns_configmap(configmap).items():
        if name in forward:
            raise ConfigError(
                f"forward.{name} and forward.kube_dns_configmap both set it; keep one"
            )
        forward[name] = value


def _validate_forward(forward: ForwardConfig, zone: str) -> None:
    seen: set[str] = set()
    for domain in forward.stub_domains:
        key = f"forward.stub_domains.{domain}"
        name = domain.lower().rstrip(".")
        if name in seen:
            raise ConfigError(f"{key} repeats a domain (names are case-insensitive)")
        seen.add(name)
        if name == zone or name.endswith("." + zone):
            raise ConfigError(f"{key}: names in the cluster zone {zone} are never forwarded")


def _validate_cache(cache: CacheConfig) -> None:
    if cache.min_ttl > cache.max_ttl:
        raise ConfigError(
            f"cache.min_ttl ({cache.min_ttl}) must not exceed cache.max_ttl ({cache.max_ttl})"
        )
    if cache.size > 0 and cache.max_bytes < 1024:
        raise ConfigError(
            f"cache.max_bytes is {cache.max_bytes}; at least 1024 while the cache is on "
            "(cache.size 0 turns it off)"
        )
    if cache.serve_stale and cache.stale_answer_ttl < 1:
        raise ConfigError("cache.stale_answer_ttl must be at least 1 when serve_stale is on")


def _validate(config: Config) -> None:
    """Checks across fields, which the rules of single fields cannot express (and neither can
    the JSON Schema generated from them: ``kubedns.config_schema`` lists these)."""
    if config.snapshot is not None and config.kubeconfig is not None:
        raise ConfigError("snapshot and kubeconfig are exclusive: serve a file or a cluster")
    _validate_forward(config.forward, config.zone)
    _validate_cache(config.cache)
    if config.watch.backoff_cap < config.watch.backoff_base:
        raise ConfigError("watch.backoff_cap must not be less than watch.backoff_base")
