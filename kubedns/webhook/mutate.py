"""The pod mutation: pure, from a pod and the cluster's Services to a JSONPatch.

On CREATE the pod gets the kubelet's resolver configuration (see ``dnsconfig``) and every init
(sidecars included) and regular container gets the kubelet's service variables (see
``envvars``). On UPDATE of the ``pods/ephemeralcontainers`` subresource only the ephemeral
containers that are new get their variables: the rest of the pod is immutable by then.

Precedence is the kubelet's: a container's own ``env`` beats ``envFrom`` beats service
variables. So a variable is injected only if neither the container's ``env`` nor a ConfigMap it
imports through ``envFrom`` (with its prefix) defines the name, and injected variables go
before the user's, so ``$(VAR)`` references in the user's values still expand.

What a patch may add is bounded (every client is a stranger: one pod with 1,000 containers in a
namespace of 200 Services would otherwise get a 200 MB patch). Past ``max_env_bytes`` of added
variables, or past ``MAX_CHECKS`` name look-ups, the pod keeps its resolver settings but gets
no service variables at all (half a set would be worse than none: a program cannot tell), and
the ``Mutation`` says so, for the warning the user sees.

A pod annotated ``<opt_out_annotation>: "false"`` is left alone, and a pod the webhook changed
carries ``<marker_annotation>``, so a re-invocation (``reinvocationPolicy: IfNeeded``) leaves it
alone too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from kubedns.objects import ConfigMap, Service
from kubedns.webhook.dnsconfig import DNSSettings, cluster_dns_config, uses_cluster_dns
from kubedns.webhook.envvars import from_services, select_services
from kubedns.webhook.review import PatchOp

EPHEMERAL_SUBRESOURCE = "ephemeralcontainers"
CREATE_CONTAINER_FIELDS = ("initContainers", "containers")
"""Ephemeral containers cannot be set at creation; they arrive by the subresource later."""


@dataclass(frozen=True, slots=True)
class MutateSettings:
    dns: DNSSettings
    opt_out_annotation: str
    """A pod with this annotation set to ``"false"`` is admitted unchanged."""
    marker_annotation: str
    """Set to ``"true"`` on every pod the webhook changes at creation."""
    max_env_bytes: int = 256 * 1024
    """Most bytes of service variables (as JSON) one patch may add, over all containers."""


SkipReason = Literal["opted_out", "already_injected", "not_applicable"]
"""Why a pod was left alone on purpose: the opt-out annotation, the marker of an earlier
admission, or an operation (or subresource) the webhook does not change."""

MAX_CHECKS = 2_000_000
"""Most variable-name look-ups for one pod (each container costs one per candidate variable
and one per key it imports through ``envFrom``): bounds the CPU time a pod whose containers
already define every variable can cost, about a quarter of a second."""


@dataclass(frozen=True, slots=True)
class Mutation:
    """What ``mutate`` decided: the patch, and whether service variables were left out."""

    patch: list[PatchOp] = field(default_factory=list)
    env_bytes: int = 0
    """Bytes of service variables the patch adds (JSON of the ``{name, value}`` entries)."""
    over_budget: bool = False
    """The variables were left out: they would have passed ``max_env_bytes`` or ``MAX_CHECKS``."""
    skipped: SkipReason | None = None
    """Why the pod was left alone on purpose (the patch is then empty); None when it was not."""


class _OverBudgetError(Exception):
    """Raised inside the container walk as soon as the budget is spent."""


class _Budget:
    """Bytes and look-ups left for one pod."""

    def __init__(self, max_bytes: int) -> None:
        self.bytes_left = max_bytes
        self.checks_left = MAX_CHECKS
        self.spent_bytes = 0

    def check(self, count: int) -> None:
        self.checks_left -= count
        if self.checks_left < 0:
            raise _OverBudgetError

    def spend(self, count: int) -> None:
        self.bytes_left -= count
        self.spent_bytes += count
        if self.bytes_left < 0:
            raise _OverBudgetError


def mutate(
    pod: Mapping[str, Any],
    *,
    operation: str,
    subresource: str,
    namespace: str,
    old_pod: Mapping[str, Any] | None,
    services: Iterable[Service],
    configmaps: Mapping[str, ConfigMap],
    settings: MutateSettings,
) -> Mutation:
    """The JSONPatch that makes ``pod`` what the kubelet would run; empty when nothing to do.

    ``services`` are the candidates (the pod's namespace and ``default``), ``configmaps`` the
    pod namespace's ConfigMaps by name.
    """
    if is_opted_out(pod, settings):
        return Mutation(skipped="opted_out")
    spec = _mapping(pod.get("spec"))
    links = spec.get("enableServiceLinks") is not False
    variables = from_services(
        select_services(services, namespace=namespace, enable_service_links=links)
    )
    budget = _Budget(settings.max_env_bytes)
    if operation == "CREATE" and not subresource:
        if _annotations(pod).get(settings.marker_annotation):
            return Mutation(skipped="already_injected")
        try:
            ops = _container_ops(spec, CREATE_CONTAINER_FIELDS, variables, configmaps, budget)
        except _OverBudgetError:
            ops = []
        over = budget.bytes_left < 0 or budget.checks_left < 0
        ops += _dns_ops(spec, namespace, settings.dns)
        if not ops:
            return Mutation(over_budget=over)
        patch = [*ops, _marker_op(pod, settings.marker_annotation)]
        return Mutation(patch, 0 if over else budget.spent_bytes, over)
    if operation == "UPDATE" and subresource == EPHEMERAL_SUBRESOURCE:
        known = _container_names(_mapping(_mapping(old_pod).get("spec")), "ephemeralContainers")
        fields = ("ephemeralContainers",)
        try:
            ops = _container_ops(spec, fields, variables, configmaps, budget, skip=known)
        except _OverBudgetError:
            return Mutation(over_budget=True)
        return Mutation(ops, budget.spent_bytes)
    return Mutation(skipped="not_applicable")


def is_opted_out(pod: Mapping[str, Any], settings: MutateSettings) -> bool:
    value = _annotations(pod).get(settings.opt_out_annotation)
    return isinstance(value, str) and value.strip().lower() == "false"


def envfrom_names(container: Mapping[str, Any], configmaps: Mapping[str, ConfigMap]) -> set[str]:
    """Names a container imports from ConfigMaps through ``envFrom`` (prefix applied).

    The kubelet also drops keys that are not valid variable names, but every service variable
    name is valid, so that check cannot change which variables are injected. Names imported
    from Secrets are unknown here (the webhook does not read Secrets): see the README.
    """
    names: set[str] = set()
    for source in _list(container.get("envFrom")):
        ref = _mapping(source.get("configMapRef"))
        configmap = configmaps.get(str(ref.get("name", "")))
        if configmap is not None:
            prefix = str(source.get("prefix") or "")
            names.update(prefix + key for key in configmap.keys)
    return names


def env_op(
    container: Mapping[str, Any],
    *,
    path: str,
    variables: Mapping[str, str],
    configmaps: Mapping[str, ConfigMap],
    budget: _Budget | None = None,
) -> PatchOp | None:
    """Put the missing service variables in front of the container's own ``env``."""
    budget = budget if budget is not None else _Budget(1 << 62)
    raw_env = container.get("env")
    env: list[Any] = raw_env if isinstance(raw_env, list) else []
    budget.check(len(variables) + len(env))
    imported = envfrom_names(container, configmaps)
    budget.check(len(imported))
    defined = {str(item.get("name")) for item in _list(env)} | imported
    injected = [
        {"name": name, "value": value} for name, value in variables.items() if name not in defined
    ]
    if not injected:
        return None
    # Compact JSON of each entry plus its comma: what the entries add to the patch.
    budget.spend(sum(len(json.dumps(item, separators=(",", ":"))) + 1 for item in injected))
    # ``add`` on an existing member replaces it (RFC 6902), so one operation covers both an
    # absent and a present ``env`` and the user's entries keep their order behind ours.
    return PatchOp(op="add", path=f"{path}/env", value=[*injected, *env])


def _container_ops(
    spec: Mapping[str, Any],
    fields: Sequence[str],
    variables: Mapping[str, str],
    configmaps: Mapping[str, ConfigMap],
    budget: _Budget,
    *,
    skip: frozenset[str] = frozenset(),
) -> list[PatchOp]:
    ops: list[PatchOp] = []
    for name in fields:
        for index, container in enumerate(_list(spec.get(name))):
            if container.get("name") in skip:
                continue
            path = f"/spec/{name}/{index}"
            op = env_op(
                container, path=path, variables=variables, configmaps=configmaps, budget=budget
            )
            if op is not None:
                ops.append(op)
    return ops


def _dns_ops(spec: Mapping[str, Any], namespace: str, settings: DNSSettings) -> list[PatchOp]:
    policy = spec.get("dnsPolicy")
    host_network = spec.get("hostNetwork") is True
    if not uses_cluster_dns(policy=str(policy or ""), host_network=host_network, settings=settings):
        return []
    user = spec.get("dnsConfig")
    config = cluster_dns_config(
        namespace=namespace, user=user if isinstance(user, Mapping) else None, settings=settings
    )
    return [
        PatchOp(op="add", path="/spec/dnsPolicy", value="None"),
        PatchOp(op="add", path="/spec/dnsConfig", value=config),
    ]


def _marker_op(pod: Mapping[str, Any], annotation: str) -> PatchOp:
    metadata = pod.get("metadata")
    if not isinstance(metadata, Mapping):
        return PatchOp(op="add", path="/metadata", value={"annotations": {annotation: "true"}})
    if not isinstance(metadata.get("annotations"), Mapping):
        return PatchOp(op="add", path="/metadata/annotations", value={annotation: "true"})
    return PatchOp(op="add", path=f"/metadata/annotations/{_pointer(annotation)}", value="true")


def _pointer(token: str) -> str:
    """Escape one JSON Pointer reference token (RFC 6901): ``~`` first, then ``/``."""
    return token.replace("~", "~0").replace("/", "~1")


def _container_names(spec: Mapping[str, Any], field: str) -> frozenset[str]:
    return frozenset(str(c.get("name")) for c in _list(spec.get(field)))


def _annotations(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(_mapping(pod.get("metadata")).get("annotations"))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Mapping[str, Any]]:
    """The mappings of a list field; anything else (absent, null, malformed) is empty."""
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []
