"""The one seam between object sources and their consumers.

A source (the snapshot file, the API watch) turns what it reads into these events; consumers
(the DNS record index, the webhook's service catalogue) apply them synchronously. Both sources
emit the same events, so whatever is tested against a snapshot holds for a live cluster too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kubedns.config import PodsMode
from kubedns.objects import Kind, SlimObject


@dataclass(frozen=True, slots=True)
class Upsert:
    """An object was created or changed (a watch ADDED or MODIFIED)."""

    obj: SlimObject


@dataclass(frozen=True, slots=True)
class Delete:
    """An object is gone (a watch DELETED); Namespaces use an empty ``namespace``."""

    kind: Kind
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Replace:
    """A complete list of one kind (an initial list or a relist after 410 Gone).

    Consumers reconcile against it, so objects deleted while the watch was down disappear.
    After the first ``Replace`` of a kind, that kind counts as synced.
    """

    kind: Kind
    objects: tuple[SlimObject, ...]


Event = Upsert | Delete | Replace
EventSink = Callable[[Event], None]


def watched_kinds(*, pods: PodsMode, config_maps: bool = False) -> tuple[Kind, ...]:
    """The kinds to watch: always Namespaces, Services and EndpointSlices; Pods only when
    ``pods`` is ``verified`` (the other modes answer from the IP alone, and pods are the
    largest kind by far); ConfigMaps only for the webhook."""
    kinds: tuple[Kind, ...] = ("Namespace", "Service", "EndpointSlice")
    if pods == "verified":
        kinds += ("Pod",)
    if config_maps:
        kinds += ("ConfigMap",)
    return kinds
