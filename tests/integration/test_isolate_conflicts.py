"""Apply refuses, naming the paths, when the workspace is no longer what the
run started from; protected names are shown and never written.

Every refusal has its control: the same run without the user's edit applies.
Verdicts are read from the workspace on the host.
"""

from __future__ import annotations

import os

from isolate_scene import base, overlay_ready, own_tree, run_as, snapshot, start_run, write_tree  # noqa: F401

INITIAL = {"a.txt": (b"a\n", 0o644), "b.txt": (b"b\n", 0o644), "c.txt": (b"c\n", 0o644), "keep.txt": (b"k\n", 0o644),
           ".git/config": (b"[core]\n\tbare = false\n", 0o644), "sub/.git/config": (b"[core]\n", 0o644),
           "sub/code.py": (b"x = 1\n", 0o644)}
EDITS = [["append", "a.txt", b"run\n".hex()], ["append", "b.txt", b"run\n".hex()],
         ["write", "added.txt", b"added by the run\n".hex(), 0o644], ["write", "c.txt", b"C\n".hex(), 0o644]]


def _run(base: str, user, edits: list, *, during=None) -> tuple[str, str, dict]:
    """An isolated run making `edits`; `during(workspace)` edits the real
    workspace while it lasts (before capture). Returns (workspace, state, merged view)."""
    workspace = os.path.join(base, "ws")
    os.makedirs(workspace)
    write_tree(workspace, INITIAL)
    own_tree(user, base)
    state, run_id, world = start_run(base, user, workspace)
    merged = world.run_edits(edits)
    if during:
        during(workspace)
    result = run_as(user, "capture_and_render", state, run_id)
    return workspace, state, dict(merged, capture=result)


def _write(path: str, data: bytes):
    with open(path, "wb") as handle:
        handle.write(data)


def test_control_without_user_edits_applies(base, user):
    workspace, state, merged = _run(base, user, EDITS)
    assert merged["capture"]["conflicts"] == []
    report = run_as(user, "apply_last", state)
    assert sorted(report["applied"]) == ["a.txt", "added.txt", "b.txt", "c.txt"]
    with open(os.path.join(workspace, "a.txt"), "rb") as handle:
        assert handle.read() == b"a\nrun\n"


def test_file_edited_during_the_run_is_a_conflict(base, user):
    workspace, state, merged = _run(base, user, EDITS,
                                    during=lambda ws: _write(os.path.join(ws, "a.txt"), b"the user's edit\n"))
    assert ["a.txt", "changed in the workspace while the run lasted"] in merged["capture"]["conflicts"]
    before = snapshot(workspace)
    result = run_as(user, "apply_last", state)
    assert [path for path, _ in result["conflicts"]] == ["a.txt"]
    assert "a.txt" in result["message"]
    assert snapshot(workspace) == before   # nothing applied, not even the files without conflict
    forced = run_as(user, "apply_last", state, True)
    assert "a.txt" in forced["applied"]
    with open(os.path.join(workspace, "a.txt"), "rb") as handle:
        assert handle.read() == b"a\nrun\n"


def test_file_edited_after_capture_is_a_conflict(base, user):
    workspace, state, _merged = _run(base, user, EDITS)
    _write(os.path.join(workspace, "b.txt"), b"edited after capture\n")
    _write(os.path.join(workspace, "added.txt"), b"the user made this one too\n")
    before = snapshot(workspace)
    result = run_as(user, "apply_last", state)
    assert dict(result["conflicts"]) == {
        "added.txt": "created in the workspace since the run started",
        "b.txt": "changed in the workspace since the run's changes were captured"}
    assert snapshot(workspace) == before


def test_same_bytes_rewritten_after_capture_is_no_conflict(base, user):
    workspace, state, _merged = _run(base, user, EDITS)
    path = os.path.join(workspace, "c.txt")
    os.unlink(path)
    _write(path, b"c\n")   # a new inode with the content the run started from
    assert "c.txt" in run_as(user, "apply_last", state)["applied"]


def test_file_deleted_during_the_run_is_a_conflict(base, user):
    workspace, state, merged = _run(base, user, EDITS, during=lambda ws: os.unlink(os.path.join(ws, "b.txt")))
    assert ["b.txt", "deleted in the workspace while the run lasted"] in merged["capture"]["conflicts"]
    result = run_as(user, "apply_last", state)
    assert "b.txt" in dict(result["conflicts"])
    assert not os.path.exists(os.path.join(workspace, "b.txt"))


def test_protected_changes_are_shown_and_never_written(base, user):
    hook = b"#!/bin/sh\ntouch /tmp/ringfence-hook-ran\n"
    edits = EDITS + [["write", ".git/config", b"[core]\n\tfsmonitor = touch /tmp/pwned\n".hex(), 0o644],
                     ["write", ".git/hooks/post-checkout", hook.hex(), 0o755],
                     ["write", ".vscode/tasks.json", b"{}".hex(), 0o644], ["write", ".envrc", b"evil\n".hex(), 0o644],
                     ["write", "lib/.git/config", b"[core]\n\thooksPath = x\n".hex(), 0o644],
                     ["delete", "sub"]]
    workspace, state, merged = _run(base, user, edits)
    run_dir = os.path.join(state, "runs", os.listdir(os.path.join(state, "runs"))[0])
    # Control: the run's layer really holds what a careless copy would bring back.
    assert os.path.exists(os.path.join(run_dir, "layers", "upper", ".git", "hooks", "post-checkout"))
    listed = {path: letter for letter, path, _ in merged["capture"]["changes"]}
    for path in (".git/config", ".git/hooks/post-checkout", ".vscode/tasks.json", ".envrc", "lib/.git/config",
                 "sub/.git/config"):
        assert path in listed, listed
    with open(merged["capture"]["patch"], "rb") as handle:
        patch = handle.read()
    assert b"# not applied (protected)" in patch and b"diff --git a/.git" not in patch
    with open(os.path.join(workspace, ".git", "config"), "rb") as handle:
        config_before = handle.read()
    report = run_as(user, "apply_last", state)
    refused = dict(report["refused"])
    assert {".git/config", ".git/hooks/post-checkout", ".vscode/tasks.json", ".envrc", "lib/.git/config",
            "sub/.git/config", "sub"} <= set(refused)
    assert "sub/.git" in refused["sub"]
    assert "a.txt" in report["applied"] and "sub/code.py" in report["applied"]
    with open(os.path.join(workspace, ".git", "config"), "rb") as handle:
        assert handle.read() == config_before
    for path in (".git/hooks", ".vscode", ".envrc", "lib/.git"):
        assert not os.path.exists(os.path.join(workspace, path)), path
    assert os.path.exists(os.path.join(workspace, "sub", ".git", "config"))
    assert not os.path.exists(os.path.join(workspace, "sub", "code.py"))
