"""A real ``kubedns serve --listen [::]:0``: one dual-stack listener answers IPv4 and IPv6
clients over UDP and TCP (``dig`` and ``dig +tcp`` from 127.0.0.1 and ::1), its ops endpoint
on ``[::]`` answers an IPv4 scrape, and the request metrics count v4-mapped clients as family 1.
In a network namespace whose ``net.ipv6.bindv6only`` is 1, ``[::]`` is dual-stack all the same,
the webhook's HTTPS listener included.

asyncio makes every AF_INET6 listener IPv6-only, so before kubedns.sockets an IPv4 client got
"connection refused" over TCP (and from the ops port) while UDP answered it. The ports are the
ones kubedns reports it bound: nothing picks a port beforehand.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubedns.config import HostPort
from tests.test_request_metrics import has_ipv6
from tests.test_stop_signals import WAIT, bound_address, kubedns_serve
from tests.webhook.tls import issue, new_authority
from tests.zone.server import CLUSTER

DIG = shutil.which("dig")
WEB = "web.shop.svc.cluster.local"
WEB_A = "10.96.1.10"
"""web.shop's ClusterIP in the test cluster."""
QUERY_LINE = re.compile(r"kubedns\.queries: (\S+):\d+ - \d+ \"A IN \S+ (udp|tcp) ")
"""A query log line: the client's address and the protocol."""

pytestmark = [
    pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback"),
    pytest.mark.skipif(DIG is None, reason="dig (bind9-dnsutils) missing"),
]


async def dig(server: HostPort, source: str, *flags: str) -> str:
    """web.shop's A records as ``dig +short`` prints them, asked from ``source``."""
    assert DIG is not None
    argv = [DIG, f"@{source}", "-p", str(server.port), "-b", source, "+short", "+tries=1"]
    process = await asyncio.create_subprocess_exec(
        *argv, *flags, WEB, "A", stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    async with asyncio.timeout(WAIT):
        output, _ = await process.communicate()
    return output.decode().strip()


def scrape(url: str) -> dict[tuple[str, str], float]:
    """coredns_dns_requests_total by (proto, family)."""
    with urllib.request.urlopen(url, timeout=WAIT) as response:
        text = response.read().decode()
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "coredns_dns_requests":
            for sample in family.samples:
                key = (sample.labels["proto"], sample.labels["family"])
                found[key] = found.get(key, 0.0) + sample.value
    return found


async def test_ipv4_and_ipv6_clients_over_udp_and_tcp(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("logging:\n  queries: true\n")
    async with kubedns_serve(
        "--config", str(config), "--no-forward", "--ops-listen", "[::]:0", listen="[::]:0"
    ) as server:
        assert server.address.host == "::"
        ops = bound_address(await server.wait_for_line("serving /metrics"))
        for source in ("127.0.0.1", "::1"):
            assert await dig(server.address, source) == WEB_A, source
            assert await dig(server.address, source, "+tcp") == WEB_A, source
        # Scraped over IPv4 from the ops listener on [::]: dual-stack as well.
        requests = scrape(f"http://127.0.0.1:{ops.port}/metrics")
        logged = sorted(QUERY_LINE.findall("".join(server.lines)))
    # The query log names an IPv4 client as CoreDNS does, not as ::ffff:127.0.0.1.
    assert logged == [
        ("127.0.0.1", "tcp"),
        ("127.0.0.1", "udp"),
        ("[::1]", "tcp"),
        ("[::1]", "udp"),
    ]
    assert requests == {
        ("udp", "1"): 1,
        ("udp", "2"): 1,
        ("tcp", "1"): 1,
        ("tcp", "2"): 1,
    }


NAMESPACED = """
set -e
ip link set lo up
sysctl -q -w net.ipv6.bindv6only=1
{python} -m kubedns serve --snapshot {snapshot} --no-forward --listen [::]:5300 \\
  --ops-listen [::]:8080 --log-format text 2>{log} &
server=$!
{python} -m kubedns webhook --snapshot {snapshot} --listen [::]:8443 --tls-cert {cert} \\
  --tls-key {key} --log-format text 2>{webhook_log} &
webhook=$!
for i in $(seq 300); do
  grep -q "serving /metrics" {log} && grep -q "serving HTTPS" {webhook_log} && break
  kill -0 $server 2>/dev/null && kill -0 $webhook 2>/dev/null || break
  sleep 0.1
done
echo "udp $(dig +short +time=2 +tries=1 -p 5300 @127.0.0.1 {name} A)"
echo "tcp $(dig +short +tcp +time=2 +tries=1 -p 5300 @127.0.0.1 {name} A)"
echo "ops $({python} -c "{health}" 2>&1 | tail -1)"
echo "webhook $({python} -c "{webhook_health}" 2>&1 | tail -1)"
kill $server $webhook 2>/dev/null || true
wait $server $webhook || true
"""
"""A fresh network namespace (nothing else can hold its ports, so they are fixed) whose
sysctl makes AF_INET6 sockets IPv6-only unless a listener says otherwise."""
HEALTH = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8080/health').status)"
WEBHOOK_HEALTH = (
    "import ssl, urllib.request as u; "
    "c = ssl.create_default_context(cafile='{ca}'); "
    "print(u.urlopen('https://127.0.0.1:8443/healthz', context=c).status)"
)
"""The webhook's HTTPS listener on ``[::]``, called over IPv4 and verified against its CA."""


def test_dual_stack_whatever_the_hosts_bindv6only(tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    log, webhook_log = tmp_path / "kubedns.log", tmp_path / "webhook.log"
    authority = new_authority()
    ca, cert, key = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.write_bytes(authority.pem())
    issue(authority, cert, key)
    script = NAMESPACED.format(
        python=sys.executable,
        snapshot=CLUSTER,
        log=log,
        webhook_log=webhook_log,
        cert=cert,
        key=key,
        name=WEB,
        health=HEALTH,
        webhook_health=WEBHOOK_HEALTH.format(ca=ca),
    )
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", textwrap.dedent(script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "Operation not permitted" in done.stderr and not log.exists():
        pytest.skip("cannot create network namespaces here (needs root)")
    assert done.returncode == 0, done.stderr
    answers = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert answers == {"udp": WEB_A, "tcp": WEB_A, "ops": "200", "webhook": "200"}, (
        log.read_text() + webhook_log.read_text()
    )
