"""A changeset as a git-style unified diff that `git apply` accepts.

Written here rather than by `git diff --no-index`: git reads the user's
configuration (diff.external, textconv drivers and friends run programs),
and no library in the standard one writes git's extended headers or its
binary patches. The format follows git's own output (git 2.39):

- text files: unified hunks with three lines of context over byte lines,
  "\\ No newline at end of file" where a side ends without one;
- binary files (a NUL byte in the first 8000, as git decides): a
  `GIT binary patch` with a literal forward and reverse image, zlib-deflated
  and in git's base85 (the alphabet of RFC 1924, which `base64.b85encode`
  uses too; lines of at most 52 bytes, each led by its length as A-Z, a-z);
  `git apply` wants the full blob ids on the index line, so they are given;
- new and deleted files, mode changes (git keeps only 100644 and 100755),
  symlinks (mode 120000, the target as content), type changes (a delete
  and an add of the same path, as git shows them), renames (similarity 100%);
- paths quoted as git quotes them (core.quotePath: control characters,
  quotes, backslashes and bytes above 0x7f).

What git cannot carry is listed in `#` lines before the first patch (which
`git apply` skips): protected paths, empty folders, folder and other mode
bits, special files.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from difflib import SequenceMatcher

from .changeset import Change, Changeset, Node
from .tree import read_file

CONTEXT = 3
_NO_NEWLINE = b"\n\\ No newline at end of file\n"
_ZERO_ID = b"0" * 40
_ESCAPES = {7: b"\\a", 8: b"\\b", 9: b"\\t", 10: b"\\n", 11: b"\\v", 12: b"\\f", 13: b"\\r", 34: b'\\"', 92: b"\\\\"}


def quote_path(path: bytes) -> bytes:
    """A path as git writes it in a patch (quoted only where needed)."""
    if not any(byte < 0x20 or byte >= 0x7f or byte in (34, 92) for byte in path):
        return path
    out = bytearray(b'"')
    for byte in path:
        if byte in _ESCAPES:
            out += _ESCAPES[byte]
        elif byte < 0x20 or byte >= 0x7f:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    out += b'"'
    return bytes(out)


def _name(prefix: bytes, path: str) -> bytes:
    return quote_path(prefix + os.fsencode(path))


def _file_line(marker: bytes, prefix: bytes, path: str | None) -> bytes:
    if path is None:
        return marker + b" /dev/null\n"
    name = _name(prefix, path)
    # As git does: a name with a space ends with a tab, so it is read whole.
    return marker + b" " + name + (b"\t" if b" " in name else b"") + b"\n"


def git_mode(node: Node) -> bytes:
    if node.kind == "symlink":
        return b"120000"
    return b"100755" if node.mode & 0o100 else b"100644"


def blob_id(content: bytes) -> bytes:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest().encode()


def _lines(data: bytes) -> list[bytes]:
    # Split on LF only: git keeps a CR as part of its line.
    if not data:
        return []
    lines = data.split(b"\n")
    last = lines.pop()
    result = [line + b"\n" for line in lines]
    if last:
        result.append(last)
    return result


def _range(start: int, stop: int) -> bytes:
    begin, length = start + 1, stop - start
    if length == 1:
        return b"%d" % begin
    if not length:
        begin -= 1
    return b"%d,%d" % (begin, length)


def _emit(out: list[bytes], prefix: bytes, line: bytes):
    out.append(prefix + line if line.endswith(b"\n") else prefix + line + _NO_NEWLINE)


def text_hunks(old: bytes, new: bytes) -> list[bytes]:
    a, b = _lines(old), _lines(new)
    out: list[bytes] = []
    for group in SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(CONTEXT):
        first, last = group[0], group[-1]
        out.append(b"@@ -" + _range(first[1], last[2]) + b" +" + _range(first[3], last[4]) + b" @@\n")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                for line in a[i1:i2]:
                    _emit(out, b" ", line)
                continue
            for line in a[i1:i2]:
                _emit(out, b"-", line)
            for line in b[j1:j2]:
                _emit(out, b"+", line)
    return out


def _base85_lines(data: bytes) -> list[bytes]:
    packed = zlib.compress(data)
    out = []
    for start in range(0, len(packed), 52):
        chunk = packed[start:start + 52]
        size = len(chunk)
        out.append(bytes([ord("A") + size - 1 if size <= 26 else ord("a") + size - 27])
                   + base64.b85encode(chunk, pad=True) + b"\n")
    return out


def binary_patch(old: bytes, new: bytes) -> list[bytes]:
    """A `GIT binary patch` section: the new content, then the old (so that
    `git apply -R` works too), each as a literal."""
    out = [b"GIT binary patch\n", b"literal %d\n" % len(new)]
    out += _base85_lines(new)
    out += [b"\n", b"literal %d\n" % len(old)]
    out += _base85_lines(old)
    out.append(b"\n")
    return out


class _Sides:
    """Reads the two sides of a change: the workspace's (old) and the run's (new)."""

    def __init__(self, changeset: Changeset):
        self.workspace = changeset.workspace
        self.upper = changeset.upper

    def old(self, change: Change) -> bytes:
        return _content(change.before, os.path.join(self.workspace, change.source or change.path))

    def new(self, change: Change) -> bytes:
        return _content(change.after, os.path.join(self.upper, change.path))


def _content(node: Node, path: str) -> bytes:
    """A symlink's target (from its node: the link is not followed), or the file's bytes."""
    if node.kind == "symlink":
        assert node.target is not None, "a symlink's node holds its target"
        return os.fsencode(node.target)
    return read_file(path)


def _content_patch(out: list[bytes], old: bytes, new: bytes, binary: bool):
    out += binary_patch(old, new) if binary else text_hunks(old, new)


def _patch(out: list[bytes], path: str, old_node: Node | None, new_node: Node | None, old: bytes, new: bytes,
           *, source: str | None = None):
    """One `diff --git` section between two file or symlink nodes (either may be None)."""
    old_path = source or path
    out.append(b"diff --git " + _name(b"a/", old_path) + b" " + _name(b"b/", path) + b"\n")
    old_id, new_id = (blob_id(old) if old_node else _ZERO_ID), (blob_id(new) if new_node else _ZERO_ID)
    binary = bool((old_node and old_node.binary) or (new_node and new_node.binary))
    if old_node is None:
        assert new_node is not None, "one side at least"
        out.append(b"new file mode " + git_mode(new_node) + b"\n")
        out.append(b"index " + old_id + b".." + new_id + b"\n")
    elif new_node is None:
        out.append(b"deleted file mode " + git_mode(old_node) + b"\n")
        out.append(b"index " + old_id + b".." + new_id + b"\n")
    else:
        if source is not None:
            out += [b"similarity index 100%\n", b"rename from " + quote_path(os.fsencode(source)) + b"\n",
                    b"rename to " + quote_path(os.fsencode(path)) + b"\n"]
            if old == new and git_mode(old_node) == git_mode(new_node):
                return
        if git_mode(old_node) != git_mode(new_node):
            out += [b"old mode " + git_mode(old_node) + b"\n", b"new mode " + git_mode(new_node) + b"\n"]
            if old == new:
                return
            out.append(b"index " + old_id + b".." + new_id + b"\n")
        else:
            out.append(b"index " + old_id + b".." + new_id + b" " + git_mode(new_node) + b"\n")
    if old == new:
        return
    if binary:
        _content_patch(out, old, new, True)
        return
    out.append(_file_line(b"---", b"a/", old_path if old_node else None))
    out.append(_file_line(b"+++", b"b/", path if new_node else None))
    _content_patch(out, old, new, False)


_GIT_KINDS = ("file", "symlink")


def _notes(changeset: Changeset) -> list[str]:
    notes = []
    refused = changeset.refused
    if refused:
        tops = sorted({change.path.split("/")[0] for change in refused})
        notes.append(f"not applied (protected), {len(refused)} change(s) under: {', '.join(tops)}")
    for conflict in changeset.conflicts:
        notes.append(f"conflict: {conflict.path}: {conflict.reason}")
    for change in changeset.applicable:
        old, new = change.old, change.new
        if (old and old.kind == "other") or (new and new.kind == "other"):
            notes.append(f"not expressible in a patch (special file): {change.path}")
        elif new and new.kind == "dir" and change.kind in ("added", "type_changed"):
            notes.append(f"folder {change.path} (mode {new.mode:04o})")
        elif change.mode_changed and old and new and (new.kind == "dir" or git_mode(old) == git_mode(new)):
            notes.append(f"mode {old.mode:04o} -> {new.mode:04o}: {change.path}")
        elif change.mode_changed and new and new.mode & 0o777 not in (0o644, 0o755):
            notes.append(f"mode {new.mode:04o} (a patch carries 100644 or 100755): {change.path}")
        elif change.kind == "added" and new and new.kind == "file" and new.mode not in (0o644, 0o755):
            notes.append(f"mode {new.mode:04o} (a patch carries 100644 or 100755): {change.path}")
    return notes


def render_diff(changeset: Changeset) -> bytes:
    """The whole changeset (protected changes left out) as one patch."""
    sides = _Sides(changeset)
    out: list[bytes] = [b"# " + os.fsencode(note).replace(b"\n", b"\\n") + b"\n" for note in _notes(changeset)]
    deletions: list[tuple[str, Node | None, Node | None, Change]] = []
    additions: list[tuple[str, Node | None, Node | None, Change]] = []
    for change in changeset.applicable:
        old = change.old if change.old and change.old.kind in _GIT_KINDS else None
        new = change.new if change.new and change.new.kind in _GIT_KINDS else None
        if old is None and new is None:
            continue
        if old and new and change.kind != "renamed" and old.kind == new.kind and git_mode(old) == git_mode(new) \
                and not change.content_changed:
            continue   # a mode change a patch cannot carry (noted above)
        if change.kind == "renamed":
            additions.append((change.path, old, new, change))
        elif change.kind == "type_changed" and old and new:
            deletions.append((change.path, old, None, change))
            additions.append((change.path, None, new, change))
        else:
            (additions if new else deletions).append((change.path, old, new, change))
    # A type change is a delete and an add of one path, in git's order: the
    # delete first. Otherwise sections follow the paths' byte order.
    sections = sorted(deletions + additions, key=lambda item: (os.fsencode(item[0]), item[2] is not None))
    for path, old, new, change in sections:
        old_bytes = sides.old(change) if old else b""
        new_bytes = sides.new(change) if new else b""
        _patch(out, path, old, new, old_bytes, new_bytes, source=change.source if change.kind == "renamed" else None)
    return b"".join(out)
