"""The patch writer: git's quoting, hunks, binary literals, and acceptance by git."""

from __future__ import annotations

import base64
import os
import subprocess
import zlib

import pytest

from harness import current_user
from isolate_scene import as_git_sees, git_apply, snapshot, write_tree
from ringfence.isolate.changeset import read_changes
from ringfence.isolate.diff import binary_patch, blob_id, quote_path, render_diff, text_hunks


def decode_literal(lines: list[bytes]) -> bytes:
    """git's reading of one literal: each line's first letter says how many bytes it holds."""
    packed = b""
    for line in lines:
        size = line[0] - ord("A") + 1 if line[0] <= ord("Z") else line[0] - ord("a") + 27
        packed += base64.b85decode(line[1:].rstrip(b"\n"))[:size]
    return zlib.decompress(packed)


def test_paths_are_quoted_as_git_quotes_them():
    assert quote_path(b"a/plain name.txt") == b"a/plain name.txt"
    assert quote_path("a/\u00e9".encode()) == b'"a/\\303\\251"'
    assert quote_path(b'a/q"t\\n\tx\x01') == b'"a/q\\"t\\\\n\\tx\\001"'


def test_blob_ids_are_gits():
    assert blob_id(b"") == b"e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert blob_id(b"hello\n") == b"ce013625030ba8dba906f756967f9e9ca394464a"


@pytest.mark.parametrize("data", [b"", b"x", bytes(range(256)) * 40, os.urandom(5000)])
def test_binary_literals_decode_to_both_images(data):
    out = binary_patch(b"old image", data)
    text = b"".join(out)
    assert text.startswith(b"GIT binary patch\nliteral %d\n" % len(data))
    forward, reverse = text.split(b"\n\n")[:2]
    forward_lines = [line + b"\n" for line in forward.split(b"\n")[2:]]
    reverse_lines = [line + b"\n" for line in reverse.split(b"\n")[1:]]
    assert all(len(line) <= 67 for line in forward_lines)
    assert decode_literal(forward_lines) == data
    assert decode_literal(reverse_lines) == b"old image"


def test_hunks_mark_a_missing_final_newline_and_keep_carriage_returns():
    hunks = b"".join(text_hunks(b"a\r\nb\nc", b"a\r\nb\nC\n"))
    assert hunks == b"@@ -1,3 +1,3 @@\n a\r\n b\n-c\n\\ No newline at end of file\n+C\n"
    assert b"".join(text_hunks(b"", b"new\n")) == b"@@ -0,0 +1 @@\n+new\n"


def test_git_apply_takes_every_kind(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    write_tree(str(lower), {"text": b"1\n2\n3\n4\n5\n6\n7\n8\n", "bin": b"\0\1", "mode": (b"m\n", 0o644),
                            "link": ("symlink", "text"), "gone": b"bye\n", "sp ace": b"s\n", "f2l": b"f\n",
                            "old/x": b"moving\n", "q\"uote": b"q\n"})
    write_tree(str(upper), {"text": b"1\n2\nthree\n4\n5\n6\n7\neight\n", "bin": b"\0\2\3", "mode": (b"m\n", 0o755),
                            "link": ("symlink", "bin"), "new/added": b"n", "sp ace": b"S\n",
                            "f2l": ("symlink", "text"), "new/x": b"moving\n", "q\"uote": b"Q\n",
                            "empty-new": b""})
    for name in ("gone", "old"):
        os.mknod(os.path.join(upper, name), 0o020000, 0)
    changeset = read_changes(str(lower), str(upper), 1 << 62)
    patch = render_diff(changeset)
    target = tmp_path / "target"
    subprocess.run(["cp", "-a", str(lower), str(target)], check=True)
    done = git_apply(str(target), patch, current_user())
    assert done.returncode == 0, (done.stderr, patch.decode(errors="replace"))
    expected = tmp_path / "expected"
    write_tree(str(expected), {"text": b"1\n2\nthree\n4\n5\n6\n7\neight\n", "bin": b"\0\2\3", "mode": (b"m\n", 0o755),
                               "link": ("symlink", "bin"), "new/added": b"n", "sp ace": b"S\n",
                               "f2l": ("symlink", "text"), "new/x": b"moving\n", "q\"uote": b"Q\n", "empty-new": b""})
    assert as_git_sees(snapshot(str(target))) == as_git_sees(snapshot(str(expected)))
    assert b"rename from old/x\nrename to new/x\n" in patch
    assert b'diff --git "a/q\\"uote" "b/q\\"uote"' in patch
    assert b"--- a/sp ace\t\n" in patch
    # git apply -R undoes it, binary patches included (their reverse images are there)
    undone = subprocess.run(["git", "apply", "-R", "-"], cwd=target, input=patch, capture_output=True,
                            env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1"})
    assert undone.returncode == 0, undone.stderr
    assert as_git_sees(snapshot(str(target))) == as_git_sees(snapshot(str(lower)))


def test_what_a_patch_cannot_carry_is_noted_before_it(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    write_tree(str(lower), {"f": (b"f", 0o644), ".git/config": b"c"})
    write_tree(str(upper), {"f": (b"f", 0o600), "emptydir": ("dir",), ".git/config": b"evil"})
    os.mkfifo(os.path.join(upper, "fifo"))
    patch = render_diff(read_changes(str(lower), str(upper), 1 << 62))
    assert patch.splitlines() == [b"# not applied (protected), 1 change(s) under: .git", b"# folder emptydir (mode 0755)",
                                  b"# mode 0644 -> 0600: f", b"# not expressible in a patch (special file): fifo"]
