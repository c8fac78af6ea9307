"""Read a cluster dump one object at a time, from JSON or YAML text, without building it whole.

A ``kubectl get ... -o yaml`` dump is one ``List`` document whose ``items`` hold every object.
Loading that document whole costs many times the file's size (PyYAML's C loader peaked at 262
MB for a 4 MB dump: every scalar became a node with two marks before it became an object).
Here the top level of each document is walked by hand and each element of a top-level
``items`` sequence is built on its own and handed over at once, so the caller can slim it and
let it go: memory holds the text plus one object, not the document.

Both readers give exactly what ``json.loads`` and ``yaml.load_all(..., CSafeLoader)`` give,
only in pieces: a ``Start``, then the document's keys in file order as ``Field``s, except that
the elements of a top-level ``items`` sequence come as ``Item``s, then an ``End``. A document
that is not a mapping comes as one ``Whole``. YAML documents that are empty (null) are skipped,
as ``load_all`` callers here always skipped them.

The YAML reader runs on PyYAML's C event parser (libyaml) and builds plain values itself with
PyYAML's own resolver and scalar constructors, so types come out as the safe loader makes them
(YAML 1.1: ``yes`` is true, ``010`` is 8). Anchors, aliases and merge keys work; what it does not
build itself (a collection with an explicit tag such as ``!!set``, anchors or merges at the top
level) raises ``Unsupported`` and the caller loads that file the old way, whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Container, Generator, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from yaml.nodes import ScalarNode

YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Start:
    """A mapping document begins."""


@dataclass(frozen=True, slots=True)
class Field:
    """One top-level key of the current mapping document, with its value."""

    key: Any
    value: Any


@dataclass(frozen=True, slots=True)
class Item:
    """One element of the current document's top-level ``items`` sequence."""

    value: Any


@dataclass(frozen=True, slots=True)
class End:
    """The current mapping document is complete."""


@dataclass(frozen=True, slots=True)
class Whole:
    """A document that is not a mapping (or was loaded whole)."""

    value: Any


Piece = Start | Field | Item | End | Whole


class NotJSONError(ValueError):
    """The text is not valid JSON (it may still be YAML)."""


class Unsupported(Exception):  # noqa: N818 - a signal to the caller, not a failure
    """The YAML uses a feature this reader leaves to PyYAML's full loader."""


# -- JSON ----------------------------------------------------------------------------------------

_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")
"""What JSON counts as white space (``json.decoder.WHITESPACE``)."""


def _skip_space(text: str, at: int) -> int:
    match = _WHITESPACE.match(text, at)
    return at if match is None else match.end()


def json_pieces(text: str) -> Iterator[Piece]:
    """The single JSON document in ``text``; raises ``NotJSONError`` where ``json.loads`` would fail
    (possibly after pieces before the fault were already produced)."""
    try:
        yield from _json_pieces(text)
    except (ValueError, IndexError) as exc:
        raise NotJSONError(str(exc)) from exc


def _json_pieces(text: str) -> Iterator[Piece]:
    decode = _DECODER.raw_decode
    at = _skip_space(text, 0)
    if not text.startswith("{", at):
        value, at = decode(text, at)
        _expect_end(text, at)
        yield Whole(value)
        return
    yield Start()
    at = _skip_space(text, at + 1)
    if text.startswith("}", at):
        _expect_end(text, at + 1)
        yield End()
        return
    while True:
        if not text.startswith('"', at):
            raise ValueError(f"expected a key at character {at}")
        key, at = decode(text, at)
        at = _skip_space(text, at)
        if not text.startswith(":", at):
            raise ValueError(f"expected ':' at character {at}")
        at = _skip_space(text, at + 1)
        if key == "items" and text.startswith("[", at):
            at = yield from _json_items(text, at + 1)
        else:
            value, at = decode(text, at)
            yield Field(key, value)
        at = _skip_space(text, at)
        if text.startswith("}", at):
            _expect_end(text, at + 1)
            yield End()
            return
        if not text.startswith(",", at):
            raise ValueError(f"expected ',' or '}}' at character {at}")
        at = _skip_space(text, at + 1)


def _json_items(text: str, at: int) -> Generator[Piece, None, int]:
    """The elements of an array whose ``[`` is just before ``at``; returns the index past ``]``."""
    decode = _DECODER.raw_decode
    at = _skip_space(text, at)
    if text.startswith("]", at):
        return at + 1
    while True:
        value, at = decode(text, at)
        yield Item(value)
        at = _skip_space(text, at)
        if text.startswith("]", at):
            return at + 1
        if not text.startswith(",", at):
            raise ValueError(f"expected ',' or ']' at character {at}")
        at = _skip_space(text, at + 1)


def _expect_end(text: str, at: int) -> None:
    if _skip_space(text, at) != len(text):
        raise ValueError(f"extra data at character {at}")


# -- YAML ----------------------------------------------------------------------------------------

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"


class _Merge:
    """The merge key ``<<``, as a key of a mapping under construction."""


_MERGE_KEY = _Merge()


_NO_KEY = object()
_MISSING = object()
_IMMUTABLE = (str, bool, int, float, type(None), _Merge)
_PLAIN_CACHE = 4096
"""Distinct plain scalars whose value is remembered: keys and flags recur, addresses do not."""


class _Any:
    """Every first character may start an implicit type (a resolver for any text exists)."""

    def __contains__(self, item: object) -> bool:
        return True


_ANY = _Any()
_IN_LIST = object()
_MAP_TAGS = (None, "!", _MAP)
_SEQ_TAGS = (None, "!", _SEQ)


def yaml_pieces(data: bytes | str) -> Iterator[Piece]:
    """Every non-empty document in ``data``; raises ``yaml.YAMLError`` as PyYAML's loader would,
    and ``Unsupported`` for what it leaves to that loader."""
    reader = _YamlReader(data)
    try:
        yield from reader.pieces()
    finally:
        reader.loader.dispose()


class _YamlReader:
    def __init__(self, data: bytes | str) -> None:
        self.loader = YAML_LOADER(data)
        self.next_event: Callable[[], Any] = self.loader.get_event
        self.anchors: dict[str, Any] = {}
        # A plain scalar whose first character starts no implicit type (most names) is a
        # string; the others go through PyYAML's resolver and constructors, as its composer
        # sends them, and the immutable results are remembered by text (``true``, ``name``,
        # ``80`` recur thousands of times).
        resolvers = self.loader.yaml_implicit_resolvers
        self.implicit: Container[str] = _ANY if None in resolvers else resolvers
        self.constructors = self.loader.yaml_constructors
        self.plain: dict[str, Any] = {}

    def pieces(self) -> Iterator[Piece]:
        self._expect(StreamStartEvent)
        while True:
            event = self.next_event()
            if isinstance(event, StreamEndEvent):
                return
            if not isinstance(event, DocumentStartEvent):
                raise yaml.YAMLError(f"expected a document, got {event}")
            self.anchors = {}
            root = self.next_event()
            if isinstance(root, MappingStartEvent) and root.tag in _MAP_TAGS:
                if root.anchor is not None:
                    raise Unsupported("an anchor on a document")
                yield Start()
                yield from self._top_level()
                yield End()
            else:
                value = self._value(root)
                if value is not None:
                    yield Whole(value)
            self._expect(DocumentEndEvent)

    def _top_level(self) -> Iterator[Piece]:
        """The keys of a document's root mapping, up to its end event."""
        while True:
            event = self.next_event()
            if isinstance(event, MappingEndEvent):
                return
            key = self._value(event)
            if key is _MERGE_KEY:
                raise Unsupported("a merge key at the top level")
            _check_hashable(key, event)
            event = self.next_event()
            if key == "items" and isinstance(event, SequenceStartEvent) and event.tag in _SEQ_TAGS:
                if event.anchor is not None:
                    raise Unsupported("an anchor on the items sequence")
                while not isinstance(event := self.next_event(), SequenceEndEvent):
                    yield Item(self._value(event))
            else:
                yield Field(key, self._value(event))

    def _expect(self, kind: type[Event]) -> None:
        event = self.next_event()
        if not isinstance(event, kind):
            raise yaml.YAMLError(f"expected {kind.__name__}, got {event}")

    def _value(self, event: Any) -> Any:
        """Build the node that ``event`` starts, consuming its events."""
        kind = event.__class__
        if kind is ScalarEvent:
            return self._scalar(event)
        if kind is AliasEvent:
            return self._alias(event)
        return self._collection(event)

    def _scalar(self, event: Any) -> Any:
        text: str = event.value
        tag: str | None = event.tag
        plain = False
        if tag is None or tag == "!":
            if not event.implicit[0] or (text and text[0] not in self.implicit):
                tag = _STR
            else:
                plain = True
                result = self.plain.get(text, _MISSING)
                if result is not _MISSING:
                    return self._anchored(event, result)
                tag = self.loader.resolve(ScalarNode, text, event.implicit)  # type: ignore[no-untyped-call]
        if tag == _STR:
            result = text
        elif tag == _MERGE:
            result = _MERGE_KEY
        else:
            result = self._construct(tag, text, event)
        if plain and result.__class__ in _IMMUTABLE and len(self.plain) < _PLAIN_CACHE:
            self.plain[text] = result
        return self._anchored(event, result)

    def _construct(self, tag: str, text: str, event: Any) -> Any:
        """A scalar of a type other than string, by PyYAML's constructor for ``tag``. Those
        can fail with any exception (``!!timestamp x`` is an AttributeError); each becomes a
        YAML error here, so a bad value is reported, never a traceback."""
        constructor = self.constructors.get(tag) or self.constructors[None]
        try:
            return constructor(self.loader, ScalarNode(tag, text, event.start_mark))
        except yaml.YAMLError:
            raise
        except Exception as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {text!r} as {tag}: {exc}", event.start_mark
            ) from exc

    def _anchored(self, event: Any, value: Any) -> Any:
        if event.anchor is not None:
            self.anchors[event.anchor] = value
        return value

    def _alias(self, event: Any) -> Any:
        try:
            return self.anchors[event.anchor]
        except KeyError:
            raise yaml.composer.ComposerError(
                None, None, f"found undefined alias {event.anchor!r}", event.start_mark
            ) from None

    def _collection(self, event: Any) -> Any:
        """A mapping or sequence, built iteratively (a deep document cannot overflow the stack).

        This loop runs once per event of the file, so it keeps its state in locals and inlines
        the common case, a plain scalar that can only be a string (most names and keys)."""
        next_event = self.next_event
        implicit = self.implicit
        plain = self.plain
        scalar_event, alias_event = ScalarEvent, AliasEvent
        mapping_start, mapping_end = MappingStartEvent, MappingEndEvent
        sequence_start, sequence_end = SequenceStartEvent, SequenceEndEvent
        # The enclosing collections: (container, key awaiting its value or _IN_LIST, merges).
        stack: list[tuple[Any, Any, Any]] = []
        container, key = self._open(event)
        merges: list[dict[Any, Any]] | None = None
        while True:
            event = next_event()
            kind = event.__class__
            if kind is scalar_event:
                text = event.value
                if event.tag is not None or event.anchor is not None:
                    value = self._scalar(event)
                elif not event.implicit[0] or (text and text[0] not in implicit):
                    value = text
                else:
                    value = plain.get(text, _MISSING)
                    if value is _MISSING:
                        value = self._scalar(event)
            elif kind is mapping_start or kind is sequence_start:
                stack.append((container, key, merges))
                container, key = self._open(event)
                merges = None
                continue
            elif kind is mapping_end or kind is sequence_end:
                value = container if merges is None else _merged(container, merges)
                if not stack:
                    return value
                container, key, merges = stack.pop()
            elif kind is alias_event:
                value = self._alias(event)
            else:
                raise yaml.YAMLError(f"unexpected {event}")
            if key is _IN_LIST:
                container.append(value)
            elif key is _NO_KEY:
                if value.__class__ is not str and value is not _MERGE_KEY:
                    _check_hashable(value, event)
                key = value
            elif key is _MERGE_KEY:
                merges = _add_merge(merges, value, event)
                key = _NO_KEY
            else:
                container[key] = value
                key = _NO_KEY

    def _open(self, event: Any) -> tuple[Any, Any]:
        """A new empty collection for a start event, and its initial key state."""
        container: dict[Any, Any] | list[Any]
        if event.__class__ is MappingStartEvent:
            if event.tag not in _MAP_TAGS:
                raise Unsupported(f"a mapping tagged {event.tag}")
            container, key = {}, _NO_KEY
        else:
            if event.tag not in _SEQ_TAGS:
                raise Unsupported(f"a sequence tagged {event.tag}")
            container, key = [], _IN_LIST
        if event.anchor is not None:
            self.anchors[event.anchor] = container
        return container, key


def _merged(mapping: dict[Any, Any], merges: list[dict[Any, Any]]) -> dict[Any, Any]:
    """``mapping`` with the merge keys' mappings under it, as PyYAML merges them."""
    merged: dict[Any, Any] = {}
    for source in reversed(merges):
        merged.update(source)
    merged.update(mapping)
    mapping.clear()  # the same object: an alias to it must see the merged keys too
    mapping.update(merged)
    return mapping


def _add_merge(merges: list[dict[Any, Any]] | None, value: Any, event: Any) -> list[dict[Any, Any]]:
    """``<<: *a`` or ``<<: [*a, *b]``: of the merged mappings the first that has a key gives its
    value, and the mapping's own keys win over all (YAML's merge key, as PyYAML 6 applies it).
    ``merges`` lists them first to last."""
    if isinstance(value, dict):
        sources = [value]
    elif isinstance(value, list) and all(isinstance(source, dict) for source in value):
        sources = value
    else:
        raise yaml.constructor.ConstructorError(
            "while constructing a mapping",
            None,
            "expected a mapping or list of mappings for merging",
            event.start_mark,
        )
    return [*(merges or []), *sources]


def _check_hashable(key: Any, event: Any) -> None:
    if not isinstance(key, Hashable):
        raise yaml.constructor.ConstructorError(
            "while constructing a mapping", None, "found unhashable key", event.start_mark
        )
