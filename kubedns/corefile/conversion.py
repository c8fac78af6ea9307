"""What a conversion produces, and the helpers every directive's converter uses.

A ``Conversion`` holds settings as paths to values (``("forward", "policy")``), comments for
the YAML (where a value came from, what behaves differently) and problems (directives or
options that do not map, with their line). Nothing is dropped in silence: every directive
either sets something, explains in a comment why nothing needs setting, or is a problem.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubedns.corefile import values
from kubedns.corefile.render import SettingPath
from kubedns.corefile.syntax import Directive, ServerBlock

OptionHandler = Callable[[Directive], None]


@dataclass(frozen=True, slots=True)
class Problem:
    """A directive or option that does not map, with why."""

    line: int | None
    name: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.name}: {self.reason}"


@dataclass(slots=True)
class Conversion:
    settings: dict[SettingPath, Any] = field(default_factory=dict)
    notes: dict[SettingPath, list[str]] = field(default_factory=dict)
    """Comments by the setting they explain; the empty path holds general ones."""
    problems: list[Problem] = field(default_factory=list)

    def set(self, path: SettingPath, value: Any, note: str | None = None) -> None:
        self.settings[path] = value
        if note is not None:
            self.note(path, note)

    def note(self, path: SettingPath, text: str) -> None:
        self.notes.setdefault(path, []).append(text)

    def refuse(self, line: int | None, name: str, reason: str) -> None:
        self.problems.append(Problem(line, name, reason))

    def options(
        self,
        directive: Directive,
        *,
        mapped: Mapping[str, OptionHandler] | None = None,
        noted: Mapping[str, str] | None = None,
        refused: Mapping[str, str] | None = None,
        note_at: SettingPath = (),
    ) -> None:
        """Each option in ``directive``'s block: mapped (a handler raising ``ValueError`` for
        a bad value), explained in a comment, or refused with a reason."""
        for option in directive.block:
            label = f"{directive.name} {option.name}"
            if (reference := env_reference(option)) is not None:
                self.refuse(option.line, label, env_reason(reference))
            elif mapped and option.name in mapped:
                try:
                    mapped[option.name](option)
                except ValueError as exc:
                    self.refuse(option.line, label, str(exc))
            elif noted and option.name in noted:
                self.note(note_at, f"{label} (line {option.line}): {noted[option.name]}")
            else:
                reason = (refused or {}).get(option.name, "not an option kubedns knows")
                self.refuse(option.line, label, reason)


@dataclass(frozen=True, slots=True)
class Block:
    """A server block on the port kubedns serves: its zones (canonical; "" is the root)."""

    zones: tuple[str, ...]
    source: ServerBlock

    @property
    def is_root(self) -> bool:
        return "" in self.zones

    @property
    def label(self) -> str:
        return " ".join(zone or "." for zone in self.zones)


def one(directive: Directive) -> str:
    """The one argument of a directive or option."""
    if len(directive.args) != 1:
        raise ValueError(f"takes one value, not {len(directive.args)}")
    return directive.args[0]


def env_reference(directive: Directive) -> str | None:
    """The first ``{$VAR}`` or ``{%VAR%}`` on a directive's line: CoreDNS fills these from its
    own environment at start, which a conversion cannot know."""
    for text in (directive.name, *directive.args):
        if values.has_env_reference(text):
            return text
    return None


def env_reason(reference: str) -> str:
    return (
        f"environment substitution in {reference!r} is not done here: write the value into "
        "the Corefile and run again"
    )
