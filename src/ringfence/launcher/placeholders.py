"""Placeholders: how a missing protected entry is made impossible to create.

A mount needs something to mount on, so for a protected name that does not
exist (`.ringfence`, `.codex`, ...) ringfence creates an empty directory on
the host, binds it read-only into the sandbox, and removes it afterwards.
Directories are used even for names that are files (`.envrc`): an empty
directory is invisible to `git status` and `git add`, an empty file is not.

Several runs may share one placeholder. Each run holds a shared lock on it
for its lifetime; whoever can take the lock exclusively at the end is the
last user and removes it. A run that was killed releases its lock with its
descriptors, so the next run finds and removes what it left.
"""

from __future__ import annotations

import fcntl
import os


def _record_name(path: str) -> str:
    # Two 32-bit checksums: names need only be distinct, and zlib is already
    # loaded where hashlib would cost a few milliseconds of start-up.
    import zlib

    data = path.encode("utf-8", "surrogateescape")
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


class Placeholders:
    def __init__(self, state: str):
        self.directory = os.path.join(state, "placeholders")
        self.held: list[tuple[str, int]] = []

    def _paths(self, path):
        name = _record_name(path)
        return os.path.join(self.directory, name + ".lock"), os.path.join(self.directory, name + ".path")

    def acquire(self, paths) -> list[str]:
        """Create (or join) a placeholder for each path; return the ones created here."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        created = []
        for path in paths:
            lock_path, record_path = self._paths(path)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_SH)
            self.held.append((path, fd))
            if not os.path.exists(record_path):
                with open(record_path + ".tmp", "w", encoding="utf-8", errors="surrogateescape") as handle:
                    handle.write(path)
                os.replace(record_path + ".tmp", record_path)
            try:
                os.mkdir(path, 0o755)
                created.append(path)
            except FileExistsError:
                pass
        return created

    def release(self) -> list[str]:
        """Drop our locks; remove placeholders nobody else holds. Returns removed paths."""
        removed = []
        held, self.held = self.held, []
        for path, fd in held:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            if self._remove(path):
                removed.append(path)
            os.close(fd)
        return removed

    def _remove(self, path: str) -> bool:
        _lock_path, record_path = self._paths(path)
        removed = False
        try:
            os.rmdir(path)  # only an empty directory: anything the user put there stays
            removed = True
        except OSError:
            pass
        # The lock file stays: unlinking it while another run waits on it would
        # give the next run a different lock, and two runs that cannot see
        # each other.
        try:
            os.unlink(record_path)
        except OSError:
            pass
        return removed

    def recover(self) -> list[str]:
        """Remove placeholders left by runs that were killed."""
        removed = []
        try:
            names = os.listdir(self.directory)
        except OSError:
            return removed
        for name in names:
            if not name.endswith(".path"):
                continue
            record_path = os.path.join(self.directory, name)
            lock_path = record_path[:-5] + ".lock"
            try:
                with open(record_path, encoding="utf-8", errors="surrogateescape") as handle:
                    path = handle.read()
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            if self._remove(path):
                removed.append(path)
            os.close(fd)
        return removed
