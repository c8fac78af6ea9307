"""Structured logging: one JSON object a line (for log pipelines) or plain text.

Clients choose what some log lines contain (a forwarded name can hold any byte, a newline
too), so every format escapes control characters in the message: one record is always one
line that no client can forge. Messages that can repeat once per query go through a
``Throttle``, so a failing upstream cannot turn client traffic into log traffic, and every error
reply the server makes goes through ``ERRORS`` (CoreDNS's ``errors`` plugin, consolidated).

A record may carry ``fields`` (``extra={"fields": {...}}``): the JSON format writes them as keys
of their own beside the message (the query log does), the text format only the message.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable

from kubedns.config import LoggingConfig

_ESCAPES = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}
"""C0 and C1 control characters, DEL, and the Unicode line and paragraph separators: whatever
a terminal or a log pipeline may take as the end of a line or as a command."""


def escape(text: str) -> str:
    """``text`` with control characters written as ``\\xNN`` (or ``\\uNNNN``)."""
    return text.translate(_ESCAPES)


class TextFormatter(logging.Formatter):
    """``logging.Formatter`` with the message escaped (tracebacks stay multi-line)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = escape(record.message)
        return super().formatMessage(record)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            # JSON escapes control characters itself; escaping first makes a name read the
            # same in both formats.
            "msg": escape(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update((key, value) for key, value in fields.items() if key not in entry)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup(settings: LoggingConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())
    ERRORS.configure(lines=settings.error_lines, interval=settings.error_interval)


class Throttle:
    """At most one line per ``interval`` seconds at ``level`` for a message that can come once
    per query; the ones in between go to debug and are counted in the next line.

    Args:
        logger: where the lines go.
        level: the level of the lines that get through.
        interval: seconds between two lines that get through.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        level: int = logging.INFO,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._level = level
        self._interval = interval
        self._clock = clock
        self._next = float("-inf")
        self.suppressed = 0
        """Lines held back (logged at debug) since the last one that got through."""

    def note(self, message: str, *args: object) -> None:
        now = self._clock()
        if now < self._next:
            self.suppressed += 1
            self._logger.debug(message, *args, stacklevel=2)
            return
        self._next = now + self._interval
        if self.suppressed:
            message += " (and %d more like it since the last such line, at debug level)"
            args = (*args, self.suppressed)
            self.suppressed = 0
        self._logger.log(self._level, message, *args, stacklevel=2)


class ErrorLog:
    """Every error reply the server makes, logged with its reason, consolidated per reason:
    at most ``lines`` lines in each ``interval`` seconds, and the rest summed up in one line
    when the interval is over ("N errors like 'REASON' occurred in the last T s", as
    CoreDNS's ``errors { consolidate }`` words it). Reasons are a fixed set chosen by the
    code (never by clients), so the state per reason is bounded.

    ``flush()`` writes the summaries of intervals that are over; the app calls it every
    second and once at shutdown (a summary would otherwise wait for the reason's next error).
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        lines: int = 5,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._clock = clock
        self.lines = lines
        self.interval = interval
        self._windows: dict[str, list[float]] = {}
        """reason -> [start, lines written, errors held back]"""

    def configure(self, *, lines: int, interval: float) -> None:
        self.lines = lines
        self.interval = interval

    def note(
        self, reason: str, message: str, *args: object, exc_info: BaseException | None = None
    ) -> None:
        """One error of ``reason``; ``message % args`` says which query and how."""
        now = self._clock()
        window = self._windows.get(reason)
        if window is None or now >= window[0] + self.interval:
            if window is not None:
                self._summarise(reason, window)
            window = self._windows[reason] = [now, 0, 0]
        if window[1] < self.lines:
            window[1] += 1
            self._logger.error(message, *args, exc_info=exc_info, stacklevel=2)
        else:
            window[2] += 1

    def flush(self) -> None:
        """Sum up every interval that is over."""
        now = self._clock()
        for reason, window in list(self._windows.items()):
            if now >= window[0] + self.interval:
                self._summarise(reason, window)
                del self._windows[reason]

    def flush_all(self) -> None:
        """Sum up every interval now, over or not (shutdown)."""
        for reason, window in list(self._windows.items()):
            self._summarise(reason, window, now=self._clock())
        self._windows.clear()

    def _summarise(self, reason: str, window: list[float], *, now: float | None = None) -> None:
        if window[2]:
            seconds = self.interval if now is None else now - window[0]
            self._logger.error(
                "%d errors like '%s' occurred in the last %gs",
                int(window[2]), reason, round(seconds, 3),
            )  # fmt: skip


ERRORS = ErrorLog(logging.getLogger("kubedns.errors"))
"""The server's error log (``logging.error_lines`` per ``logging.error_interval``)."""
