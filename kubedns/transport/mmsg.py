"""Linux's ``recvmmsg``/``sendmmsg`` through ctypes: many datagrams per system call.

Python's socket module has neither call, and a C extension would need a compiler at install
time, so libc is called through ctypes. Every structure the kernel reads or writes is laid out
once, at construction, in preallocated memory; the hot path only reads and writes integers
through ``memoryview`` casts and copies bytes with slice assignment, so a datagram costs no
ctypes object.

Layout (``Vectors``): ``slots`` receive buffers of ``slot_size`` bytes with one ``mmsghdr``
each (the kernel writes the sender's ``sockaddr`` into the header's own name slot), and as many
send buffers with one ``mmsghdr`` each whose name pointer is the receive name slot of the same
index. A reply to datagram ``i`` goes out as send message ``i`` with no address copied; when
some datagrams get no immediate reply, later replies are moved down so the vector handed to
``sendmmsg`` stays contiguous.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import sys
from collections.abc import Callable

MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20
"""Set by the kernel in ``msg_flags`` when a datagram was longer than its buffer."""
TRUNCATED = object()
"""What ``Vectors.answer`` reports for a datagram longer than its slot."""
Respond = Callable[..., object]
"""``Responder.respond``: called as ``respond(data, tcp=False)``."""
Other = tuple[object, bytes]
RETRY = frozenset({errno.EINTR})
WOULD_BLOCK = frozenset({errno.EAGAIN, errno.EWOULDBLOCK})


class _IOVec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class _MsgHdr(ctypes.Structure):
    _fields_ = (
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    )


class _MMsgHdr(ctypes.Structure):
    _fields_ = (("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint))


MMSG_SIZE = ctypes.sizeof(_MMsgHdr)
IOV_SIZE = ctypes.sizeof(_IOVec)
NAME_SIZE = 28
"""Room for a ``sockaddr_in6``, the largest address a UDP socket reports."""
_SIZE_T = ctypes.sizeof(ctypes.c_size_t)
# Indexes into the 32-bit and size_t views of the header and iovec arrays (all aligned).
_HDR_WORDS = MMSG_SIZE // 4
_LEN_WORD = _MMsgHdr.msg_len.offset // 4
_FLAGS_WORD = _MsgHdr.msg_flags.offset // 4
_IOV_WORDS = IOV_SIZE // _SIZE_T
_IOV_LEN_WORD = _IOVec.iov_len.offset // _SIZE_T

_V4_MAPPED = bytes(10) + b"\xff\xff"

_libc: ctypes.CDLL | None = None


def _load() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != _SIZE_T:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        recvmmsg, sendmmsg, sendto = libc.recvmmsg, libc.sendmmsg, libc.sendto
    except (OSError, AttributeError):
        return None
    int_, pointer, uint = ctypes.c_int, ctypes.c_void_p, ctypes.c_uint
    recvmmsg.argtypes = (int_, pointer, uint, int_, pointer)
    recvmmsg.restype = ctypes.c_int
    sendmmsg.argtypes = (int_, pointer, uint, int_)
    sendmmsg.restype = ctypes.c_int
    sendto.argtypes = (int_, ctypes.c_char_p, ctypes.c_size_t, int_, ctypes.c_char_p, uint)
    sendto.restype = ctypes.c_ssize_t
    return libc


def is_available() -> bool:
    """True on Linux with a libc that has ``recvmmsg`` and ``sendmmsg``."""
    global _libc  # noqa: PLW0603 - loaded once, on first use
    if _libc is None:
        _libc = _load()
    return _libc is not None


def name_length(family: int) -> int:
    """The ``sockaddr`` length replies to a socket of ``family`` carry (0: connected peer)."""
    if family == socket.AF_INET:
        return 16
    if family == socket.AF_INET6:
        return NAME_SIZE
    return 0


def sockaddr_text(address: bytes) -> tuple[str, int]:
    """A raw ``sockaddr_in``/``sockaddr_in6`` (as the kernel writes it) as (address, port)."""
    port = int.from_bytes(address[2:4], "big")
    if len(address) >= NAME_SIZE:
        return socket.inet_ntop(socket.AF_INET6, address[8:24]), port
    return socket.inet_ntop(socket.AF_INET, address[4:8]), port


class MmsgError(OSError):
    """A batch system call failed with something other than "would block"."""


class Vectors:
    """Preallocated ``mmsghdr`` vectors and buffers for one socket, and the calls on it.

    ``recv()`` fills receive slots ``0..n-1``; ``answer(n, respond)`` turns them into send
    messages ``0..ready-1``; ``send(start, count)`` hands send messages to the kernel, and
    ``reply(j)``/``address(j)`` copy one out when the kernel cannot take it now. Not
    thread-safe; one event loop owns it.
    """

    def __init__(self, fd: int, *, family: int, slots: int, slot_size: int) -> None:
        if not is_available():
            raise OSError("recvmmsg/sendmmsg are not available on this platform")
        assert _libc is not None
        self.fd = fd
        self.slots = slots
        self.slot_size = slot_size
        self.namelen = name_length(family)
        self._recvmmsg = _libc.recvmmsg
        self._sendmmsg = _libc.sendmmsg
        self._sendto = _libc.sendto
        self._recv_data = bytearray(slots * slot_size)
        self._send_data = bytearray(slots * slot_size)
        self._names = bytearray(slots * NAME_SIZE)
        self._recv_hdrs = bytearray(slots * MMSG_SIZE)
        self._send_hdrs = bytearray(slots * MMSG_SIZE)
        self._recv_iovs = bytearray(slots * IOV_SIZE)
        self._send_iovs = bytearray(slots * IOV_SIZE)
        # ctypes views only to learn addresses; they keep the bytearrays from being resized.
        self._pinned = [
            (ctypes.c_char * len(buffer)).from_buffer(buffer)
            for buffer in (
                self._recv_data, self._send_data, self._names, self._recv_hdrs,
                self._send_hdrs, self._recv_iovs, self._send_iovs,
            )
        ]  # fmt: skip
        recv_data, send_data, names, recv_hdrs, send_hdrs, recv_iovs, send_iovs = (
            ctypes.addressof(view) for view in self._pinned
        )
        self._recv_hdrs_at = recv_hdrs
        self._send_hdrs_at = send_hdrs
        for i in range(slots):
            recv_iov = _IOVec.from_buffer(self._recv_iovs, i * IOV_SIZE)
            recv_iov.iov_base, recv_iov.iov_len = recv_data + i * slot_size, slot_size
            send_iov = _IOVec.from_buffer(self._send_iovs, i * IOV_SIZE)
            send_iov.iov_base, send_iov.iov_len = send_data + i * slot_size, 0
            name = names + i * NAME_SIZE
            recv = _MMsgHdr.from_buffer(self._recv_hdrs, i * MMSG_SIZE).msg_hdr
            recv.msg_name, recv.msg_namelen = name, NAME_SIZE
            recv.msg_iov, recv.msg_iovlen = recv_iovs + i * IOV_SIZE, 1
            send = _MMsgHdr.from_buffer(self._send_hdrs, i * MMSG_SIZE).msg_hdr
            send.msg_name, send.msg_namelen = (name if self.namelen else None), self.namelen
            send.msg_iov, send.msg_iovlen = send_iovs + i * IOV_SIZE, 1
        self._recv_words = memoryview(self._recv_hdrs).cast("I")
        self._send_lengths = memoryview(self._send_iovs).cast("P")  # size_t: pointer-wide on Linux
        self._recv_view = memoryview(self._recv_data)
        self._send_view = memoryview(self._send_data)
        self._names_view = memoryview(self._names)
        self.ready = 0
        """Send messages the last ``answer()`` filled."""

    def recv(self) -> int:
        """Datagrams read into slots 0..n-1 without blocking: n, or 0 when none is waiting."""
        # msg_namelen is in/out, and the kernel writes back the same length for every sender
        # of an AF_INET or AF_INET6 socket (v4-mapped senders too), so it needs no reset.
        while True:
            count: int = self._recvmmsg(self.fd, self._recv_hdrs_at, self.slots, MSG_DONTWAIT, None)
            if count >= 0:
                return count
            code = ctypes.get_errno()
            if code in WOULD_BLOCK:
                return 0
            if code not in RETRY:
                raise MmsgError(code, f"recvmmsg: {errno.errorcode.get(code, code)}")

    def answer(
        self, count: int, respond: Respond, before: Callable[[int], None] | None = None
    ) -> list[Other]:
        """Pass datagrams 0..count-1 to ``respond``; every reply that is bytes and fits a slot
        becomes a send message (0..``ready``-1, in order). Everything else comes back as
        (result, sender): ``TRUNCATED`` for a datagram longer than its slot (never passed on),
        None, an awaitable, or a reply longer than a slot. ``before(i)``, if given, is called
        before datagram ``i`` is answered, while its sender is still ``is_mapped(i)``'s.

        The hot loop of the server, hence written inline: per datagram one slice copied out,
        one call, one slice copied in, a few integers read and written."""
        words, lengths, names = self._recv_words, self._send_lengths, self._names_view
        recv_view, send_view = self._recv_view, self._send_view
        slot_size, namelen = self.slot_size, self.namelen
        hdr_words, flags_word, len_word, iov_words, iov_len_word, name_size = (
            _HDR_WORDS, _FLAGS_WORD, _LEN_WORD, _IOV_WORDS, _IOV_LEN_WORD, NAME_SIZE
        )  # fmt: skip
        others: list[Other] = []
        ready = 0
        for i in range(count):
            at = i * slot_size
            header = i * hdr_words
            if words[header + flags_word] & MSG_TRUNC:
                result: object = TRUNCATED
            else:
                if before is not None:
                    before(i)
                result = respond(recv_view[at : at + words[header + len_word]].tobytes(), tcp=False)
                if result.__class__ is bytes:
                    reply: bytes = result
                    size = len(reply)
                    if size <= slot_size:
                        if ready != i:  # an earlier datagram got no reply: move this one down
                            to = ready * name_size
                            names[to : to + name_size] = names[i * name_size : (i + 1) * name_size]
                        at = ready * slot_size
                        send_view[at : at + size] = reply
                        lengths[ready * iov_words + iov_len_word] = size
                        ready += 1
                        continue
            # Read the sender now: a later reply moved down may take this name slot.
            others.append((result, names[i * name_size : i * name_size + namelen].tobytes()))
        self.ready = ready
        return others

    def send(self, start: int, count: int) -> int:
        """Hand send messages ``start..start+count-1`` to the kernel: how many it took (0 when
        its buffer is full). Raises ``MmsgError`` when message ``start`` itself is refused."""
        while True:
            at = self._send_hdrs_at + start * MMSG_SIZE
            sent: int = self._sendmmsg(self.fd, at, count, MSG_DONTWAIT)
            if sent >= 0:
                return sent
            code = ctypes.get_errno()
            if code in WOULD_BLOCK:
                return 0
            if code not in RETRY:
                raise MmsgError(code, f"sendmmsg: {errno.errorcode.get(code, code)}")

    def is_mapped(self, i: int) -> bool:
        """Whether receive slot ``i``'s sender is an IPv4 client on an IPv6 socket
        (``::ffff:a.b.c.d``; the address sits at offset 8 of a ``sockaddr_in6``)."""
        at = i * NAME_SIZE + 8
        return self._names[at : at + 12] == _V4_MAPPED

    def datagram(self, i: int) -> bytes | None:
        """The query in receive slot ``i``, or None if it was longer than its slot."""
        header = i * _HDR_WORDS
        if self._recv_words[header + _FLAGS_WORD] & MSG_TRUNC:
            return None
        at = i * self.slot_size
        return self._recv_view[at : at + self._recv_words[header + _LEN_WORD]].tobytes()

    def address(self, j: int) -> bytes:
        """The destination of send message ``j``, as the raw ``sockaddr`` the kernel wrote."""
        start = j * NAME_SIZE
        return self._names_view[start : start + self.namelen].tobytes()

    def reply(self, j: int) -> bytes:
        """The reply stored as send message ``j`` (to queue it when the kernel is full)."""
        start = j * self.slot_size
        size = self._send_lengths[j * _IOV_WORDS + _IOV_LEN_WORD]
        return self._send_view[start : start + size].tobytes()

    def sendto(self, reply: bytes, address: bytes) -> bool:
        """One datagram to a raw ``sockaddr``: True when sent, False when the kernel's buffer
        is full. Raises ``MmsgError`` for any other failure."""
        while True:
            sent = self._sendto(
                self.fd, reply, len(reply), MSG_DONTWAIT, address or None, len(address)
            )
            if sent >= 0:
                return True
            code = ctypes.get_errno()
            if code in WOULD_BLOCK:
                return False
            if code not in RETRY:
                raise MmsgError(code, f"sendto: {errno.errorcode.get(code, code)}")
