"""Copy bytes both ways between two connected sockets, with splice(2).

Bytes of a tunnel go socket -> pipe -> socket inside the kernel and never
through Python's buffers: on loopback a copying relay runs at a fraction
of a direct connection, a splicing one close to it. Half-closes are passed
on (EOF one way shuts down writing the other way), so protocols that end a
request with a shutdown keep working.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket

CHUNK = 1 << 20
_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_F_SETPIPE_SZ = 1031
_PIPE_SIZE = 1 << 20


class Interrupted(Exception):
    """The tunnel was cancelled (the proxy is stopping); what it had moved."""

    def __init__(self, sent: int, received: int):
        super().__init__("the tunnel was ended by the proxy")
        self.sent, self.received = sent, received


class Activity:
    __slots__ = ("last",)

    def __init__(self, now: float):
        self.last = now


async def tunnel(a: socket.socket, b: socket.socket, *, to_b: bytes = b"", to_a: bytes = b"",
                 idle_timeout: float | None = None, gate=None) -> tuple[int, int]:
    """Copy until both directions have ended; (bytes a->b, bytes b->a),
    counting `to_b`/`to_a`, bytes already read that go first. Closes neither
    socket; an error either way ends both. `gate(first)`, when given, is
    awaited before anything goes from a to b (b to a flows meanwhile: some
    protocols speak server first): it returns the bytes to send first, or
    raises, which ends the tunnel with that exception."""
    loop = asyncio.get_running_loop()
    activity = Activity(loop.time())
    if to_a:
        await _send_all(loop, a, to_a, activity)
    pumps = [_Pump(loop, b, a, len(to_a), activity)]

    async def a_to_b(first: bytes) -> None:
        if gate is not None:
            first = await gate(first)
        if first:
            await _send_all(loop, b, first, activity)
        pumps.append(_Pump(loop, a, b, len(first), activity))
        await pumps[-1].done

    forward = asyncio.ensure_future(a_to_b(to_b))
    failure = None
    try:
        pending = {pumps[0].done, forward}
        while pending:
            timeout = None if idle_timeout is None else max(0.0, activity.last + idle_timeout - loop.time())
            done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_EXCEPTION)
            failure = next((future.exception() for future in done if future.exception() is not None), None)
            if failure is not None:
                break
            if not done and idle_timeout is not None and loop.time() - activity.last >= idle_timeout:
                break
    except asyncio.CancelledError:
        failure = Interrupted(pumps[1].count if len(pumps) > 1 else 0, pumps[0].count)
    finally:
        forward.cancel()
        for pump in pumps:
            pump.stop()
        await asyncio.gather(forward, return_exceptions=True)
    if failure is not None and not isinstance(failure, OSError):
        raise failure
    return pumps[1].count if len(pumps) > 1 else 0, pumps[0].count


async def _send_all(loop, dst: socket.socket, data: bytes, activity: Activity) -> None:
    await loop.sock_sendall(dst, data)
    activity.last = loop.time()


class _Pump:
    """One direction, driven by readiness callbacks: while the destination
    takes what arrives the source's reader stays registered (no
    registration per chunk); when it does not, the pump waits for the
    destination instead."""

    def __init__(self, loop, src: socket.socket, dst: socket.socket, count: int, activity: Activity):
        self.loop, self.src, self.dst, self.count, self.activity = loop, src.fileno(), dst, count, activity
        self.dst_fd = dst.fileno()
        self.done = loop.create_future()
        self.read_end, self.write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.write_end, _F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:
            pass  # a user over the pipe-buffer quota keeps the default size
        self.pending = 0
        self.waiting_to_write = False
        loop.add_reader(self.src, self._readable)

    def _readable(self) -> None:
        try:
            while True:
                moved = os.splice(self.src, self.write_end, CHUNK, flags=_FLAGS)
                if moved == 0:
                    self._finish(None)
                    return
                self.count += moved
                self.pending += moved
                if not self._flush():
                    return
        except BlockingIOError:
            return
        except OSError as exc:
            self._finish(exc)

    def _writable(self) -> None:
        try:
            if self._flush():
                self._readable()
        except OSError as exc:
            self._finish(exc)

    def _flush(self) -> bool:
        """Move what the pipe holds on; False when the destination is full."""
        while self.pending:
            try:
                self.pending -= os.splice(self.read_end, self.dst_fd, self.pending, flags=_FLAGS)
            except BlockingIOError:
                if not self.waiting_to_write:
                    self.loop.remove_reader(self.src)
                    self.loop.add_writer(self.dst_fd, self._writable)
                    self.waiting_to_write = True
                return False
        self.activity.last = self.loop.time()
        if self.waiting_to_write:
            self.loop.remove_writer(self.dst_fd)
            self.loop.add_reader(self.src, self._readable)
            self.waiting_to_write = False
        return True

    def _finish(self, error: BaseException | None) -> None:
        if self.done.done():
            return
        self._unregister()
        if error is None:
            try:
                self.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self.done.set_result(None)
        else:
            self.done.set_exception(error)

    def _unregister(self) -> None:
        if self.waiting_to_write:
            self.loop.remove_writer(self.dst_fd)
            self.waiting_to_write = False
        else:
            self.loop.remove_reader(self.src)

    def stop(self) -> None:
        if not self.done.done():
            self._unregister()
            self.done.cancel()
        elif not self.done.cancelled():
            self.done.exception()  # retrieved, so that asyncio does not report it
        if self.read_end >= 0:
            os.close(self.read_end)
            os.close(self.write_end)
            self.read_end = self.write_end = -1
