"""Whatever the Corefile holds, ``import-corefile`` exits 0 or 2 and prints a config that loads.

Text is assembled from the Corefile's own vocabulary (plugin and option names, zones,
addresses, durations, braces, quotes, comments), so most examples get past the grammar and
exercise the converter. Example counts stay small so ``make test`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubedns.config import ConfigError, load
from kubedns.corefile.convert import convert
from kubedns.corefile.render import render
from kubedns.corefile.syntax import CorefileError, parse

WORDS = [
    ".:53",
    "cluster.local:53",
    "corp.example:53",
    "dns://.:53",
    "tls://.:853",
    ".:5300",
    "10.0.0.0/8",
    ".",
    "cluster.local",
    "in-addr.arpa",
    "ip6.arpa",
    "corp.example",
    "errors",
    "health",
    "ready",
    "prometheus",
    "kubernetes",
    "forward",
    "cache",
    "loop",
    "reload",
    "loadbalance",
    "log",
    "bind",
    "bufsize",
    "hosts",
    "import",
    "rewrite",
    "lameduck",
    "pods",
    "insecure",
    "verified",
    "ttl",
    "fallthrough",
    "kubeconfig",
    "policy",
    "sequential",
    "max_concurrent",
    "max_fails",
    "health_check",
    "failover",
    "SERVFAIL",
    "success",
    "denial",
    "serve_stale",
    "servfail",
    "disable",
    "prefetch",
    "0",
    "1",
    "30",
    "5s",
    "1m",
    "500ms",
    "-1",
    "99999999999999",
    "abc",
    "10.0.0.1",
    "127.0.0.1",
    "0.0.0.0",
    "[::1]:53",
    ":9153",
    "localhost:9153",
    "/etc/resolv.conf",
    "{$PORT}",
    "1.2.3.4:99999",
    "round_robin",
]
PIECES = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(["{", "}", "\n", "\n", "\n", " ", '"', "#", ","]),
    st.text(max_size=4),
)


def convert_text(text: str, tmp_path: Path) -> None:
    try:
        conversion = convert(parse(text))
    except CorefileError:
        return
    config = tmp_path / "kubedns.yaml"
    config.write_text(render(conversion.settings, conversion.notes))
    try:
        load(config)
    except ConfigError as exc:  # pragma: no cover - the failure hypothesis hunts for
        raise AssertionError(f"{text!r} converted to an invalid config: {exc}") from exc


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pieces=st.lists(PIECES, max_size=60))
def test_any_corefile_converts_or_is_refused(pieces: list[str], tmp_path: Path) -> None:
    convert_text(" ".join(pieces), tmp_path)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join), max_size=12
    )
)
def test_any_root_block_converts_or_is_refused(lines: list[str], tmp_path: Path) -> None:
    convert_text(".:53 {\n" + "\n".join(lines) + "\n}\n", tmp_path)
