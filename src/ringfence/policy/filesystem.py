"""Filesystem decisions: which access a path gets, and which rule says so.

The most specific rule (the longest path at or above the query) decides. At
one path, a rule of a higher tier replaces a lower one (a user rule replaces
a built-in credential rule for the same path); within a tier the stricter
wins, in Codex's order none > write > read. Caps then lower whole subtrees:
protected metadata can never be more than readable, ringfence's own state can
never be seen. Rules are stored under canonical paths, so a rule written
through a symlink and a query through its target meet.
"""

from __future__ import annotations

import os
import time

from .._record import Record
from ..paths import canonical, is_within

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

    from ..config.vocabulary import Access, EntryKind, RuleKind

# `Final` (a string at run time, like every annotation here) lets checkers
# read each constant as its literal, so that it fits an `Access`.
NONE: Final = "none"
READ: Final = "read"
WRITE: Final = "write"
RANK = {NONE: 0, READ: 1, WRITE: 2}
# Codex's tie-break at equal specificity: none beats write beats read.
TIE_ORDER = {NONE: 2, WRITE: 1, READ: 0}

TIER_BUILTIN = 0     # built-in credential rules and private temporary space
TIER_PROFILE = 1     # the selected profile, sandbox_workspace_write, globs from config
TIER_PROTECTED = 2   # protected metadata and ringfence's own files


class PathRule(Record):
    """One concrete rule: an absolute canonical path and its access.

    `label` is how the rule reads in configuration, `origin` where it was
    written, `kind` what produced it, `spelled` the path before symlinks were
    resolved, `token` the special path it was written under (":project_roots").
    """

    __slots__ = ("path", "access", "origin", "label", "kind", "tier", "spelled", "token")
    _defaults = {"kind": "path", "tier": TIER_PROFILE, "spelled": None, "token": None}
    path: str
    access: Access
    origin: str
    label: str
    kind: RuleKind
    tier: int
    spelled: str | None
    token: str | None

    @property
    def private(self) -> bool:
        return self.kind == "private"

    def describe(self) -> str:
        where = "built-in" if self.origin == "built-in" else self.origin
        return f"{self.label} ({where})"


class ProtectedPath(Record):
    """A protected entry: at most readable, and not creatable when missing.
    `kind` is "dir" or "file" (what the name holds when it exists), `label`
    why it is protected."""

    __slots__ = ("path", "kind", "exists", "label")
    path: str
    kind: EntryKind
    exists: bool
    label: str


class Cap(Record):
    """A subtree whose access can never exceed `access`, whatever rule matches."""

    __slots__ = ("path", "access", "rule")
    path: str
    access: Access
    rule: PathRule


class Decision(Record):
    __slots__ = ("path", "access", "rule", "private", "note")
    _defaults = {"private": False, "note": None}
    path: str
    access: Access
    rule: PathRule | None
    private: bool
    note: str | None


class GlobSpec(Record):
    """A glob to scan for at start: `pattern` relative to `root`; what its
    matches get (`access`, with `label` and `origin` for explaining it); files
    whose path relative to the root matches one of `excludes` are left out.
    `fold`: names match whatever their case (built-in credential globs: a
    `.ENV` or `key.PEM` is the same secret). `holds`: a match counts only if
    its content holds one of these strings (an .npmrc is a secret only with a
    token in it)."""

    __slots__ = ("root", "pattern", "access", "origin", "label", "tier", "max_depth", "excludes", "fold", "holds")
    _defaults = {"max_depth": None, "excludes": (), "fold": False, "holds": ()}
    root: str
    pattern: str
    access: Access
    origin: str
    label: str
    tier: int
    max_depth: int | None
    excludes: tuple[str, ...]
    fold: bool
    holds: tuple[str, ...]


class GlobRule(Record):
    """A glob as configured, with what it matched when the run started."""

    __slots__ = ("root", "pattern", "access", "origin", "label", "tier", "max_depth", "matches", "excludes")
    _defaults = {"excludes": ()}
    root: str
    pattern: str
    access: Access
    origin: str
    label: str
    tier: int
    max_depth: int | None
    matches: tuple[str, ...]
    excludes: tuple[str, ...]

    def matches_path(self, path: str) -> bool:
        from .globs import compile_pattern

        if not is_within(path, self.root) or path == self.root:
            return False
        relative = os.path.relpath(path, self.root)
        return compile_pattern(self.pattern).fullmatch(relative) is not None \
            and not any(compile_pattern(exclude).fullmatch(relative) for exclude in self.excludes)


def _wins(candidate: PathRule, current: PathRule) -> bool:
    if candidate.tier != current.tier:
        return candidate.tier > current.tier
    return TIE_ORDER[candidate.access] > TIE_ORDER[current.access]


# What FilesystemPolicy.kinds holds for a path found not to exist.
MISSING = "missing"
KINDS_FRESH_FOR_S = 1.0


class FilesystemPolicy:
    """The resolved filesystem rules of one run. Immutable after construction."""

    __slots__ = ("rules", "index", "caps", "cap_index", "globs", "protected", "snapshots", "scanned_directories",
                 "kinds", "_built", "_writable_snapshots", "_frozen")
    rules: tuple[PathRule, ...]
    index: dict[str, PathRule]
    caps: tuple[Cap, ...]
    cap_index: dict[str, Cap]
    globs: tuple[GlobRule, ...]
    protected: tuple[ProtectedPath, ...]
    snapshots: dict[str, dict[str, tuple]]
    scanned_directories: dict[str, tuple[int, int, int]]
    kinds: dict[str, str]
    _built: float
    _writable_snapshots: list[dict[str, tuple]] | None
    _frozen: bool

    def __init__(self, rules, caps=(), globs=(), protected=(), snapshots=None, scanned_directories=None, kinds=None):
        index: dict[str, PathRule] = {}
        for rule in rules:
            current = index.get(rule.path)
            if current is None or _wins(rule, current):
                index[rule.path] = rule
        object.__setattr__(self, "rules", tuple(rules))
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "caps", tuple(caps))
        cap_index: dict[str, Cap] = {}
        for cap in caps:
            current = cap_index.get(cap.path)
            if current is None or RANK[cap.access] < RANK[current.access]:
                cap_index[cap.path] = cap
        object.__setattr__(self, "cap_index", cap_index)
        object.__setattr__(self, "globs", tuple(globs))
        object.__setattr__(self, "protected", tuple(protected))
        # root -> {directory: (inode, ctime, subdirectories)} as the start-of-run scan saw them
        object.__setattr__(self, "snapshots", dict(snapshots or {}))
        # directory -> (device, inode, ctime) of each folder where a glob matched, as the scan saw it
        object.__setattr__(self, "scanned_directories", dict(scanned_directories or {}))
        # denied path -> "dir", "file" or MISSING, as the build found it (see scan_globs),
        # and when: see fresh_kinds
        object.__setattr__(self, "kinds", dict(kinds or {}))
        object.__setattr__(self, "_built", time.monotonic())
        object.__setattr__(self, "_writable_snapshots", None)
        object.__setattr__(self, "_frozen", True)

    def fresh_kinds(self) -> dict[str, str]:
        """`kinds`, while they are as fresh as the mount plan can take them
        without looking again: a policy planned within a second of its build
        (every CLI run) is masked by what the build saw; one kept longer (a
        Sandbox's first run, much later) looks at the disk anew."""
        return self.kinds if time.monotonic() - self._built < KINDS_FRESH_FOR_S else {}

    def __setattr__(self, name, value):
        raise AttributeError("FilesystemPolicy is immutable")

    def access(self, path: str) -> Decision:
        """The access `path` gets, with the rule that decided it."""
        path = canonical(path)
        return self.decide_canonical(path)

    def decide_canonical(self, path: str) -> Decision:
        """As `access`, for a path that is already canonical (no I/O at all)."""
        index, cap_index = self.index, self.cap_index
        rule = cap = None
        current = path
        while True:
            if rule is None:
                rule = index.get(current)
            if cap_index:
                found = cap_index.get(current)
                if found is not None and (cap is None or RANK[found.access] < RANK[cap.access]):
                    cap = found
            if current == "/":
                break
            current = current.rpartition("/")[0] or "/"
        return _decision(path, rule, cap)

    def decider(self):
        """`decide_canonical` for many paths of one tree: each directory's
        nearest rule and strictest cap are worked out once and shared by
        everything below it (thousands of masks share a few hundred parents)."""
        index, cap_index = self.index, self.cap_index
        memo = {"/": (index.get("/"), cap_index.get("/"))}

        def rule_and_cap(path):
            found = memo.get(path)
            if found is not None:
                return found
            chain = []
            current = path
            while found is None:
                chain.append(current)
                current = current.rpartition("/")[0] or "/"
                found = memo.get(current)
            rule, cap = found
            for current in reversed(chain):
                rule = index.get(current, rule)
                own = cap_index.get(current)
                # The nearer cap wins a tie, as in decide_canonical.
                if own is not None and (cap is None or RANK[own.access] <= RANK[cap.access]):
                    cap = own
                memo[current] = (rule, cap)
            return rule, cap

        decisions: dict = {}

        def decide(path: str) -> Decision:
            decision = decisions.get(path)
            if decision is None:
                rule, cap = rule_and_cap(path)
                decision = decisions[path] = _decision(path, rule, cap)
            return decision

        return decide

    def writable_snapshots(self) -> list[dict[str, tuple]]:
        """The start-of-run snapshots, less the directories the sandbox sees
        read-only, hidden or private: nothing it does can appear in those on
        the host. (In a repository that is most of them: `.git/objects`.)"""
        kept = self._writable_snapshots
        if kept is None:
            decide = self.decider()
            kept = []
            for snapshot in self.snapshots.values():
                kept.append({directory: seen for directory, seen in snapshot.items()
                             if decide(directory).access == WRITE and not decide(directory).private})
            object.__setattr__(self, "_writable_snapshots", kept)
        return kept

    def writable_roots(self) -> list[str]:
        """Paths where a rule grants writes to the host (private space excluded)."""
        return sorted(path for path, rule in self.index.items() if rule.access == WRITE and not rule.private)

    def winning_rules(self):
        """The rule that decides at each rule path, shallowest first."""
        return [self.index[path] for path in sorted(self.index, key=lambda p: (p.count("/"), p))]

    def glob_note(self, path: str) -> str | None:
        path = canonical(path)
        for glob in self.globs:
            if glob.matches_path(path) and path not in self.index:
                return (f"glob {glob.label} matches this path, but globs cover only the files "
                        "present when the run starts; this file was not there")
        return None


def _decision(path, rule, cap) -> Decision:
    if rule is None:
        decision = Decision(path, NONE, None, False, "no rule covers this path")
    else:
        decision = Decision(path, rule.access, rule, rule.kind == "private", None)
    if cap is not None and RANK[cap.access] < RANK[decision.access]:
        decision = Decision(path, cap.access, cap.rule, False, None)
    return decision
