"""Small filesystem steps shared by capture, apply and clean-up."""

from __future__ import annotations

import os
import stat

CHUNK = 1 << 20


def write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def digest_fd(fd: int) -> str:
    """sha256 of what `fd` reads from its current offset on."""
    import hashlib

    hasher = hashlib.sha256()
    while True:
        chunk = os.read(fd, CHUNK)
        if not chunk:
            return hasher.hexdigest()
        hasher.update(chunk)


def read_file(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def remove_tree(path: str) -> None:
    """Remove `path` and everything below it, never following a symlink, and
    making each directory writable first (an overlay's `work/work` is left at
    mode 000; a run may leave read-only folders in its upper layer)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(path)
        return
    if stat.S_IMODE(info.st_mode) & 0o700 != 0o700:
        os.chmod(path, stat.S_IMODE(info.st_mode) | 0o700)
    with os.scandir(path) as entries:
        names = [entry.name for entry in entries]
    for name in names:
        remove_tree(os.path.join(path, name))
    os.rmdir(path)
