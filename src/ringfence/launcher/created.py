"""After a run: protected names that appeared in a writable tree while it
lasted. Mounts can stop a name from being created only where one was placed
beforehand; anywhere else in a writable tree a new `.git`, `.ringfence` or
`.vscode` is found by comparing with the start-of-run snapshot, and named."""

from __future__ import annotations

import os

from ..policy.filesystem import TIER_PROTECTED


# A sandbox can leave millions of folders behind; the check after the run
# must not keep the user waiting on them, and says where it stopped.
MAX_CHECKED_ENTRIES = 200_000


class _Search:
    """One post-run search: what it found, what it could not look into."""

    def __init__(self, names):
        self.names = names
        self.budget = MAX_CHECKED_ENTRIES
        self.found: list[str] = []
        self.unlisted: list[str] = []

    def listing(self, directory: str):
        """The entries of `directory`, opened without following a link: the
        sandbox may have swapped a folder for a link to one outside (whose
        repositories are the user's, not the run's). None when unlistable:
        then the protected names are looked up one by one, which needs only
        search permission (a folder left at mode 0311 hides nothing)."""
        if self.budget <= 0:
            return None
        try:
            descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            if not os.path.islink(directory):
                self._probe(directory)
            return None
        try:
            with os.scandir(descriptor) as entries:
                listing = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
        except OSError:
            self._probe(directory)
            return None
        finally:
            os.close(descriptor)
        self.budget -= len(listing)
        return listing

    def _probe(self, directory: str):
        self.unlisted.append(directory)
        self.found += [os.path.join(directory, name) for name in self.names
                       if os.path.lexists(os.path.join(directory, name))]

    def below(self, directory: str):
        """Everything under a folder that did not exist at the start."""
        stack = [directory]
        while stack:
            current = stack.pop()
            listing = self.listing(current)
            for name, is_dir in listing or ():
                path = os.path.join(current, name)
                if name in self.names:
                    self.found.append(path)
                elif is_dir:
                    stack.append(path)


def entries_named(snapshot: dict, names) -> tuple[list[str], list[str], bool]:
    """Paths whose name is one of `names` in directories that changed since
    `snapshot` was taken, including everything under directories that did not
    exist then; the folders that could not be listed; and whether the search
    covered everything.

    A directory's ctime moves whenever an entry is added, removed or renamed
    in it, so unchanged directories need no listing: the check costs one lstat
    per directory the scan saw. Snapshot paths are canonical, so one reached
    through a link now was swapped for one (or lies below one) by the run.
    """
    search = _Search({names} if isinstance(names, str) else set(names))
    for directory, (inode, ctime, subdirs) in snapshot.items():
        try:
            info = os.lstat(directory)
        except OSError:
            continue
        if (info.st_ino, info.st_ctime_ns) == (inode, ctime):
            continue
        if os.path.realpath(directory) != directory:
            continue
        for name, is_dir in search.listing(directory) or ():
            path = os.path.join(directory, name)
            if name in search.names:
                search.found.append(path)
            elif name not in subdirs and is_dir:
                search.below(path)
    return search.found, search.unlisted, search.budget > 0


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
    found, unlisted, complete = [], [], True
    for snapshot in policy.filesystem.writable_snapshots():
        paths, folders, covered = entries_named(snapshot, names)
        found += [path for path in paths if path not in known]
        unlisted += folders
        complete = complete and covered
    if unlisted or not complete:
        events.emit("protected.unchecked", paths=sorted(unlisted)[:20], complete=complete,
                    warning="folders the run left that could not be listed (only the protected names at "
                            "their top were looked up)" + ("" if complete else "; the check stopped after "
                            f"{MAX_CHECKED_ENTRIES} entries") + ": a protected name deeper inside them may "
                            "be the sandbox's")
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
