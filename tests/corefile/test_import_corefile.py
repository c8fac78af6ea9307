"""``kubedns import-corefile``: real Corefiles in, a config kubedns loads out.

Every case runs the command line (``cli.main``) and loads what it printed with
``kubedns.config.load``, as ``kubedns serve --config`` would, then checks the loaded values.
The Corefiles under ``files/`` say where they come from in their first lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubedns import cli
from kubedns.config import Config, HostPort, load
from tests.test_check_config import kubedns

FILES = Path(__file__).resolve().parent / "files"


@dataclass(frozen=True)
class Run:
    status: int
    stdout: str
    stderr: str
    config: Config | None


def import_corefile(path: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Run:
    status = cli.main(["import-corefile", str(path)])
    out, err = capsys.readouterr()
    config = None
    if out:
        converted = tmp_path / "kubedns.yaml"
        converted.write_text(out)
        config = load(converted)
    return Run(status, out, err, config)


def field(config: Config, dotted: str) -> Any:
    value: Any = config
    for name in dotted.split("."):
        value = getattr(value, name)
    return value


# Values both kubeadm Corefiles and the Helm chart's default stand for.
KUBEADM = {
    "listen": HostPort("0.0.0.0", 53),
    "cluster_domain": "cluster.local",
    "pods": "insecure",
    "ttl.records": 30,
    "ttl.negative": 30,
    "forward.enabled": True,
    "forward.upstreams": (),  # empty: the nameservers of /etc/resolv.conf
    "forward.max_concurrent": 1000,
    "cache.size": 9984,
    "cache.max_ttl": 30,
    "cache.negative_max_ttl": 30,
    "cache.serve_stale": False,
    "ops.listen": HostPort("0.0.0.0", 9153),
    "ops.lame_duck": 5.0,
    "replies.rotate": True,
    "reload.interval": 30.0,
}

CONVERTED = {
    "kubeadm-1.33.Corefile": KUBEADM,
    "kubeadm-1.20.Corefile": KUBEADM,
    "helm-chart-default.Corefile": KUBEADM,
    "stub-domains.Corefile": {
        **KUBEADM,
        "ttl.records": 5,
        "ttl.negative": 5,
        "forward.upstreams": (HostPort("172.16.0.1", 53),),
        "forward.stub_domains": {
            "consul.local": (HostPort("10.150.0.1", 53),),
            "corp.example": (HostPort("10.0.0.53", 53),),
        },
        "ops.lame_duck": 0.0,
    },
    "tuned.Corefile": {
        "listen": HostPort("10.96.0.10", 53),
        "cluster_domain": "cluster.local",
        "pods": "verified",
        "ttl.records": 10,
        "forward.upstreams": (HostPort("1.1.1.1", 53), HostPort("2606:4700:4700::1111", 53)),
        "forward.policy": "round_robin",
        "forward.max_concurrent": 500,
        "cache.size": 20000,
        "cache.max_ttl": 600,
        "cache.min_ttl": 10,
        "cache.negative_max_ttl": 120,
        "cache.serve_stale": True,
        "cache.stale_max_age": 1800,
        "cache.servfail_ttl": 2,
        "replies.udp_size": 1232,
        "replies.rotate": False,
        "ops.lame_duck": 90.0,
        "ops.listen": HostPort("0.0.0.0", 8181),
    },
}


@pytest.mark.parametrize("name", sorted(CONVERTED))
def test_a_real_corefile_converts_to_a_config_that_loads(
    name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run = import_corefile(FILES / name, capsys, tmp_path)
    assert run.status == 0, run.stderr
    assert run.stderr == ""
    assert run.config is not None
    for dotted, expected in CONVERTED[name].items():
        assert field(run.config, dotted) == expected, dotted


def test_what_behaves_differently_is_said_in_comments(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run = import_corefile(FILES / "kubeadm-1.33.Corefile", capsys, tmp_path)
    comments = [line for line in run.stdout.splitlines() if line.lstrip().startswith("#")]
    said = "\n".join(comments)
    for directive in ("errors (line 5)", "loop (line 23)", "reload (line 24)"):
        assert directive in said
    assert "disable success cluster.local (line 20)" in said
    assert "ready :8181 (line 9)" in said  # the readiness probe has to move to 9153


def test_the_output_passes_check_config(tmp_path: Path) -> None:
    """The real entry point, as an operator runs it: convert, then ``check-config``."""
    done = kubedns("import-corefile", str(FILES / "stub-domains.Corefile"))
    assert done.returncode == 0, done.stderr
    converted = tmp_path / "kubedns.yaml"
    converted.write_text(done.stdout)
    checked = kubedns("check-config", str(converted))
    assert checked.returncode == 0, checked.stderr


def test_unsupported_directives_are_named_with_their_lines_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run = import_corefile(FILES / "unsupported.Corefile", capsys, tmp_path)
    assert run.status == 2
    path = FILES / "unsupported.Corefile"
    for where in (
        "4: hosts:",
        "7: rewrite:",
        "10: kubernetes namespaces:",
        "11: kubernetes endpoint_pod_names:",
        "13: autopath:",
        "15: forward force_tcp:",
        "18: acl:",
        "21: whoami:",
        "23: server block example.org:5300:",
    ):
        assert f"{path}:{where}" in run.stderr
    # What does map is still converted, so the operator sees both at once.
    assert run.config is not None
    assert run.config.forward.upstreams == (HostPort("8.8.8.8", 53),)
    assert run.config.pods == "insecure"
    assert run.config.forward.stub_domains == {}  # the block on port 5300 is not taken


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "Corefile"
    path.write_text(text)
    return path


ROOT = ".:53 {\n    kubernetes cluster.local\n    forward . 10.0.0.1\n    cache 30\n"

UNSUPPORTED = [
    (ROOT + "    template IN A example.com\n}\n", "5: template:"),
    (ROOT + "    dnssec\n}\n", "5: dnssec:"),
    (ROOT + "    reload 1s\n}\n", "5: reload: interval 1s is below CoreDNS's minimum"),
    (ROOT + "    etcd skydns.local\n}\n", "5: etcd:"),
    (ROOT + "    some_plugin_nobody_wrote\n}\n", "5: some_plugin_nobody_wrote:"),
    (ROOT + "    prometheus :{$METRICS_PORT}\n}\n", "5: prometheus: environment substitution"),
    (ROOT + "    import common\n}\n", "5: import:"),
    (
        ".:53 {\n    kubernetes cluster.local {\n        endpoint {$K8S_API}\n    }\n}\n",
        "3: kubernetes endpoint: environment substitution",
    ),
    (".:{$DNS_PORT} {\n    kubernetes cluster.local\n}\n", "1: server block: environment"),
    (ROOT + "    prometheus :9153\n    prometheus :9253\n}\n", "6: prometheus: kubedns serves one"),
    ("import /etc/coredns/custom/*.server\n" + ROOT + "}\n", "1: import:"),
    (
        ".:53 {\n    kubernetes cluster.local {\n        labels app=web\n    }\n}\n",
        "3: kubernetes labels:",
    ),
    (
        ".:53 {\n    kubernetes cluster.local {\n        noendpoints\n    }\n}\n",
        "3: kubernetes noendpoints:",
    ),
    (
        ".:53 {\n    kubernetes cluster.local example.local\n}\n",
        "2: kubernetes: a second cluster domain",
    ),
    (
        ".:53 {\n    kubernetes cluster.local {\n        fallthrough\n    }\n}\n",
        "3: kubernetes fallthrough:",
    ),
    (ROOT + "}\nexample.local {\n    kubernetes\n}\n", "7: kubernetes: a second kubernetes"),
    (ROOT + "}\n.:53 {\n    forward . 10.0.0.2\n}\n", "6: server block .:53: zone already served"),
    ("tls://.:853 {\n    forward . 10.0.0.1\n}\n" + ROOT + "}\n", "1: server block .:853:"),
    (ROOT + "    forward . tls://9.9.9.9\n}\n", "5: forward: tls://9.9.9.9"),
    (".:53 {\n    kubernetes cluster.local\n    forward . dns.example.com\n}\n", "3: forward:"),
    (
        ".:53 {\n    kubernetes cluster.local\n    cache 30 {\n        disable success\n    }\n}\n",
        "4: cache disable success:",
    ),
    (
        ".:53 {\n    kubernetes cluster.local\n    cache {\n        keepttl\n    }\n}\n",
        "4: cache keepttl:",
    ),
    (
        ROOT + "}\ncluster.local:53 {\n    forward . 10.0.0.2\n}\n",
        "7: forward: stub domain cluster.local",
    ),
    (".:53 {\n    forward . 10.0.0.1\n}\n", "kubernetes: no kubernetes directive"),
    (ROOT + "    loadbalance weighted /etc/weights\n}\n", "5: loadbalance:"),
    (
        ".:53 {\n    kubernetes cluster.local {\n        ttl forever\n    }\n}\n",
        "3: kubernetes ttl: 'forever'",
    ),
    (
        ".:53 {\n    kubernetes cluster.local {\n        pods maybe\n    }\n}\n",
        "3: kubernetes pods: 'maybe'",
    ),
    (
        ".:53 {\n    kubernetes cluster.local\n    health {\n        lameduck soon\n    }\n}\n",
        "4: health lameduck:",
    ),
    (".:53 {\n    kubernetes cluster.local\n    bind eth0\n}\n", "3: bind:"),
]


@pytest.mark.parametrize(("text", "where"), UNSUPPORTED, ids=[where for _, where in UNSUPPORTED])
def test_each_unsupported_directive_is_reported_by_name(
    text: str, where: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, text)
    run = import_corefile(path, capsys, tmp_path)
    assert run.status == 2
    assert f"{path}:{where}" in run.stderr or f"{path}: {where}" in run.stderr, run.stderr
    assert run.config is not None  # the rest still converts to a loadable config


MAPPED = [
    # CoreDNS serves no pod records unless `pods` says so; kubedns's default is insecure.
    (".:53 {\n    kubernetes cluster.local\n    forward . 10.0.0.1\n}\n", "pods", "disabled"),
    # Without loadbalance CoreDNS keeps the order; without cache it caches nothing.
    (".:53 {\n    kubernetes cluster.local\n    forward . 10.0.0.1\n}\n", "replies.rotate", False),
    (".:53 {\n    kubernetes cluster.local\n    forward . 10.0.0.1\n}\n", "cache.size", 0),
    # Without a `forward .` CoreDNS answers only its zones.
    ("cluster.local:53 {\n    kubernetes\n}\n", "forward.enabled", False),
    ("cluster.local:53 {\n    kubernetes\n}\n", "cluster_domain", "cluster.local"),
    (".:5353 {\n    kubernetes cluster.local\n}\n", "listen", HostPort("0.0.0.0", 5353)),
    (".:53 {\n    kubernetes Corp.Example.\n}\n", "cluster_domain", "corp.example"),
    # A CIDR zone is a reverse zone, accepted beside the cluster domain.
    (".:53 {\n    kubernetes cluster.local 10.96.0.0/16\n}\n", "cluster_domain", "cluster.local"),
    # A stub domain forwarded from the `.` block, as CoreDNS's own README shows it.
    (
        ".:53 {\n    kubernetes cluster.local\n    forward example.local 10.0.0.1\n"
        "    forward . 8.8.8.8\n}\n",
        "forward.stub_domains",
        {"example.local": (HostPort("10.0.0.1", 53),)},
    ),
    # `cache 3` caps below the default minimum: the minimum follows, or kubedns refuses it.
    (
        ".:53 {\n    kubernetes cluster.local\n    forward . 10.0.0.1\n    cache 3\n}\n",
        "cache.min_ttl",
        3,
    ),
    (
        ".:53 {\n    kubernetes cluster.local\n    forward . 10.0.0.1\n    cache {\n"
        "        servfail 1m\n    }\n}\n",
        "cache.servfail_ttl",
        5,
    ),
    (
        ".:53 {\n    kubernetes cluster.local\n    forward . 10.0.0.1\n    cache {\n"
        "        serve_stale\n    }\n}\n",
        "cache.stale_max_age",
        3600,
    ),
    (
        ".:53 {\n    kubernetes cluster.local\n    health {\n        lameduck 500ms\n    }\n}\n",
        "ops.lame_duck",
        0.5,
    ),
    (
        ".:53 {\n    kubernetes cluster.local\n    health {\n        lameduck 7\n    }\n}\n",
        "ops.lame_duck",
        7.0,
    ),
    (
        ".:53 {\n    kubernetes cluster.local\n    prometheus\n}\n",
        "ops.listen",
        HostPort("127.0.0.1", 9153),
    ),
    (
        ".:53 {\n    kubernetes cluster.local\n    prometheus [::]:9253\n}\n",
        "ops.listen",
        HostPort("::", 9253),
    ),
    (".:53 {\n    kubernetes cluster.local\n    log\n}\n", "logging.queries", True),
    (".:53 {\n    kubernetes cluster.local\n    reload\n}\n", "reload.interval", 30.0),
    (".:53 {\n    kubernetes cluster.local\n    reload 10s 5s\n}\n", "reload.interval", 10.0),
    (
        '.:53 {\n    kubernetes cluster.local\n    errors {\n        consolidate 5m ".*"\n'
        "    }\n}\n",
        "logging.error_interval",
        300.0,
    ),
    (
        ".:53 {\n    kubernetes cluster.local\n    log . {\n        class denial\n    }\n}\n",
        "logging.queries",
        True,
    ),
    # A file of one server block may leave out the braces.
    (
        ".\nkubernetes cluster.local\nforward . 10.0.0.9\n",
        "forward.upstreams",
        (HostPort("10.0.0.9", 53),),
    ),
    # Keys continued with a comma, and quoted arguments.
    (
        '.:53,\n  cluster.local:53 {\n    kubernetes "cluster.local" # the zone\n'
        '    forward . "10.0.0.7"\n}\n',
        "forward.upstreams",
        (HostPort("10.0.0.7", 53),),
    ),
]


@pytest.mark.parametrize(("text", "dotted", "expected"), MAPPED)
def test_a_directive_maps_to_a_setting(
    text: str, dotted: str, expected: object, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run = import_corefile(write(tmp_path, text), capsys, tmp_path)
    assert run.status == 0, run.stderr
    assert run.config is not None
    assert field(run.config, dotted) == expected


def test_a_tls_server_first_does_not_decide_the_port(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = "tls://.:853 {\n    forward . 10.0.0.1\n}\n" + ROOT + "}\n"
    run = import_corefile(write(tmp_path, text), capsys, tmp_path)
    assert run.status == 2  # the DoT server is named
    assert run.config is not None
    assert run.config.listen == HostPort("0.0.0.0", 53)
    assert run.config.forward.upstreams == (HostPort("10.0.0.1", 53),)


def test_forwarding_to_itself_is_refused_and_left_out(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = (
        ".:53 {\n    kubernetes cluster.local\n"
        "    forward . 127.0.0.1 {\n        policy sequential\n    }\n}\n"
    )
    path = write(tmp_path, text)
    run = import_corefile(path, capsys, tmp_path)
    assert run.status == 2
    assert f"{path}:3: forward: 127.0.0.1:53 is kubedns's own listen address" in run.stderr
    assert run.config is not None
    assert run.config.forward.upstreams == ()
    assert run.config.forward.policy == "sequential"
