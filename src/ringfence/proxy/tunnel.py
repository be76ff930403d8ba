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
_PIPE_SIZE = 1 << 18


class Activity:
    __slots__ = ("last",)

    def __init__(self, now: float):
        self.last = now


async def tunnel(a: socket.socket, b: socket.socket, *, to_b: bytes = b"", to_a: bytes = b"",
                 idle_timeout: float | None = None) -> tuple[int, int]:
    """Copy until both directions have ended; (bytes a->b, bytes b->a),
    counting `to_b`/`to_a`, bytes already read that go first. Closes neither
    socket."""
    loop = asyncio.get_running_loop()
    activity = Activity(loop.time())
    counts = [0, 0]
    pumps = [asyncio.ensure_future(_pump(loop, a, b, to_b, counts, 0, activity)),
             asyncio.ensure_future(_pump(loop, b, a, to_a, counts, 1, activity))]
    try:
        pending = set(pumps)
        while pending:
            timeout = None if idle_timeout is None else max(0.0, activity.last + idle_timeout - loop.time())
            done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_EXCEPTION)
            if any(task.exception() is not None for task in done):
                break
            if not done and idle_timeout is not None and loop.time() - activity.last >= idle_timeout:
                break
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
    return counts[0], counts[1]


async def _wait(loop, fd: int, writable: bool) -> None:
    future = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if writable else (loop.add_reader, loop.remove_reader)
    add(fd, lambda: future.done() or future.set_result(None))
    try:
        await future
    finally:
        remove(fd)


async def _send_all(loop, dst: socket.socket, data: bytes, activity: Activity) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = dst.send(view)
        except BlockingIOError:
            await _wait(loop, dst.fileno(), True)
            continue
        view = view[sent:]
        activity.last = loop.time()


async def _pump(loop, src: socket.socket, dst: socket.socket, first: bytes, counts: list, index: int,
                activity: Activity) -> None:
    if first:
        await _send_all(loop, dst, first, activity)
        counts[index] += len(first)
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:
            pass  # a user over the pipe-buffer quota keeps the default size
        src_fd, dst_fd = src.fileno(), dst.fileno()
        while True:
            try:
                moved = os.splice(src_fd, write_end, CHUNK, flags=_FLAGS)
            except BlockingIOError:
                await _wait(loop, src_fd, False)
                continue
            if moved == 0:
                break
            activity.last = loop.time()
            counts[index] += moved
            while moved:
                try:
                    moved -= os.splice(read_end, dst_fd, moved, flags=_FLAGS)
                except BlockingIOError:
                    await _wait(loop, dst_fd, True)
                    continue
                activity.last = loop.time()
    finally:
        os.close(read_end)
        os.close(write_end)
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass
