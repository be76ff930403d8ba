"""After a run: protected names that appeared in a writable tree while it
lasted. Mounts can stop a name from being created only where one was placed
beforehand; anywhere else in a writable tree a new `.git`, `.ringfence` or
`.vscode` is found by comparing with the start-of-run snapshot, and named."""

from __future__ import annotations

import os

from ..policy.filesystem import TIER_PROTECTED


def entries_named(snapshot: dict, names) -> list[str]:
    """Paths whose name is one of `names` in directories that changed since
    `snapshot` was taken, including everything under directories that did not
    exist then.

    A directory's ctime moves whenever an entry is added, removed or renamed
    in it, so unchanged directories need no listing: the check costs one lstat
    per directory the scan saw.
    """
    names = {names} if isinstance(names, str) else set(names)
    found = []
    for directory, (inode, ctime, subdirs) in snapshot.items():
        try:
            info = os.lstat(directory)
        except OSError:
            continue
        if (info.st_ino, info.st_ctime_ns) == (inode, ctime):
            continue
        try:
            with os.scandir(directory) as entries:
                listing = list(entries)
        except OSError:
            continue
        for entry in listing:
            if entry.name in names:
                found.append(entry.path)
            elif entry.name not in subdirs and entry.is_dir(follow_symlinks=False):
                for below, dirs, files in os.walk(entry.path):
                    found += [os.path.join(below, n) for n in dirs + files if n in names]
                    dirs[:] = [d for d in dirs if d not in names]
    return found


def report_new_protected(policy, known: set, events) -> list[str]:
    """Protected names (`.git`, `.ringfence`, editor and agent folders, ...)
    that appeared in a writable tree while the run lasted.

    What they hold was written by the sandbox, and programs on the host act on
    it without review: git runs a new repository's config and hooks
    (core.fsmonitor on `git status`), ringfence itself loads a `.ringfence`
    configuration, editors and agents the tasks and hooks of their folders.
    Mounts cannot stop a name from being created anywhere in a writable tree,
    so the run ends with a warning naming them. `known` holds what was there
    before (and grows with what was reported).
    """
    names = {glob.pattern[3:] for glob in policy.filesystem.globs
             if glob.tier == TIER_PROTECTED and glob.pattern.startswith("**/")}
    if not names:
        return []
    found = []
    for snapshot in policy.filesystem.writable_snapshots():
        found += [path for path in entries_named(snapshot, names) if path not in known]
    if not found:
        return found
    known.update(found)
    repositories = sorted(path for path in found if os.path.basename(path) == ".git")
    others = sorted(path for path in found if os.path.basename(path) != ".git")
    if repositories:
        events.emit("git.created", paths=repositories,
                    warning="repositories created by the sandbox: their config and hooks run when git is "
                            "used there; review them before running git in those directories")
    if others:
        events.emit("protected.created", paths=others,
                    warning="configuration created by the sandbox that programs on the host act on: "
                            "ringfence loads .ringfence/config.toml, editors and agents their folders' "
                            "tasks, settings and hooks; review or delete them before working there")
    return found
