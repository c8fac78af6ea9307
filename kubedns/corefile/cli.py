"""``kubedns import-corefile FILE``: print the kubedns config a CoreDNS Corefile stands for.

The config goes to stdout, so ``> kubedns.yaml`` keeps it; every directive that does not
map goes to stderr with its line and why, and then the exit status is 2. The config of what
does map is printed either way, so the operator sees both at once. A file that cannot be
read as a Corefile prints nothing on stdout and also exits 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kubedns.corefile.conversion import Conversion, Problem
from kubedns.corefile.convert import convert
from kubedns.corefile.render import SettingPath, render
from kubedns.corefile.syntax import CorefileError, parse, read_text

EXIT_NOT_CONVERTED = 2


def add_import_parser(subparsers: Any) -> None:
    """Add ``import-corefile`` to an ``argparse`` sub-parser set."""
    parser = subparsers.add_parser(
        "import-corefile",
        help="print the kubedns config equivalent to a CoreDNS Corefile",
        description="Read a CoreDNS Corefile and print the equivalent kubedns config (YAML, "
        "with comments saying where each value came from). Directives with no kubedns "
        "equivalent are listed on stderr with their line, and the exit status is then 2.",
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="the Corefile")
    parser.set_defaults(handler=run_import_corefile)


def run_import_corefile(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        corefile = parse(read_text(path))
    except CorefileError as exc:
        where = f"{path}:{exc.line}" if exc.line is not None else str(path)
        print(f"kubedns: {where}: {exc}", file=sys.stderr)
        return EXIT_NOT_CONVERTED
    conversion = convert(corefile)
    problems = sorted(conversion.problems, key=lambda problem: problem.line or 0)
    sys.stdout.write(render(conversion.settings, _notes(path, conversion, problems)))
    for problem in problems:
        line = f":{problem.line}" if problem.line is not None else ""
        print(f"kubedns: {path}{line}: {problem.name}: {problem.reason}", file=sys.stderr)
    if not problems:
        return 0
    print(
        f"kubedns: {len(problems)} not converted; the config above covers the rest", file=sys.stderr
    )
    return EXIT_NOT_CONVERTED


def _notes(
    path: Path, conversion: Conversion, problems: list[Problem]
) -> dict[SettingPath, list[str]]:
    """The conversion's comments, after a header naming the source and what did not map (so
    a saved config still says what is missing once stderr is gone)."""
    header = [f"kubedns config converted from the Corefile {path} by kubedns import-corefile"]
    header += [f"NOT CONVERTED: {problem}" for problem in problems]
    notes: dict[SettingPath, list[str]] = {(): header}
    for key, texts in conversion.notes.items():
        notes.setdefault(key, []).extend(texts)
    return notes
