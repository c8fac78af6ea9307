"""A pod's resolver configuration, computed as the kubelet computes it.

The kubelet builds each pod's resolv.conf from its ``dnsPolicy``, ``hostNetwork``, its own
``--cluster-dns``/``--cluster-domain``/``--resolv-conf`` flags and the pod's ``dnsConfig``. The
webhook runs the same rules at admission and writes the result as ``dnsPolicy: None`` with a
complete ``dnsConfig``; the kubelet then reproduces it unchanged (for ``None`` it starts empty
and merges ``dnsConfig`` with duplicates removed, which this result already is).

Policies the kubelet does not point at cluster DNS (``Default``, ``None``, ``ClusterFirst`` on
the host network) and every policy when no cluster DNS is configured are left alone: the
kubelet gives those pods the node's resolver, which the webhook cannot improve on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

log = logging.getLogger(__name__)

MAX_NAMESERVERS = 3
"""The API server's limit (from glibc's MAXNS)."""
MAX_SEARCH_PATHS = 32
MAX_SEARCH_LINE_CHARS = 2048
MAX_SEARCH_ENTRY_CHARS = 253
"""Longer search entries abort some resolvers (glibc 2.28); the kubelet drops them."""
DEFAULT_OPTIONS = ("ndots:5",)
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


class DNSOption(TypedDict):
    """One ``spec.dnsConfig.options`` entry as the API spells it."""

    name: str
    value: NotRequired[str]


class PodDNSConfig(TypedDict, total=False):
    """``spec.dnsConfig``; the API omits empty lists, and so does the webhook."""

    nameservers: list[str]
    searches: list[str]
    options: list[DNSOption]


@dataclass(frozen=True, slots=True)
class ResolvConf:
    """What the kubelet reads from the node's resolv.conf."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DNSSettings:
    """The kubelet flags that shape a pod's resolver, as the webhook was given them."""

    cluster_dns: tuple[str, ...]
    """``--cluster-dns``, canonical IP text; empty means ClusterFirst pods are left alone."""
    cluster_domain: str
    """``--cluster-domain`` without a trailing dot; empty adds no cluster search domains."""
    node: ResolvConf
    """The parsed ``--resolv-conf`` file (empty when there is none)."""


def parse_resolv_conf(text: str) -> ResolvConf:
    """Read resolv.conf as the kubelet does.

    ``nameserver`` lines accumulate; the last ``search`` line wins, with trailing dots
    stripped and a lone ``.`` dropped; ``options`` accumulate, a later option replacing an
    earlier one of the same name. ``domain`` and other lines are ignored, as by the kubelet
    (which never turns ``domain`` into a search entry). Comments start with ``#``.
    """
    nameservers: list[str] = []
    searches: list[str] = []
    options: dict[str, str] = {}
    for line in text.split("\n"):
        fields = line.strip().split()
        if not fields or fields[0].startswith("#"):
            continue
        keyword, values = fields[0], fields[1:]
        if keyword == "nameserver" and values:
            nameservers.append(values[0])
        elif keyword == "search":
            searches = [s.removesuffix(".") for s in values if s != "."]
        elif keyword == "options":
            options.update((option.split(":")[0], option) for option in values)
    return ResolvConf(tuple(nameservers), tuple(searches), tuple(options.values()))


def usable_node_searches(node: ResolvConf) -> ResolvConf:
    """Node search domains in a form the API server accepts in a pod's ``dnsConfig``.

    The kubelet writes them into resolv.conf directly, but the webhook writes them into the
    pod, where an invalid entry would make the API server reject the pod: the one outcome the
    webhook must never cause. Upper case is lowered (DNS names compare case-insensitively, so
    the resolver behaves the same); entries still invalid (``_``, empty labels) are dropped,
    each with a warning. Entries over 253 characters are left to the search limits.
    """
    kept: list[str] = []
    for search in node.searches:
        lowered = search.lower()
        if _DNS1123_SUBDOMAIN.match(lowered):
            kept.append(lowered)
        else:
            log.warning(
                "node resolv.conf search domain %r is not a valid DNS name; ignored", search
            )
    return ResolvConf(node.nameservers, tuple(dict.fromkeys(kept)), node.options)


def uses_cluster_dns(*, policy: str, host_network: bool, settings: DNSSettings) -> bool:
    """Whether the kubelet would point this pod at the cluster DNS servers."""
    if not settings.cluster_dns:
        return False
    # The API server defaults an absent policy to ClusterFirst before admission.
    policy = policy or "ClusterFirst"
    return policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not host_network)


def cluster_dns_config(
    *, namespace: str, user: Mapping[str, Any] | None, settings: DNSSettings
) -> PodDNSConfig:
    """The complete ``dnsConfig`` of a pod that uses cluster DNS, limits applied."""
    nameservers = list(settings.cluster_dns)
    searches = cluster_searches(namespace, settings)
    options = list(DEFAULT_OPTIONS)
    if user is not None:
        nameservers = _unique([*nameservers, *_strings(user.get("nameservers"))])
        searches = _unique([*searches, *_strings(user.get("searches"))])
        options = merge_options(options, _user_options(user.get("options")))
    return _to_api(fit_nameservers(nameservers), fit_searches(searches), options)


def cluster_searches(namespace: str, settings: DNSSettings) -> list[str]:
    """``<ns>.svc.<domain>``, ``svc.<domain>``, ``<domain>``, then the node's, de-duplicated."""
    domain = settings.cluster_domain
    if not domain:
        return list(settings.node.searches)
    return _unique([f"{namespace}.svc.{domain}", f"svc.{domain}", domain, *settings.node.searches])


def merge_options(base: Iterable[str], overrides: Iterable[tuple[str, str | None]]) -> list[str]:
    """Options keyed by name: an override replaces the value in place, new names append.

    The kubelet merges through a Go map (random order); keeping first-seen order makes the
    result deterministic with the same content. A name with an empty value is written bare.
    """
    merged: dict[str, str] = {}
    for option in base:
        name, _, value = option.partition(":")
        merged[name] = value
    for name, override in overrides:
        merged[name] = override or ""
    return [f"{name}:{value}" if value else name for name, value in merged.items()]


def fit_nameservers(nameservers: Sequence[str]) -> list[str]:
    """At most three nameservers, the first ones kept."""
    return list(nameservers[:MAX_NAMESERVERS])


def fit_searches(searches: Sequence[str]) -> list[str]:
    """The kubelet's search limits, in its order: 32 entries, no entry over 253 characters,
    then whole entries cut from the end until the line fits 2048 characters."""
    kept = [s for s in searches[:MAX_SEARCH_PATHS] if len(s) <= MAX_SEARCH_ENTRY_CHARS]
    while kept and len(" ".join(kept)) > MAX_SEARCH_LINE_CHARS:
        kept.pop()
    return kept


def _to_api(nameservers: list[str], searches: list[str], options: list[str]) -> PodDNSConfig:
    config = PodDNSConfig()
    if nameservers:
        config["nameservers"] = nameservers
    if searches:
        config["searches"] = searches
    if options:
        config["options"] = [_api_option(option) for option in options]
    return config


def _api_option(option: str) -> DNSOption:
    name, sep, value = option.partition(":")
    return DNSOption(name=name, value=value) if sep else DNSOption(name=name)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _strings(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _user_options(value: Any) -> list[tuple[str, str | None]]:
    if not isinstance(value, list):
        return []
    return [
        (str(option["name"]), _option_value(option.get("value")))
        for option in value
        if isinstance(option, Mapping) and option.get("name")
    ]


def _option_value(value: Any) -> str | None:
    return str(value) if isinstance(value, str) else None
