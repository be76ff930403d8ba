"""Reading an upper layer: each form the kernel (or a tool) leaves there.

Upper layers are built by hand here, in the forms observed from a real
overlay (the integration tests use real ones): whiteouts as character
devices 0/0, opaque folders by xattr, xattr whiteouts, copy-ups.
"""

from __future__ import annotations

import os

import pytest

from isolate_scene import write_tree
from ringfence.isolate.changeset import Changeset, changed_since, read_changes
from ringfence.isolate.protect import Protection


@pytest.fixture
def layers(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    return str(lower), str(upper)


def whiteout(path: str):
    os.mknod(path, 0o020000, 0)   # S_IFCHR, device 0/0: allowed unprivileged since Linux 5.8


def kinds(changeset: Changeset) -> dict:
    return {change.path: (change.kind, change.source) for change in changeset.changes}


STAMP = 1 << 62   # after every ctime: no conflicts from timing in these tests


def test_whiteouts_delete_files_and_whole_trees(layers):
    lower, upper = layers
    write_tree(lower, {"a": b"a", "d/x": b"x", "d/e/y": b"y", "kept": b"k"})
    whiteout(os.path.join(upper, "a"))
    whiteout(os.path.join(upper, "d"))
    whiteout(os.path.join(upper, "never-existed"))
    changes = kinds(read_changes(lower, upper, STAMP))
    assert changes == {"a": ("deleted", None), "d": ("deleted", None), "d/x": ("deleted", None),
                       "d/e": ("deleted", None), "d/e/y": ("deleted", None)}


@pytest.mark.parametrize("namespace", ["user", "trusted"])
def test_opaque_folder_hides_every_lower_entry_it_does_not_hold(layers, namespace):
    if namespace == "trusted" and os.getuid() != 0:
        pytest.skip("trusted.* xattrs need CAP_SYS_ADMIN")
    lower, upper = layers
    write_tree(lower, {"d/old": b"o", "d/same": b"s", "d/sub/z": b"z"})
    write_tree(upper, {"d/same": b"s", "d/new": b"n"})
    os.setxattr(os.path.join(upper, "d"), f"{namespace}.overlay.opaque", b"y")
    changes = kinds(read_changes(lower, upper, STAMP))
    assert changes == {"d/new": ("added", None), "d/old": ("deleted", None), "d/sub": ("deleted", None),
                       "d/sub/z": ("deleted", None)}


def test_xattr_whiteouts_in_a_folder_marked_x(layers):
    lower, upper = layers
    write_tree(lower, {"d/gone": b"g", "d/stays": b"s"})
    write_tree(upper, {"d/gone": b""})
    os.setxattr(os.path.join(upper, "d"), "user.overlay.opaque", b"x")
    os.setxattr(os.path.join(upper, "d", "gone"), "user.overlay.whiteout", b"")
    assert kinds(read_changes(lower, upper, STAMP)) == {"d/gone": ("deleted", None)}


def test_copy_ups_that_changed_nothing_are_dropped(layers):
    lower, upper = layers
    write_tree(lower, {"same": (b"data", 0o644), "d/f": b"f", "link": ("symlink", "same")})
    write_tree(upper, {"same": (b"data", 0o644), "d/f": b"f", "link": ("symlink", "same")})
    assert read_changes(lower, upper, STAMP).changes == ()


def test_modes_symlinks_binaries_and_type_changes(layers):
    lower, upper = layers
    write_tree(lower, {"mode": (b"m", 0o644), "link": ("symlink", "a"), "bin": b"\0old", "f2d": b"file",
                       "d2f/x": b"x", "f2l": b"f"})
    write_tree(upper, {"mode": (b"m", 0o755), "link": ("symlink", "b"), "bin": b"\0new", "f2d/inside": b"i",
                       "d2f": b"now a file", "f2l": ("symlink", "mode")})
    whiteout(os.path.join(upper, "gone-anyway"))
    changeset = read_changes(lower, upper, STAMP)
    by_path = {change.path: change for change in changeset.changes}
    assert by_path["mode"].kind == "modified" and by_path["mode"].mode_changed and not by_path["mode"].content_changed
    assert by_path["link"].new.target == "b"
    assert by_path["bin"].new.binary and by_path["bin"].old.binary
    assert by_path["f2d"].kind == "type_changed" and by_path["f2d"].new.kind == "dir"
    assert by_path["f2d/inside"].kind == "added"
    assert by_path["d2f"].kind == "type_changed" and by_path["d2f/x"].kind == "deleted"
    assert by_path["f2l"].kind == "type_changed" and by_path["f2l"].new.kind == "symlink"


def test_a_copied_folder_and_a_whiteout_are_one_rename(layers):
    lower, upper = layers
    write_tree(lower, {"pkg/a.py": b"a\n", "pkg/sub/b.py": b"b\n", "file.txt": b"moved file\n", "empty": b""})
    write_tree(upper, {"lib/a.py": b"a\n", "lib/sub/b.py": b"b\n", "renamed.txt": b"moved file\n", "other": b""})
    for name in ("pkg", "file.txt", "empty"):
        whiteout(os.path.join(upper, name))
    changes = kinds(read_changes(lower, upper, STAMP))
    assert changes == {"lib": ("renamed", "pkg"), "lib/a.py": ("renamed", "pkg/a.py"), "lib/sub": ("renamed", "pkg/sub"),
                       "lib/sub/b.py": ("renamed", "pkg/sub/b.py"), "renamed.txt": ("renamed", "file.txt"),
                       # empty files are never paired, as git does not pair them
                       "empty": ("deleted", None), "other": ("added", None)}


def test_a_moved_folder_with_an_edit_is_a_delete_and_an_add(layers):
    lower, upper = layers
    write_tree(lower, {"pkg/a.py": b"a\n", "pkg/b.py": b"b\n"})
    write_tree(upper, {"lib/a.py": b"a\n", "lib/b.py": b"B\n"})
    whiteout(os.path.join(upper, "pkg"))
    changes = kinds(read_changes(lower, upper, STAMP))
    assert changes["lib/a.py"] == ("renamed", "pkg/a.py")   # the unchanged file still pairs
    assert changes["lib"] == ("added", None) and changes["pkg/b.py"] == ("deleted", None)


def test_protected_paths_are_marked(layers):
    lower, upper = layers
    write_tree(lower, {".git/config": b"c"})
    write_tree(upper, {".git/config": b"changed", ".vscode/tasks.json": b"{}", "sub/.git/HEAD": b"x", "ok.txt": b"o",
                       ".GIT/config": b"case"})
    changeset = read_changes(lower, upper, STAMP)
    protected = {change.path for change in changeset.refused}
    assert protected == {".git/config", ".vscode", ".vscode/tasks.json", "sub/.git", "sub/.git/HEAD", ".GIT",
                         ".GIT/config"}
    custom = read_changes(lower, upper, STAMP, protection=Protection(names=(), paths=["ok.txt"]))
    assert {change.path for change in custom.refused} >= {"ok.txt", "sub/.git", ".git/config"}


def test_changes_after_the_start_stamp_are_conflicts(layers):
    lower, upper = layers
    write_tree(lower, {"old": b"o", "edited": b"e"})
    write_tree(upper, {"old": b"O", "edited": b"E"})
    first, last = sorted(os.lstat(os.path.join(lower, name)).st_ctime_ns for name in ("old", "edited"))
    changeset = read_changes(lower, upper, first - 1)
    assert {conflict.path for conflict in changeset.conflicts} == {"old", "edited"}
    assert read_changes(lower, upper, last).conflicts == ()


def test_whole_second_ctimes_are_compared_by_the_second():
    class Info:
        st_ctime_ns = 1_000 * 1_000_000_000

    assert changed_since(Info, 1_000 * 1_000_000_000 + 500)   # same second: counted as changed
    assert not changed_since(Info, 1_001 * 1_000_000_000 + 1)


def test_json_round_trip(layers):
    lower, upper = layers
    write_tree(lower, {"a": b"a", "\udcff-odd-name": b"x", "d/y": b"y"})
    write_tree(upper, {"a": b"b", "new": ("symlink", "a"), "e/y": b"y"})
    whiteout(os.path.join(upper, "\udcff-odd-name"))
    whiteout(os.path.join(upper, "d"))
    changeset = read_changes(lower, upper, STAMP, run_id="r1")
    import json

    assert Changeset.from_json(json.loads(json.dumps(changeset.to_json()))) == changeset


def test_cost_follows_the_change_not_the_workspace(layers, monkeypatch):
    """Only upper folders (and lower folders an opaque one or a deletion
    covers) are listed: the rest of the workspace is never read."""
    lower, upper = layers
    write_tree(lower, {f"big/{index}/f": b"x" for index in range(50)})
    write_tree(lower, {"small/f": b"x"})
    write_tree(upper, {"small/f": b"y"})
    listed = []
    real_scandir, real_listdir = os.scandir, os.listdir

    def scandir(path="."):
        listed.append(os.fspath(path))
        return real_scandir(path)

    def listdir(path="."):
        listed.append(os.fspath(path))
        return real_listdir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "listdir", listdir)
    assert kinds(read_changes(lower, upper, STAMP)) == {"small/f": ("modified", None)}
    assert all(path.startswith(upper) for path in listed), listed


def test_the_listing_names_each_change(layers):
    lower, upper = layers
    write_tree(lower, {"m": (b"m", 0o644), "pkg/a": b"a\n", "gone": b"g", "t": b"t"})
    write_tree(upper, {"m": (b"m", 0o755), "lib/a": b"a\n", "new": b"\0bin", "t/inside": b"i", ".envrc": b"x"})
    for name in ("pkg", "gone"):
        whiteout(os.path.join(upper, name))
    lines = read_changes(lower, upper, STAMP).lines()
    assert lines == ["A .envrc  (protected: not applied)", "D gone", "R pkg -> lib/", "R pkg/a -> lib/a",
                     "M m  (mode 0644 -> 0755)", "A new  (binary)", "T t/  (file -> dir)", "A t/inside"]


def test_nothing_is_read_through_a_workspace_symlink_the_run_replaced(layers, tmp_path):
    """A run that turns a symlink to a private folder into a folder of its
    own, with a file of the secret's name in it, must not get the secret's
    content into the changeset or the diff as the 'old' side."""
    from ringfence.isolate.diff import render_diff

    lower, upper = layers
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "id_rsa").write_bytes(b"PRIVATE KEY\n")
    os.symlink(str(secrets), os.path.join(lower, "link"))
    write_tree(upper, {"link/id_rsa": b"planted\n"})
    changeset = read_changes(lower, upper, STAMP)
    assert kinds(changeset) == {"link": ("type_changed", None), "link/id_rsa": ("added", None)}
    assert b"PRIVATE KEY" not in render_diff(changeset)
