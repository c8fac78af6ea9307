"""A cluster snapshot file standing in for the API server.

Reads what ``kubectl get namespaces,services,endpointslices,pods -A -o yaml`` prints (a ``List``),
the same as JSON, or multi-document YAML of single objects and Lists. Every object is slimmed by
``objects.from_raw`` as soon as it is read and its raw form dropped (``documents`` reads the file
one object at a time), so loading holds the file's text and the slim values, never the whole
raw document; the result is one ``Replace`` event per kind, exactly what a live watch emits after
its initial list. A broken file raises ``SnapshotError`` before anything serves.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AnyStr

import yaml

from kubedns.objects import KINDS, Kind, ObjectError, SlimObject, from_raw, object_ref
from kubedns.sources.documents import (
    YAML_LOADER,
    End,
    Field,
    Item,
    NotJSONError,
    Piece,
    Start,
    Unsupported,
    Whole,
    json_pieces,
    yaml_pieces,
)
from kubedns.sources.events import Replace

log = logging.getLogger(__name__)
_LEADING_SPACE = re.compile(rb"\s*")
_LEADING_SPACE_TEXT = re.compile(r"\s*")
_UTF8_CHUNK = 1 << 20


class SnapshotError(ValueError):
    """The snapshot cannot be read or holds a malformed object."""


def load_snapshot(path: Path, *, kinds: tuple[Kind, ...] = KINDS) -> list[Replace]:
    """Parse ``path`` into one ``Replace`` event for each kind in ``kinds``."""
    try:
        data: bytes | str = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror}") from exc
    if _looks_like_json(data):
        data = _text(data, str(path))  # JSON is decoded from text: let the bytes go now
    return parse_snapshot(data, source=str(path), kinds=kinds)


def parse_snapshot(
    data: bytes | str, *, source: str, kinds: tuple[Kind, ...] = KINDS
) -> list[Replace]:
    """Like ``load_snapshot`` for the file's contents; ``source`` names it in messages.

    JSON goes through ``json`` (hundreds of times faster than a YAML parser on a large dump),
    anything else, and JSON that ``json`` rejects (YAML flow style also starts with a brace),
    through PyYAML's C parser."""
    if isinstance(data, bytes):
        _check_utf8(data, source)
    if _looks_like_json(data):
        text = _text(data, source)
        try:
            return _Collector(source, kinds).read(json_pieces(text))
        except NotJSONError:
            pass
        del text
    try:
        try:
            return _Collector(source, kinds).read(yaml_pieces(data))
        except Unsupported as exc:
            log.debug("snapshot %s: loading whole, the streaming reader skips %s", source, exc)
            return _Collector(source, kinds).read(Whole(d) for d in _load_whole(data))
    except yaml.YAMLError as exc:
        raise SnapshotError(f"snapshot {source} is neither YAML nor JSON: {exc}") from exc


def _load_whole(data: bytes | str) -> list[Any]:
    """Every non-empty document, loaded whole by PyYAML. Its constructors fail with any
    exception on a bad value (``!!timestamp x`` is an AttributeError): all become YAML errors."""
    try:
        return [d for d in yaml.load_all(data, Loader=YAML_LOADER) if d is not None]
    except yaml.YAMLError:
        raise
    except Exception as exc:
        raise yaml.YAMLError(f"{type(exc).__name__}: {exc}") from exc


def _check_utf8(data: bytes, source: str) -> None:
    """Validate without building the text: YAML is parsed from the bytes themselves."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    try:
        for start in range(0, len(data), _UTF8_CHUNK):
            decoder.decode(view[start : start + _UTF8_CHUNK])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise SnapshotError(f"snapshot {source} is not UTF-8 text") from exc


def _text(data: bytes | str, source: str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SnapshotError(f"snapshot {source} is not UTF-8 text") from exc


def _looks_like_json(data: bytes | str) -> bool:
    """Whether the first character past white space opens an object or array (no copy made:
    the text may be tens of megabytes)."""
    if isinstance(data, str):
        return data.startswith(("{", "["), _skip_space(_LEADING_SPACE_TEXT, data))
    return data.startswith((b"{", b"["), _skip_space(_LEADING_SPACE, data))


def _skip_space(space: re.Pattern[AnyStr], data: AnyStr) -> int:
    match = space.match(data)
    return 0 if match is None else match.end()


@dataclass(frozen=True, slots=True)
class _Slim:
    kind: Kind
    ref: tuple[str, str]
    value: SlimObject


@dataclass(frozen=True, slots=True)
class _Ignored:
    kind: str


@dataclass(frozen=True, slots=True)
class _Failed:
    """``message`` is complete when ``error`` is None; else the object's number is added."""

    message: str
    error: ObjectError | None = None


@dataclass(frozen=True, slots=True)
class _Kindless:
    """An item of a typed List (``ServiceList``) read before the List's own ``kind``."""

    raw: Mapping[str, Any]


_Taken = _Slim | _Ignored | _Failed | _Kindless


@dataclass
class _Collector:
    """Slims objects as they come and keeps the last of each (kind, namespace, name).

    A failure does not stop the reading: the rest of the file is still parsed (not slimmed),
    so a syntax error anywhere wins over a malformed object, as when the file was loaded whole.
    """

    source: str
    kinds: tuple[Kind, ...]
    by_kind: dict[Kind, dict[tuple[str, str], SlimObject]] = field(init=False)
    ignored: set[str] = field(init=False, default_factory=set)
    objects: int = field(init=False, default=0)
    documents: int = field(init=False, default=0)
    failure: SnapshotError | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.by_kind = {kind: {} for kind in self.kinds}

    def read(self, pieces: Iterable[Piece]) -> list[Replace]:
        document: _Document | None = None
        for piece in pieces:
            if isinstance(piece, Item):
                document.item(piece.value)  # type: ignore[union-attr]
            elif isinstance(piece, Field):
                document.fields[piece.key] = piece.value  # type: ignore[union-attr]
            elif isinstance(piece, Start):
                self.documents += 1
                document = _Document(self, self.documents)
            elif isinstance(piece, End):
                document.end()  # type: ignore[union-attr]
                document = None
            else:
                self.documents += 1
                self._whole(piece.value, self.documents)
        if self.failure is not None:
            raise self.failure
        return [Replace(kind, tuple(objs.values())) for kind, objs in self.by_kind.items()]

    def _whole(self, value: Any, number: int) -> None:
        if not isinstance(value, Mapping):
            self.fail(f"snapshot {self.source}: document {number} is not a mapping")
            return
        document = _Document(self, number)
        document.fields.update(value)
        document.end()

    def take(self, raw: Any, *, kind: Any) -> _Taken:
        """Slim one object of ``kind`` (not yet counted: a List's items wait for its end)."""
        if self.failure is not None:
            return _Ignored(str(kind))  # the error is found; only the syntax is still checked
        if not isinstance(kind, str) or kind not in self.by_kind:
            return _Ignored(str(kind))
        try:
            return _Slim(kind, object_ref(raw), from_raw(kind, raw))
        except ObjectError as exc:
            return _Failed("", exc)

    def add(self, taken: _Taken) -> None:
        """Count the object and keep it (or note its kind as ignored, or its failure)."""
        self.objects += 1
        if isinstance(taken, _Slim):
            self.by_kind[taken.kind][taken.ref] = taken.value
        elif isinstance(taken, _Ignored):
            if taken.kind not in self.ignored and self.failure is None:
                self.ignored.add(taken.kind)
                log.info("snapshot: ignoring objects of kind %s", taken.kind)
        elif isinstance(taken, _Failed):
            if taken.error is None:
                self.fail(taken.message)
            else:
                self.fail(f"snapshot {self.source}: object {self.objects}: {taken.error}")

    def fail(self, message: str) -> None:
        if self.failure is None:
            self.failure = SnapshotError(message)


class _Document:
    """One top-level mapping: a single object, or a List whose items arrive one by one.

    Whether it is a List is known only at its end (kubectl prints ``kind: List`` after
    ``items``), so items are slimmed as they come and kept aside, slim, until then."""

    def __init__(self, collector: _Collector, number: int) -> None:
        self.collector = collector
        self.number = number
        self.fields: dict[Any, Any] = {}
        self.taken: list[_Taken] = []
        self.streamed = False

    def item(self, value: Any) -> None:
        self.streamed = True
        self.taken.append(self._take(value, len(self.taken)))

    def _take(self, item: Any, position: int) -> _Taken:
        if not isinstance(item, Mapping):
            return _Failed(
                f"snapshot {self.collector.source}: document {self.number} item {position} "
                "is not a mapping"
            )
        if "kind" in item:
            return self.collector.take(item, kind=item["kind"])
        # Typed lists (``ServiceList``) omit ``kind`` on their items; restore it.
        list_kind = self.fields.get("kind")
        if list_kind is None:
            return _Kindless(item)
        if str(list_kind) == "List":
            return self.collector.take(item, kind=None)
        return self.collector.take(item, kind=str(list_kind).removesuffix("List"))

    def end(self) -> None:
        collector = self.collector
        kind = self.fields.get("kind")
        if not (kind == "List" or str(self.fields.get("kind", "")).endswith("List")):
            # Not a List after all: the document is the object (``items`` meant nothing).
            collector.add(collector.take(self.fields, kind=kind))
            return
        if not self.streamed:
            items = self.fields.get("items") or []
            if not isinstance(items, list):
                collector.fail(
                    f"snapshot {collector.source}: document {self.number} items is not a list"
                )
                return
            for item in items:
                self.item(item)
        for position, taken in enumerate(self.taken):
            if isinstance(taken, _Kindless):
                collector.add(self._take(taken.raw, position))
            else:
                collector.add(taken)
        self.taken = []
