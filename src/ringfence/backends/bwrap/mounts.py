"""The mount plan: the filesystem view of a sandbox as a list of steps.

Each step is data (`MountStep`), derived from the filesystem policy alone,
so the shape of a sandbox can be unit-tested without running it. A step is
emitted only where the access changes from what the parent already provides:
a `read` rule under a read-only root costs no mount.
"""

from __future__ import annotations

import os
import stat

from ..._record import Record
from ...errors import PolicyError
from ...policy.filesystem import MISSING, NONE, READ, WRITE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final, Literal

    from ...config.vocabulary import EntryKind

    MountKind = Literal["ro-bind", "bind", "mask-file", "mask-dir", "tmpfs", "symlink", "remount-ro", "dev", "proc",
                        "placeholder", "overlay"]

RO_BIND: Final = "ro-bind"
BIND: Final = "bind"
MASK_FILE: Final = "mask-file"
MASK_DIR: Final = "mask-dir"
TMPFS: Final = "tmpfs"
SYMLINK: Final = "symlink"
REMOUNT_RO: Final = "remount-ro"
DEV: Final = "dev"
PROC: Final = "proc"
PLACEHOLDER: Final = "placeholder"
OVERLAY: Final = "overlay"

# bwrap builds these itself; rules inside them cannot be honoured by mounts.
KERNEL_TREES = ("/proc", "/dev")
ANCHOR_REASON = "holds protected paths: a mount point cannot be renamed away"


class MountStep(Record):
    """One step. `source` is a host path (binds, an overlay's lower layer) or
    a link target (symlinks); `mode` the permission bits of a tmpfs, `size`
    its bound in bytes; `layers` an overlay's (upper, work) directories on the
    host, or None for writes kept in the sandbox's memory; `reason` the rule
    behind the step."""

    __slots__ = ("kind", "dest", "source", "mode", "reason", "size", "layers")
    _defaults = {"source": None, "mode": None, "reason": None, "size": None, "layers": None}
    kind: MountKind
    dest: str
    source: str | None
    mode: int | None
    reason: str | None
    size: int | None
    layers: tuple[str, ...] | None


# How the bound on a run's temporary space is shared out. A tmpfs is charged
# to no process's rlimit, and each defaults to half of RAM: five of them let a
# run pin two and a half times the machine's memory. Together they stay
# within the bound; /dev itself becomes read-only.
TEMPORARY_SHARES = {"/tmp": 0.55, "/dev/shm": 0.25, "/var/tmp": 0.15, "/run": 0.05}
MIN_TMPFS = 1 << 20


def tmpfs_size(path: str, temporary_space: int | None) -> int | None:
    share = TEMPORARY_SHARES.get(path)
    if share is None or temporary_space is None:
        return None
    return max(MIN_TMPFS, int(temporary_space * share) // 4096 * 4096)


class MountPlan(Record):
    """Steps in order; the placeholders the launcher must create first; and
    every protected name a run must hold a lock on while it lasts (another
    run's placeholder may stand there)."""

    __slots__ = ("steps", "placeholders", "tmpfs_root", "shared")
    steps: tuple[MountStep, ...]
    placeholders: tuple[tuple[str, EntryKind], ...]
    tmpfs_root: bool
    shared: tuple[str, ...]

    def count(self, kind: MountKind) -> int:
        return sum(1 for step in self.steps if step.kind == kind)


def _kind_on_disk(path: str):
    """"dir", "file" (anything else that exists) or None. Paths here are
    canonical, so one lstat answers."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    return "dir" if stat.S_ISDIR(mode) else "file"


def build_mount_plan(filesystem, temporary_space: int | None = None, seen=None) -> MountPlan:
    """The mounts for `filesystem`. `seen` maps denied paths to the kind the
    policy build found ("dir" or "file"), taken for it without an lstat of
    their own; a path it does not name, or names as missing (a file may
    have appeared since), is looked at anew."""
    decide = filesystem.decider()
    kinds = seen or {}
    root = decide("/")
    steps: list[MountStep] = []
    tmpfs_root = root.access == NONE
    if root.access == READ:
        steps.append(MountStep(RO_BIND, "/", "/", reason=_reason(root)))
    elif root.access == WRITE:
        steps.append(MountStep(BIND, "/", "/", reason=_reason(root)))
    steps.append(MountStep(DEV, "/dev"))
    # bwrap's /dev is one tmpfs the sandbox can write, /dev/shm a folder in it:
    # shared memory gets a bounded tmpfs of its own and the rest goes read-only.
    steps.append(MountStep(TMPFS, "/dev/shm", mode=0o1777, size=tmpfs_size("/dev/shm", temporary_space),
                           reason="private shared memory, bounded (built-in)"))
    steps.append(MountStep(PROC, "/proc"))
    # bwrap covers /proc/sys only when it looks writable, and a directory's mode
    # makes it look read-only; root inside could still write the sysctls of its
    # own namespaces. A read-only bind closes it (namespaced sysctls still show
    # the reader's own namespace).
    steps.append(MountStep(RO_BIND, "/proc/sys", "/proc/sys", reason="/proc/sys read-only (built-in)"))

    protected = {entry.path: (entry.kind, entry.exists) for entry in filesystem.protected}
    for cap in filesystem.caps:
        protected.setdefault(cap.path, ("dir", os.path.lexists(cap.path)))
    anchors = _anchors(filesystem, protected, decide)
    interesting = set(filesystem.index) | set(protected) | anchors
    interesting.discard("/")
    # One pass with one tuple of prefixes: with tens of thousands of masks, a
    # pass per tree building its prefix per path is a hundredth of a start.
    below_kernel_trees = tuple(tree + "/" for tree in KERNEL_TREES)
    in_kernel_trees = [p for p in interesting if p.startswith(below_kernel_trees) or p in KERNEL_TREES]
    for tree in KERNEL_TREES:
        inside = [p for p in in_kernel_trees if p == tree or p.startswith(tree + "/")]
        for path in inside:
            rule = filesystem.index.get(path)
            if rule is not None and rule.access != filesystem.decide_canonical(tree).access:
                raise PolicyError(f"{rule.describe()} is inside {tree}, which the sandbox builds itself",
                                  hint=f"remove the rule; {tree} is always provided fresh")
            interesting.discard(path)

    index, capped = filesystem.index, filesystem.cap_index

    def denied_by_own_rule(path, rule):
        # A path with its own `none` rule is denied whatever lies above it (a
        # cap only ever lowers access): thousands of glob masks need no
        # decision of their own, only their directory's.
        return rule is not None and rule.access == NONE and rule.kind != "private" \
            and path not in capped and path not in protected and path not in anchors

    # Files the build saw, each denied by its own rule: leaves, so their masks
    # can follow every other step (which covers their folders) without the
    # ordering by depth, and with a decision per folder only. With tens of
    # thousands of masks, the general loop below is a sixth of a start.
    masked_files = [path for path, rule in index.items()
                    if kinds.get(path) == "file" and path in interesting and denied_by_own_rule(path, rule)]
    interesting.difference_update(masked_files)
    ordered = sorted(interesting, key=lambda p: (p.count("/"), p))  # depth(p), inlined: "/" is not among them
    # Directories with something visible below them need a traversable mask.
    reopened_above = set()

    for path in ordered:
        if not denied_by_own_rule(path, index.get(path)) and decide(path).access != NONE:
            parent = os.path.dirname(path)
            while parent not in reopened_above and parent != "/":
                reopened_above.add(parent)
                parent = os.path.dirname(parent)
    placeholders = []
    planned: set = set()
    late: list[MountStep] = []
    for path in ordered:
        rule = index.get(path)
        on_disk = kinds.get(path)
        if on_disk is None or on_disk == MISSING:
            on_disk = _kind_on_disk(path)
        if denied_by_own_rule(path, rule):
            if on_disk is None:
                continue  # most credential rules name files this machine does not have
            parent = decide(path.rpartition("/")[0] or "/")
            if parent.access == NONE and not parent.private:
                continue  # hidden with its directory already
            if on_disk == "dir":
                reopened = path in reopened_above
                steps.append(MountStep(MASK_DIR, path, mode=0o111 if reopened else 0o000, reason=rule.describe()))
                late.append(MountStep(REMOUNT_RO, path, reason=rule.describe()))
            else:
                steps.append(MountStep(MASK_FILE, path, reason=rule.describe()))
            continue
        here = decide(path)
        parent = decide(os.path.dirname(path))
        if path in anchors:
            steps.append(MountStep(BIND, path, path, reason=ANCHOR_REASON))
            continue
        if (here.access, here.private) == (parent.access, parent.private) and path not in protected:
            continue
        reason = _reason(here)
        if here.private:
            if on_disk == "dir" or parent.access == NONE or parent.private:
                steps.append(MountStep(TMPFS, path, mode=0o1777, size=tmpfs_size(path, temporary_space),
                                       reason=reason))
            continue
        if here.access == NONE and on_disk is not None:
            if on_disk == "dir":
                reopened = path in reopened_above
                steps.append(MountStep(MASK_DIR, path, mode=0o111 if reopened else 0o000, reason=reason))
                late.append(MountStep(REMOUNT_RO, path, reason=reason))
            else:
                steps.append(MountStep(MASK_FILE, path, reason=reason))
            continue
        # Missing, and protected or denied: a protected name must not be
        # creatable even when a rule of the user's also denies it.
        if on_disk is None:
            if path in protected and parent.access == WRITE and not parent.private:
                missing = _missing_directories_above(path)
                existing = os.path.dirname(missing[0] if missing else path)
                if _sandbox_could_create_in(existing):
                    # Directories missing above it are made too, each a mount
                    # point, so that none can be renamed away with the
                    # placeholder inside and the name made anew.
                    for directory in missing:
                        if directory not in planned:
                            planned.add(directory)
                            placeholders.append((directory, "dir"))
                            steps.append(MountStep(BIND, directory, directory, reason=ANCHOR_REASON))
                    kind = protected[path][0]
                    placeholders.append((path, kind))
                    steps.append(MountStep(PLACEHOLDER, path, source=kind, reason=reason))
            continue
        if here.access == READ:
            steps.append(MountStep(RO_BIND, path, path, reason=reason))
        else:
            steps.append(MountStep(BIND, path, path, reason=reason))

    described: dict[tuple[str, str], str] = {}  # one text per rule label: a glob's masks share it
    for path in sorted(masked_files):  # the masks of one folder side by side, as the helper takes them
        parent = decide(path.rpartition("/")[0] or "/")
        if parent.access == NONE and not parent.private:
            continue  # hidden with its directory already
        rule = index[path]
        text = described.get((rule.label, rule.origin))
        if text is None:
            text = described[rule.label, rule.origin] = rule.describe()
        steps.append(MountStep(MASK_FILE, path, reason=text))
    late.append(MountStep(REMOUNT_RO, "/dev", reason="/dev read-only: devices and /dev/shm stay usable (built-in)"))
    if tmpfs_root:
        for rule in filesystem.rules:
            spelled = rule.spelled
            if not spelled or spelled == rule.path or not os.path.islink(spelled):
                continue
            if decide(os.path.dirname(spelled)).access == NONE and decide(rule.path).access != NONE:
                steps.append(MountStep(SYMLINK, spelled, os.readlink(spelled), reason=rule.describe()))
        late.append(MountStep(REMOUNT_RO, "/", reason="nothing outside the rules is writable"))
    made = {path for path, _kind in placeholders}
    shared = tuple(entry.path for entry in filesystem.protected if entry.path not in made)
    return MountPlan(tuple(steps + late), tuple(placeholders), tmpfs_root, shared)


def _sandbox_could_create_in(directory: str) -> bool:
    """Whether the sandbox could create an entry in `directory` (a writable
    root): it runs as this user with these groups and no capabilities, so
    only if this user can, or owns the directory (an owner may make it
    writable again). Where it cannot, a missing protected name needs no
    placeholder, and none could be made."""
    if not os.path.isdir(directory):
        return False
    if os.access(directory, os.W_OK | os.X_OK):
        return True
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return False
        return os.stat(directory).st_uid == os.geteuid()
    except OSError:
        return True  # unknown: plan the placeholder, and let making it report the problem


def _missing_directories_above(path: str) -> list[str]:
    """The directories above `path` that do not exist, outermost first. A file
    or link where one of them should be is refused: the sandbox could delete
    it and make the directory, and nothing could be mounted there first."""
    missing = []
    current = os.path.dirname(path)
    while current != "/" and not os.path.isdir(current):
        if os.path.lexists(current):
            raise PolicyError(f"{current} is not a directory, but the protected path {path} lies below it",
                              hint=f"remove or rename {current}, or change the setting that names {path}")
        missing.append(current)
        current = os.path.dirname(current)
    return missing[::-1]


def _anchors(filesystem, protected, decide) -> set:
    """Writable directories between a protected path and the mount of its
    writable root. A protected entry is a read-only mount; renaming a plain
    directory above it would carry the mount away and leave the name free to be
    made anew, so each such directory becomes a mount point of its own (rename
    and rmdir of a mount point fail with EBUSY)."""
    anchors = set()
    for path in protected:
        current = os.path.dirname(path)
        while current != "/" and current not in anchors:
            rule = filesystem.index.get(current)
            here = decide(current)
            # Decided, not ruled: a writable root capped read-only (ringfence's
            # own installation) must not be reopened by a writable anchor.
            if here.access != WRITE or here.private:
                break
            if rule is not None and rule.access == WRITE:
                # A writable root. It is a mount point of its own only where its
                # parent is not writable; one nested in another root could be
                # renamed away, protections and all, and so could every
                # writable folder above it: all of them are anchored, up to the
                # outermost root (whose parent is not writable, and stops the walk).
                anchors.add(current)
                current = os.path.dirname(current)
                continue
            if os.path.isdir(current):
                anchors.add(current)
            elif os.path.lexists(current):
                break
            # (a missing directory is made with the placeholder, and anchored then)
            current = os.path.dirname(current)
    return anchors


def _reason(decision) -> str:
    if decision.rule is None:
        return decision.note or "no rule"
    return decision.rule.describe()
