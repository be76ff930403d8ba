"""Run a short helper command and collect one of its output streams.

For the small queries ringfence makes of other programs (bwrap's version, a
probe sandbox when one failed to start); runs themselves go through the
launcher.
"""

from __future__ import annotations

import os


def capture(argv: list[str], *, stream: int = 1) -> tuple[int, str]:
    """(exit status, text written to `stream`) of `argv`, with an empty
    environment, stdin and the other stream on /dev/null."""
    read_end, write_end = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                   (os.POSIX_SPAWN_DUP2, devnull, 2), (os.POSIX_SPAWN_DUP2, write_end, stream)]
        pid = os.posix_spawn(argv[0], argv, {}, file_actions=actions)
    finally:
        os.close(write_end)
        os.close(devnull)
    chunks = []
    try:
        while True:
            chunk = os.read(read_end, 4096)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace").strip()
