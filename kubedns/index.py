"""The record index: slim cluster objects in, a read-only name tree out.

``apply(event)`` is synchronous and runs on the event loop thread, so a query sees the index
before or after an event, never half of it. Each Service contributes the records computed by
``records.service_records``; the index merges contributions per owner name (two headless
services may share an endpoint IP, hence a PTR name), counts every ancestor of every owner so
empty non-terminals exist, and bumps the SOA serial and ``generation`` only when what DNS can
see actually changed.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator

from kubedns.objects import (
    EndpointSlice,
    Kind,
    Namespace,
    Pod,
    Service,
    SlimObject,
)
from kubedns.records import (
    Contribution,
    Rdata,
    RRsets,
    StoredRRsets,
    ZoneNames,
    address_type,
    compact,
    expand,
    service_records,
)
from kubedns.sources.events import Delete, Event, Replace, Upsert

Key = tuple[str, str]
ContributorKey = tuple[str, str, str]
"""("svc", namespace, name) for a Service, ("ns", "", name) for a Namespace."""

REQUIRED_KINDS: tuple[Kind, ...] = ("Namespace", "Service", "EndpointSlice")


class RecordIndex:
    """Everything the cluster zone answers from, kept current by ``apply``."""

    def __init__(
        self,
        *,
        zone: str,
        dns_service: Key = ("kube-system", "kube-dns"),
        required_kinds: Iterable[Kind] = REQUIRED_KINDS,
        serial: int | None = None,
    ) -> None:
        self.names = ZoneNames(zone)
        self.zone = zone
        self.dns_service = dns_service
        self.serial = int(time.time()) if serial is None else serial
        self.generation = 0
        """Bumped on every visible change and on sync; answer caches compare against it."""
        self._required = frozenset(required_kinds)
        self._synced: set[Kind] = set()
        self._namespaces: set[str] = set()
        self._services: dict[Key, Service] = {}
        self._slices: dict[Key, EndpointSlice] = {}
        self._slices_by_service: dict[Key, tuple[str, ...]] = {}
        """Slice names per Service, as tuples: nearly every Service has one slice, and a tuple
        of one costs a fifth of a set of one."""
        self._pods: dict[Key, Pod] = {}
        self._pod_ips: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._contributions: dict[ContributorKey, Contribution] = {}
        self._owners: dict[str, ContributorKey | list[ContributorKey]] = {}
        """Who contributes records to each name: the contributor itself when there is one (nearly
        always, and no container per name), a list in contribution order when several do."""
        self._records: dict[str, StoredRRsets] = {}
        self._existing: Counter[str] = Counter()
        self._add_structure()

    # -- reading (the answer path) ------------------------------------------------------------

    @property
    def is_synced(self) -> bool:
        """True once every required kind has had its first complete list."""
        return self._required <= self._synced

    def require(self, kinds: Iterable[Kind]) -> None:
        """Count as synced only once ``kinds`` have all been listed (the watched kinds changed
        on a reload). A reload adds a kind only after applying its first list, so serving
        that was synced stays synced (and ``/ready`` stays 200)."""
        self._required = frozenset(kinds)
        self.generation += 1

    def records(self, name: str) -> RRsets | None:
        """The RRsets owned by ``name`` (lowercase, no trailing dot), or None."""
        stored = self._records.get(name)
        return None if stored is None else expand(stored)

    def owners(self) -> Iterator[tuple[str, RRsets]]:
        """Every owner name with its RRsets (for exporting the zone, e.g. to a benchmark peer)."""
        return ((name, expand(stored)) for name, stored in self._records.items() if stored)

    def owner_count(self) -> int:
        """Names that own at least one record (empty non-terminals left out); walks the
        index, so it is for scrapes and logs, not for the answer path."""
        return sum(1 for stored in self._records.values() if stored)

    def exists(self, name: str) -> bool:
        """Whether ``name`` owns records or is an ancestor of a name that does (an ENT)."""
        return name in self._existing

    def namespace_exists(self, namespace: str) -> bool:
        """A Namespace object, or (in snapshots without them) any Service or Pod in it."""
        return (
            namespace in self._namespaces
            or self.names.namespace(namespace) in self._existing
            or bool(self._pod_ips.get(namespace))
        )

    def pod_has_ip(self, namespace: str, ip: str) -> bool:
        return self._pod_ips[namespace][ip] > 0 if namespace in self._pod_ips else False

    # -- writing (the event sources) ----------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Apply one event from a source; idempotent, and a no-op when nothing visible changed."""
        match event:
            case Upsert(obj=obj):
                self._upsert(obj)
            case Delete(kind=kind, namespace=namespace, name=name):
                self._delete(kind, (namespace, name))
            case Replace(kind=kind, objects=objects):
                self._replace(kind, objects)

    def _upsert(self, obj: SlimObject) -> None:
        match obj:
            case Namespace(name=name):
                if name not in self._namespaces:
                    self._namespaces.add(name)
                    self._contribute(("ns", "", name), {self.names.namespace(name): {}})
            case Service():
                if self._services.get(obj.key) != obj:
                    self._services[obj.key] = obj
                    self._refresh_service(obj.key)
            case EndpointSlice():
                old = self._slices.get(obj.key)
                if old != obj:
                    self._store_slice(obj, old)
            case Pod():
                old_pod = self._pods.get(obj.key)
                if old_pod != obj:
                    self._forget_pod(old_pod)
                    self._pods[obj.key] = obj
                    self._pod_ips[obj.namespace].update(obj.ips)
                    self._pods_changed()

    def _delete(self, kind: Kind, key: Key) -> None:
        match kind:
            case "Namespace":
                if key[1] in self._namespaces:
                    self._namespaces.discard(key[1])
                    self._contribute(("ns", "", key[1]), {})
            case "Service":
                if self._services.pop(key, None) is not None:
                    self._refresh_service(key)
            case "EndpointSlice":
                old = self._slices.pop(key, None)
                if old is not None:
                    self._unlink_slice(old)
                    self._slices_changed((old.namespace, old.service_name))
            case "Pod":
                pod = self._pods.pop(key, None)
                if pod is not None:
                    self._forget_pod(pod)
                    self._pods_changed()

    def _replace(self, kind: Kind, objects: tuple[SlimObject, ...]) -> None:
        """Reconcile against a complete list: delete what is gone, upsert the rest."""
        wanted = {_key(obj): obj for obj in objects}
        for key in [k for k in self._keys_of(kind) if k not in wanted]:
            self._delete(kind, key)
        for obj in wanted.values():
            self._upsert(obj)
        if kind not in self._synced:
            self._synced.add(kind)
            self.generation += 1

    def _keys_of(self, kind: Kind) -> list[Key]:
        match kind:
            case "Namespace":
                return [("", name) for name in self._namespaces]
            case "Service":
                return list(self._services)
            case "EndpointSlice":
                return list(self._slices)
            case "Pod":
                return list(self._pods)
        return []

    def _store_slice(self, new: EndpointSlice, old: EndpointSlice | None) -> None:
        self._slices[new.key] = new
        if old is not None and old.service_name != new.service_name:
            self._unlink_slice(old)
            self._slices_changed((old.namespace, old.service_name))
        service = (new.namespace, new.service_name)
        linked = self._slices_by_service.get(service, ())
        if new.name not in linked:
            self._slices_by_service[service] = (*linked, new.name)
        self._slices_changed((new.namespace, new.service_name))

    def _unlink_slice(self, old: EndpointSlice) -> None:
        service = (old.namespace, old.service_name)
        remaining = tuple(n for n in self._slices_by_service.get(service, ()) if n != old.name)
        if remaining:
            self._slices_by_service[service] = remaining
        else:
            self._slices_by_service.pop(service, None)

    def _slices_changed(self, key: Key) -> None:
        """Only a headless Service's records come from its slices. A ClusterIP or
        ExternalName Service (most Services, and most slice changes) is not recomputed for them,
        nor a Service not seen yet: its own Upsert computes it."""
        service = self._services.get(key)
        if service is not None and service.is_headless:
            self._refresh_service(key)

    def _pods_changed(self) -> None:
        """Pods are only kept in ``verified`` mode, where their IPs decide pod answers."""
        self.serial += 1
        self.generation += 1

    def _forget_pod(self, pod: Pod | None) -> None:
        if pod is None:
            return
        ips = self._pod_ips[pod.namespace]
        for ip in pod.ips:
            ips[ip] -= 1
            if ips[ip] <= 0:
                del ips[ip]

    def _refresh_service(self, key: Key) -> None:
        """Recompute one Service's records from the Service and its slices."""
        service = self._services.get(key)
        contribution: Contribution = {}
        if service is not None:
            slice_names = self._slices_by_service.get(key, ())
            slices = [self._slices[(key[0], name)] for name in sorted(slice_names)]
            contribution = service_records(service, slices, self.names)
            if key == self.dns_service:
                contribution[self.names.nameserver] = compact(_addresses_of(service))
        self._contribute(("svc", key[0], key[1]), contribution)

    # -- the name tree ------------------------------------------------------------------------

    def _add_structure(self) -> None:
        """Names that exist in every cluster zone, even an empty one."""
        zone = self.zone
        structure: Contribution = {
            zone: {},
            f"svc.{zone}": {},
            f"pod.{zone}": {},
            f"dns-version.{zone}": {},
            self.names.nameserver: {},
        }
        self._contribute(("zone", "", zone), structure)

    def _contribute(self, contributor: ContributorKey, new: Contribution) -> None:
        """Swap one contributor's records, touching only the names that changed; the serial
        moves only if a name appeared or vanished or its merged records changed."""
        old = self._contributions.get(contributor, {})
        if old == new:
            return
        if new:
            self._contributions[contributor] = new
        else:
            self._contributions.pop(contributor, None)
        visible = False
        for name in old.keys() - new.keys():
            visible |= self._release(_ancestors(name, self.zone))
            self._remove_owner(name, contributor)
            visible |= self._merge(name)
        for name, rrsets in new.items():
            if name not in old:
                visible |= self._acquire(_ancestors(name, self.zone))
            if name not in old or old[name] != rrsets:
                self._add_owner(name, contributor)
                visible |= self._merge(name)
        if visible:
            self.serial += 1
            self.generation += 1

    def _acquire(self, names: list[str]) -> bool:
        """Count one more owner below each name; True if a name came into existence."""
        existing = self._existing
        appeared = False
        for name in names:
            appeared |= name not in existing
            existing[name] += 1
        return appeared

    def _release(self, names: list[str]) -> bool:
        """Count one owner less below each name; True if a name stopped existing."""
        existing = self._existing
        vanished = False
        for name in names:
            existing[name] -= 1
            if existing[name] <= 0:
                del existing[name]
                vanished = True
        return vanished

    def _add_owner(self, name: str, contributor: ContributorKey) -> None:
        current = self._owners.get(name)
        if current is None or current == contributor:
            self._owners[name] = contributor
        elif isinstance(current, list):
            if contributor not in current:
                current.append(contributor)
        else:
            self._owners[name] = [current, contributor]

    def _remove_owner(self, name: str, contributor: ContributorKey) -> None:
        current = self._owners.get(name)
        if isinstance(current, list):
            if contributor in current:
                current.remove(contributor)
            if len(current) == 1:
                self._owners[name] = current[0]
        elif current == contributor:
            del self._owners[name]

    def _merge(self, name: str) -> bool:
        """Recompute ``name``'s RRsets from its contributors; True if they changed. An owner
        with no RRsets (a namespace's ENT) adds no records, only existence, which _acquire and
        _release track."""
        stored = self._records.get(name)
        before = expand(stored) if stored is not None else {}
        owner = self._owners.get(name)
        if owner is None:
            self._records.pop(name, None)
            return bool(before)
        if not isinstance(owner, list):
            # The common case: one contributor owns the name. Its RRsets are never mutated
            # (contributions are replaced whole), so share them instead of copying: a copy per
            # owner name was about a quarter of the index's memory on a 10k-service cluster.
            shared = self._contributions[owner][name]
            self._records[name] = shared
            return expand(shared) != before
        merged: dict[int, dict[Rdata, None]] = {}
        for contributor in owner:
            for qtype, rdata in expand(self._contributions[contributor][name]).items():
                merged.setdefault(qtype, {}).update(dict.fromkeys(rdata))
        after = {qtype: tuple(rdata) for qtype, rdata in merged.items()}
        self._records[name] = compact(after)
        return after != before


def _key(obj: SlimObject) -> Key:
    return obj.key


def _addresses_of(service: Service) -> RRsets:
    rrsets: dict[int, tuple[Rdata, ...]] = {}
    for ip in service.cluster_ips:
        qtype = address_type(ip)
        rrsets[qtype] = (*rrsets.get(qtype, ()), ip)
    return rrsets


def _ancestors(name: str, zone: str) -> list[str]:
    """``name`` and every parent down to the zone apex (or to the reverse zone root)."""
    result = [name]
    while name != zone and "." in name:
        name = name.split(".", 1)[1]
        if name in ("arpa", ""):
            break
        result.append(name)
    return result
