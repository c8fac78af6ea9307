"""Reading a Corefile: its grammar, its values, and input that is not a Corefile at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubedns import cli
from kubedns.corefile import values
from kubedns.corefile.syntax import MAX_BYTES, Directive, parse


def test_blocks_directives_and_nested_blocks_keep_their_lines() -> None:
    corefile = parse(
        "# a comment line\n"
        "dns://.:53 cluster.local:53 {\n"
        "    errors # trailing comment\n"
        "    kubernetes cluster.local in-addr.arpa {\n"
        "        pods insecure\n"
        "    }\n"
        '    forward . "10.0.0.1" {\n'
        "        policy sequential\n"
        "    }\n"
        "}\n"
    )
    (block,) = corefile.blocks
    assert block.keys == ("dns://.:53", "cluster.local:53")
    assert block.line == 2
    assert block.directives == (
        Directive("errors", (), 3),
        Directive(
            "kubernetes",
            ("cluster.local", "in-addr.arpa"),
            4,
            (Directive("pods", ("insecure",), 5),),
        ),
        Directive("forward", (".", "10.0.0.1"), 7, (Directive("policy", ("sequential",), 8),)),
    )


def test_a_quoted_token_may_hold_spaces_braces_quotes_and_newlines() -> None:
    corefile = parse('. {\n    template "a { b" "say \\"hi\\"\nthere"\n    errors\n}\n')
    (block,) = corefile.blocks
    template, errors = block.directives
    assert template.args == ("a { b", 'say "hi"\nthere')
    assert errors.line == 4  # lines inside the quote still count


def test_snippets_and_imports_are_kept_for_the_report() -> None:
    corefile = parse("(common) {\n    errors\n}\nimport extra.conf\n. {\n    import common\n}\n")
    snippet, root = corefile.blocks
    assert snippet.is_snippet
    assert [d.line for d in corefile.imports] == [4]
    assert root.directives == (Directive("import", ("common",), 6),)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("1m", 60.0), ("30", 30.0), ("1h30m", 5400.0), ("500ms", 0.5), ("1.5s", 1.5)],
)
def test_durations_read_as_go_writes_them(text: str, seconds: float) -> None:
    assert values.seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "-5s", "s", "5s ", "1e3s", "99999999999h"])
def test_a_bad_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|longer"):
        values.seconds(text)


@pytest.mark.parametrize(
    ("text", "zone"),
    [(".", ""), ("Cluster.Local.", "cluster.local"), ("10.0.0.0/8", "10.in-addr.arpa")],
)
def test_zones_are_canonical(text: str, zone: str) -> None:
    assert values.zone(text) == zone


def test_an_ipv6_cidr_is_its_nibble_reverse_zone() -> None:
    assert values.zone("fd00::/8") == "d.f.ip6.arpa"


BROKEN = [
    (".:53 {\n    errors\n", "1: '{' is never closed"),
    (".:53 {\n    errors\n}\n}\n", "4: '}' without a matching '{'"),
    (".:53 {\n    hosts {\n        1.2.3.4 a\n}\n", "1: '{' is never closed"),
    ('.:53 {\n    rewrite name "foo\n}\n', "2: a quoted string is never closed"),
    (".:53 {\n    forward . 8.8.8.8\n    {\n    }\n}\n", "3: '{' must be on the line"),
    ("{\n    errors\n}\n", "1: a server block needs its zones"),
    (".:53 {\n}\nexample.org\n    errors\n", "3: server block example.org needs '{'"),
    (".:53,\n", "1: server keys end with ','"),
    (". {\n" + "a {\n" * 9 + "}\n" * 10, "9: blocks nested deeper"),
]


@pytest.mark.parametrize(("text", "where"), BROKEN, ids=[where for _, where in BROKEN])
def test_bad_syntax_names_the_line_and_exits_2(
    text: str, where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "Corefile"
    path.write_text(text)
    assert cli.main(["import-corefile", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"kubedns: {path}:{where}" in err


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"\x7fELF\x02\x01\x01\x00\x00", "{path}:1: holds a NUL byte"),
        (b".:53 {\n    errors\n    caf\xe9\n}\n", "{path}:3: byte 25 is not UTF-8"),
        (b"#" * (MAX_BYTES + 1), f"{{path}}: larger than {MAX_BYTES} bytes"),
    ],
    ids=["binary", "latin-1", "too large"],
)
def test_a_file_that_is_not_a_corefile_is_refused(
    content: bytes, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "Corefile"
    path.write_bytes(content)
    assert cli.main(["import-corefile", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert words.format(path=path) in err


@pytest.mark.parametrize("name", ["missing", "."])
def test_a_missing_file_or_a_directory_is_refused(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    assert cli.main(["import-corefile", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"kubedns: {path}: cannot read {path}" in err
