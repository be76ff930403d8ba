"""Apply an isolated run's changes to the real workspace, only if it is still
what the run started from.

What the run started from is known without a copy of the workspace:

- while the run lasted: a touched path whose ctime is not older than the
  run's start stamp changed (ctime cannot be set back from user space);
  capture records these as conflicts;
- from capture to apply: capture recorded each touched path's identity
  (device, inode, ctime, size) and content hash; apply compares the
  identity, and where it differs the content and mode, so a file rewritten
  with the same bytes is no conflict;
- a path the run added must still be absent.

A conflict is named, and nothing is applied unless forced. Protected paths
and special files are never written: they are reported as refused, and so
is any removal of a folder that holds one. The write itself goes through
the journal (journal.py), so it is atomic per file and recoverable as a
whole.
"""

from __future__ import annotations

import os

from .._record import Record
from ..errors import RingfenceError
from .changeset import Change, Changeset, Conflict, Node, identity, load_changeset
from .durable import Syncs
from .errors import ApplyConflict, ApplyRefused
from .journal import Content, ConvergeError, Journal, converge, open_folder, read_state, recover_journal


class ApplyReport(Record):
    """`applied` the workspace paths written or removed; `refused` (path,
    reason) pairs left as they are; `overridden` the conflicts a forced apply
    overwrote; `fsyncs` how many fsync calls the apply made."""

    __slots__ = ("run_id", "applied", "refused", "overridden", "fsyncs")
    run_id: str
    applied: tuple[str, ...]
    refused: tuple[tuple[str, str], ...]
    overridden: tuple[Conflict, ...]
    fsyncs: int


def _stat(root: str, path: str):
    parent, _, name = path.rpartition("/")
    try:
        folder = open_folder(root, parent)
    except OSError:
        return None
    try:
        return os.stat(name, dir_fd=folder, follow_symlinks=False)
    except OSError:
        return None
    finally:
        os.close(folder)


def _node_state(node: Node | None) -> dict:
    if node is None:
        return {"kind": "absent"}
    if node.kind == "dir":
        return {"kind": "dir", "mode": node.mode}
    if node.kind == "symlink":
        return {"kind": "symlink", "target": node.target}
    return {"kind": "file", "mode": node.mode, "digest": node.digest, "size": node.size}


def _unchanged(root: str, path: str, old: Node | None, expected_children: set[str] | None) -> str | None:
    """Why `path` is no longer the run's starting point, or None if it still is."""
    info = _stat(root, path)
    if old is None:
        return None if info is None else "created in the workspace since the run started"
    if info is None:
        return "deleted in the workspace since the run's changes were captured"
    if old.identity == identity(info):
        return None
    current = read_state(root, path)
    expected = _node_state(old)
    if current["kind"] != expected["kind"] or any(current.get(key) != value for key, value in expected.items()
                                                  if key != "size"):
        return "changed in the workspace since the run's changes were captured"
    if expected_children is not None:
        fd = open_folder(root, path)
        try:
            if set(os.listdir(fd)) != expected_children:
                return "a file was added to or removed from this folder in the workspace since the capture"
        finally:
            os.close(fd)
    return None


def _ops_of(change: Change) -> list[tuple[str, Node | None, Node | None]]:
    """(path, old node, new node) for each workspace path the change touches."""
    if change.kind == "renamed":
        assert change.source is not None, "a rename has its source"
        return [(change.source, change.old, None), (change.path, None, change.new)]
    return [(change.path, change.old, change.new)]


def _refusals(changeset: Changeset) -> dict[str, str]:
    """Changes apply leaves alone, by path, with the reason."""
    refused: dict[str, str] = {}
    for change in changeset.changes:
        if change.protected:
            refused[change.path] = "protected: an apply never writes it"
        elif any(node is not None and node.kind == "other" for node in (change.old, change.new)):
            refused[change.path] = "a special file (fifo, socket or device): copy it by hand if it is wanted"
    held = sorted(refused) + sorted(change.source for change in changeset.changes
                                    if change.source and change.path in refused)
    for change in changeset.changes:
        if change.path in refused:
            continue
        for path, old, new in _ops_of(change):
            if old is not None and old.kind == "dir" and (new is None or new.kind != "dir"):
                inside = next((other for other in held if other.startswith(path + "/")), None)
                if inside:
                    refused[change.path] = f"removing it would remove {inside}, which is refused"
                    break
    return refused


def check_conflicts(changeset: Changeset) -> tuple[Conflict, ...]:
    """Every workspace path the changeset would write that is no longer what
    the run started from (capture's findings, then the workspace as it is now)."""
    refused = _refusals(changeset)
    conflicts = {conflict.path: conflict.reason for conflict in changeset.conflicts if conflict.path not in refused}
    removed_children: dict[str, set[str]] = {}
    for change in changeset.changes:
        for path, _old, new in _ops_of(change):
            if new is None and "/" in path:
                parent, _, name = path.rpartition("/")
                removed_children.setdefault(parent, set()).add(name)
    for change in changeset.changes:
        if change.path in refused:
            continue
        for path, old, new in _ops_of(change):
            if path in conflicts:
                continue
            removed_folder = old is not None and old.kind == "dir" and (new is None or new.kind != "dir")
            children = removed_children.get(path, set()) if removed_folder else None
            reason = _unchanged(changeset.workspace, path, old, children)
            if reason:
                conflicts[path] = reason
    return tuple(Conflict(path, reason) for path, reason in sorted(conflicts.items()))


def plan(changeset: Changeset) -> tuple[list[dict], dict[str, str]]:
    """The journal's operations (pre-images as the workspace holds them now)
    and the refused changes."""
    refused = _refusals(changeset)
    ops = []
    for change in changeset.changes:
        if change.path in refused:
            continue
        for path, _old, new in _ops_of(change):
            current = read_state(changeset.workspace, path, with_digest=False)
            if current["kind"] == "other":
                raise ApplyRefused(f"{path} is now a special file in the workspace, which apply cannot back up",
                                     hint="move it away, then apply again")
            ops.append({"path": path, "pre": current, "post": _node_state(new)})
    return ops, refused


def apply_run(run, changeset: Changeset | None = None, *, force: bool = False, locked: bool = False,
              remove: bool = True) -> ApplyReport:
    """Apply the run's captured changes to its workspace.

    Refuses with ApplyConflict, writing nothing, when a touched path is no
    longer what the run started from (unless `force`). On any failure the
    workspace is rolled back before the error is raised. With `remove`, the
    run's directory goes once the changes are in (fetch its commits first).
    `locked` says the caller already holds the run's lock."""
    from .store import RunLock, remove_run

    lock = None if locked else RunLock(run.directory)
    try:
        journal = Journal(run.apply_dir)
        if recover_journal(journal) in ("applied", "rolled_forward"):
            # An earlier apply of this run got through its writes; only its clean-up was left.
            if remove:
                remove_run(run.directory)
            else:
                journal.remove()
            return ApplyReport(run.id, (), (), (), 0)
        changeset = changeset or load_changeset(run)
        conflicts = check_conflicts(changeset)
        if conflicts and not force:
            raise ApplyConflict(conflicts)
        syncs = Syncs()
        ops, refused = plan(changeset)
        journal.write_pack(changeset.workspace, ops, syncs)
        token = run.id.rsplit("-", 1)[-1]
        record = {"run": run.id, "state": "applying", "workspace": changeset.workspace, "upper": changeset.upper,
                  "token": token, "ops": ops}
        journal.write(record, syncs)
        try:
            converge(changeset.workspace, ops, "post", Content(changeset.upper, journal.pack), token, syncs,
                     check_existing=False)
        except (ConvergeError, OSError) as exc:
            recover_journal(journal)
            raise RingfenceError(f"apply failed, and the workspace was put back as it was: {exc}",
                                 hint="fix what the message names, then apply again") from None
        journal.write(dict(record, state="applied"), syncs)
        report = ApplyReport(run.id, tuple(op["path"] for op in ops), tuple(sorted(refused.items())),
                             conflicts if force else (), syncs.count)
        if remove:
            remove_run(run.directory)
        else:
            journal.remove()
        return report
    finally:
        if lock is not None:
            lock.release()
