"""The rendered DNS pod really binds its port: kubedns runs with the pod's sysctls, the
config the chart renders and no capability at all, in a network namespace the test makes,
and answers dig over UDP and TCP on the port the Service's named targets resolve to.

A non-root container's added capabilities are not effective after exec (the image has no file
capabilities), so the process runs with empty capability sets and no_new_privs, as uid 0
because the venv's interpreter may live where uid 65532 cannot read it: for bind(), a process
without CAP_NET_BIND_SERVICE is held to net.ipv4.ip_unprivileged_port_start whatever its uid.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.chart import cluster
from tests.chart.tools import REPO, one, render

SCRIPT = """
set -e
ip link set lo up
{sysctls}
setpriv --bounding-set=-all --inh-caps=-all --ambient-caps=-all --no-new-privs \\
  {python} -m kubedns serve --config {config} --snapshot {snapshot} --no-forward \\
  --log-level warning 2>{log} &
server=$!
for i in $(seq 100); do
  dig +short +time=1 +tries=1 -p {port} @127.0.0.1 web.shop.svc.cluster.local A >/dev/null 2>&1 \\
    && break
  kill -0 $server 2>/dev/null || break
  sleep 0.1
done
echo "udp $(dig +short +time=1 +tries=1 -p {port} @127.0.0.1 web.shop.svc.cluster.local A)"
echo "tcp $(dig +short +tcp +time=1 +tries=1 -p {port} @127.0.0.1 web.shop.svc.cluster.local A)"
kill $server 2>/dev/null || true
wait $server || true
"""


def serve_as_the_pod(
    tmp_path: Path, *chart_args: str, sysctls: bool = True
) -> tuple[dict[str, str], str]:
    """dig's UDP and TCP answers for web.shop (demo cluster) from kubedns run as the rendered
    pod runs it (without the pod's sysctls when sysctls is false), and kubedns's log."""
    for tool in ("unshare", "setpriv", "dig", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    objects = render(*chart_args)
    deployment = one(objects, "Deployment", "kubedns")
    pod = deployment["spec"]["template"]["spec"]
    config = tmp_path / "config.yaml"
    config.write_text(one(objects, "ConfigMap", "kubedns")["data"]["config.yaml"])
    # The port the Service's `dns` target resolves to in this pod.
    service = one(objects, "Service", "kube-dns")
    (dns,) = [p for p in service["spec"]["ports"] if p["name"] == "dns"]
    port = cluster.target(dns, cluster.container(deployment))
    settings = pod["securityContext"].get("sysctls", []) if sysctls else []
    commands = "\n".join(f"sysctl -q -w {s['name']}='{s['value']}'" for s in settings)
    log = tmp_path / "kubedns.log"
    script = SCRIPT.format(
        sysctls=commands,
        python=sys.executable,
        config=config,
        snapshot=REPO / "config" / "demo-cluster.yaml",
        port=port,
        log=log,
    )
    try:
        done = subprocess.run(
            ["unshare", "--net", "sh", "-c", textwrap.dedent(script)],
            cwd=REPO,
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except FileNotFoundError:
        pytest.skip("unshare is not installed")
    if "Operation not permitted" in done.stderr and not log.exists():
        pytest.skip("cannot create namespaces or set sysctls here (needs root)")
    assert done.returncode == 0, done.stderr
    answers = dict(
        line.split(" ", 1) for line in done.stdout.splitlines() if line[:4] in ("udp ", "tcp ")
    )
    return answers, log.read_text()


@pytest.mark.parametrize("unprivileged", [False, True])
def test_the_rendered_pod_binds_its_dns_port_without_capabilities(
    tmp_path: Path, unprivileged: bool
) -> None:
    answers, log = serve_as_the_pod(
        tmp_path, "--set", f"dnsPort.unprivileged={str(unprivileged).lower()}"
    )
    assert answers == {"udp": "10.96.12.34", "tcp": "10.96.12.34"}, log


def test_port_53_without_the_sysctl_is_refused(tmp_path: Path) -> None:
    """What the sysctl is for: the same pod without it cannot bind 53 (kubedns exits 1)."""
    answers, log = serve_as_the_pod(tmp_path, sysctls=False)
    assert "10.96.12.34" not in answers["udp"] + answers["tcp"]
    assert "53" in log and "ermission denied" in log, log
