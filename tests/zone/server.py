"""Run a real kubedns server in-process, on its own event loop in a background thread.

Tests stay synchronous (plain sockets, dnspython, ``dig``) while the server runs exactly as
``kubedns serve`` wires it: ``Server(config)``, ``load_sources()``, ``start()``, ``stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubedns import config as kubedns_config
from kubedns.app import Server

HERE = Path(__file__).parent
CLUSTER = HERE / "cluster.yaml"


class ServerThread:
    """One server on 127.0.0.1 and an ephemeral port; ``address`` is where it listens."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        # Authoritative only: these tests pin the zone's own answers (REFUSED outside it), and
        # no query may leave loopback towards the machine's resolver.
        settings = {
            "snapshot": str(CLUSTER),
            "listen": "127.0.0.1:0",
            "forward.enabled": False,
            **overrides,
        }
        self.config = kubedns_config.load(None, settings)
        self.server = Server(self.config)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kubedns-test", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return (self.server.address.host, self.server.address.port)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.server.load_sources()
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:
            self._error = exc
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self.server.stop())
            self.loop.close()
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.stop())
        # As asyncio.run does: cancel whatever tasks are left.
        leftover = asyncio.all_tasks(self.loop)
        for task in leftover:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        self.loop.close()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("kubedns did not start")
        if self._error is not None:
            raise self._error

    def call(self, function: Any, *args: Any) -> Any:
        """Run ``function(*args)`` on the server's loop (index changes must happen there)."""
        done = threading.Event()
        result: list[Any] = []

        def run() -> None:
            result.append(function(*args))
            done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait(5)
        return result[0]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def start_with_retry(overrides: dict[str, Any], *, attempts: int = 5) -> ServerThread:
    """Start a server on port 0, retrying when the port UDP got is taken for TCP.

    ``Server.start`` binds UDP to port 0 and then TCP to the same number; another socket may
    already hold that TCP port (seen once in this suite while other test runs shared the host).
    """
    for attempt in range(attempts):
        thread = ServerThread(overrides)
        try:
            thread.start()
        except OSError:
            if attempt == attempts - 1:
                raise
            continue
        return thread
    raise AssertionError("unreachable")


@contextmanager
def running(**overrides: Any) -> Iterator[ServerThread]:
    """A started server for the duration of the block; dotted keys as ``config.load`` takes."""
    thread = start_with_retry(overrides)
    try:
        yield thread
    finally:
        thread.stop()
