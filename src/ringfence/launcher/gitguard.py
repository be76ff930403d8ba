"""After a run that could commit in place: what the host's next git would run.

With the project's own `.git` writable (but for its config, hooks, info/,
modules/ and worktrees/), a run can still stage a submodule: a gitlink
(mode 160000) in the index at a path where it wrote a repository of its own
(a `.git` folder with `core.fsmonitor` in its config, or a `.git` file naming
a gitdir it made). The host's next `git status`, `git diff` or `git commit`
then runs git in that repository, and its config's commands. So the index
is read here before and after the run, as data (never by running git, whose
configuration the workspace steers), and

- a gitlink the run added (or any index that cannot be read as one) puts
  the index back as it was before the run: the run's staging is lost, the
  files stay;
- a `.git` the run made at the path of a gitlink that was already there is
  moved aside, to `.git.ringfence-<run>`;
- a `commondir` the run made in `.git` (git would read its configuration
  from the folder it names) is removed.

Each is an event (`git.neutralized`) naming what was done and why.
"""

from __future__ import annotations

import os
import stat

from .._record import Record

GITLINK = 0o160000
# The bytes of a gitlink's mode as the index stores it (big-endian 32 bits):
# an index without them holds no gitlink, and needs no parsing.
_GITLINK_BYTES = GITLINK.to_bytes(4, "big")
MAX_INDEX = 1 << 30
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class IndexUnreadable(ValueError):
    """The index is not one this reader can take apart: treated as the worst case."""


def gitlinks(data: bytes, hash_size: int = 20) -> set[str]:
    """The paths of every gitlink in an index file's bytes (versions 2, 3, 4)."""
    if not data:
        return set()
    if len(data) < 12 or data[:4] != b"DIRC":
        raise IndexUnreadable("no index signature")
    version = int.from_bytes(data[4:8], "big")
    count = int.from_bytes(data[8:12], "big")
    if version not in (2, 3, 4):
        raise IndexUnreadable(f"index version {version}")
    if _GITLINK_BYTES not in data:
        return set()
    found, offset, previous = set(), 12, b""
    fixed = 40 + hash_size + 2   # stat data, object id, flags
    for _ in range(count):
        start = offset
        if offset + fixed > len(data):
            raise IndexUnreadable("an entry runs past the end")
        mode = int.from_bytes(data[offset + 24:offset + 28], "big")
        flags = int.from_bytes(data[offset + fixed - 2:offset + fixed], "big")
        offset += fixed
        if flags & 0x4000:
            if version < 3:
                raise IndexUnreadable("extended flags in a version 2 index")
            offset += 2
        if version == 4:
            strip, shift = 0, 0
            while True:   # git's offset varint: each continuation adds one
                if offset >= len(data):
                    raise IndexUnreadable("a path prefix runs past the end")
                byte = data[offset]
                offset += 1
                strip = (strip << 7) | (byte & 0x7F)
                if not byte & 0x80:
                    break
                strip += 1
                shift += 1
                if shift > 8:
                    raise IndexUnreadable("an oversized path prefix")
            end = data.find(b"\0", offset)
            if end < 0 or strip > len(previous):
                raise IndexUnreadable("a malformed path")
            path = previous[:len(previous) - strip] + data[offset:end]
            offset = end + 1
        else:
            end = data.find(b"\0", offset)
            if end < 0:
                raise IndexUnreadable("a path without its end")
            path = data[offset:end]
            offset = start + ((end - start) // 8 + 1) * 8   # NUL-padded to a multiple of eight
        previous = path
        if stat.S_IFMT(mode) == GITLINK:
            found.add(os.fsdecode(path))
    return found


def _hash_size(git_dir: str) -> int:
    from ..policy import gitconfig

    for section, key, value in gitconfig.read(os.path.join(git_dir, "config")):
        if section == "extensions" and key == "objectformat" and (value or "").lower() == "sha256":
            return 32
    return 20


def _read(dir_fd: int, name: str) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_INDEX:
            raise IndexUnreadable(f"{name} is not a regular file of at most {MAX_INDEX} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_INDEX:
                raise IndexUnreadable(f"{name} grew past {MAX_INDEX} bytes")
            chunks.append(chunk)
    finally:
        os.close(fd)


def _identity(dir_fd: int, name: str) -> tuple[int, int, int, int, int] | None:
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_mode)


class _Repository(Record):
    """`index` the index's bytes at the start (None: there was none);
    `readable` False when it could not be read then (nothing to restore)."""

    __slots__ = ("root", "git_dir", "index", "readable", "identity", "names", "hash_size")
    root: str
    git_dir: str
    index: bytes | None
    readable: bool
    identity: tuple[int, int, int, int, int] | None
    names: frozenset[str]
    hash_size: int


class GitGuard:
    """The state of each in-place repository's index at the start of a run."""

    def __init__(self, repositories):
        self.repositories = tuple(repositories)

    @classmethod
    def start(cls, roots) -> GitGuard:
        repositories = []
        for root in roots:
            git_dir = os.path.join(root, ".git")
            try:
                fd = os.open(git_dir, _DIR)
            except OSError:
                continue
            try:
                try:
                    index, readable = _read(fd, "index"), True
                except (IndexUnreadable, OSError):
                    index, readable = None, False
                repositories.append(_Repository(root, git_dir, index, readable, _identity(fd, "index"),
                                                frozenset(os.listdir(fd)), _hash_size(git_dir)))
            finally:
                os.close(fd)
        return cls(repositories)

    def finish(self, known: set, events, run_id: str) -> list[dict]:
        """Neutralize what the run left for the host's git (see the module);
        `known` the protected paths that existed at the start."""
        done = []
        for repository in self.repositories:
            try:
                done += self._check(repository, known, run_id)
            except OSError as exc:
                done.append({"repository": repository.root, "action": "unchecked",
                             "why": f"the repository could not be checked after the run: {exc}"})
        for item in done:
            events.emit("git.neutralized", **item)
        return done

    def _check(self, repository: _Repository, known: set, run_id: str) -> list[dict]:
        done = []
        fd = os.open(repository.git_dir, _DIR)
        try:
            if "commondir" not in repository.names and os.path.lexists(os.path.join(repository.git_dir,
                                                                                     "commondir")):
                _remove(fd, "commondir")
                done.append({"repository": repository.root, "action": "removed", "path": ".git/commondir",
                             "why": "the run made it: git would read its configuration and hooks from the "
                                    "folder it names"})
            before = self._links(repository.index, repository.hash_size)
            unreadable = None
            if _identity(fd, "index") == repository.identity:
                after = before
            else:
                try:
                    after = gitlinks(_read(fd, "index") or b"", repository.hash_size)
                except IndexUnreadable as exc:
                    after, unreadable = None, str(exc)
            if after is None or before is None or after - before:
                if after is None:
                    why = f"the index the run left cannot be read as data ({unreadable}): it could stage a submodule"
                elif before is None:
                    why = "the index before the run could not be read as data, so what the run staged is unknown"
                else:
                    why = (f"the run staged submodule(s) {', '.join(sorted(after - before))}: git on the host "
                           "would run git in their repositories, with their config (core.fsmonitor)")
                if not repository.readable:
                    done.append({"repository": repository.root, "action": "unchecked", "why": why})
                    return done
                if repository.index is None:
                    _remove(fd, "index")
                else:
                    _replace(fd, "index", repository.index)
                done.append({"repository": repository.root, "action": "index restored", "path": ".git/index",
                             "why": why + "; the index is as it was before the run (the run's files stay)"})
                after = before or set()
            before = before or set()
            for path in sorted(after & before):
                planted = os.path.join(repository.root, path, ".git")
                if planted not in known and os.path.lexists(planted):
                    aside = f"{planted}.ringfence-{run_id}"
                    os.rename(planted, aside)
                    done.append({"repository": repository.root, "action": "moved aside", "path": planted,
                                 "to": aside, "why": f"the run made a repository at the submodule {path}: git "
                                                     "on the host would run its config"})
        finally:
            os.close(fd)
        return done

    @staticmethod
    def _links(index: bytes | None, hash_size: int) -> set[str] | None:
        try:
            return gitlinks(index or b"", hash_size)
        except IndexUnreadable:
            return None


def _remove(dir_fd: int, name: str):
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISDIR(info.st_mode):
        import shutil

        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _replace(dir_fd: int, name: str, data: bytes):
    """`name` in the folder `dir_fd` atomically replaced by `data`."""
    temporary = f"{name}.ringfence-{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                 dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.fsync(dir_fd)
