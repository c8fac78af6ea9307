"""Real stub resolvers against the real server, the way a pod uses it: port 53 and a
resolv.conf, in a network and mount namespace the test makes (so nothing on the host moves).

musl 1.2.3 never retries over TCP: a truncated reply with empty sections left it with no
address at all; with the whole records that fit it gets a partial list. glibc retries over
TCP and gets every address.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CLUSTER = Path(__file__).resolve().parent.parent / "zone" / "cluster.yaml"
MANY = "many.big.svc.cluster.local"  # a headless Service with 60 ready endpoints

CLIENT = r"""
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    struct addrinfo hints, *found, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    int rc = getaddrinfo(argv[1], NULL, &hints, &found);
    if (rc) { printf("error %s\n", gai_strerror(rc)); return 1; }
    int n = 0;
    for (ai = found; ai; ai = ai->ai_next) n++;
    printf("%d\n", n);
    return 0;
}
"""

SCRIPT = """
set -e
ip link set lo up
{kubedns} serve --snapshot {cluster} --listen 127.0.0.1:53 --no-forward --log-level warning &
server=$!
for i in $(seq 100); do
  dig +short +time=1 +tries=1 @127.0.0.1 {name} A >/dev/null 2>&1 && break
  sleep 0.1
done
mount --bind {resolv} /etc/resolv.conf
for client in {clients}; do echo "$client $($client {name})"; done
kill $server
wait $server || true
"""


def _namespaced(script: str) -> str:
    try:
        done = subprocess.run(
            ["unshare", "--mount", "--net", "sh", "-c", script],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except FileNotFoundError:
        pytest.skip("unshare is not installed")
    if "Operation not permitted" in done.stderr:
        pytest.skip("cannot create namespaces here (needs root)")
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("stub-clients")
    source = work / "resolve.c"
    source.write_text(CLIENT)
    built = {}
    for name, compiler in (("musl", "musl-gcc"), ("glibc", "gcc")):
        if shutil.which(compiler) is None:
            continue
        binary = work / f"resolve-{name}"
        subprocess.run(
            [compiler, "-static" if name == "musl" else "-O1", "-o", str(binary), str(source)],
            check=True,
        )
        built[name] = binary
    if "musl" not in built:
        pytest.skip("musl-gcc is not installed (CI installs Debian's musl-tools)")
    return built


def test_clients_without_tcp_fallback_get_the_records_that_fit(
    clients: dict[str, Path], tmp_path: Path
) -> None:
    if shutil.which("dig") is None:
        pytest.skip("dig is not installed")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions ndots:5 attempts:1 timeout:2\n")
    kubedns = f"{sys.executable} -m kubedns"
    script = SCRIPT.format(
        kubedns=kubedns,
        cluster=CLUSTER,
        name=MANY,
        resolv=resolv,
        clients=" ".join(str(path) for path in clients.values()),
    )
    lines = dict(line.rsplit(" ", 1) for line in _namespaced(textwrap.dedent(script)).splitlines())
    counts = {name: lines[str(path)] for name, path in clients.items()}
    assert counts["musl"].isdigit(), counts
    assert 0 < int(counts["musl"]) < 60, "musl (no TCP fallback) gets the whole records that fit"
    if "glibc" in counts:
        assert counts["glibc"] == "60", "glibc retries over TCP and gets every address"
