"""``kubedns serve`` as a separate process: a smoke test through the command line, and broken
snapshots that must stop it before it listens, with a message naming the object and field."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubedns import cli, logs
from tests.zone.dnsclient import Address, ask
from tests.zone.server import CLUSTER, running

KUBEDNS = Path(sys.executable).parent / "kubedns"
COMMAND = [str(KUBEDNS)] if KUBEDNS.exists() else [sys.executable, "-m", "kubedns"]
START_ATTEMPTS = 200


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def wait_until_serving(process: subprocess.Popen[str], address: Address, qname: str) -> None:
    """Poll with queries (a readiness wait, not a timed assertion)."""
    for _ in range(START_ATTEMPTS):
        if process.poll() is not None:
            _out, err = process.communicate()
            raise AssertionError(f"kubedns exited with {process.returncode}: {err}")
        try:
            ask(address, qname, "SOA", timeout=0.05)
            return
        except (TimeoutError, ConnectionError, OSError):
            continue
    raise AssertionError("kubedns never answered")


def serve(*args: str) -> Iterator[tuple[subprocess.Popen[str], Address]]:
    port = free_port()
    address = ("127.0.0.1", port)
    process = subprocess.Popen(
        [*COMMAND, "serve", "--no-forward", "--listen", f"127.0.0.1:{port}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process, address
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


@pytest.fixture(scope="module")
def cli_server() -> Iterator[tuple[subprocess.Popen[str], Address]]:
    for process, address in serve("--snapshot", str(CLUSTER)):
        wait_until_serving(process, address, "cluster.local")
        yield process, address


def test_cli_serves_udp_and_tcp(cli_server: tuple[subprocess.Popen[str], Address]) -> None:
    _process, address = cli_server
    for tcp in (False, True):
        reply = ask(address, "web.shop.svc.cluster.local", "A", tcp=tcp)
        assert reply.answer == ["web.shop.svc.cluster.local. 5 in a 10.96.1.10"]
        assert reply.aa


def test_cli_negative_and_refused(cli_server: tuple[subprocess.Popen[str], Address]) -> None:
    _process, address = cli_server
    assert ask(address, "nope.shop.svc.cluster.local", "AAAA").rcode_text == "NXDOMAIN"
    assert ask(address, "shop.svc.cluster.local", "A").rcode_text == "NOERROR"
    assert ask(address, "example.com", "A").rcode_text == "REFUSED"


def test_cli_cluster_domain_and_pods_flags() -> None:
    flags = ("--snapshot", str(CLUSTER), "--cluster-domain", "k8s.test", "--pods", "verified")
    for process, address in serve(*flags):
        wait_until_serving(process, address, "k8s.test")
        assert ask(address, "web.shop.svc.k8s.test", "A").answer == [
            "web.shop.svc.k8s.test. 5 in a 10.96.1.10"
        ]
        assert ask(address, "web.shop.svc.cluster.local", "A").rcode_text == "REFUSED"
        assert ask(address, "1-2-3-4.shop.pod.k8s.test", "A").rcode_text == "NXDOMAIN"
        assert ask(address, "10-244-1-5.shop.pod.k8s.test", "A").rcode_text == "NOERROR"


def test_cli_config_file_and_flag_override(tmp_path: Path) -> None:
    config = tmp_path / "kubedns.yaml"
    config.write_text(
        yaml.safe_dump({"cluster_domain": "from.file", "ttl": {"records": 42}, "pods": "disabled"})
    )
    flags = ("--config", str(config), "--snapshot", str(CLUSTER), "--cluster-domain", "flag.wins")
    for process, address in serve(*flags):
        wait_until_serving(process, address, "flag.wins")
        assert ask(address, "web.shop.svc.flag.wins", "A").answer == [
            "web.shop.svc.flag.wins. 42 in a 10.96.1.10"
        ]
        assert ask(address, "1-2-3-4.shop.pod.flag.wins", "A").rcode_text == "NXDOMAIN"
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
        assert process.returncode == 0, "SIGTERM is a clean stop"


# -- snapshot formats ----------------------------------------------------------------------------


def test_json_snapshot(tmp_path: Path) -> None:
    """``kubectl get ... -o json`` prints the same List as JSON."""
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(yaml.safe_load(CLUSTER.read_text())))
    with running(snapshot=str(path)) as thread:
        assert ask(thread.address, "db.data.svc.cluster.local", "AAAA").counts.an == 3


def test_multi_document_snapshot(tmp_path: Path) -> None:
    items = yaml.safe_load(CLUSTER.read_text())["items"]
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(items))
    with running(snapshot=str(path)) as thread:
        assert ask(thread.address, "manual.data.svc.cluster.local", "A").counts.an == 2
        assert ask(thread.address, "empty.svc.cluster.local", "A").rcode_text == "NOERROR"


# -- broken snapshots ----------------------------------------------------------------------------

SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"clusterIP": "10.96.1.10", "ports": [{"name": "http", "port": 80}]},
}


KUBECTL_DUMP = yaml.safe_dump(
    {
        "apiVersion": "v1",
        "items": [
            {
                **SERVICE,
                "metadata": {"name": f"web{i}", "namespace": "shop", "resourceVersion": "1"},
            }
            for i in range(3)
        ],
        "kind": "List",
    }
)
"""Three Services as ``kubectl get -o yaml`` prints them; cut inside a quote it is not YAML."""


def with_spec(**spec: object) -> str:
    return yaml.safe_dump({**SERVICE, "spec": {**SERVICE["spec"], **spec}})  # type: ignore[dict-item]


BROKEN = [
    pytest.param("items: [\n  - {kind: Service\n", ["YAML"], id="malformed-yaml"),
    pytest.param('{"kind": "List", "items": [', ["JSON"], id="malformed-json"),
    pytest.param(
        with_spec(ports=[{"name": "http", "port": "eighty"}]),
        ["shop/web", "spec.ports[0].port"],
        id="port-not-a-number",
    ),
    pytest.param(
        with_spec(clusterIP="10.96.1.300", clusterIPs=["10.96.1.300"]),
        ["shop/web", "spec.clusterIPs[0]"],
        id="bad-cluster-ip",
    ),
    pytest.param(
        with_spec(clusterIPs="10.96.1.10"),
        ["shop/web", "spec.clusterIPs"],
        id="cluster-ips-not-a-list",
    ),
    pytest.param(
        with_spec(ports={"name": "http"}), ["shop/web", "spec.ports"], id="ports-not-a-list"
    ),
    pytest.param(
        with_spec(type="ExternalName", externalName=None),
        ["shop/web", "spec.externalName"],
        id="externalname-missing",
    ),
    pytest.param(
        yaml.safe_dump(
            {
                "kind": "EndpointSlice",
                "metadata": {"name": "web-1", "namespace": "shop"},
                "addressType": "IPv4",
                "endpoints": [{"addresses": "10.0.0.1"}],
            }
        ),
        ["shop/web-1", "endpoints[0].addresses"],
        id="slice-addresses-not-a-list",
    ),
    pytest.param(
        yaml.safe_dump(
            {
                "kind": "EndpointSlice",
                "metadata": {"name": "web-1", "namespace": "shop"},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["not-an-ip"]}],
            }
        ),
        ["shop/web-1", "endpoints[0].addresses[0]"],
        id="slice-bad-ip",
    ),
    pytest.param(
        yaml.safe_dump(
            {
                "kind": "Pod",
                "metadata": {"name": "p", "namespace": "shop"},
                "status": {"podIPs": [{"ip": "x"}]},
            }
        ),
        ["shop/p", "status.podIPs[0].ip"],
        id="pod-bad-ip",
    ),
    pytest.param(
        yaml.safe_dump({"kind": "Service", "metadata": {"namespace": "shop"}, "spec": {}}),
        ["metadata.name"],
        id="no-name",
    ),
    pytest.param(
        yaml.safe_dump(
            {
                "kind": "EndpointSlice",
                "metadata": {"name": "web-1", "namespace": "shop"},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.0.0.1"], "conditions": "yes"}],
            }
        ),
        ["shop/web-1", "endpoints[0].conditions"],
        id="slice-conditions-not-a-mapping",
    ),
    pytest.param(
        yaml.safe_dump(
            {
                "kind": "EndpointSlice",
                "metadata": {"name": "web-1", "namespace": "shop"},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.0.0.1"], "hostname": 7}],
            }
        ),
        ["shop/web-1", "endpoints[0].hostname"],
        id="slice-hostname-not-a-string",
    ),
    pytest.param(with_spec(type=["ClusterIP"]), ["shop/web", "spec.type"], id="type-not-a-string"),
    pytest.param(
        yaml.safe_dump({**SERVICE, "spec": "none"}), ["shop/web", "spec"], id="spec-not-a-mapping"
    ),
    pytest.param("- just\n- a list\n", ["not a mapping"], id="document-is-a-list"),
    pytest.param("just a string\n", ["not a mapping"], id="document-is-a-string"),
    pytest.param(
        yaml.safe_dump({"kind": "List", "items": {"a": 1}}), ["not a list"], id="items-not-a-list"
    ),
    pytest.param(
        yaml.safe_dump({"kind": "List", "items": [1, 2]}),
        ["not a mapping"],
        id="item-not-a-mapping",
    ),
    pytest.param(KUBECTL_DUMP[: KUBECTL_DUMP.rindex("'1'") + 2], ["YAML"], id="truncated-dump"),
    pytest.param(
        json.dumps({"items": [SERVICE, [SERVICE]], "kind": "List"}),
        ["document 1 item 1 is not a mapping"],
        id="json-item-not-a-mapping",
    ),
    pytest.param(
        json.dumps({"items": {"0": SERVICE}, "kind": "List"}),
        ["items is not a list"],
        id="json-items-not-a-list",
    ),
]


def check_refusal(returncode: int, message: str, path: Path, words: list[str]) -> None:
    assert returncode != 0
    assert str(path) in message
    for word in words:
        assert word in message, message
    assert "Traceback" not in message
    assert "serving DNS" not in message


@pytest.mark.parametrize(("text", "words"), BROKEN)
def test_broken_snapshot_stops_serve(
    tmp_path: Path,
    text: str,
    words: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In-process through ``cli.main`` (fast); the two tests below use a real process."""
    monkeypatch.setattr(logs, "setup", lambda settings: None)  # keep pytest's log capture
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    returncode = cli.main(
        ["serve", "--no-forward", "--snapshot", str(path), "--listen", f"127.0.0.1:{free_port()}"]
    )
    check_refusal(returncode, capsys.readouterr().err, path, words)


def test_snapshot_that_is_not_utf8_stops_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "setup", lambda settings: None)
    path = tmp_path / "latin1.yaml"
    path.write_bytes(yaml.safe_dump(SERVICE).replace("web", "caf\xe9").encode("latin-1"))
    returncode = cli.main(
        ["serve", "--no-forward", "--snapshot", str(path), "--listen", f"127.0.0.1:{free_port()}"]
    )
    check_refusal(returncode, capsys.readouterr().err, path, ["not UTF-8"])


def test_demo_cluster_snapshot_serves() -> None:
    """The shipped ``config/demo-cluster.yaml`` (what ``make run`` serves) loads and answers."""
    demo = Path(__file__).parents[2] / "config" / "demo-cluster.yaml"
    with running(snapshot=str(demo)) as thread:
        reply = ask(thread.address, "kubernetes.default.svc.cluster.local", "A")
        assert reply.answer == ["kubernetes.default.svc.cluster.local. 5 in a 10.96.0.1"]
        assert ask(thread.address, "cluster.local", "SOA").rcode_text == "NOERROR"


def test_typed_list_snapshot(tmp_path: Path) -> None:
    """``kubectl get services -o yaml`` of one kind may print a ``ServiceList`` whose items
    carry no ``kind``; other kinds (a ConfigMap, Endpoints) are ignored."""
    text = yaml.safe_dump_all(
        [
            {"kind": "NamespaceList", "items": [{"metadata": {"name": "shop"}}]},
            {
                "kind": "ServiceList",
                "items": [
                    {
                        "metadata": {"name": "web", "namespace": "shop"},
                        "spec": {"clusterIP": "10.96.1.10"},
                    },
                ],
            },
            {"kind": "Endpoints", "metadata": {"name": "web", "namespace": "shop"}},
            {"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "shop"}, "data": {}},
        ]
    )
    path = tmp_path / "typed.yaml"
    path.write_text(text)
    with running(snapshot=str(path)) as thread:
        assert ask(thread.address, "web.shop.svc.cluster.local").answer == [
            "web.shop.svc.cluster.local. 5 in a 10.96.1.10"
        ]
        assert ask(thread.address, "shop.svc.cluster.local").rcode_text == "NOERROR"


@pytest.mark.parametrize(("text", "words"), [BROKEN[0], BROKEN[2]])
def test_broken_snapshot_stops_the_process(tmp_path: Path, text: str, words: list[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    port = free_port()
    result = subprocess.run(
        [
            *COMMAND,
            "serve",
            "--no-forward",
            "--snapshot",
            str(path),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    check_refusal(result.returncode, result.stderr, path, words)
    assert result.returncode == 2


def test_missing_snapshot_file_stops_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "setup", lambda settings: None)
    missing = tmp_path / "nope.yaml"
    returncode = cli.main(
        ["serve", "--no-forward", "--snapshot", str(missing), "--listen", "127.0.0.1:0"]
    )
    check_refusal(returncode, capsys.readouterr().err, missing, [])


@pytest.mark.parametrize(
    "args",
    [
        ["--pods", "sometimes"],
        ["--listen", "localhost"],
        ["--listen", "127.0.0.1:99999"],
        ["--cluster-domain", "bad..domain"],
        ["--config", "/nonexistent/kubedns.yaml"],
    ],
    ids=["pods", "listen-host", "listen-port", "cluster-domain", "config-missing"],
)
def test_bad_flags_stop_serve(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "setup", lambda settings: None)
    try:
        returncode = cli.main(["serve", "--no-forward", "--snapshot", str(CLUSTER), *args])
    except SystemExit as exc:  # argparse rejects choices itself
        returncode = int(str(exc.code))
    assert returncode == 2
    err = capsys.readouterr().err
    assert err
    assert "Traceback" not in err


def test_serve_without_snapshot_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "setup", lambda settings: None)
    assert cli.main(["serve", "--no-forward", "--listen", "127.0.0.1:0"]) != 0
    err = capsys.readouterr().err
    assert "snapshot" in err
    assert "Traceback" not in err


def test_serve_help_names_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--config", "--snapshot", "--listen", "--cluster-domain", "--pods"):
        assert flag in out
