"""Bring workspace paths to a recorded state, recoverably: the apply journal.

An apply is a list of operations, each one workspace path with its state
before (`pre`) and after (`post`). A state is {"kind": "absent"}, a folder
{"kind": "dir", "mode"}, a symlink {"kind": "symlink", "target"}, or a file
{"kind": "file", "mode", "digest", "size"} whose content comes from the
run's upper layer (post) or from the backup pack (pre: "offset").

```
<run>/apply/backup.pack    the pre-images of every file touched, end to end (fsync-ed)
<run>/apply/journal.json   {"state": "applying" | "applied" | "rolled_back", "ops": [...]} (fsync-ed)
```

Each file is replaced atomically (a temporary name in the same folder,
fsync, rename); the touched folders are fsync-ed once each before the
journal says "applied". A process killed at any point leaves every path
either as it was or as the run made it, and the journal says which way to
finish: `recover_journal` rolls an apply in progress back from the pack,
or forward when every path already holds its post-image. Converging is
idempotent, so a recovery that is itself killed is simply done again.

Paths are walked one folder at a time without following symlinks: whatever
the workspace holds, nothing is written outside it.
"""

from __future__ import annotations

import errno
import os
import stat

from .durable import Syncs, read_json, write_json
from .tree import CHUNK, digest_fd, write_all

JOURNAL = "journal.json"
PACK = "backup.pack"
FORMAT = 1
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ConvergeError(OSError):
    """A path could not be brought to its state (the message names it)."""


def temp_name(token: str, index: int) -> str:
    return f".rf-{token}-{index}.tmp"


def open_folder(root: str, relative: str) -> int:
    """A descriptor of the folder `relative` below `root`, every component
    opened without following a symlink (ELOOP/ENOTDIR when one is in the way)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for part in relative.split("/") if relative else ():
        try:
            inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = inner
    return fd


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent, name


def read_state(root: str, path: str, *, with_digest: bool = True) -> dict:
    """The current state of `path` below `root`, in the journal's form."""
    parent, name = _split(path)
    try:
        folder = open_folder(root, parent)
    except (FileNotFoundError, NotADirectoryError):
        return {"kind": "absent"}
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return {"kind": "absent"}   # a symlink where a folder was: nothing below it is ours
        raise
    try:
        try:
            info = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            return {"kind": "absent"}
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode):
            return {"kind": "dir", "mode": mode}
        if stat.S_ISLNK(info.st_mode):
            return {"kind": "symlink", "target": os.readlink(name, dir_fd=folder)}
        if not stat.S_ISREG(info.st_mode):
            return {"kind": "other", "mode": mode}
        state = {"kind": "file", "mode": mode, "size": info.st_size}
        if with_digest:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=folder)
            try:
                state["digest"] = digest_fd(fd)
            finally:
                os.close(fd)
        return state
    finally:
        os.close(folder)


def same_state(current: dict, wanted: dict) -> bool:
    if current["kind"] != wanted["kind"]:
        return False
    kind = current["kind"]
    if kind == "symlink":
        return current["target"] == wanted["target"]
    if kind == "dir":
        return current["mode"] == wanted["mode"]
    if kind == "file":
        return current["mode"] == wanted["mode"] and current.get("digest") == wanted["digest"]
    return kind == "absent"


class Content:
    """Where a file state's bytes come from: the upper layer or the pack."""

    def __init__(self, upper: str, pack: str):
        self.upper = upper
        self.pack = pack

    def copy(self, op: dict, side: str, out_fd: int) -> None:
        state = op[side]
        if side == "post":
            source = os.open(os.path.join(self.upper, op["path"]), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            remaining = None
        else:
            source = os.open(self.pack, os.O_RDONLY | os.O_CLOEXEC)
            os.lseek(source, state["offset"], os.SEEK_SET)
            remaining = state["size"]
        try:
            while remaining is None or remaining > 0:
                chunk = os.read(source, CHUNK if remaining is None else min(CHUNK, remaining))
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                write_all(out_fd, chunk)
        finally:
            os.close(source)


def _depth(path: str) -> int:
    return path.count("/")


def remove_temps(root: str, ops: list[dict], token: str) -> None:
    """Remove the temporary files an interrupted write may have left."""
    for index, op in enumerate(ops):
        _remove_temp(root, op["path"], temp_name(token, index))


def converge(root: str, ops: list[dict], side: str, content: Content, token: str, syncs: Syncs, *,
             check_existing: bool = True) -> None:
    """Make every op's path below `root` hold its `side` ("pre" or "post") state.

    Folders to remove go deepest first, new things shallowest first, folder
    modes last and deepest first (a read-only folder still takes its
    children). With `check_existing`, files already in their state are left
    alone (a recovery redoing part of the work)."""
    touched: set[str] = set()
    remove_temps(root, ops, token)
    current = {op["path"]: read_state(root, op["path"], with_digest=False) for op in ops}
    for op in sorted(ops, key=lambda op: -_depth(op["path"])):
        wanted, now = op[side], current[op["path"]]
        if now["kind"] == "absent" or wanted["kind"] == now["kind"] == "dir":
            continue
        if wanted["kind"] == "absent" or now["kind"] == "dir":
            _remove(root, op["path"], now)
            touched.add(_split(op["path"])[0])
            current[op["path"]] = {"kind": "absent"}
    order = sorted(range(len(ops)), key=lambda index: _depth(ops[index]["path"]))
    for index in order:
        op = ops[index]
        wanted, now = op[side], current[op["path"]]
        if wanted["kind"] == "absent":
            continue
        if wanted["kind"] == "dir":
            if now["kind"] != "dir":
                _make_folder(root, op["path"], now)
                touched.add(_split(op["path"])[0])
            elif now["mode"] & 0o700 != 0o700:
                _set_folder_mode(root, op["path"], now["mode"] | 0o700)   # its final mode comes last
            continue
        if wanted["kind"] == "file" and now["kind"] == "file":
            if check_existing:
                now = read_state(root, op["path"])
            else:
                now = dict(now, digest=op["pre" if side == "post" else "post"].get("digest"))
            if same_state(now, wanted):
                continue
            if now.get("digest") == wanted["digest"]:
                _set_file_mode(root, op["path"], wanted["mode"], syncs)   # a mode change: no rewrite
                touched.add(_split(op["path"])[0])
                continue
        if wanted["kind"] == "symlink" and same_state(now, wanted):
            continue
        _put(root, op, side, content, temp_name(token, index), syncs)
        touched.add(_split(op["path"])[0])
    for op in sorted(ops, key=lambda op: -_depth(op["path"])):
        wanted = op[side]
        if wanted["kind"] == "dir":
            _set_folder_mode(root, op["path"], wanted["mode"])
            touched.add(op["path"])
    for folder in sorted(touched, key=_depth, reverse=True):
        try:
            fd = open_folder(root, folder)
        except OSError:
            continue
        try:
            syncs.directory(fd=fd)
        finally:
            os.close(fd)


def _fail(path: str, what: str, exc: OSError):
    raise ConvergeError(exc.errno, f"{path}: cannot {what}: {exc.strerror}") from None


def _remove_temp(root: str, path: str, name: str):
    parent, _ = _split(path)
    try:
        folder = open_folder(root, parent)
    except OSError:
        return
    try:
        os.unlink(name, dir_fd=folder)
    except OSError:
        pass
    finally:
        os.close(folder)


def _remove(root: str, path: str, now: dict):
    parent, name = _split(path)
    try:
        folder = open_folder(root, parent)
        try:
            if now["kind"] == "dir":
                os.rmdir(name, dir_fd=folder)
            else:
                os.unlink(name, dir_fd=folder)
        finally:
            os.close(folder)
    except FileNotFoundError:
        pass
    except OSError as exc:
        _fail(path, "remove it", exc)


def _make_folder(root: str, path: str, now: dict):
    parent, name = _split(path)
    try:
        folder = open_folder(root, parent)
        try:
            if now["kind"] != "absent":
                os.unlink(name, dir_fd=folder)
            os.mkdir(name, 0o700, dir_fd=folder)
        finally:
            os.close(folder)
    except OSError as exc:
        _fail(path, "make the folder", exc)


def _set_folder_mode(root: str, path: str, mode: int):
    try:
        fd = open_folder(root, path)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
    except OSError as exc:
        _fail(path, f"set its mode to {mode:04o}", exc)


def _set_file_mode(root: str, path: str, mode: int, syncs: Syncs):
    parent, name = _split(path)
    try:
        folder = open_folder(root, parent)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=folder)
        finally:
            os.close(folder)
        try:
            os.fchmod(fd, mode)
            syncs.file(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        _fail(path, f"set its mode to {mode:04o}", exc)


def _put(root: str, op: dict, side: str, content: Content, temporary: str, syncs: Syncs):
    """Replace the path with the file or symlink of `op[side]`, atomically."""
    path = op["path"]
    wanted = op[side]
    parent, name = _split(path)
    try:
        folder = open_folder(root, parent)
    except OSError as exc:
        _fail(path, "open its folder", exc)
    try:
        try:
            os.unlink(temporary, dir_fd=folder)
        except FileNotFoundError:
            pass
        if wanted["kind"] == "symlink":
            os.symlink(wanted["target"], temporary, dir_fd=folder)
        else:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=folder)
            try:
                content.copy(op, side, fd)
                os.fchmod(fd, wanted["mode"])
                syncs.file(fd)
            finally:
                os.close(fd)
        os.rename(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
    except OSError as exc:
        _fail(path, "write it", exc)
    finally:
        os.close(folder)


class Journal:
    """The journal of one apply, in `<run>/apply/`."""

    def __init__(self, directory: str):
        self.directory = directory
        self.path = os.path.join(directory, JOURNAL)
        self.pack = os.path.join(directory, PACK)

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def read(self) -> dict:
        data = read_json(self.path)
        if data.get("format") != FORMAT:
            raise ValueError(f"{self.path} was written by another version of ringfence")
        return data

    def write(self, data: dict, syncs: Syncs) -> None:
        write_json(self.path, dict(data, format=FORMAT), syncs)

    def write_pack(self, root: str, ops: list[dict], syncs: Syncs) -> None:
        """Copy the pre-image of every file op into the pack (its offset goes
        into the op), and make the pack durable."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        out = os.open(self.pack, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            offset = 0
            for op in ops:
                pre = op["pre"]
                if pre["kind"] != "file":
                    continue
                parent, name = _split(op["path"])
                folder = open_folder(root, parent)
                try:
                    source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
                finally:
                    os.close(folder)
                import hashlib

                hasher = hashlib.sha256()
                size = 0
                try:
                    while True:
                        chunk = os.read(source, CHUNK)
                        if not chunk:
                            break
                        hasher.update(chunk)
                        size += len(chunk)
                        write_all(out, chunk)
                finally:
                    os.close(source)
                pre.update(offset=offset, size=size, digest=hasher.hexdigest())
                offset += size
            syncs.file(out)
        finally:
            os.close(out)
        syncs.directory(self.directory)

    def remove(self) -> None:
        from .tree import remove_tree

        remove_tree(self.directory)


def recover_journal(journal: Journal, syncs: Syncs | None = None) -> str | None:
    """Finish what an interrupted apply left: "rolled_back", "rolled_forward",
    "applied" (only its clean-up was left) or None (no journal)."""
    syncs = syncs or Syncs()
    if not journal.exists():
        if os.path.isdir(journal.directory):
            journal.remove()   # cut before the journal was written: nothing was touched
        return None
    data = journal.read()
    state = data["state"]
    if state == "applied":
        return "applied"
    if state == "rolled_back":
        journal.remove()
        return "rolled_back"
    root, ops = data["workspace"], data["ops"]
    remove_temps(root, ops, data["token"])
    if all(same_state(read_state(root, op["path"]), op["post"]) for op in ops):
        journal.write(dict(data, state="applied"), syncs)
        return "rolled_forward"
    content = Content(data["upper"], journal.pack)
    converge(root, ops, "pre", content, data["token"], syncs)
    journal.write(dict(data, state="rolled_back"), syncs)
    journal.remove()
    return "rolled_back"
