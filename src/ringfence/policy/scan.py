"""The glob scan of a policy: every glob spec matched against the files
present at start, once per (root, depth), and turned into rules, caps and
summaries. Matches through symlinks, hard links and content predicates are
decided here."""

from __future__ import annotations

import os

from ..errors import PolicyError
from ..paths import ancestors, is_within, read_regular_file
from .filesystem import NONE, READ, TIER_BUILTIN, TIER_PROTECTED, Cap, FilesystemPolicy, GlobRule, PathRule
from .globs import compile_pattern, scan
from .refusals import refuse


def scan_globs(glob_specs, provisional: FilesystemPolicy, cache_dir=None, home=None, snapshots=None,
                identities=None, refusals=None, kinds=None, denied_files=None):
    """Scan every glob once per (root, depth); return rules and GlobRule summaries.

    `kinds` gets "dir" or "file" for each path a rule denies, as this scan
    found it: the mount plan masks by kind, and with tens of thousands of
    masks an lstat of each is a tenth of a start. (A path that changes kind
    in between fails its mount, and the run with it.) `denied_files` gets
    (path, label, root) of each file denied, whose link counts the caller
    must check (see linkcheck): without the list, they are checked here."""
    if kinds is None:
        kinds = {}
    checked_here = denied_files is None
    if denied_files is None:
        denied_files = []
    groups: dict = {}
    for spec in glob_specs:
        groups.setdefault((spec.root, spec.max_depth), []).append(spec)

    reopened_above = set()
    for path, rule in provisional.index.items():
        if rule.access != NONE:
            reopened_above.update(ancestors(os.path.dirname(path)))

    decide = provisional.decider()

    def denied_without_exceptions(path):
        if path in reopened_above:
            return False
        decision = decide(path)
        return decision.access == NONE and decision.rule is not None

    rules: list[PathRule] = []
    caps: list[Cap] = []
    summaries: list[GlobRule] = []
    for (root, max_depth), entries in groups.items():
        patterns = sorted({entry.pattern for entry in entries})
        folded = {entry.pattern for entry in entries if entry.fold}
        # A glob that grants access may re-open something inside a denied
        # directory, so only groups that only deny (or protect) may skip denied subtrees.
        only_denies = all(entry.access == NONE or entry.tier == TIER_PROTECTED for entry in entries)
        # Pruning only matters where something under the root is denied already.
        denies_below = any(rule.access == NONE and is_within(path, root) for path, rule in provisional.index.items())
        snapshot = None
        if snapshots is not None and max_depth is None and any(e.tier == TIER_PROTECTED for e in entries):
            snapshot = snapshots.setdefault(root, {})
        matches = scan(root, patterns, max_depth,
                       skip=denied_without_exceptions if only_denies and denies_below else None,
                       cache_dir=cache_dir, snapshot=snapshot, identities=identities, folded=folded,
                       protection_only=all(entry.tier == TIER_PROTECTED for entry in entries))
        by_pattern: dict = {}
        for match in matches:
            by_pattern.setdefault(match.pattern, []).append(match)
        for entry in entries:
            pattern, access, origin, label, tier = entry.pattern, entry.access, entry.origin, entry.label, entry.tier
            rule_kind = "credentials" if tier == TIER_BUILTIN else "glob"
            hits = by_pattern.get(pattern, [])
            if entry.excludes and hits:
                compiled = [compile_pattern(e, fold=entry.fold) for e in entry.excludes]
                hits = [m for m in hits
                        if not any(c.fullmatch(os.path.relpath(m.path, root)) for c in compiled)]
            if entry.holds and hits:
                hits = [m for m in hits if m.is_dir or _holds_any(m.path, entry.holds)]
            for match in hits:
                if tier == TIER_PROTECTED and match.via_link:
                    # A mount would land on the target; the sandbox could
                    # replace the link itself with a folder of its own.
                    refuse(refusals, PolicyError(
                        f"{match.link} is a symlink (to {match.path}) inside a writable folder: the sandbox "
                        "could replace it and escape the protection of its target",
                        hint="replace the symlink with the real file or folder, or make its folder read-only"))
                    continue
                if match.dangling:
                    continue  # nothing there to mask
                if match.via_link and not is_within(match.path, root) and not (home and is_within(match.path, home)):
                    if access != NONE:
                        continue  # a glob that grants reaches no further than its root
                    if match.is_dir:
                        # Masking a folder outside (x.pem -> /usr/lib/python3) could
                        # break the system view; leaving it would leak what the name denies.
                        refuse(refusals, PolicyError(
                            f"{match.link} is denied by {label} and links to the folder {match.path} outside "
                            "the workspace: denying the name must deny what it reaches, and ringfence will not "
                            "hide a folder outside on a link's say-so",
                            hint=f"remove or rename the link, deny {match.path} with a rule of its own, or allow "
                                 f"the name with a rule for {match.path}"))
                        continue
                    # A denied name denies what it reaches: the file the link leads to.
                if tier == TIER_PROTECTED:
                    caps.append(Cap(match.path, READ, PathRule(match.path, READ, origin, label, kind="protected",
                                                               tier=TIER_PROTECTED, spelled=match.path)))
                    continue
                path = match.path
                if access == NONE:
                    if match.is_dir:
                        kinds[path] = "dir"
                    else:
                        kinds[path] = "file"
                        denied_files.append((path, label, root))
                rules.append(PathRule(path, access, origin, label, rule_kind, tier, path))
            summaries.append(GlobRule(root, pattern, access, origin, label, tier, max_depth,
                                      tuple(m.path for m in hits), tuple(entry.excludes)))
    if checked_here:
        from .linkcheck import LinkCheck

        for refusal in LinkCheck(denied_files).refusals():
            refuse(refusals, refusal)
    return rules, summaries, caps


def _holds_any(path: str, words) -> bool:
    """Whether the file (its first 4 MiB) holds one of `words`, whatever the
    case. What cannot be read counts as holding: a file the scan cannot judge
    stays denied."""
    content = read_regular_file(path, 1 << 22)
    if content is None:
        return True
    lower = content.lower()
    return any(word.lower().encode() in lower for word in words)
