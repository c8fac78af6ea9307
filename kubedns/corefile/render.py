"""The converted settings as a kubedns config file: YAML with the reasons as comments.

Written by hand rather than by ``yaml.safe_dump`` because each setting carries comments
(where in the Corefile it came from, what differs) and PyYAML cannot write comments. Values
are written as JSON, which YAML reads unchanged, so quoting is never a question.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

SettingPath = tuple[str, ...]

SECTIONS = ("listen", "cluster_domain", "pods", "kubeconfig", "ttl", "forward", "cache")
"""Top-level keys in the order a reader wants them; the rest follow in the order set."""

_PLAIN_KEY = re.compile(r"[a-z_][a-z0-9_]*")


def render(
    settings: Mapping[SettingPath, Any],
    notes: Mapping[SettingPath, Sequence[str]],
) -> str:
    """YAML of ``settings`` (paths to values), each preceded by its ``notes`` as comments.

    Notes under the empty path, and notes of paths that hold no setting, open the file.
    """
    tree = _tree(settings)
    body: list[str] = []
    shown: set[SettingPath] = set()
    _emit(tree, (), notes, body, shown)
    header = [note for path, texts in notes.items() if path not in shown for note in texts]
    lines = [_comment(note, indent=0) for note in header]
    if header and body:
        lines.append("")
    return "\n".join([*lines, *body]) + "\n"


def _tree(settings: Mapping[SettingPath, Any]) -> dict[str, Any]:
    def rank(path: SettingPath) -> int:
        return SECTIONS.index(path[0]) if path[0] in SECTIONS else len(SECTIONS)

    tree: dict[str, Any] = {}
    for path in sorted(settings, key=rank):  # stable: the order set within a section stays
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = settings[path]
    return tree


def _emit(
    node: Mapping[str, Any],
    path: SettingPath,
    notes: Mapping[SettingPath, Sequence[str]],
    lines: list[str],
    shown: set[SettingPath],
) -> None:
    indent = 2 * len(path)
    for key, value in node.items():
        here = (*path, key)
        lines.extend(_comment(note, indent=indent) for note in notes.get(here, ()))
        shown.add(here)
        name = key if _PLAIN_KEY.fullmatch(key) else json.dumps(key)
        if isinstance(value, Mapping):
            lines.append(f"{' ' * indent}{name}:")
            _emit(value, here, notes, lines, shown)
        else:
            lines.append(f"{' ' * indent}{name}: {json.dumps(value)}")


def _comment(text: str, *, indent: int) -> str:
    # Corefile text can reach a note (names, arguments); a newline in it would end the
    # comment and turn the rest into YAML.
    flat = " ".join(text.split())
    return f"{' ' * indent}# {flat}"
