"""Glob patterns and the scan that turns them into concrete paths at start.

Python 3.11's `fnmatch` has no `**`, and the matching we need (a `/`-aware
glob with `**` for any number of directories) is a few lines of regex, so it
is written here rather than pulled in as a dependency.
"""

from __future__ import annotations

import os
import stat

from ..errors import PolicyError
from ..mountinfo import filesystem_type

GLOB_CHARS = "*?["
MAX_MATCHES = 20000

_compiled: dict = {}


def is_glob(text: str) -> bool:
    return any(c in text for c in GLOB_CHARS)


def _segment_regex(segment: str) -> str:
    import re

    out = []
    i = 0
    while i < len(segment):
        c = segment[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            # A `]` right after `[` or `[!` is a member of the class, not its end.
            first = i + 1
            if segment[first:first + 1] == "!":
                first += 1
            if segment[first:first + 1] == "]":
                first += 1
            end = segment.find("]", first)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = segment[i + 1:end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def translate(pattern: str) -> str:
    """A regex for a `/`-separated relative path. `**` spans directories."""
    directory_only = pattern.endswith("/")
    parts = [p for p in pattern.strip("/").split("/") if p]
    out = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
        else:
            out.append(_segment_regex(part) + ("" if last else "/"))
    return "".join(out) + ("(?=/?$)" if directory_only else "")


def compile_pattern(pattern: str, fold: bool = False):
    regex = _compiled.get((pattern, fold))
    if regex is None:
        import re

        flags = re.DOTALL | (re.IGNORECASE if fold else 0)
        regex = _compiled[(pattern, fold)] = re.compile(translate(pattern), flags)
    return regex


def static_prefix(path_pattern: str) -> str:
    """The directory part of an absolute glob before its first wildcard."""
    parts = path_pattern.split("/")
    fixed = []
    for part in parts:
        if is_glob(part):
            break
        fixed.append(part)
    prefix = "/".join(fixed)
    return prefix if prefix else "/"


class Match:
    """`path` is canonical; when the entry found was a symlink, `link` is its own name."""

    __slots__ = ("path", "is_dir", "pattern", "via_link", "link", "dangling")

    def __init__(self, path, is_dir, pattern, via_link=False, link=None, dangling=False):
        self.path = path
        self.is_dir = is_dir
        self.pattern = pattern
        self.via_link = via_link
        self.link = link
        self.dangling = dangling


def _name_only(pattern: str):
    """`**/NAME` patterns match on the entry name alone at any depth, which lets
    one combined regex test every entry once instead of once per pattern."""
    body = pattern[3:] if pattern.startswith("**/") else None
    if body is None or not body.rstrip("/") or "/" in body.rstrip("/") or "**" in body:
        return None
    return body.rstrip("/")


class _SimpleName:
    """A name glob whose only wildcard is `*`, matched with string methods:
    the default credential globs are all of this kind, and matching them
    without `re` keeps the regex engine out of most runs."""

    __slots__ = ("pattern", "parts", "dir_only")

    def __init__(self, pattern, name, dir_only):
        self.pattern = pattern
        self.parts = name.split("*")
        self.dir_only = dir_only

    def matches(self, name: str) -> bool:
        parts = self.parts
        if len(parts) == 1:
            return name == parts[0]
        head, tail = parts[0], parts[-1]
        if len(name) < len(head) + len(tail) or not name.startswith(head) or not name.endswith(tail):
            return False
        position, end = len(head), len(name) - len(tail)
        for middle in parts[1:-1]:
            position = name.find(middle, position, end)
            if position < 0:
                return False
            position += len(middle)
        return True


class _Matcher:
    """Matches entry names against patterns. With `fold`, the patterns match
    whatever the case: the caller passes lower-cased names, and `candidates`
    finds original names by their lower-cased spelling. Patterns that fold
    live in a second matcher, `folded`, consulted by the first."""

    def __init__(self, patterns, fold: bool = False, folded=()):
        self.fold = fold
        self.folded = _Matcher(sorted(folded), fold=True) if folded else None
        if fold:
            patterns = [(pattern, pattern.lower()) for pattern in patterns]
        else:
            patterns = [(pattern, pattern) for pattern in patterns]
        self.exact: dict = {}     # name -> [(pattern, dir_only)] for wildcard-free names
        self.simple = []          # _SimpleName
        self.by_name = []         # (pattern, compiled name regex, dir_only)
        self.by_path = []         # (pattern, compiled path regex, dir_only)
        for pattern, text in patterns:
            dir_only = text.endswith("/")
            name = _name_only(text)
            if name is not None and not any(c in name for c in "?["):
                if "*" in name:
                    self.simple.append(_SimpleName(pattern, name, dir_only))
                else:
                    self.exact.setdefault(name, []).append((pattern, dir_only))
            elif name is not None:
                import re

                self.by_name.append((pattern, re.compile(_segment_regex(name), re.DOTALL), dir_only))
            else:
                self.by_path.append((pattern, compile_pattern(text), dir_only))
        # One C-level test rules out most names before any pattern is tried.
        self.tails = tuple({p.parts[-1] for p in self.simple if p.parts[-1]})
        self.heads = tuple({p.parts[0] for p in self.simple if not p.parts[-1] and p.parts[0]})
        self.always = any(not p.parts[0] and not p.parts[-1] for p in self.simple)
        self.tail_needles = tuple(tail + "\0" for tail in self.tails)
        self.head_needles = tuple("\0" + head for head in self.heads)
        self.exact_needles = tuple(("\0" + name + "\0", name) for name in self.exact)
        # Simple patterns whose fixed ending holds a dot can only match names
        # with that final extension: a name is tried against those alone.
        self.by_extension: dict = {}
        self.any_extension = []
        for simple in self.simple:
            tail = simple.parts[-1]
            if "." in tail:
                self.by_extension.setdefault(tail[tail.rfind("."):], []).append(simple)
            else:
                self.any_extension.append(simple)

    def checks_every_name(self) -> bool:
        own = self.always or bool(self.by_name or self.by_path)
        return own or (self.folded is not None and self.folded.checks_every_name())

    def candidates(self, names: list[str]) -> list[str]:
        """The names that may match a simple or exact pattern, found without a
        Python-level step per name: names hold neither NUL nor "/", so in
        one NUL-joined string a fixed ending followed by NUL (or NUL and a
        fixed start, or NUL, a whole name, NUL) marks exactly the names that
        have it. On 100,000 names this is three times faster than testing
        each name."""
        joined = "\0" + "\0".join(names) + "\0"
        found = self._found_in(joined, joined)
        if self.folded is not None:
            # Lower-casing keeps every position only for ASCII; other names
            # are few, and tried one by one.
            if joined.isascii():
                found |= self.folded._found_in(joined.lower(), joined)
            else:
                found |= {name for name in names
                          if self.folded._found_in("\0" + name.lower() + "\0", "\0" + name + "\0")}
        return sorted(found)

    def _found_in(self, searched: str, joined: str) -> set:
        """Names of `joined` whose spelling in `searched` (the same string, or
        its lower-cased twin) holds a needle."""
        found = set()
        for needle, _name in self.exact_needles:
            position = searched.find(needle)
            while position >= 0:
                found.add(joined[position + 1:position + len(needle) - 1])
                position = searched.find(needle, position + len(needle) - 1)
        for needle in self.tail_needles:
            position = searched.find(needle, 1)
            while position >= 0:
                end = position + len(needle) - 1
                found.add(joined[searched.rfind("\0", 0, position) + 1:end])
                position = searched.find(needle, end + 1)
        for needle in self.head_needles:
            position = searched.find(needle)
            while position >= 0:
                end = searched.find("\0", position + 1)
                found.add(joined[position + 1:end])
                position = searched.find(needle, end)
        return found

    def quick_reject(self, name: str) -> bool:
        """True when `name` cannot match any pattern (the case of almost every
        name; a cold scan makes this test once per entry)."""
        if name in self.exact or (self.tails and name.endswith(self.tails)) \
                or (self.heads and name.startswith(self.heads)):
            return False
        folded = self.folded
        if folded is None:
            return True
        lower = name.lower()
        return not (lower in folded.exact or (folded.tails and lower.endswith(folded.tails))
                    or (folded.heads and lower.startswith(folded.heads)))

    def match(self, name: str, relative: str, is_dir: bool) -> list[str]:
        """Every pattern the entry matches: each may carry a different access,
        and the stricter must not be lost to the first."""
        found = []
        for pattern, dir_only in self.exact.get(name, ()):
            if is_dir or not dir_only:
                found.append(pattern)
        if self.simple and (self.always or name.endswith(self.tails) or name.startswith(self.heads)):
            dot = name.rfind(".")
            candidates = self.by_extension.get(name[dot:], ()) if dot >= 0 else ()
            for simple in (*candidates, *self.any_extension):
                if (is_dir or not simple.dir_only) and simple.matches(name):
                    found.append(simple.pattern)
        for pattern, regex, dir_only in self.by_name:
            if (is_dir or not dir_only) and regex.fullmatch(name):
                found.append(pattern)
        for pattern, regex, dir_only in self.by_path:
            if (is_dir or not dir_only) and regex.fullmatch(relative):
                found.append(pattern)
        if self.folded is not None:
            found += self.folded.match(name.lower(), relative.lower(), is_dir)
        return found


# Filesystems whose directory ctime changes whenever an entry is added,
# removed or renamed. Only there may an earlier scan be reused.
_CTIME_FILESYSTEMS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "f2fs", "zfs", "bcachefs", "overlay",
                      "jfs", "reiserfs", "nilfs2"}
# Filesystems where a directory's link count is 2 + its subdirectories, so a
# count of exactly 2 proves it has none (btrfs says 1; ext4 says 1 past 65,000).
_NLINK_FILESYSTEMS = {"ext2", "ext3", "ext4", "xfs", "tmpfs"}
# A directory changed this close to the previous scan may have changed again
# within the same timestamp tick; it is always listed afresh.
_RACY_NS = 2_000_000_000


class ScanCache:
    """What an earlier scan found, per directory, trusted while the directory's
    inode and ctime are unchanged. ctime cannot be set from user space (unlike
    mtime, which `touch -d` rewinds), so a sandboxed program cannot hide a new
    file from the next scan by restoring a timestamp."""

    def __init__(self, path: str | None, key):
        self.path = path
        self.key = key
        self.previous_start = 0
        self.old: dict = {}
        self.new: dict = {}
        self.dirty = False
        if path:
            try:
                import marshal

                with open(path, "rb") as handle:
                    stored = marshal.loads(handle.read())  # load() reads object by object: slow
                if stored.get("key") == key:
                    self.old = stored["dirs"]
                    self.previous_start = stored["start"]
            except (OSError, EOFError, ValueError, TypeError, KeyError):
                self.old = {}

    def save(self, start_ns: int):
        if not self.path or not (self.dirty or len(self.new) != len(self.old)):
            return
        import marshal

        from ..state import write_cache

        write_cache(self.path, marshal.dumps({"key": self.key, "start": start_ns, "dirs": self.new}))


def _join(directory: str, name: str) -> str:
    return directory + name if directory.endswith("/") else f"{directory}/{name}"


def _unreachable(directory: str) -> bool:
    """A directory this user can neither list nor enter, and does not own (so
    cannot chmod): nothing below it is reachable, with or without the
    sandbox, which runs as this user without capabilities. A directory that
    can be entered but not listed is not: its files open by name."""
    try:
        return not os.access(directory, os.X_OK) and os.stat(directory).st_uid != os.geteuid()
    except OSError:
        return False


def _out_of_reach_for_writes(directory: str) -> bool:
    """A directory this user can neither list nor write and does not own: a
    protection scan may pass it by, since the sandbox (this user, without
    capabilities) cannot create or change anything in it either. A secrets
    scan may not: its files may still open by name."""
    try:
        return not os.access(directory, os.W_OK) and os.stat(directory).st_uid != os.geteuid()
    except OSError:
        return False


def _list_directory(directory, relative_dir, matcher, leaf=False, protection_only=False):
    """Subdirectory names and (name, is_dir, is_link, pattern) matches of one
    directory. `leaf` says the directory is known to hold no subdirectory: its
    names alone are listed, and only the few candidates are stat'ed."""
    try:
        if leaf:
            names = os.listdir(directory)
            if os.lstat(directory).st_nlink != 2:
                leaf = False  # a subdirectory appeared meanwhile
                with os.scandir(directory) as entries:
                    listing = list(entries)
        else:
            with os.scandir(directory) as entries:
                listing = list(entries)
    except OSError as exc:
        if isinstance(exc, PermissionError) and (
                _unreachable(directory) or (protection_only and _out_of_reach_for_writes(directory))):
            return [], None  # nothing to cache: a change of this user's groups would not show in its ctime
        raise PolicyError(
            f"glob scan failed: cannot list {directory}: {exc.strerror}",
            hint=f"make it readable, deny it with a rule (\"{directory}\" = \"none\"), "
                 "or lower glob_scan_max_depth") from None
    subdirs, matches = [], []
    # Most entries match nothing: one cheap test on the name decides whether the
    # full matcher runs. This loop is the whole cost of a cold scan.
    exact, tails, heads = matcher.exact, matcher.tails, matcher.heads
    check_all = matcher.checks_every_name()
    folded = matcher.folded
    if leaf:
        for name in (names if check_all else matcher.candidates(names)):
            path = _join(directory, name)
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                continue  # removed since the listing: nothing left to mask
            except OSError as exc:
                raise PolicyError(f"glob scan failed at {path}: {exc.strerror}") from None
            is_dir, is_link = stat.S_ISDIR(mode), stat.S_ISLNK(mode)
            if is_dir:
                # Created since the directory was stat'ed: the fast path's
                # premise no longer holds, so list it the careful way.
                return _list_directory(directory, relative_dir, matcher, protection_only=protection_only)
            target_is_dir = is_link and os.path.isdir(path)
            for pattern in matcher.match(name, relative_dir + name, target_is_dir):
                matches.append((name, False, is_link, pattern))
        return subdirs, matches
    for entry in listing:
        name = entry.name
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
            if is_dir:
                subdirs.append(name)
            if not (check_all or name in exact or (tails and name.endswith(tails))
                    or (heads and name.startswith(heads))) and (folded is None or matcher.quick_reject(name)):
                continue
            is_link = entry.is_symlink()
        except OSError as exc:
            raise PolicyError(f"glob scan failed at {entry.path}: {exc.strerror}") from None
        target_is_dir = is_dir or (is_link and os.path.isdir(entry.path))
        for pattern in matcher.match(name, relative_dir + name, target_is_dir):
            matches.append((name, is_dir, is_link, pattern))
    return subdirs, matches


def scan(root: str, patterns: list[str], max_depth: int | None, skip=None, cache_dir: str | None = None,
         snapshot: dict | None = None, identities: dict | None = None, folded=(), protection_only: bool = False):
    """Every entry under `root` whose relative path matches one of `patterns`.

    Fails closed: a directory that cannot be listed is an error, never a
    silently unscanned subtree. Directory symlinks are not followed; a
    matching symlink yields its canonical target, since that is what a mask
    must cover. `skip(path)` prunes subtrees the policy already denies. If
    `snapshot` is given, it receives each scanned directory's identity and
    subdirectories, for `changed_since` after the run. `identities` receives
    (device, inode, ctime) of each directory that holds a match, as the scan
    saw it: masks are placed only if it is still the same directory, unchanged.
    The patterns in `folded` match names whatever their case. With
    `protection_only` (every pattern finds names to keep read-only), a folder
    this user can neither list nor write is passed by.
    """
    import time
    import zlib

    start_ns = time.time_ns()
    found: list[Match] = []
    counts: dict[str, int] = {}
    if not os.path.isdir(root):
        return found
    matcher = None  # built on the first directory that must be listed: a warm cache needs no regex
    cache_path = None
    folded = set(folded)
    key = (root, tuple(sorted(set(patterns) - folded)), tuple(sorted(folded)), max_depth, 3)
    filesystem = filesystem_type(root)
    # Only directories on the root's own filesystem take the leaf shortcut: a
    # filesystem mounted below may count links differently.
    leaf_device = os.lstat(root).st_dev if filesystem in _NLINK_FILESYSTEMS else None
    if cache_dir and filesystem in _CTIME_FILESYSTEMS:
        cache_path = os.path.join(cache_dir, f"scan-{zlib.crc32(repr(key).encode()):08x}.bin")
    cache = ScanCache(cache_path, key)
    trusted_before = cache.previous_start - _RACY_NS
    aged_before = start_ns - _RACY_NS
    stack = [(root, "", 1)]
    while stack:
        directory, relative_dir, depth = stack.pop()
        try:
            info = os.lstat(directory)
        except OSError as exc:
            raise PolicyError(f"glob scan failed: cannot stat {directory}: {exc.strerror}") from None
        record = cache.old.get(relative_dir)
        if record is not None and record[0] == info.st_ino and record[1] == info.st_ctime_ns \
                and info.st_ctime_ns < trusted_before:
            subdirs, matches = record[2], record[3]
        else:
            if matcher is None:
                matcher = _Matcher(sorted(set(patterns) - folded), folded=folded)
            leaf = info.st_nlink == 2 and info.st_dev == leaf_device
            subdirs, matches = _list_directory(directory, relative_dir, matcher, leaf, protection_only)
            if matches is None:  # unreachable for this user now: scanned again next time
                cache.dirty = True
                continue
            # A directory whose ctime moved but whose listing says the same (a
            # file created and removed again) changes nothing worth rewriting;
            # one listed again only because it had changed just before the
            # last scan is, once it is old for this scan: saved with this
            # scan's start, it is trusted next time (else every later run
            # would list it again, for good). One that keeps changing (a
            # workspace that gets placeholders) is not worth a write per run.
            if record is None or record[2] != subdirs or record[3] != matches \
                    or (record[0] == info.st_ino and record[1] == info.st_ctime_ns < aged_before):
                cache.dirty = True
        cache.new[relative_dir] = (info.st_ino, info.st_ctime_ns, subdirs, matches)
        if snapshot is not None:
            snapshot[directory] = (info.st_ino, info.st_ctime_ns, frozenset(subdirs))
        if identities is not None and matches:
            identities[directory] = (info.st_dev, info.st_ino, info.st_ctime_ns)
        for name, is_dir, is_link, pattern in matches:
            path = link = _join(directory, name)
            target_is_dir = is_dir
            dangling = False
            if is_link:
                path = os.path.realpath(path)
                dangling = not os.path.exists(path)
                target_is_dir = os.path.isdir(path)
            found.append(Match(path, target_is_dir, pattern, via_link=is_link, link=link if is_link else None,
                               dangling=dangling))
            # Per pattern: the protected names scanned alongside a glob are no
            # masks of its own, and must not push exactly MAX_MATCHES over.
            counts[pattern] = counts.get(pattern, 0) + 1
            if counts[pattern] > MAX_MATCHES:
                raise PolicyError(
                    f"the glob {pattern!r} matched more than {MAX_MATCHES} paths under {root}",
                    hint="deny the directory that holds them instead of each file")
        if max_depth is None or depth < max_depth:
            for name in subdirs:
                path = _join(directory, name)
                if skip is None or not skip(path):
                    stack.append((path, relative_dir + name + "/", depth + 1))
    cache.save(start_ns)
    return found


def hard_link_count(path: str) -> int:
    try:
        info = os.lstat(path)
    except OSError:
        return 1
    return info.st_nlink if stat.S_ISREG(info.st_mode) else 1
