"""Placeholders: how a missing protected entry is made impossible to create.

A mount needs something to mount on, so for a protected name that does not
exist (`.ringfence`, `.vscode`, `.envrc`, ...) ringfence creates an empty
directory on the host, binds it read-only into the sandbox, and removes it
afterwards. Directories are used even for names that are files: an empty
directory is invisible to `git status` and `git add`, an empty file is not.

Several runs in one workspace share its placeholders. Each run holds a shared
lock on the workspace's record for its lifetime; whoever can take the lock
exclusively at the end is the last user and removes every placeholder the
record lists (only empty directories: anything a user put there stays). A
killed run releases its lock with its descriptors, so the next run finds the
record and cleans up.

A record lists what one workspace's runs created, as NUL-separated (path,
device, inode) triples: a path may hold any byte but NUL (a newline in a
sandbox-written core.hooksPath must not split one entry into two), and a
directory is removed only if it is still the one ringfence made.
"""

from __future__ import annotations

import fcntl
import os
import stat

from ...errors import PolicyError

RECORD_SUFFIX = ".placeholders"


def _record_name(path: str) -> str:
    # Two 32-bit checksums: names need only be distinct, and zlib is already
    # loaded where hashlib would cost a few milliseconds of start-up.
    import zlib

    data = path.encode("utf-8", "surrogateescape")
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def _lock_key(path: str, paths: list[str]) -> str:
    """The workspace record that lists `path`: its parent's, or, for a
    directory made only to hold a deeper placeholder, that placeholder's
    parent's. Every run that mounts the deeper one holds that record (it
    names the same parent whether or not the directories exist yet), so no
    run removes a directory another still has mounted."""
    below = [other for other in paths if other.startswith(path + "/")]
    return os.path.dirname(max(below, key=len) if below else path)


class Placeholders:
    """The placeholders one holder (a run, or a `Sandbox` across its runs) uses.

    Acquiring again what is already held costs nothing but a check, so a
    `Sandbox` that runs many commands creates its placeholders once and
    releases them when it is closed."""

    def __init__(self, state: str):
        self.directory = os.path.join(state, "placeholders")
        self.held: list[tuple[str, int]] = []   # (record path, locked fd)
        self.locked: set[str] = set()           # workspaces whose lock we hold
        self.created: set[str] = set()          # placeholders this holder made

    def _files(self, parent: str):
        name = _record_name(parent)
        return os.path.join(self.directory, name + ".lock"), os.path.join(self.directory, name + RECORD_SUFFIX)

    def acquire(self, paths, hold=()) -> list[str]:
        """Hold the lock of every path's workspace while the run lasts, and create
        a placeholder for each of `paths` that is missing; return those created here.

        The protected entries in `hold` are locked but never created: one may
        be another run's placeholder, which that run must not remove while
        this one has it mounted."""
        by_parent: dict[str, list[str]] = {}
        paths = list(paths)
        # Only a path that holds another needs the deeper look of _lock_key.
        holders = set()
        for path in paths:
            parent = os.path.dirname(path)
            while parent not in holders and parent != "/":
                holders.add(parent)
                parent = os.path.dirname(parent)
        for path in paths:
            if path in self.created and os.path.isdir(path):
                continue
            key = _lock_key(path, paths) if path in holders else os.path.dirname(path)
            by_parent.setdefault(key, []).append(path)
        for path in hold:
            by_parent.setdefault(os.path.dirname(path), [])
        if not by_parent:
            return []
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        created = []
        for parent, members in by_parent.items():
            lock_path, record_path = self._files(parent)
            if parent not in self.locked:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fcntl.flock(fd, fcntl.LOCK_SH)
                self.held.append((record_path, fd))
                self.locked.add(parent)
            mine = []
            for path in members:
                try:
                    os.mkdir(path, 0o755)
                    mine.append(path)
                except FileExistsError:
                    pass  # another run's placeholder (already recorded), or the user's own
                except OSError as exc:
                    self._record(record_path, mine)
                    raise PolicyError(
                        f"cannot create the placeholder that keeps {path} from being created in the "
                        f"sandbox: {exc.strerror}",
                        hint=f"make {parent} writable (the sandbox could make it writable itself, as its "
                             "owner), or run with --sandbox read-only") from None
            # Only what this run created is recorded, so a user's own empty
            # directory is never taken for a placeholder and removed.
            self._record(record_path, mine)
            created += mine
        self.created.update(created)
        return created

    @staticmethod
    def _record(record_path: str, mine: list[str]):
        entries = []
        for path in mine:
            try:
                info = os.lstat(path)
            except OSError:
                continue  # gone already: nothing of ours to remove later
            entries.append(b"%s\0%d\0%d\0" % (os.fsencode(path), info.st_dev, info.st_ino))
        if entries:
            # One append per run: a killed writer leaves at most a torn last
            # triple, which the reader drops.
            fd = os.open(record_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, b"".join(entries))
            finally:
                os.close(fd)

    def release(self) -> list[str]:
        """Drop our locks; the last run out removes the placeholders. Returns removed paths."""
        removed = []
        held, self.held = self.held, []
        self.locked.clear()
        self.created.clear()
        for record_path, fd in held:
            fcntl.flock(fd, fcntl.LOCK_UN)
            removed += _clean_if_last(fd, record_path)
        return removed

    def recover(self) -> list[str]:
        """Remove placeholders left by runs that were killed."""
        removed: list[str] = []
        try:
            names = os.listdir(self.directory)
        except OSError:
            return removed
        for name in names:
            if not name.endswith(RECORD_SUFFIX):
                continue
            record_path = os.path.join(self.directory, name)
            try:
                fd = os.open(record_path[:-len(RECORD_SUFFIX)] + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                             0o600)
            except OSError:
                continue
            removed += _clean_if_last(fd, record_path)
        return removed


def _clean_if_last(fd: int, record_path: str) -> list[str]:
    """Clean up if no other run holds the lock on `fd`; close `fd` either way."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return []
    try:
        return _clean(record_path)
    finally:
        os.close(fd)


def _read_record(record_path: str) -> list[tuple[str, int, int]]:
    try:
        with open(record_path, "rb") as record:
            fields = record.read().split(b"\0")
    except OSError:
        return []
    entries = []
    for index in range(0, len(fields) - 2, 3):
        path, device, inode = fields[index:index + 3]
        if device.isdigit() and inode.isdigit() and path.startswith(b"/"):
            entries.append((os.fsdecode(path), int(device), int(inode)))
    return entries


def _remove_ours(entries) -> list[str]:
    """rmdir each (path, device, inode) only if it is still the directory
    recorded, looked up and removed relative to its open parent so that no
    swap in between redirects it. What lies inside a directory goes first."""
    removed = []
    parents: dict[str, int | None] = {}
    try:
        for path, device, inode in sorted(entries, reverse=True):
            parent, name = os.path.split(path)
            if parent not in parents:
                try:
                    parents[parent] = os.open(parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                except OSError:
                    parents[parent] = None
            parent_fd = parents[parent]
            if parent_fd is None:
                continue
            try:
                info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode) and (info.st_dev, info.st_ino) == (device, inode):
                    os.rmdir(name, dir_fd=parent_fd)
                    removed.append(path)
            except OSError:
                pass  # not empty (a user put something there), or gone
    finally:
        for fd in parents.values():
            if fd is not None:
                os.close(fd)
    return removed


def _clean(record_path: str) -> list[str]:
    """Remove every listed placeholder that is still the empty directory
    ringfence made, then the record.

    The lock file stays: unlinking it while another run waits on it would give
    the next run a different lock, and two runs that cannot see each other.
    """
    removed = _remove_ours(set(_read_record(record_path)))
    try:
        os.unlink(record_path)
    except OSError:
        pass
    return removed
