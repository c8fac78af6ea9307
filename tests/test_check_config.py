"""``kubedns check-config FILE``: validates as ``serve`` does at start, with the same messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parent.parent / "config" / "demo-cluster.yaml"

BROKEN_SNAPSHOT = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: shop}
  spec: {type: ExternalName, externalName: "a..b c"}
"""


def kubedns(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubedns", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_valid_file_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "kubedns.yaml"
    path.write_text(f"listen: 127.0.0.1:5399\nsnapshot: {DEMO}\nreplies: {{udp_size: 1232}}\n")
    done = kubedns("check-config", str(path))
    assert done.returncode == 0, done.stderr
    assert "is valid" in done.stdout


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("bogus: 1\n", ["unknown setting bogus"]),
        ("ttl: {records: lots}\n", ["ttl.records"]),
        ("replies: {udp_size: 70000}\n", ["replies.udp_size"]),
        ("listen: [unclosed\n", ["not valid YAML"]),
        ("- a list\n", ["must hold a mapping"]),
        (
            "listen: 127.0.0.1:5399\nforward: {upstreams: ['127.0.0.1:5399']}\n",
            ["our own listener", "127.0.0.1:5399"],
        ),
        ("snapshot: SNAPSHOT\nforward: {enabled: false}\n", ["shop/web", "externalName"]),
    ],
    ids=["unknown key", "bad type", "out of range", "yaml", "not a mapping", "self", "snapshot"],
)
def test_an_invalid_file_exits_2_with_the_message_serve_prints(
    tmp_path: Path, text: str, words: list[str]
) -> None:
    snapshot = tmp_path / "broken.yaml"
    snapshot.write_text(BROKEN_SNAPSHOT)
    path = tmp_path / "kubedns.yaml"
    path.write_text(text.replace("SNAPSHOT", str(snapshot)))
    checked = kubedns("check-config", str(path))
    served = kubedns("serve", "--config", str(path))
    assert checked.returncode == served.returncode == 2
    # The same last line (the error); log lines before it differ only in their timestamps.
    assert checked.stderr.splitlines()[-1] == served.stderr.splitlines()[-1]
    for word in words:
        assert word in checked.stderr, checked.stderr


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    done = kubedns("check-config", str(tmp_path / "nope.yaml"))
    assert done.returncode == 2
    assert "cannot read config file" in done.stderr
