"""Loop detection: a probe that an upstream sends back to our own listener is seen and stopped."""

from __future__ import annotations

import asyncio
import typing

import dns.rcode
import pytest

from kubedns.config import CacheConfig, HostPort
from kubedns.forward import Forwarder, SelfForwardError
from kubedns.forward.forwarder import Forwarder as ForwarderClass
from tests.forward.fakes import FakeUpstream, answer_a, ask, forward_config


class OwnListener(asyncio.DatagramProtocol):
    """Stands in for our UDP transport: every query goes to ``Forwarder.resolve``."""

    def __init__(self, forwarder: ForwarderClass) -> None:
        self.forwarder = forwarder
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector datagram transport does not subclass DatagramTransport.
        self.transport = typing.cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        task = asyncio.get_running_loop().create_task(self.answer(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def answer(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = await self.forwarder.resolve(data)
        assert self.transport is not None
        self.transport.sendto(reply, addr)


def relay_to(target: list[HostPort]) -> object:
    """A handler for a fake upstream that forwards every query to ``target[0]``: the loop."""

    async def relay(data: bytes, _proto: str) -> list[bytes]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, reply: bytes, _addr: tuple[str | int, ...]) -> None:
                if not done.done():
                    done.set_result(reply)

        transport, _ = await loop.create_datagram_endpoint(
            Client, remote_addr=(target[0].host, target[0].port)
        )
        try:
            transport.sendto(data)
            return [await asyncio.wait_for(done, 2)]
        finally:
            transport.close()

    return relay


async def test_loop_through_an_upstream_is_detected_and_not_amplified() -> None:
    target: list[HostPort] = []
    async with FakeUpstream(relay_to(target)) as looping:  # type: ignore[arg-type]
        forwarder = Forwarder(forward_config(looping.address), CacheConfig())
        loop = asyncio.get_running_loop()
        listener = OwnListener(forwarder)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: listener, local_addr=("127.0.0.1", 0)
        )
        target.append(HostPort("127.0.0.1", transport.get_extra_info("sockname")[1]))
        try:
            assert await forwarder.detect_loop(timeout=2)
            assert looping.count() == 1  # the probe came back once and was not sent again
        finally:
            transport.close()


async def test_no_loop_with_a_real_resolver(dnsmasq: HostPort) -> None:
    forwarder = Forwarder(forward_config(dnsmasq), CacheConfig())
    assert not await forwarder.detect_loop(timeout=2)


async def test_normal_names_still_resolve_after_probing() -> None:
    async with FakeUpstream(answer_a("192.0.2.30")) as upstream:
        forwarder = Forwarder(forward_config(upstream.address), CacheConfig())
        assert not await forwarder.detect_loop(timeout=1)
        reply = await ask(forwarder, "x.test.", "A")
        assert reply.rcode() == dns.rcode.NOERROR


def test_upstream_equal_to_our_listener_is_dropped() -> None:
    us = HostPort("127.0.0.1", 5353)
    other = HostPort("192.0.2.53", 53)
    forwarder = Forwarder(forward_config(us, other), CacheConfig(), listen=[us])
    assert [u.address for u in forwarder.pools[0].upstreams] == [other]
    assert any("our own listener" in w for w in forwarder.warnings)


def test_only_ourselves_as_upstream_is_refused_at_start() -> None:
    us = HostPort("0.0.0.0", 53)
    with pytest.raises(SelfForwardError, match="would loop"):
        Forwarder(forward_config(HostPort("127.0.0.1", 53)), CacheConfig(), listen=[us])
