"""Glob patterns and the scan that turns them into concrete paths at start.

Python 3.11's `fnmatch` has no `**`, and the matching we need (a `/`-aware
glob with `**` for any number of directories) is a few lines of regex, so it
is written here rather than pulled in as a dependency.
"""

from __future__ import annotations

import os
import stat

from ..errors import PolicyError

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
            end = segment.find("]", i + 2 if segment[i + 1:i + 2] in ("!", "]") else i + 1)
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


def compile_pattern(pattern: str):
    regex = _compiled.get(pattern)
    if regex is None:
        import re

        regex = _compiled[pattern] = re.compile(translate(pattern), re.DOTALL)
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
    __slots__ = ("path", "is_dir", "pattern")

    def __init__(self, path, is_dir, pattern):
        self.path = path
        self.is_dir = is_dir
        self.pattern = pattern


def scan(root: str, patterns: list[str], max_depth: int | None, skip=None) -> list[Match]:
    """Every entry under `root` whose relative path matches one of `patterns`.

    Fails closed: a directory that cannot be listed is an error, never a
    silently unscanned subtree. Directory symlinks are not followed; a
    matching symlink yields its canonical target, since that is what a mask
    must cover. `skip(path)` prunes subtrees the policy already denies.
    """
    compiled = [(p, compile_pattern(p), p.endswith("/")) for p in patterns]
    found: list[Match] = []
    if not os.path.isdir(root):
        return found
    stack = [(root, "", 1)]
    while stack:
        directory, relative_dir, depth = stack.pop()
        try:
            with os.scandir(directory) as entries:
                listing = list(entries)
        except OSError as exc:
            raise PolicyError(
                f"glob scan failed: cannot list {directory}: {exc.strerror}",
                hint=f"make it readable, deny it with a rule (\"{directory}\" = \"none\"), "
                     "or lower glob_scan_max_depth") from None
        for entry in listing:
            relative = relative_dir + entry.name
            try:
                is_link = entry.is_symlink()
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError as exc:
                raise PolicyError(f"glob scan failed at {entry.path}: {exc.strerror}") from None
            for pattern, regex, dir_only in compiled:
                if dir_only and not (is_dir or (is_link and os.path.isdir(entry.path))):
                    continue
                if regex.fullmatch(relative):
                    path = entry.path
                    target_is_dir = is_dir
                    if is_link:
                        path = os.path.realpath(entry.path)
                        target_is_dir = os.path.isdir(path)
                        if not os.path.exists(path):
                            break
                    found.append(Match(path, target_is_dir, pattern))
                    if len(found) > MAX_MATCHES:
                        raise PolicyError(
                            f"glob scan under {root} matched more than {MAX_MATCHES} paths",
                            hint="deny the directory that holds them instead of each file")
                    break
            if is_dir and not is_link and (max_depth is None or depth < max_depth):
                if skip is None or not skip(entry.path):
                    stack.append((entry.path, relative + "/", depth + 1))
    return found


def hard_link_count(path: str) -> int:
    try:
        info = os.lstat(path)
    except OSError:
        return 1
    return info.st_nlink if stat.S_ISREG(info.st_mode) else 1
