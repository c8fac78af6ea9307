"""Snapshot parsing: JSON takes the fast path, YAML (flow style included) still parses, a
kubectl dump is read one object at a time, and broken files are refused with a message."""

from __future__ import annotations

import gc
import json
import logging
import tracemalloc
from pathlib import Path

import pytest
import yaml

from bench import gen_cluster
from kubedns.objects import Service
from kubedns.sources.events import Replace
from kubedns.sources.snapshot import SnapshotError, load_snapshot, parse_snapshot

SERVICE = {
    "kind": "Service",
    "metadata": {"namespace": "shop", "name": "web"},
    "spec": {"clusterIP": "10.0.0.1", "ports": [{"name": "http", "port": 80}]},
}


def services(text: str) -> tuple[object, ...]:
    (replace,) = parse_snapshot(text, source="test", kinds=("Service",))
    return replace.objects


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"kind": "List", "items": [SERVICE]}),
        json.dumps(
            {"kind": "ServiceList", "items": [{k: v for k, v in SERVICE.items() if k != "kind"}]}
        ),
        "{kind: List, items: [{kind: Service, metadata: {namespace: shop, name: web}, "
        "spec: {clusterIP: 10.0.0.1, ports: [{name: http, port: 80}]}}]}",
        "---\n" + json.dumps(SERVICE) + "\n---\n",
    ],
    ids=["json-list", "json-typed-list", "yaml-flow", "yaml-documents"],
)
def test_every_form_gives_the_same_service(text: str) -> None:
    (service,) = services(text)
    assert isinstance(service, Service)
    assert (service.namespace, service.name, service.cluster_ips) == ("shop", "web", ("10.0.0.1",))


def test_broken_json_is_reported_as_unreadable() -> None:
    with pytest.raises(SnapshotError, match="neither YAML nor JSON"):
        services('{"kind": "List", "items": [')


# -- through load_snapshot: the file as kubectl writes it, and files that must be refused -------

KUBECTL_YAML = """\
apiVersion: v1
items:
- apiVersion: v1
  kind: Namespace
  metadata:
    name: shop
- apiVersion: v1
  kind: Service
  metadata:
    name: web
    namespace: shop
  spec:
    clusterIP: 10.0.0.1
    ports:
    - name: http
      port: 80
      protocol: TCP
- apiVersion: v1
  kind: Endpoints
  metadata:
    name: web
    namespace: shop
- apiVersion: v1
  kind: Endpoints
  metadata:
    name: db
    namespace: shop
kind: List
metadata:
  resourceVersion: ""
"""


def load(tmp_path: Path, content: str | bytes, *, name: str = "dump.yaml") -> list[Replace]:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return load_snapshot(path, kinds=("Namespace", "Service"))


def names(replaces: list[Replace]) -> dict[str, list[str]]:
    return {r.kind: sorted(getattr(o, "name", "") for o in r.objects) for r in replaces}


def test_kubectl_yaml_with_kind_after_items(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kubedns.sources.snapshot")
    assert names(load(tmp_path, KUBECTL_YAML)) == {"Namespace": ["shop"], "Service": ["web"]}
    ignored = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
    assert ignored == ["snapshot: ignoring objects of kind Endpoints"]  # once per kind


def test_kubectl_json_with_kind_after_items(tmp_path: Path) -> None:
    document = yaml.safe_load(KUBECTL_YAML)
    text = json.dumps(document, indent=4)  # kubectl -o json: indented, kind after items
    assert names(load(tmp_path, text, name="dump.json")) == {
        "Namespace": ["shop"],
        "Service": ["web"],
    }


@pytest.mark.parametrize("as_json", [False, True], ids=["yaml", "json"])
def test_typed_list_with_kind_last_restores_item_kinds(tmp_path: Path, as_json: bool) -> None:
    document = {
        "items": [{"metadata": {"name": "web", "namespace": "shop"}}],
        "kind": "ServiceList",
    }
    text = json.dumps(document) if as_json else yaml.safe_dump(document)
    assert names(load(tmp_path, text)) == {"Namespace": [], "Service": ["web"]}


def test_a_document_that_is_not_a_list_keeps_its_items_field_to_itself(tmp_path: Path) -> None:
    text = yaml.safe_dump({**SERVICE, "items": [{"kind": "Namespace", "metadata": {}}]})
    assert names(load(tmp_path, text)) == {"Namespace": [], "Service": ["web"]}


def test_anchors_and_merge_keys_are_yaml_as_ever(tmp_path: Path) -> None:
    text = (
        "kind: List\nitems:\n"
        "- &svc {kind: Service, metadata: {name: web, namespace: shop},"
        " spec: {clusterIP: 10.0.0.1}}\n"
        "- {<<: *svc, metadata: {name: api, namespace: shop}}\n"
        "- {kind: ConfigMap, metadata: {name: c, namespace: shop}, data: !!set {a}}\n"
    )
    assert names(load(tmp_path, text)) == {"Namespace": [], "Service": ["api", "web"]}


def test_a_malformed_object_is_named_with_its_number(tmp_path: Path) -> None:
    bad = {**SERVICE, "metadata": {"namespace": "shop", "name": "bad"}, "spec": {"ports": "x"}}
    text = yaml.safe_dump({"items": [SERVICE, SERVICE, bad, SERVICE], "kind": "List"})
    with pytest.raises(SnapshotError, match=r"object 3: .*shop/bad.*spec\.ports"):
        load(tmp_path, text)


def test_a_syntax_error_wins_over_an_earlier_malformed_object(tmp_path: Path) -> None:
    bad = {**SERVICE, "spec": {"ports": "x"}}
    text = yaml.safe_dump({"kind": "List", "items": [bad, SERVICE]}) + "- [unclosed\n"
    with pytest.raises(SnapshotError, match="neither YAML nor JSON"):
        load(tmp_path, text)


TRUNCATED = yaml.safe_dump({"apiVersion": "v1", "items": [SERVICE] * 3, "kind": "List"})

REFUSED = [
    pytest.param(
        TRUNCATED[: TRUNCATED.index("clusterIP")] + "  'clus",
        "neither YAML nor JSON",
        id="truncated-yaml",
    ),
    pytest.param(
        json.dumps({"kind": "List", "items": [SERVICE] * 3})[:-20],
        "neither YAML",
        id="truncated-json",
    ),
    pytest.param(
        "kind: List\nitems:\n  name: web\n",
        "document 1 items is not a list",
        id="yaml-items-not-a-list",
    ),
    pytest.param(
        '{"kind": "List", "items": {"name": "web"}}',
        "document 1 items is not a list",
        id="json-items-not-a-list",
    ),
    pytest.param(
        "items:\n- 7\nkind: List\n",
        "document 1 item 0 is not a mapping",
        id="yaml-item-not-a-mapping",
    ),
    pytest.param(
        '{"items": [{"kind": "Namespace", "metadata": {"name": "a"}}, "x"], "kind": "List"}',
        "document 1 item 1 is not a mapping",
        id="json-item-not-a-mapping",
    ),
    pytest.param(
        "kind: Namespace\nmetadata: {name: a}\n---\n- a list\n",
        "document 2 is not a mapping",
        id="second-document-not-a-mapping",
    ),
    pytest.param("[1, 2]", "document 1 is not a mapping", id="json-array"),
    pytest.param(b"kind: List\nitems:\n- name: caf\xe9\n", "is not UTF-8 text", id="latin-1"),
    pytest.param(b"\xff\xfek\x00", "is not UTF-8 text", id="utf-16"),
    pytest.param(b' {"kind": "caf\xe9"}', "is not UTF-8 text", id="latin-1-json"),
    pytest.param("items:\n- !!timestamp yesterday\n", "neither YAML nor JSON", id="bad-value"),
    pytest.param("items:\n- !!set {a}\n- !!timestamp x\n", "neither YAML", id="bad-value-whole"),
]


@pytest.mark.parametrize(("content", "message"), REFUSED)
def test_broken_files_are_refused_with_a_message(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    with pytest.raises(SnapshotError, match=message) as caught:
        load(tmp_path, content)
    assert str(tmp_path / "dump.yaml") in str(caught.value)


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="cannot read snapshot"):
        load_snapshot(tmp_path / "missing.yaml")
    with pytest.raises(SnapshotError, match="cannot read snapshot"):
        load_snapshot(tmp_path)  # a directory


def test_a_large_dump_is_never_held_whole(tmp_path: Path) -> None:
    """Python memory while loading stays within a few times the file's size: the raw objects
    are slimmed one by one (loaded whole, this dump took 50 times its size; streamed, about 5
    times alone and up to 6 after other tests have warmed the interpreter's caches)."""
    objects = gen_cluster.generate(services=300, namespaces=30, endpoints=1500)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(gen_cluster.as_list(objects)))
    size = path.stat().st_size
    gc.collect()  # garbage of earlier tests freed inside the window would blur the peak
    tracemalloc.start()
    try:
        replaces = load_snapshot(path)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(len(r.objects) for r in replaces) == len(objects)
    assert peak < 8 * size, (peak, size)
