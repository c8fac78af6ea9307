"""A cluster snapshot file standing in for the API server.

Reads what ``kubectl get namespaces,services,endpointslices,pods -A -o yaml`` prints (a ``List``),
the same as JSON, or multi-document YAML of single objects and Lists. Every object is slimmed by
``objects.from_raw``; the result is one ``Replace`` event per kind, exactly what a live watch
emits after its initial list. A broken file raises ``SnapshotError`` before anything serves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from kubedns.objects import KINDS, Kind, ObjectError, SlimObject, from_raw, object_ref
from kubedns.sources.events import Replace

log = logging.getLogger(__name__)
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SnapshotError(ValueError):
    """The snapshot cannot be read or holds a malformed object."""


def load_snapshot(path: Path, *, kinds: tuple[Kind, ...] = KINDS) -> list[Replace]:
    """Parse ``path`` into one ``Replace`` event for each kind in ``kinds``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise SnapshotError(f"snapshot {path} is not UTF-8 text") from exc
    return parse_snapshot(text, source=str(path), kinds=kinds)


def parse_snapshot(text: str, *, source: str, kinds: tuple[Kind, ...] = KINDS) -> list[Replace]:
    documents = _documents(text, source)
    by_kind: dict[Kind, dict[tuple[str, str], SlimObject]] = {kind: {} for kind in kinds}
    ignored: set[str] = set()
    for index, raw in enumerate(_objects(documents, source)):
        kind = raw.get("kind")
        if kind not in by_kind:
            if kind not in ignored:
                ignored.add(str(kind))
                log.info("snapshot: ignoring objects of kind %s", kind)
            continue
        by_kind[kind][object_ref(raw)] = _slim(kind, raw, source=source, index=index)
    return [Replace(kind, tuple(objs.values())) for kind, objs in by_kind.items()]


def _documents(text: str, source: str) -> list[Any]:
    """JSON through ``json`` (hundreds of times faster than a YAML parser on a large dump),
    anything else through PyYAML's C loader when it is built, else its Python one."""
    if text.lstrip().startswith(("{", "[")):
        try:
            document = json.loads(text)
        except ValueError:
            pass  # YAML flow style also starts with a brace; let the YAML parser decide
        else:
            return [document]
    try:
        return [d for d in yaml.load_all(text, Loader=_YAML_LOADER) if d is not None]
    except yaml.YAMLError as exc:
        raise SnapshotError(f"snapshot {source} is neither YAML nor JSON: {exc}") from exc


def _objects(documents: list[Any], source: str) -> Iterator[Mapping[str, Any]]:
    """Flatten documents and ``List`` wrappers into single objects."""
    for number, document in enumerate(documents, start=1):
        if not isinstance(document, Mapping):
            raise SnapshotError(f"snapshot {source}: document {number} is not a mapping")
        if document.get("kind") == "List" or str(document.get("kind", "")).endswith("List"):
            items = document.get("items") or []
            if not isinstance(items, list):
                raise SnapshotError(f"snapshot {source}: document {number} items is not a list")
            for position, item in enumerate(items):
                if not isinstance(item, Mapping):
                    raise SnapshotError(
                        f"snapshot {source}: document {number} item {position} is not a mapping"
                    )
                yield _with_list_kind(item, document)
        else:
            yield document


def _with_list_kind(item: Mapping[str, Any], document: Mapping[str, Any]) -> Mapping[str, Any]:
    """Typed lists (``ServiceList``) omit ``kind`` on their items; restore it."""
    list_kind = str(document.get("kind", ""))
    if "kind" not in item and list_kind != "List":
        return {**item, "kind": list_kind.removesuffix("List")}
    return item


def _slim(kind: Kind, raw: Mapping[str, Any], *, source: str, index: int) -> SlimObject:
    try:
        return from_raw(kind, raw)
    except ObjectError as exc:
        raise SnapshotError(f"snapshot {source}: object {index + 1}: {exc}") from exc
