"""The JSON Schema (draft-07) of the config file, generated from ``kubedns/config.py``.

Types, enums, defaults and descriptions come from the dataclass fields and their docstrings
(read with ``ast`` from the module's source, so they are written once); bounds, lengths and
patterns come from the same ``Annotated`` rules that ``config.load()`` checks. A value this
schema refuses, ``load()`` refuses too, and the other way round except for these checks, which
stay in code because they relate several values or need the program (``config._validate``,
``kubedns check-config``):

- ``snapshot`` and ``kubeconfig`` are exclusive;
- ``forward.stub_domains``: no domain twice (case-insensitively), none inside the cluster zone;
- ``forward.kube_dns_configmap``: its JSON strings are parsed, and its keys may not repeat
  ``forward.upstreams`` or ``forward.stub_domains``;
- ``cache.min_ttl`` <= ``cache.max_ttl``; ``cache.max_bytes`` >= 1024 while ``cache.size`` > 0;
  ``cache.stale_answer_ttl`` >= 1 while ``cache.serve_stale`` is on;
- ``watch.backoff_cap`` >= ``watch.backoff_base``;
- an upstream that is kubedns's own listener, and the contents of the snapshot named.

The Helm chart's ``values.schema.json`` holds the chart's variant under ``properties.config``
(``chart_schema``): the keys the chart sets itself are refused there, and ``dns_service`` may
be empty. ``kubedns config-schema --update FILE`` (``make schema``) rewrites that part in place.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from kubedns import config

DRAFT_07 = "http://json-schema.org/draft-07/schema#"

CHART_OWNED: Mapping[str, str] = {
    "listen": "0.0.0.0:53, or :5353 with dnsPort.unprivileged, matching the container port",
    "snapshot": "a pod serves the live cluster",
    "kubeconfig": "a pod uses in-cluster credentials",
    "ops.listen": "0.0.0.0:9153, matching the probes and the Service",
    "webhook.listen": "the webhook's --listen=0.0.0.0:8443",
    "webhook.tls_cert": "the webhook's --tls-cert, from the webhook.tls Secret",
    "webhook.tls_key": "the webhook's --tls-key, from the webhook.tls Secret",
    "webhook.cluster_dns": "the webhook's --cluster-dns, from webhook.clusterDNS or the Service",
    "webhook.node_resolv_conf": "the webhook's --node-resolv-conf= (pods get cluster domains only)",
}
"""Keys the chart sets itself (config file or command line arguments, which win), each with
what it sets; a value for one would be ignored, so the chart's schema refuses it."""

CHART_EMPTY_MEANS: Mapping[str, str] = {
    "dns_service": "<release namespace>/<service.name>, filled in by the chart",
}
"""Keys the chart also accepts empty, with what the chart puts there instead."""

KUBE_DNS_CONFIGMAP: dict[str, Any] = {
    "type": "object",
    "description": "kube-dns's ConfigMap keys, turned into upstreams and stub_domains at load "
    "(config.from_kube_dns_configmap).",
    "properties": {
        "stubDomains": {"type": ["string", "object"], "description": "JSON: domain -> [ip[:port]]"},
        "upstreamNameservers": {"type": ["string", "array"], "description": "JSON: [ip[:port]]"},
    },
    "additionalProperties": False,
}
"""``forward.kube_dns_configmap``: read by ``load()`` before the dataclasses are built."""


def config_schema() -> dict[str, Any]:
    """The schema of a whole config file, as ``kubedns serve --config`` reads it."""
    docs = field_docs()
    schema: dict[str, Any] = {"$schema": DRAFT_07, "title": "kubedns config file"}
    schema.update(_object_schema(config.Config, docs))
    schema["properties"]["forward"]["properties"]["kube_dns_configmap"] = KUBE_DNS_CONFIGMAP
    return schema


def chart_schema() -> dict[str, Any]:
    """``properties.config`` of the chart's values.schema.json: chart-owned keys refused."""
    schema = config_schema()
    del schema["$schema"], schema["title"]
    schema["description"] = (
        "The kubedns config file, rendered into the ConfigMap. Generated from kubedns/config.py "
        "by `make schema`: do not edit by hand."
    )
    for dotted, what in CHART_OWNED.items():
        _property(schema, dotted).clear()
        _property(schema, dotted).update(
            {"not": {}, "description": f"set by the chart ({what}); remove it from values"}
        )
    for dotted, meaning in CHART_EMPTY_MEANS.items():
        prop = _property(schema, dotted)
        prop["pattern"] = f"^$|{prop['pattern']}"
        prop["description"] += f" Empty: {meaning}."
        prop["default"] = ""
    return schema


def update_values_schema(path: Path) -> bool:
    """Rewrite ``properties.config`` of the chart's values.schema.json at ``path`` in place,
    keeping the rest of the file as it is. True when the file changed."""
    text = path.read_text(encoding="utf-8")
    values = json.loads(text)
    if not isinstance(values, dict) or not isinstance(values.get("properties"), dict):
        raise ValueError("no top-level properties: not a chart's values.schema.json")
    values["properties"]["config"] = chart_schema()
    updated = to_json(values)
    if updated == text:
        return False
    path.write_text(updated, encoding="utf-8")
    return True


def to_json(schema: Mapping[str, Any]) -> str:
    """The layout of the committed values.schema.json: two-space indent, final newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def field_docs() -> dict[str, dict[str, str]]:
    """Docstrings from config.py's source: class name -> field name (or "" for the class)."""
    tree = ast.parse(Path(config.__file__).read_text(encoding="utf-8"))
    docs: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            docs[node.name] = _class_docs(node)
    return docs


def _class_docs(node: ast.ClassDef) -> dict[str, str]:
    found = {"": _clean(ast.get_docstring(node) or "")}
    # A string right after an annotated assignment documents that field (as Sphinx reads it).
    for statement, after in zip(node.body, node.body[1:], strict=False):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            found[statement.target.id] = _clean(after.value.value)
    return found


def _clean(text: str) -> str:
    """One line of plain text: reST's double backticks become single ones."""
    return " ".join(text.split()).replace("``", "`")


def _object_schema(cls: type[Any], docs: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    properties = {}
    for item in dataclasses.fields(cls):
        prop = _type_schema(hints[item.name], docs)
        description = docs.get(cls.__name__, {}).get(item.name) or prop.get("description")
        if description:
            prop["description"] = description
        default = _default(item)
        if default is not dataclasses.MISSING:
            prop["default"] = default
        properties[item.name] = prop
    schema: dict[str, Any] = {"type": "object"}
    if docs.get(cls.__name__, {}).get(""):
        schema["description"] = docs[cls.__name__][""]
    schema["properties"] = properties
    schema["additionalProperties"] = False
    return schema


def _type_schema(hint: Any, docs: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    base, rules = config.split_rules(hint)
    origin = get_origin(base)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in get_args(base) if arg is not type(None)]
        if len(options) != 1:  # load() converts to the first type only
            raise TypeError(f"no JSON Schema for setting type {base!r}: one type or None")
        return _nullable(_type_schema(options[0], docs))
    schema = _plain_schema(base, docs)
    for rule in rules:
        schema.update(rule.schema())
    return schema


def _plain_schema(base: Any, docs: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    origin = get_origin(base)
    if origin is Literal:
        choices = list(get_args(base))
        if not all(isinstance(choice, str) for choice in choices):
            raise TypeError(f"only string Literals are supported, not {base!r}")
        return {"type": "string", "enum": choices}
    if origin is tuple:
        return {"type": "array", "items": _type_schema(get_args(base)[0], docs)}
    if origin is dict:
        key_type, value_type = get_args(base)
        values = _type_schema(value_type, docs)
        pattern = _type_schema(key_type, docs).get("pattern")
        if pattern is None:
            return {"type": "object", "additionalProperties": values}
        # Not propertyNames: helm reports a failed propertyNames at '' instead of the key's path.
        return {
            "type": "object",
            "patternProperties": {pattern: values},
            "additionalProperties": False,
        }
    if dataclasses.is_dataclass(base) and base is not config.HostPort:
        return _object_schema(typing.cast(type[Any], base), docs)
    scalars: dict[Any, dict[str, Any]] = {
        bool: {"type": "boolean"},
        int: {"type": "integer"},
        float: {"type": "number"},
        str: {"type": "string"},
        Path: {"type": "string", "minLength": 1},
        config.HostPort: {"type": "string"},
    }
    if base not in scalars:
        raise TypeError(f"no JSON Schema for setting type {base!r}")
    return dict(scalars[base])


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    schema["type"] = [schema["type"], "null"]
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return schema


def _default(item: dataclasses.Field[Any]) -> Any:
    """The field's default as JSON; MISSING for nested sections (their fields say it)."""
    if item.default is not dataclasses.MISSING:
        value = item.default
    elif item.default_factory is not dataclasses.MISSING:
        value = item.default_factory()
    else:
        return dataclasses.MISSING
    if dataclasses.is_dataclass(value) and not isinstance(value, config.HostPort):
        return dataclasses.MISSING
    return _to_json_value(value)


def _to_json_value(value: Any) -> Any:
    if isinstance(value, config.HostPort | Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json_value(v) for k, v in value.items()}
    return value


def _property(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The subschema of a dotted key; KeyError when the config has no such key (a stale
    chart list must fail loudly, not refuse nothing)."""
    node = schema
    for name in dotted.split("."):
        node = node["properties"][name]
    return node
