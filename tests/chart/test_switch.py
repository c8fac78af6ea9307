"""The chart README's "Replacing CoreDNS" procedure, replayed as written.

The `sh` blocks of charts/kubedns/README.md that start with `# step: NAME` are run in order in
one bash, from the repository's root, against kubeadm's CoreDNS objects (fixtures/
kubeadm-coredns.yaml), with `kubectl` and `helm` on PATH standing for a cluster client-side
(tests/chart/fakecluster.py: real kubectl --local, real helm template). After every command
the test checks what the `kube-dns` Service reaches: never no pod, never a pod that does not
listen on the port the Service sends it to, and always the kubelets' --cluster-dns IP.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TypedDict

import pytest

from tests.chart import cluster
from tests.chart.fakecluster import store
from tests.chart.tools import CHART, REPO, Obj, helm, kubectl, load_fixture, one

CLUSTER_DNS = "10.96.0.10"
# Which Deployments the Service reaches once each step is done: the canary serves from both.
REACHED_AFTER = {
    "adopt": {"coredns"},
    "install": {"coredns", "kubedns"},
    "switch": {"kubedns"},
    "upgrade": {"kubedns"},
    "rollback-upgrade": {"kubedns"},
    "restore-coredns": {"coredns", "kubedns"},
    "uninstall": {"coredns"},
    "hand-back": {"coredns"},
}


def readme_steps(text: str) -> list[tuple[str, str]]:
    """(name, script) of every ```sh block whose first line is `# step: NAME`, in order."""
    blocks = re.findall(r"^```sh\n# step: (\S+)\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    return [(name, body) for name, body in blocks]


class Entry(TypedDict):
    """One line of the fake cluster's log: the state after one command."""

    step: str
    argv: list[str]
    objects: list[Obj]


def replay(tmp_path: Path, steps: list[tuple[str, str]]) -> list[Entry]:
    state = tmp_path / "cluster"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kubectl", "helm"):
        wrapper = bin_dir / tool
        wrapper.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" -m tests.chart.fakecluster {tool} "$@"\n'
        )
        wrapper.chmod(0o755)
    env = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        PYTHONPATH=str(REPO),
        FAKECLUSTER_DIR=str(state),
        FAKECLUSTER_KUBECTL=kubectl(),
        FAKECLUSTER_HELM=helm(),
    )
    for obj in load_fixture("kubeadm-coredns.yaml"):
        store(obj, state)
    script = "set -euo pipefail\n" + "".join(
        f"export KUBEDNS_STEP={name}\n{body}" for name, body in steps
    )
    out = subprocess.run(
        ["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, f"the README's steps failed:\n{out.stdout}\n{out.stderr}"
    lines = (state / "log.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def check(entry: Entry) -> set[str]:
    """The Service's invariants after one command; returns the Deployments it reaches."""
    objects = entry["objects"]
    what = f"after `{' '.join(entry['argv'])}` (step {entry['step']})"
    service = one(objects, "Service", "kube-dns")
    assert service["spec"]["clusterIP"] == CLUSTER_DNS, what
    reach = cluster.reached(service, objects)
    assert reach, f"{what}: the kube-dns Service selects no pod"
    for r in reach.values():
        assert r.is_served(), f"{what}: {r.deployment} does not listen where the Service sends"
    return set(reach)


@pytest.fixture(scope="module")
def steps() -> list[tuple[str, str]]:
    return readme_steps((CHART / "README.md").read_text())


@pytest.fixture(scope="module")
def log(steps: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory) -> list[Entry]:
    return replay(tmp_path_factory.mktemp("replay"), steps)


def test_readme_has_every_step_in_order(steps: list[tuple[str, str]]) -> None:
    assert [name for name, _ in steps] == list(REACHED_AFTER)


def test_install_over_coredns_and_back_never_leaves_the_service_without_dns(
    log: list[Entry],
) -> None:
    last: dict[str, set[str]] = {}
    for entry in log:
        last[entry["step"]] = check(entry)
    assert last == REACHED_AFTER


def test_install_adopts_the_kubeadm_service_and_the_hand_back_restores_it(
    log: list[Entry],
) -> None:
    installed = one(
        [e for e in log if e["step"] == "install"][-1]["objects"], "Service", "kube-dns"
    )
    # Adopted, not recreated: kubedns's named target ports, kept on uninstall.
    assert {p["targetPort"] for p in installed["spec"]["ports"]} == {"dns", "dns-tcp", "metrics"}
    assert installed["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    final = one(log[-1]["objects"], "Service", "kube-dns")
    kubeadm = one(load_fixture("kubeadm-coredns.yaml"), "Service", "kube-dns")
    assert final["spec"]["ports"] == kubeadm["spec"]["ports"]
    assert final["spec"]["selector"] == kubeadm["spec"]["selector"]
    assert "meta.helm.sh/release-name" not in final["metadata"].get("annotations", {})
    # Nothing of kubedns is left but the Service.
    assert [o["metadata"]["name"] for o in log[-1]["objects"] if o["kind"] != "Service"] == [
        "coredns",
        "coredns",
    ]


def test_the_upgrade_step_really_moves_the_port_and_the_rollback_restores_it(
    log: list[Entry],
) -> None:
    def listening(step: str) -> frozenset[tuple[str, int]]:
        objects = [e for e in log if e["step"] == step][-1]["objects"]
        return cluster.listening(one(objects, "Deployment", "kubedns"), objects)

    assert listening("switch") == {("UDP", 53), ("TCP", 53)}
    assert listening("upgrade") == {("UDP", 5353), ("TCP", 5353)}
    assert listening("rollback-upgrade") == {("UDP", 53), ("TCP", 53)}


def test_without_adoption_helm_refuses_to_take_over_the_service(
    steps: list[tuple[str, str]], tmp_path: Path
) -> None:
    """Step 1 is needed: the fake refuses as Helm does, so the replay above proves it ran."""
    without = [(n, b) for n, b in steps if n != "adopt"]
    with pytest.raises(AssertionError, match="invalid ownership metadata"):
        replay(tmp_path, [("adopt", f'ip="{CLUSTER_DNS}"\n'), *without])


def test_the_check_catches_uninstalling_before_coredns_is_back(log: list[Entry]) -> None:
    """The state `helm uninstall` right after the switch would leave (CoreDNS at 0, kubedns
    gone): the check must call it an outage."""
    (switched,) = [e for e in log if e["step"] == "switch"]
    gone = [o for o in switched["objects"] if o["metadata"]["name"] != "kubedns"]
    with pytest.raises(AssertionError, match="selects no pod"):
        check({**switched, "objects": gone})


def test_the_check_catches_a_pod_that_does_not_listen_there(log: list[Entry]) -> None:
    """kubedns's old README rollback: the Service's selector back on CoreDNS's label, its
    target port left at kubedns's 5353 where CoreDNS does not listen."""
    (entry,) = [e for e in log if e["step"] == "uninstall"]
    objects = json.loads(json.dumps(entry["objects"]))
    for o in objects:
        if o["kind"] == "Service":
            for p in o["spec"]["ports"]:
                p["targetPort"] = 5353 if p["port"] == 53 else p["targetPort"]
    with pytest.raises(AssertionError, match="does not listen where the Service sends"):
        check({**entry, "objects": objects})
