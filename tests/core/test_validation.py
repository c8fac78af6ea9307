"""Objects are checked as the API server checks what it stores: names, IPs, ExternalNames,
hostnames and the slice's service label. In a snapshot a bad object stops the start with a
message naming the object and the field; from the live watch it is skipped and counted."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient
from prometheus_client import REGISTRY

from bench import gen_cluster
from kubedns.objects import Service
from kubedns.sources.events import Replace
from kubedns.sources.snapshot import SnapshotError, load_snapshot
from kubedns.sources.watch import RESOURCES, ResourceWatch
from tests import kubeobjects as k
from tests.fakeapi import FakeApiServer
from tests.test_watch import SETTINGS, Recorder, eventually, open_watch

ROOT = Path(__file__).resolve().parents[2]
JSON = dict[str, Any]


def service(**spec: Any) -> JSON:
    raw = k.service("shop", "web", "10.96.1.10")
    raw["spec"].update(spec)
    return raw


def external(name: Any) -> JSON:
    return {
        "kind": "Service",
        "metadata": {"namespace": "shop", "name": "ext"},
        "spec": {"type": "ExternalName", "externalName": name},
    }


def renamed(raw: JSON, *, name: str | None = None, namespace: str | None = None) -> JSON:
    raw = copy.deepcopy(raw)
    if name is not None:
        raw["metadata"]["name"] = name
    if namespace is not None:
        raw["metadata"]["namespace"] = namespace
    return raw


def a_slice(**changes: Any) -> JSON:
    raw = k.endpoint_slice("shop", "web-1", "web", ["10.0.0.1"])
    raw.update(changes)
    return raw


def with_endpoint(**endpoint: Any) -> JSON:
    return a_slice(endpoints=[{"addresses": ["10.0.0.1"], **endpoint}])


def unlabelled() -> JSON:
    raw = a_slice()
    del raw["metadata"]["labels"]
    return raw


def labelled(value: Any) -> JSON:
    raw = a_slice()
    raw["metadata"]["labels"] = {"kubernetes.io/service-name": value}
    return raw


def skipped_slices() -> float:
    sample = "kubedns_kubernetes_objects_skipped_total"
    return REGISTRY.get_sample_value(sample, {"kind": "EndpointSlice"}) or 0.0


def load(tmp_path: Path, *objects: JSON) -> list[Replace]:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({"kind": "List", "items": list(objects)}))
    return load_snapshot(path)


REFUSED = [
    # The three the issue names.
    pytest.param(external("a..b c"), "shop/ext", "spec.externalName", id="externalname-a..b-c"),
    pytest.param(renamed(service(), name="We.b"), "shop/We.b", "metadata.name", id="service-We.b"),
    pytest.param(
        unlabelled(), "shop/web-1", "metadata.labels[kubernetes.io/service-name]", id="no-label"
    ),
    # Names.
    pytest.param(renamed(service(), name="9web"), "shop/9web", "metadata.name", id="svc-digit"),
    pytest.param(renamed(service(), name="web-"), "shop/web-", "metadata.name", id="svc-hyphen"),
    pytest.param(
        renamed(service(), name="a" * 64), "shop/" + "a" * 64, "metadata.name", id="svc-64"
    ),
    pytest.param(
        renamed(service(), namespace="Shop"), "Shop/web", "metadata.namespace", id="ns-upper"
    ),
    pytest.param(
        renamed(service(), namespace="a.b"), "a.b/web", "metadata.namespace", id="ns-dotted"
    ),
    pytest.param(k.namespace("my_ns"), "my_ns", "metadata.name", id="namespace-underscore"),
    pytest.param(
        renamed(a_slice(), name="web..1"), "shop/web..1", "metadata.name", id="slice-empty-label"
    ),
    pytest.param(renamed(a_slice(), name="Web-1"), "shop/Web-1", "metadata.name", id="slice-upper"),
    pytest.param(
        renamed(k.pod("shop", "p", "10.1.0.1"), name="p q"), "shop/p q", "metadata.name", id="pod"
    ),
    # Cluster IPs.
    pytest.param(
        service(clusterIPs=["10.96.1.10", "10.96.1.11"]),
        "shop/web",
        "spec.clusterIPs",
        id="two-ipv4",
    ),
    pytest.param(
        service(clusterIP="10.96.1.11"), "shop/web", "spec.clusterIP", id="ip-disagrees-with-ips"
    ),
    pytest.param(
        service(clusterIP="None", clusterIPs=["None", "fd00::1"]),
        "shop/web",
        "spec.clusterIPs",
        id="none-and-an-ip",
    ),
    pytest.param(
        service(clusterIP="10.96.1.10", clusterIPs=["10.96.1.10", "fd00::1", "fd00::2"]),
        "shop/web",
        "spec.clusterIPs",
        id="three-ips",
    ),
    pytest.param(
        service(clusterIP="010.96.1.10", clusterIPs=None),
        "shop/web",
        "spec.clusterIPs[0]",
        id="leading-zero",
    ),
    # ExternalName.
    pytest.param(external("DB.example.com"), "shop/ext", "spec.externalName", id="ext-upper"),
    pytest.param(external("db.example.com.."), "shop/ext", "spec.externalName", id="ext-dots"),
    pytest.param(external("-db.example.com"), "shop/ext", "spec.externalName", id="ext-hyphen"),
    pytest.param(external("a" * 64 + ".com"), "shop/ext", "spec.externalName", id="ext-long-label"),
    pytest.param(external("a." * 127 + "bc"), "shop/ext", "spec.externalName", id="ext-long"),
    pytest.param(external("."), "shop/ext", "spec.externalName", id="ext-root"),
    # Endpoint addresses of the slice's family, hostnames as labels.
    pytest.param(
        a_slice(endpoints=[{"addresses": ["fd00::1"]}]),
        "shop/web-1",
        "endpoints[0].addresses[0]",
        id="ipv6-in-ipv4-slice",
    ),
    pytest.param(
        a_slice(addressType="IPv6"), "shop/web-1", "endpoints[0].addresses[0]", id="ipv4-in-ipv6"
    ),
    pytest.param(a_slice(addressType="IPv5"), "shop/web-1", "addressType", id="bad-type"),
    pytest.param(a_slice(addressType=None), "shop/web-1", "addressType", id="no-type"),
    pytest.param(
        with_endpoint(hostname="db.0"), "shop/web-1", "endpoints[0].hostname", id="host-dotted"
    ),
    pytest.param(
        with_endpoint(hostname="DB-0"), "shop/web-1", "endpoints[0].hostname", id="host-upper"
    ),
    pytest.param(
        with_endpoint(hostname="a" * 64), "shop/web-1", "endpoints[0].hostname", id="host-64"
    ),
    # The service label.
    pytest.param(
        labelled(""), "shop/web-1", "metadata.labels[kubernetes.io/service-name]", id="label-empty"
    ),
    pytest.param(
        labelled(7), "shop/web-1", "metadata.labels[kubernetes.io/service-name]", id="label-int"
    ),
    pytest.param(
        labelled("a b"), "shop/web-1", "metadata.labels[kubernetes.io/service-name]", id="label-sp"
    ),
]


def test_kubedns_serve_refuses_to_start_on_a_bad_object(tmp_path: Path) -> None:
    """Through the command line, in its own process: a start-up error naming the file, the
    object and the field; no traceback, never serving. (A process, not ``cli.main`` in the
    test: were the object accepted, serve would run until stopped; the bound below only
    turns that into a failure instead of a hang.)"""
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({"kind": "List", "items": [external("a..b c")]}))
    command = [sys.executable, "-m", "kubedns", "serve", "--no-forward", "--snapshot", str(path)]
    process = subprocess.Popen(
        [*command, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("kubedns serve started on a snapshot it must refuse")
    assert process.returncode != 0
    assert str(path) in err and "shop/ext" in err and "field spec.externalName " in err, err
    assert "Traceback" not in err and "serving DNS" not in err


@pytest.mark.parametrize(("raw", "ref", "field"), REFUSED)
def test_a_bad_object_in_a_snapshot_is_refused_naming_object_and_field(
    tmp_path: Path, raw: JSON, ref: str, field: str
) -> None:
    good = k.service("shop", "api")
    with pytest.raises(SnapshotError) as caught:
        load(tmp_path, good, raw)
    message = str(caught.value)
    assert f"object 2: {raw['kind']} {ref}: field {field} " in message, message


ACCEPTED = [
    pytest.param(external("db.example.com."), id="ext-trailing-dot"),
    pytest.param(external("localhost"), id="ext-single-label"),
    pytest.param(external("1.2.3.4"), id="ext-digits"),
    pytest.param(external("a" * 63 + ".b"), id="ext-63"),
    pytest.param(service(clusterIP="None", clusterIPs=["None"]), id="headless"),
    pytest.param(service(clusterIP="None", clusterIPs=None), id="headless-old-style"),
    pytest.param(service(clusterIP="", clusterIPs=[]), id="no-ip-yet"),
    pytest.param(
        service(clusterIP="fd00::a", clusterIPs=["fd00::a", "10.96.1.10"]), id="dual-stack-v6-first"
    ),
    pytest.param(service(clusterIP="2001:DB8::1", clusterIPs=None), id="upper-case-v6"),
    pytest.param(renamed(service(), name="a" * 63), id="svc-63"),
    pytest.param(renamed(service(), namespace="0-ns"), id="ns-digit-first"),
    pytest.param(renamed(a_slice(), name="web.x-1"), id="slice-dotted"),
    pytest.param(a_slice(addressType="IPv6", endpoints=[{"addresses": ["fd00::1"]}]), id="v6"),
    pytest.param(
        a_slice(addressType="FQDN", endpoints=[{"addresses": ["db.example.com"]}]), id="fqdn"
    ),
    pytest.param(with_endpoint(hostname="0-db"), id="hostname-digit-first"),
    pytest.param(labelled("We.b_1"), id="label-value-not-a-service-name"),
]


@pytest.mark.parametrize("raw", ACCEPTED)
def test_what_the_api_server_stores_still_loads(tmp_path: Path, raw: JSON) -> None:
    loaded = [o for r in load(tmp_path, raw) for o in r.objects]
    assert len(loaded) == 1


def test_an_external_name_keeps_its_name_without_the_trailing_dot(tmp_path: Path) -> None:
    (ext,) = [o for r in load(tmp_path, external("db.example.com.")) for o in r.objects]
    assert isinstance(ext, Service) and ext.external_name == "db.example.com"


@pytest.mark.parametrize(
    "path", [ROOT / "config" / "demo-cluster.yaml", ROOT / "tests" / "zone" / "cluster.yaml"]
)
def test_the_shipped_snapshots_still_load(path: Path) -> None:
    assert sum(len(r.objects) for r in load_snapshot(path)) > 10


def test_the_benchmark_clusters_still_load(tmp_path: Path) -> None:
    objects = gen_cluster.generate(services=64, namespaces=7, endpoints=900, pods=True)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(gen_cluster.as_list(objects)))
    assert sum(len(r.objects) for r in load_snapshot(path)) == len(objects)


def test_the_watch_skips_and_counts_what_a_snapshot_refuses(
    fake: FakeApiServer, api: ApiClient
) -> None:
    """The same rules through the live path: never fatal there, one skip counted per object."""
    recorder = Recorder()
    slices = ResourceWatch(api, RESOURCES["EndpointSlice"], deliver=recorder, settings=SETTINGS)
    before = skipped_slices()
    fake.load([a_slice(), unlabelled() | {"metadata": {"namespace": "shop", "name": "bare"}}])
    running = open_watch(fake, slices)
    last = fake.create(renamed(with_endpoint(hostname="DB-0"), name="upper-host"))
    eventually(lambda: slices.resource_version == str(last))
    slices.abort()
    running.join()
    (replace,) = recorder.events
    assert isinstance(replace, Replace)
    assert [o.name for o in replace.objects] == ["web-1"]
    assert skipped_slices() - before == 2
