"""The test resolvers' start (``tests.forward.conftest._run``): a port another process took
after the pick is retried on a fresh one; any other failure is reported at once."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.forward import conftest
from tests.forward.fakes import free_port


@pytest.fixture
def taken() -> Iterator[int]:
    """A port bound by someone else (UDP, where the resolvers answer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def test_a_port_taken_after_the_pick_is_retried_on_a_fresh_one(
    taken: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    picks = [taken]
    monkeypatch.setattr(conftest, "free_port", lambda: picks.pop() if picks else free_port())
    started = conftest._run(conftest.dnsmasq_argv)
    try:
        address = next(started)
        assert address.port != taken
    finally:
        started.close()


def test_any_other_failure_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    picks: list[int] = []

    def pick() -> int:
        picks.append(free_port())
        return picks[-1]

    monkeypatch.setattr(conftest, "free_port", pick)
    with pytest.raises(RuntimeError, match="bad command line") as failure:
        next(conftest._run(lambda port: conftest.dnsmasq_argv(port, "--no-such-option")))
    assert failure.type is RuntimeError
    assert len(picks) == 1
