"""The webhook's view of the cluster: Services and ConfigMaps by namespace.

``ServiceCatalog.apply`` is an ``EventSink``: the snapshot loader and the live API watch feed
it the same events they feed the DNS index, but the webhook keeps its own small copy and never
touches the DNS answer path. ``apply`` is synchronous, so a review never sees half an update.
"""

from __future__ import annotations

from collections.abc import Iterable

from kubedns.objects import ConfigMap, Kind, Service, SlimObject
from kubedns.sources.events import Delete, Event, Replace, Upsert
from kubedns.webhook import metrics
from kubedns.webhook.envvars import MASTER_NAMESPACE

WATCHED_KINDS: tuple[Kind, ...] = ("Service", "ConfigMap")
"""The kinds the webhook needs from a source; every other event is ignored."""


class ServiceCatalog:
    """Services and ConfigMaps keyed by namespace, with sync state per kind."""

    def __init__(self) -> None:
        self._services: dict[str, dict[str, Service]] = {}
        self._configmaps: dict[str, dict[str, ConfigMap]] = {}
        self._synced: set[Kind] = set()

    @property
    def is_synced(self) -> bool:
        """True once a full list of every watched kind has arrived."""
        return self._synced.issuperset(WATCHED_KINDS)

    def apply(self, event: Event) -> None:
        """Take one source event; events about other kinds are ignored."""
        match event:
            case Upsert(obj=obj):
                self._store(obj)
            case Delete(kind="Service", namespace=namespace, name=name):
                self._services.get(namespace, {}).pop(name, None)
            case Delete(kind="ConfigMap", namespace=namespace, name=name):
                self._configmaps.get(namespace, {}).pop(name, None)
            case Replace(kind=kind, objects=objects) if kind in WATCHED_KINDS:
                self._replace(kind, objects)
        metrics.SERVICES.set(sum(len(by_name) for by_name in self._services.values()))

    def services_for(self, namespace: str) -> list[Service]:
        """The candidates for a pod's variables: its namespace's Services and ``default``'s."""
        own = list(self._services.get(namespace, {}).values())
        if namespace == MASTER_NAMESPACE:
            return own
        return own + list(self._services.get(MASTER_NAMESPACE, {}).values())

    def configmaps_in(self, namespace: str) -> dict[str, ConfigMap]:
        """ConfigMaps of one namespace by name (``envFrom`` only reaches its own namespace)."""
        return dict(self._configmaps.get(namespace, {}))

    def _store(self, obj: SlimObject) -> None:
        if isinstance(obj, Service):
            self._services.setdefault(obj.namespace, {})[obj.name] = obj
        elif isinstance(obj, ConfigMap):
            self._configmaps.setdefault(obj.namespace, {})[obj.name] = obj

    def _replace(self, kind: Kind, objects: Iterable[SlimObject]) -> None:
        if kind == "Service":
            self._services = {}
        else:
            self._configmaps = {}
        for obj in objects:
            self._store(obj)
        self._synced.add(kind)
