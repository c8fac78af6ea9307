"""The Corefile grammar, as CoreDNS's Caddy parser reads it, with no meaning attached.

A Corefile is a list of server blocks: keys (``.:53``, ``cluster.local:53``, ``dns://.:53``,
several per block, a trailing comma continues them on the next line) and then, between
braces, one directive per line: a name, its arguments on the same line, and optionally a
nested block opened by ``{`` on that line. ``#`` starts a comment anywhere outside quotes;
a token that starts with ``"`` runs to the next unescaped ``"``, newlines included. A file
with a single server block may leave out its braces. Blocks whose one key is ``(name)`` are
snippets, kept only so the converter can say that their ``import`` is not expanded.

Everything here is bounded: the file size, and the nesting depth (so no input can recurse
deeply). Errors are ``CorefileError`` with the line they were found on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAX_BYTES = 1 << 20
"""Largest Corefile read. Real ones are a few kilobytes; this keeps a wrong path (a log, a
disk image) from being read into memory."""

MAX_DEPTH = 8
"""Deepest nesting of ``{ }`` blocks accepted; CoreDNS plugins use two levels."""


class CorefileError(ValueError):
    """The file cannot be read as a Corefile. ``line`` is where, when one line is to blame."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    line: int
    """Line the token starts on."""
    end_line: int
    """Line it ends on: later than ``line`` only for a quoted token holding newlines."""
    quoted: bool = False

    @property
    def opens(self) -> bool:
        return self.text == "{" and not self.quoted

    @property
    def closes(self) -> bool:
        return self.text == "}" and not self.quoted


@dataclass(frozen=True, slots=True)
class Directive:
    """One line of a block: ``name args...`` and the directives of its ``{ }`` block."""

    name: str
    args: tuple[str, ...]
    line: int
    block: tuple[Directive, ...] = ()


@dataclass(frozen=True, slots=True)
class ServerBlock:
    keys: tuple[str, ...]
    line: int
    directives: tuple[Directive, ...]

    @property
    def is_snippet(self) -> bool:
        return len(self.keys) == 1 and self.keys[0].startswith("(") and self.keys[0].endswith(")")


@dataclass(frozen=True, slots=True)
class Corefile:
    blocks: tuple[ServerBlock, ...]
    imports: tuple[Directive, ...]
    """``import`` lines found between server blocks."""


def read_text(path: Path) -> str:
    """The file as text: at most ``MAX_BYTES``, UTF-8, no NUL bytes (so not a binary)."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except OSError as exc:
        raise CorefileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_BYTES:
        raise CorefileError(f"larger than {MAX_BYTES} bytes; a Corefile is a few kilobytes")
    if b"\0" in data:
        line = data.count(b"\n", 0, data.index(b"\0")) + 1
        raise CorefileError("holds a NUL byte: a binary file, not a Corefile", line=line)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CorefileError(f"byte {exc.start} is not UTF-8 text", line=line) from None
    return text.removeprefix("\ufeff")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    line = 1
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "\n":
            line += 1
            pos += 1
        elif char.isspace():
            pos += 1
        elif char == "#":
            end = text.find("\n", pos)
            pos = len(text) if end < 0 else end
        elif char == '"':
            token, pos = _quoted(text, pos, line)
            tokens.append(token)
            line = token.end_line
        else:
            start = pos
            while pos < len(text) and not text[pos].isspace() and text[pos] != "#":
                pos += 1
            tokens.append(Token(text[start:pos], line, line))
    return tokens


def _quoted(text: str, start: int, line: int) -> tuple[Token, int]:
    """The token of a ``"..."`` starting at ``start``; ``\\"`` is a literal quote."""
    chars: list[str] = []
    end_line = line
    pos = start + 1
    while pos < len(text):
        char = text[pos]
        if char == "\\" and text[pos + 1 : pos + 2] == '"':
            chars.append('"')
            pos += 2
            continue
        if char == '"':
            return Token("".join(chars), line, end_line, quoted=True), pos + 1
        end_line += char == "\n"
        chars.append(char)
        pos += 1
    raise CorefileError("a quoted string is never closed (missing '\"')", line=line)


def parse(text: str) -> Corefile:
    return _Parser(tokenize(text)).corefile()


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._pos = 0

    def _peek(self) -> Token | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _take(self) -> Token:
        token = self._tokens[self._pos]
        self._pos += 1
        return token

    def corefile(self) -> Corefile:
        blocks: list[ServerBlock] = []
        imports: list[Directive] = []
        while (token := self._peek()) is not None:
            if token.text == "import" and not token.quoted:
                imports.append(self._directive(depth=0))
            else:
                blocks.append(self._server_block(first=not blocks))
        return Corefile(tuple(blocks), tuple(imports))

    def _server_block(self, *, first: bool) -> ServerBlock:
        line = self._tokens[self._pos].line
        keys = self._keys()
        if not keys:
            raise CorefileError("a server block needs its zones before '{'", line=line)
        token = self._peek()
        if token is not None and token.opens:
            self._take()
            directives = self._directives(depth=1, opened_at=token.line)
        elif token is None or first:
            # CoreDNS's parser lets a file of one server block leave out the braces.
            directives = self._directives(depth=1, opened_at=None)
        else:
            raise CorefileError(
                f"server block {' '.join(keys)} needs '{{' after its keys", line=line
            )
        return ServerBlock(keys, line, directives)

    def _keys(self) -> tuple[str, ...]:
        keys: list[str] = []
        continued = True
        line = self._tokens[self._pos].line
        while (token := self._peek()) is not None and not token.opens:
            if token.closes:
                raise CorefileError("'}' without a matching '{'", line=token.line)
            if token.line != line and not continued:
                break
            self._take()
            keys.extend(key for key in token.text.split(",") if key)
            continued = token.text.endswith(",")
            line = token.end_line
        if continued and keys:
            raise CorefileError("server keys end with ',' and nothing follows", line=line)
        return tuple(keys)

    def _directives(self, *, depth: int, opened_at: int | None) -> tuple[Directive, ...]:
        """Directives up to the ``}`` closing a block opened on ``opened_at`` (None: to EOF)."""
        found: list[Directive] = []
        while (token := self._peek()) is not None:
            if token.closes:
                self._take()
                if opened_at is None:
                    raise CorefileError("'}' without a matching '{'", line=token.line)
                return tuple(found)
            if token.opens:
                raise CorefileError(
                    "'{' must be on the line of the directive it belongs to", line=token.line
                )
            found.append(self._directive(depth=depth))
        if opened_at is not None:
            raise CorefileError("'{' is never closed (missing '}')", line=opened_at)
        return tuple(found)

    def _directive(self, *, depth: int) -> Directive:
        name = self._take()
        args: list[str] = []
        line = name.end_line
        while (token := self._peek()) is not None and token.line == line:
            if token.opens or token.closes:
                break
            args.append(self._take().text)
            line = token.end_line
        block: tuple[Directive, ...] = ()
        token = self._peek()
        if token is not None and token.opens and token.line == line:
            self._take()
            if depth >= MAX_DEPTH:
                raise CorefileError(f"blocks nested deeper than {MAX_DEPTH}", line=token.line)
            block = self._directives(depth=depth + 1, opened_at=token.line)
        return Directive(name.text, tuple(args), name.line, block)
