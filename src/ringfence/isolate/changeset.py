"""What an isolated run changed, read from the overlay's upper layer.

Only the upper layer is walked, and for each of its entries the one lower
path beside it, so the cost follows what changed, not the size of the
workspace. The upper layer (userxattr, so no redirect_dir and no metacopy)
holds:

- whiteouts: character devices 0/0 (or, written by tools rather than the
  kernel, empty files with `overlay.whiteout` in a folder whose
  `overlay.opaque` is "x"): the lower path, and all below it, is deleted;
- opaque folders (`overlay.opaque` = "y", user. or trusted.): nothing of the
  lower folder shows through; lower entries absent above are deleted;
- full copies of every file written, chmod-ed or renamed, and folders on the
  way to them. Copy-ups that changed nothing (a file opened for writing, a
  touch) are dropped; so are folders whose mode is unchanged.

A directory renamed in the run fails with EXDEV (no redirect_dir), so `mv`
copied it and deleted the original: a deleted and an added tree with the
same content are shown as one rename; so are a deleted and an added file
with the same non-empty content and mode.

Each touched workspace path's identity and content hash are recorded here,
at capture, and checked again by apply (see apply.py); a touched path whose
ctime is not older than the run's start stamp changed while the run lasted,
and is a conflict from the start.
"""

from __future__ import annotations

import os
import stat

from .._record import Record
from ..printable import printable
from .protect import Protection
from .tree import CHUNK

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

    NodeKind = Literal["file", "symlink", "dir", "other"]
    ChangeKind = Literal["added", "deleted", "modified", "type_changed", "renamed"]
FORMAT = 1
SNIFF = 8000  # git's window for telling binary from text: a NUL byte in the first 8000
_OPAQUE = ("user.overlay.opaque", "trusted.overlay.opaque")
_WHITEOUT = ("user.overlay.whiteout", "trusted.overlay.whiteout")
_ORIGIN = ("user.overlay.origin", "trusted.overlay.origin")


class Node(Record):
    """One side of a change. `mode` the permission bits; `digest` sha256 of
    a file's content; `target` a symlink's target; `binary` whether a file
    holds a NUL byte in its first 8000; `identity` ("dev:ino:ctime_ns:size")
    of the workspace path at capture, on the old side only."""

    __slots__ = ("kind", "mode", "size", "digest", "target", "binary", "identity")
    _defaults = {"digest": None, "target": None, "binary": False, "identity": None}
    kind: NodeKind
    mode: int
    size: int
    digest: str | None
    target: str | None
    binary: bool
    identity: str | None

    def same_content(self, other: Node) -> bool:
        return (self.kind == other.kind and self.digest == other.digest and self.target == other.target
                and (self.kind == "symlink" or self.mode == other.mode))

    def to_json(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__ if getattr(self, name) is not None}


class Change(Record):
    """One path the run changed. `old` is the workspace's side (None when
    added), `new` the run's (None when deleted); `source` the old path of a
    rename; `protected` marks a change apply refuses."""

    __slots__ = ("path", "kind", "old", "new", "source", "protected")
    _defaults = {"source": None, "protected": False}
    path: str
    kind: ChangeKind
    old: Node | None
    new: Node | None
    source: str | None
    protected: bool

    @property
    def before(self) -> Node:
        """`old`, for a change whose kind has one (every kind but added)."""
        if self.old is None:
            raise ValueError(f"{self.path}: an {self.kind} change has no old side")
        return self.old

    @property
    def after(self) -> Node:
        """`new`, for a change whose kind has one (every kind but deleted)."""
        if self.new is None:
            raise ValueError(f"{self.path}: a {self.kind} change has no new side")
        return self.new

    @property
    def content_changed(self) -> bool:
        return (self.old is None or self.new is None or self.old.digest != self.new.digest
                or self.old.target != self.new.target)

    @property
    def mode_changed(self) -> bool:
        return (self.old is not None and self.new is not None and self.old.kind == self.new.kind != "symlink"
                and self.old.mode != self.new.mode)

    @property
    def letter(self) -> str:
        return {"added": "A", "deleted": "D", "modified": "M", "type_changed": "T", "renamed": "R"}[self.kind]

    def to_json(self) -> dict:
        data = {"path": self.path, "kind": self.kind, "old": self.old.to_json() if self.old else None,
                "new": self.new.to_json() if self.new else None, "protected": self.protected}
        if self.source is not None:
            data["source"] = self.source
        return data


class Conflict(Record):
    """A workspace path that is no longer what the run started from."""

    __slots__ = ("path", "reason")
    path: str
    reason: str


class Changeset(Record):
    """Everything one isolated run changed, in path order."""

    __slots__ = ("run_id", "workspace", "upper", "stamp", "changes", "conflicts")
    run_id: str
    workspace: str
    upper: str
    stamp: int
    changes: tuple[Change, ...]
    conflicts: tuple[Conflict, ...]

    @property
    def applicable(self) -> tuple[Change, ...]:
        return tuple(change for change in self.changes if not change.protected)

    @property
    def refused(self) -> tuple[Change, ...]:
        return tuple(change for change in self.changes if change.protected)

    def lines(self) -> list[str]:
        """The listing `ringfence changes` shows: one line per change, A/M/D/T/R
        as git's --name-status, then the conflicts."""
        out = []
        for change in self.changes:
            shown = f"{change.source} -> {change.path}" if change.kind == "renamed" else change.path
            if change.new is not None and change.new.kind == "dir":
                shown += "/"
            notes = []
            if change.mode_changed:
                notes.append(f"mode {change.before.mode:04o} -> {change.after.mode:04o}")
            if change.kind == "type_changed":
                notes.append(f"{change.before.kind} -> {change.after.kind}")
            if any(node is not None and node.binary for node in (change.old, change.new)):
                notes.append("binary")
            if change.protected:
                notes.append("protected: not applied")
            # The sandbox named these paths: shown escaped, one line each.
            out.append(f"{change.letter} {printable(shown)}" + (f"  ({', '.join(notes)})" if notes else ""))
        out += [f"! {printable(conflict.path)}: {printable(conflict.reason)}" for conflict in self.conflicts]
        return out

    def to_json(self) -> dict:
        return {"format": FORMAT, "run": self.run_id, "workspace": self.workspace, "upper": self.upper,
                "stamp": self.stamp, "changes": [change.to_json() for change in self.changes],
                "conflicts": [{"path": conflict.path, "reason": conflict.reason} for conflict in self.conflicts]}

    @classmethod
    def from_json(cls, data: dict) -> Changeset:
        if data.get("format") != FORMAT:
            raise ValueError("recorded by another version of ringfence")

        def node(value):
            return Node(**value) if value else None

        changes = tuple(Change(item["path"], item["kind"], node(item["old"]), node(item["new"]), item.get("source"),
                               item["protected"]) for item in data["changes"])
        conflicts = tuple(Conflict(item["path"], item["reason"]) for item in data["conflicts"])
        return cls(data["run"], data["workspace"], data["upper"], data["stamp"], changes, conflicts)


def changed_since(info: os.stat_result, stamp: int) -> bool:
    """Whether a workspace entry changed after the start stamp (the run
    began once the kernel's clock had passed the stamp, so a later change
    has a later ctime). A ctime with no nanoseconds comes from a filesystem
    with whole-second timestamps, so it is compared at that granularity (a
    change in the second before the start counts too: a false conflict
    rather than a missed one)."""
    ctime = info.st_ctime_ns
    if ctime % 1_000_000_000 == 0:
        return ctime >= stamp - stamp % 1_000_000_000
    return ctime > stamp


def identity(info: os.stat_result) -> str:
    return f"{info.st_dev}:{info.st_ino}:{info.st_ctime_ns}:{info.st_size}"


def _lstat(path: str):
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _kind(mode: int) -> NodeKind:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    return "other"


def _xattr(path: str, names) -> bytes | None:
    for name in names:
        try:
            return os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return None


class ModeMemo:
    """The modes the run gave upper-layer entries that capture had to make
    readable (a file without u+r, a folder without u+rx): capture, diff and
    apply read every entry whatever mode the run chose, and the run's mode
    is what is reported and applied. The memo lives beside the upper layer
    (`layers/modes`), where the run cannot write, one JSON line per entry,
    each written before its chmod, so a second capture reports the same."""

    def __init__(self, upper: str):
        self.upper = upper
        self.path = os.path.join(os.path.dirname(upper), "modes")
        self.modes: dict[str, int] = {}
        try:
            with open(self.path, encoding="utf-8", errors="surrogateescape") as handle:
                for line in handle:
                    import json

                    relative, mode = json.loads(line)
                    self.modes[relative] = mode
        except (OSError, ValueError):
            pass

    def mode(self, path: str, info: os.stat_result) -> int:
        relative = os.path.relpath(path, self.upper)
        if relative in self.modes:
            return self.modes[relative]
        mode = stat.S_IMODE(info.st_mode)
        needed = 0o500 if stat.S_ISDIR(info.st_mode) else 0o400
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)) or mode & needed == needed:
            return mode
        import json

        with open(self.path, "a", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(json.dumps([relative, mode]) + "\n")
        self.modes[relative] = mode
        os.chmod(path, mode | needed)
        return mode


def read_node(path: str, info: os.stat_result, *, workspace_side: bool = False, memo: ModeMemo | None = None) -> Node:
    """The node at `path` (already lstat-ed as `info`), content hashed; an
    upper-layer entry is made readable first (`memo`)."""
    kind = _kind(info.st_mode)
    mode = memo.mode(path, info) if memo is not None else stat.S_IMODE(info.st_mode)
    ident = identity(info) if workspace_side else None
    if kind == "symlink":
        return Node(kind, mode, info.st_size, None, os.readlink(path), False, ident)
    if kind != "file":
        digest = f"{info.st_rdev}" if kind == "other" else None
        return Node(kind, mode, info.st_size, digest, None, False, ident)
    import hashlib

    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        hasher = hashlib.sha256()
        first = os.read(fd, CHUNK)
        binary = b"\0" in first[:SNIFF]
        chunk = first
        while chunk:
            hasher.update(chunk)
            chunk = os.read(fd, CHUNK)
    finally:
        os.close(fd)
    return Node(kind, mode, info.st_size, hasher.hexdigest(), None, binary, ident)


def _is_whiteout(path: str, info: os.stat_result, parent_opaque: bytes | None) -> bool:
    if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
        return True
    return (parent_opaque == b"x" and stat.S_ISREG(info.st_mode) and info.st_size == 0
            and _xattr(path, _WHITEOUT) is not None)


class _Walk:
    """One capture: the changes and conflicts found so far."""

    def __init__(self, workspace: str, upper: str, stamp: int, protection: Protection):
        self.workspace = workspace
        self.upper = upper
        self.stamp = stamp
        self.protection = protection
        self.changes: list[Change] = []
        self.conflicts: dict[str, str] = {}
        self.memo = ModeMemo(upper)

    def change(self, path: str, kind: ChangeKind, old: Node | None, new: Node | None):
        self.changes.append(Change(path, kind, old, new))

    def check_unchanged(self, path: str, info: os.stat_result | None):
        assert info is not None, "only a path with a workspace side is checked"
        if changed_since(info, self.stamp):
            self.conflicts.setdefault(path, "changed in the workspace while the run lasted")

    def folder(self, relative: str, opaque: bool, marker: bytes | None, lower_is_dir: bool = True):
        """Walk one upper folder. `lower_is_dir` says the workspace holds a real
        folder at this path (reached through real folders only): where it holds
        a symlink or nothing, the entries below have no workspace side, and
        nothing is read through the symlink."""
        upper_dir = os.path.join(self.upper, relative) if relative else self.upper
        lower_dir = os.path.join(self.workspace, relative) if relative else self.workspace
        with os.scandir(upper_dir) as entries:
            names = sorted(entry.name for entry in entries)
        for name in names:
            path = f"{relative}/{name}" if relative else name
            self.entry(path, os.path.join(upper_dir, name), os.path.join(lower_dir, name) if lower_is_dir else None,
                       opaque, marker)
        if opaque and lower_is_dir:
            lower_info = _lstat(lower_dir)
            if lower_info is not None and stat.S_ISDIR(lower_info.st_mode):
                present = set(names)
                for name in sorted(os.listdir(lower_dir)):
                    if name not in present:
                        self.deleted_tree(f"{relative}/{name}" if relative else name)

    def entry(self, path: str, upper_path: str, lower_path: str | None, parent_opaque: bool,
              marker: bytes | None):
        upper_info = os.lstat(upper_path)
        # Under an opaque folder the lower entry does not show through, but it
        # is still what apply overwrites, so it is compared all the same.
        lower_info = _lstat(lower_path) if lower_path is not None else None
        if _is_whiteout(upper_path, upper_info, marker):
            if lower_info is not None:
                self.deleted_tree(path)
            return
        new = read_node(upper_path, upper_info, memo=self.memo)
        old = read_node(lower_path, lower_info, workspace_side=True) \
            if lower_path is not None and lower_info is not None else None
        if new.kind == "dir":
            own_marker = _xattr(upper_path, _OPAQUE)
            opaque = parent_opaque or own_marker == b"y"
            if old is None:
                self.change(path, "added", None, new)
                self._check_origin(path, upper_path)
            elif old.kind != "dir":
                self.check_unchanged(path, lower_info)
                self.change(path, "type_changed", old, new)
            else:
                if old.mode != new.mode:
                    self.check_unchanged(path, lower_info)
                    self.change(path, "modified", old, new)
            lower_is_dir = old is not None and old.kind == "dir"
            self.folder(path, opaque or (old is not None and not lower_is_dir), own_marker, lower_is_dir)
            return
        if old is None:
            self.change(path, "added", None, new)
            self._check_origin(path, upper_path)
            return
        if old.kind == "dir":
            self.deleted_children(path)
            self.check_unchanged(path, lower_info)
            self.change(path, "type_changed", old, new)
            return
        if old.same_content(new):
            return  # a copy-up that changed nothing
        self.check_unchanged(path, lower_info)
        self.change(path, "modified" if old.kind == new.kind else "type_changed", old, new)

    def _check_origin(self, path: str, upper_path: str):
        """A copy-up (it carries overlay's origin) whose workspace path is gone
        was deleted on the host, unless the run renamed it: a folder untouched
        since the start says the run did."""
        if _xattr(upper_path, _ORIGIN) is None:
            return
        parent = os.path.dirname(os.path.join(self.workspace, path))
        info = _lstat(parent)
        if info is None or changed_since(info, self.stamp):
            self.conflicts.setdefault(path, "deleted in the workspace while the run lasted")

    def deleted_tree(self, path: str):
        lower_path = os.path.join(self.workspace, path)
        info = _lstat(lower_path)
        if info is None:
            return
        if stat.S_ISDIR(info.st_mode):
            self.deleted_children(path)
        self.check_unchanged(path, info)
        self.change(path, "deleted", read_node(lower_path, info, workspace_side=True), None)

    def deleted_children(self, path: str):
        for name in sorted(os.listdir(os.path.join(self.workspace, path))):
            self.deleted_tree(f"{path}/{name}")


def capture(run, *, protection: Protection | None = None) -> Changeset:
    """Read what `run` (a store.Run whose sandbox has ended) changed, and
    record it in the run's capture.json."""
    changeset = read_changes(run.workspace, run.upper, run.stamp, run_id=run.id, protection=protection)
    from .durable import write_json

    write_json(run.capture_path, changeset.to_json())
    return changeset


def load_changeset(run) -> Changeset:
    from .durable import read_json

    return Changeset.from_json(read_json(run.capture_path))


def read_changes(workspace: str, upper: str, stamp: int, *, run_id: str = "",
                 protection: Protection | None = None) -> Changeset:
    """The changes the upper layer `upper` makes to `workspace`."""
    protection = protection or Protection()
    walk = _Walk(workspace, upper, stamp, protection)
    walk.memo.mode(upper, os.lstat(upper))
    walk.folder("", False, _xattr(upper, _OPAQUE))
    changes = _find_renames(walk.changes)
    changes = sorted((change.replace(protected=protection.is_protected(change.path)
                                     or (change.source is not None and protection.is_protected(change.source)))
                      for change in changes), key=lambda change: change.path.split("/"))
    conflicts = tuple(Conflict(path, reason) for path, reason in sorted(walk.conflicts.items()))
    return Changeset(run_id, workspace, upper, stamp, tuple(changes), conflicts)


def _tree_signature(changes_below: list[Change], root: str, side: str) -> tuple:
    cut = len(root) + 1
    signature = []
    for change in changes_below:
        node = getattr(change, side)
        signature.append((change.path[cut:], node.kind, node.mode if node.kind != "symlink" else 0, node.digest,
                          node.target))
    return tuple(sorted(signature))


def _find_renames(changes: list[Change]) -> list[Change]:
    """Pair deleted and added trees (then files) with identical content into renames."""
    deleted = {change.path: change for change in changes if change.kind == "deleted"}
    added = {change.path: change for change in changes if change.kind == "added"}
    if not deleted or not added:
        return changes
    renamed: dict[str, Change] = {}   # path (old or new) -> the rename that consumed it

    def below(table, root):
        prefix = root + "/"
        return [change for path, change in table.items() if path.startswith(prefix)]

    # Folders first: one rename per moved tree, the shallowest that matches.
    deleted_dirs = [path for path, change in sorted(deleted.items()) if change.before.kind == "dir"]
    by_signature: dict[tuple, list[str]] = {}
    for path in deleted_dirs:
        children = below(deleted, path)
        if children:
            key = (deleted[path].before.mode, _tree_signature(children, path, "old"))
            by_signature.setdefault(key, []).append(path)
    taken_new: list[str] = []
    for path, change in sorted(added.items()):
        if change.after.kind != "dir" or any(path.startswith(root + "/") for root in taken_new):
            continue
        children = below(added, path)
        if not children:
            continue
        key = (change.after.mode, _tree_signature(children, path, "new"))
        candidates = [old for old in by_signature.get(key, ()) if old not in renamed]
        if not candidates:
            continue
        source = candidates[0]
        taken_new.append(path)
        renamed[source] = renamed[path] = Change(path, "renamed", deleted[source].old, change.new, source)
        for child in children:
            old_path = source + child.path[len(path):]
            renamed[old_path] = renamed[child.path] = Change(child.path, "renamed", deleted[old_path].old, child.new,
                                                             old_path)
    # Then files: the same non-empty content and mode, paired in path order.
    by_content: dict[tuple, list[str]] = {}
    for path, change in sorted(deleted.items()):
        if path not in renamed and change.before.kind == "file" and change.before.size:
            by_content.setdefault((change.before.digest, change.before.mode), []).append(path)
    for path, change in sorted(added.items()):
        if path in renamed or change.after.kind != "file" or not change.after.size:
            continue
        same = by_content.get((change.after.digest, change.after.mode))
        if same:
            source = same.pop(0)
            renamed[source] = renamed[path] = Change(path, "renamed", deleted[source].old, change.new, source)
    result = [change for change in changes if change.path not in renamed or change.kind not in ("added", "deleted")]
    result += list({id(change): change for change in renamed.values()}.values())
    return result
