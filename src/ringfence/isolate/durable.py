"""Writes that survive a crash: fsync the data, rename into place, fsync the folder.

Every fsync goes through one `Syncs` so that an apply can say how many it
made (a figure of its cost, and what the benchmark reports).
"""

from __future__ import annotations

import os

from .tree import write_all


class Syncs:
    """Counts the fsync calls it makes."""

    __slots__ = ("count",)

    def __init__(self):
        self.count = 0

    def file(self, fd: int) -> None:
        os.fsync(fd)
        self.count += 1

    def directory(self, path: str | None = None, *, fd: int | None = None) -> None:
        own = fd is None
        if fd is None:
            assert path is not None, "a path or a descriptor"
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
            self.count += 1
        finally:
            if own:
                os.close(fd)


def write_durably(path: str, data: bytes, syncs: Syncs | None = None, *, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically and durably (owner-only by default)."""
    syncs = syncs or Syncs()
    temporary = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        write_all(fd, data)
        syncs.file(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    syncs.directory(os.path.dirname(path) or ".")


def write_json(path: str, value, syncs: Syncs | None = None) -> None:
    import json

    write_durably(path, json.dumps(value, indent=1, sort_keys=True).encode(), syncs)


def read_json(path: str):
    import json

    with open(path, "rb") as handle:
        return json.loads(handle.read())
