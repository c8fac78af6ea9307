"""The streaming readers give exactly what ``json.loads`` and PyYAML's safe loader give: every
document rebuilt from its pieces equals the one loaded whole, and what one rejects the other
rejects."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest
import yaml

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


def rebuild(pieces: Iterable[Piece]) -> list[Any]:
    documents: list[Any] = []
    current: dict[Any, Any] = {}
    for piece in pieces:
        if isinstance(piece, Start):
            current = {}
        elif isinstance(piece, Field):
            current[piece.key] = piece.value
        elif isinstance(piece, Item):
            current.setdefault("items", []).append(piece.value)
        elif isinstance(piece, End):
            documents.append(current)
        else:
            assert isinstance(piece, Whole)
            documents.append(piece.value)
    return documents


def load_all(text: str) -> list[Any]:
    return [d for d in yaml.load_all(text, Loader=YAML_LOADER) if d is not None]


KUBECTL = """\
apiVersion: v1
items:
- apiVersion: v1
  kind: Service
  metadata:
    annotations:
      note: |
        two
        lines
    name: web
    namespace: shop
    resourceVersion: '1'
  spec:
    clusterIP: 10.96.0.10
    ports:
    - name: http
      port: 80
      protocol: TCP
- kind: EndpointSlice
  endpoints:
  - addresses: [10.128.0.1]
    conditions: {ready: true, serving: true, terminating: false}
kind: List
metadata:
  resourceVersion: ""
"""

YAML_CASES = {
    "kubectl-list": KUBECTL,
    "flow": "{kind: List, items: [{kind: Service, metadata: {name: a}}, [1, 2], x]}",
    "documents": "---\n---\nkind: Service\n---\n~\n---\n- 1\n- a\n---\njust text\n",
    "empty-stream": "",
    "comments": "# top\nitems: # the items\n- a: 1 # one\n# between\n- b: 2\n",
    "anchors": (
        "base: &b {a: 1, list: &l [x, y]}\nitems:\n- &i {ref: *b, l: *l}\n- copy: *i\n"
        "- &s scalar\n- *s\n"
    ),
    "merges": (
        "defaults: &d {a: 1, b: 1}\nother: &o {b: 2, c: 2}\nitems:\n"
        "- {<<: *d, b: 3}\n- {<<: [*d, *o]}\n- {<<: *d, <<: *o}\n- {x: 1, <<: [*o, *d]}\n"
    ),
    "scalars": (
        "items:\n- {a: yes, b: No, c: on, d: 010, e: 0x1f, f: 1_000, g: .inf, h: ~, i: null,\n"
        "   j: '', k: 'true', l: \"80\", m: 2001-12-14, n: 1.5e3, o: -7, p: +3, q: '<<',\n"
        "   r: !!str 80, s: !!int '7', t: !!float 1, u: !!bool yes, v: !!null '',\n"
        "   w: !!binary aGVsbG8=, x: ! 12, y: .NaN, z: 0o17, aa: 190:20:30, bb: -.inf}\n"
        "- {?: no value, 7: int key, true: bool key, ~: null key, 1.5: float key}\n"
        "- \"double \\\"quoted\\\"\\n\\u00e9\"\n- 'single ''quoted'''\n- >\n  folded\n  text\n"
    ),
    "items-not-a-list": "kind: List\nitems: {a: 1}\n",
    "items-null": "kind: List\nitems:\n",
    "items-twice-nested": "items: [[a, [b]], {items: [c]}]\nkind: List\n",
    "non-list-with-items": "kind: Service\nitems: [1, 2]\nmetadata: {name: a}\n",
    "typed-list-kind-last": "items:\n- metadata: {name: a}\nkind: ServiceList\n",
    "unicode": "items:\n- name: café ☕\n  emoji: \U0001f600\n",
    "deep": "items:\n- " + "[" * 200 + "]" * 200 + "\n",
}


@pytest.mark.parametrize("text", YAML_CASES.values(), ids=YAML_CASES.keys())
def test_yaml_pieces_rebuild_what_pyyaml_loads(text: str) -> None:
    assert rebuild(yaml_pieces(text)) == load_all(text)
    assert rebuild(yaml_pieces(text.encode())) == load_all(text)


def test_merged_mapping_is_the_object_its_alias_names() -> None:
    text = "items:\n- &m {<<: {a: 1}, b: 2}\n- *m\n"
    first, second = rebuild(yaml_pieces(text))[0]["items"]
    assert first is second
    assert first == {"a": 1, "b": 2}


YAML_ERRORS = {
    "truncated-flow": "items: [\n  - {kind: Service\n",
    "truncated-block-quote": "items:\n- kind: Service\n  metadata:\n    name: 'web\n",
    "bad-indent": "items:\n- a: 1\n   b: 2\n",
    "undefined-alias": "items:\n- *nowhere\n",
    "unhashable-key": "items:\n- {[a, b]: c}\n",
    "unhashable-top-key": "? [a]\n: b\n",
    "unknown-tag": "items:\n- !custom thing\n",
    "bad-merge": "items:\n- {<<: 3}\n",
    "bad-timestamp": "items:\n- !!timestamp not-a-date\n",
    "tab-indent": "items:\n\t- a\n",
}


@pytest.mark.parametrize("text", YAML_ERRORS.values(), ids=YAML_ERRORS.keys())
def test_yaml_pieces_reject_what_pyyaml_rejects(text: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - PyYAML may fail with any (AttributeError)
        load_all(text)
    with pytest.raises(yaml.YAMLError):  # always this one: the caller reports it
        rebuild(yaml_pieces(text))


@pytest.mark.parametrize(
    "text",
    [
        "items:\n- !!set {a, b}\n",
        "items:\n- !!omap [a: 1]\n",
        "&root {items: [a]}\n",
        "items: &i [a]\nagain: *i\n",
        "base: &b {kind: List}\n<<: *b\nitems: [a]\n",
    ],
    ids=["set", "omap", "root-anchor", "items-anchor", "top-level-merge"],
)
def test_yaml_pieces_leave_rare_features_to_the_full_loader(text: str) -> None:
    load_all(text)  # valid YAML: the caller loads it whole instead
    with pytest.raises(Unsupported):
        rebuild(yaml_pieces(text))


JSON_CASES = {
    "list": json.dumps({"apiVersion": "v1", "items": [{"a": 1}, [2], "x"], "kind": "List"}),
    "indented": json.dumps({"kind": "List", "items": [{"a": [1, {"b": None}]}]}, indent=4),
    "items-empty": ' { "items" : [ ] , "kind" : "List" } ',
    "items-not-a-list": '{"items": {"a": 1}}',
    "empty-object": "{}",
    "no-items": '{"kind": "Service", "metadata": {"name": "a"}}',
    "nested-items": '{"spec": {"items": [1]}, "items": [{"items": [2]}]}',
    "array": "[1, 2]",
    "scalar": '"text"',
    "null": "null",
    "special-numbers": '{"items": [NaN, Infinity, -Infinity, 1e400, 1.0, -0]}',
    "escapes": '{"items": ["\\u00e9\\n\\"", "\\ud83d\\ude00"], "k\\u0069nd": "List"}',
}


@pytest.mark.parametrize("text", JSON_CASES.values(), ids=JSON_CASES.keys())
def test_json_pieces_rebuild_what_json_loads(text: str) -> None:
    expected = json.loads(text)
    if isinstance(expected, dict) and expected.get("items") == []:
        del expected["items"]  # an empty items array gives no Item: the same to every reader
    rebuilt = rebuild(json_pieces(text))
    assert len(rebuilt) == 1
    assert json.dumps(rebuilt[0], sort_keys=True) == json.dumps(expected, sort_keys=True)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        '{"items": [',
        '{"items": [1,',
        '{"items": [1 2]}',
        '{"items": [1,]}',
        '{"a": 1,}',
        '{"a" 1}',
        "{a: 1}",
        '{"a": 1} extra',
        '{"a": 1}{"b": 2}',
        '{"items": [1]',
        "[1, 2",
        '{"a": "\\x"}',
    ],
)
def test_json_pieces_reject_what_json_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(NotJSONError):
        rebuild(json_pieces(text))
