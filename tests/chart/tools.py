"""The real helm and kubectl binaries the chart tests drive, and rendering the chart with them.

helm is the binary .ci/chart-check fetches into .ci/.cache/ (or one on PATH); kubectl is used
client-side only (``--local``). A test that needs one skips, saying how to get it, when it is
missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubedns"
FIXTURES = Path(__file__).with_name("fixtures")
# The version chart-check renders the default values for; new enough for every option.
KUBE_VERSION = "1.35.0"

Obj = dict[str, Any]


def helm() -> str:
    """The helm binary .ci/chart-check uses (it fetches it on its first run), else PATH's."""
    cached = sorted((REPO / ".ci" / ".cache").glob("helm-*/helm"))
    found = str(cached[-1]) if cached else shutil.which("helm")
    if not found:
        pytest.skip("helm not found: `bash .ci/chart-check` fetches it into .ci/.cache/")
    return found


def kubectl() -> str:
    found = shutil.which("kubectl")
    if not found:
        pytest.skip("kubectl not found on PATH (only its client-side commands are used)")
    return found


def render(*args: str, kube_version: str = KUBE_VERSION) -> list[Obj]:
    """`helm template kubedns charts/kubedns -n kube-system ARGS`, parsed."""
    out = subprocess.run(
        [
            *(helm(), "template", "kubedns", str(CHART), "--namespace", "kube-system"),
            *("--kube-version", kube_version, *args),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise AssertionError(f"helm template {' '.join(args)} failed: {out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def refused(*args: str, kube_version: str = KUBE_VERSION) -> str:
    """helm's error for values the chart must refuse (fails when it renders them)."""
    out = subprocess.run(
        [
            *(helm(), "template", "kubedns", str(CHART), "--namespace", "kube-system"),
            *("--kube-version", kube_version, *args),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0, f"helm rendered values it must refuse: {args}"
    return out.stderr


def load_fixture(name: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all((FIXTURES / name).read_text()) if d]


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found
