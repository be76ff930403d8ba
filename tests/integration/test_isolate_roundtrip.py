"""Every change kind round-trips through a real overlay.

A workspace tree and a list of edits come from hypothesis; the edits are
made in the merged view of a real overlay (mounted by ringfence's own mount
script in `unshare -Urm`, as the scene's user); then `git apply` of the
rendered diff on a copy, ringfence's own apply on the workspace, and the
overlay's merged view must agree (git's view: no folders, only the exec bit).
"""

from __future__ import annotations

import os
import shutil

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isolate_scene import (as_git_sees, git_apply, new_base, overlay_ready, own_tree, run_as,  # noqa: F401
                           snapshot, start_run, write_tree)

NAMES = ["a", "b.txt", "c d", "\u00e9", "x.bin", "e\\f", 'q"t']
LINES = [b"alpha\n", b"beta\n", b"gamma\n", b"delta\r\n", b"\tindent\n", b"same\n", b"same\n"]
FILE_MODES = [0o644, 0o755, 0o600]
# A run may leave what its owner cannot read or list; capture must read them all the same.
CHMOD_MODES = FILE_MODES + [0o200]
DIR_MODES = [0o755, 0o700, 0o300]


def contents():
    text = st.lists(st.sampled_from(LINES), max_size=12).map(b"".join)
    no_newline = st.tuples(text, st.sampled_from([b"tail", b"x"])).map(b"".join)
    binary = st.binary(min_size=1, max_size=300).map(lambda data: b"\0" + data)
    return st.one_of(text, no_newline, binary)


@st.composite
def scenarios(draw):
    """(initial tree, edits): edits are valid for the tree as it evolves."""
    model: dict[str, str] = {}   # path -> "file" | "dir" | "symlink"
    initial: dict = {}

    def folders():
        return [""] + sorted(path for path, kind in model.items() if kind == "dir")

    def child(parent):
        name = draw(st.sampled_from(NAMES))
        return f"{parent}/{name}" if parent else name

    for _ in range(draw(st.integers(1, 8))):
        parent = draw(st.sampled_from(folders()))
        if parent.count("/") >= 1:
            parent = parent.rsplit("/", 1)[0]
        path = child(parent)
        if path in model:
            continue
        kind = draw(st.sampled_from(["file", "file", "dir", "symlink"]))
        model[path] = kind
        if kind == "file":
            initial[path] = (draw(contents()), draw(st.sampled_from(FILE_MODES)))
        elif kind == "dir":
            initial[path] = ("dir",)
            inner = child(path)
            model[inner] = "file"
            initial[inner] = (draw(contents()), 0o644)
        else:
            initial[path] = ("symlink", draw(st.sampled_from(["a", "../a", "missing", "b.txt"])))

    def remove(path):
        for other in [p for p in model if p == path or p.startswith(path + "/")]:
            del model[other]

    edits = []
    for _ in range(draw(st.integers(1, 8))):
        files = sorted(p for p, k in model.items() if k == "file")
        dirs = sorted(p for p, k in model.items() if k == "dir")
        existing = sorted(model)
        choices = ["write", "mkdir", "symlink"]
        if files:
            choices += ["append", "touch", "chmod"]
        if existing:
            choices += ["delete", "replace"]
        if dirs:
            choices += ["move", "recreate", "chmod_dir"]
        op = draw(st.sampled_from(choices))
        if op == "write":
            path = child(draw(st.sampled_from(folders())))
            remove(path)
            edits.append(["write", path, draw(contents()).hex(), draw(st.sampled_from(FILE_MODES))])
            model[path] = "file"
        elif op == "mkdir":
            path = child(draw(st.sampled_from(folders())))
            if path in model:
                continue
            edits.append(["mkdir", path])
            model[path] = "dir"
        elif op == "symlink":
            path = child(draw(st.sampled_from(folders())))
            remove(path)
            edits.append(["symlink", path, draw(st.sampled_from(["a", "c d/x", "nowhere"]))])
            model[path] = "symlink"
        elif op == "append":
            edits.append(["append", draw(st.sampled_from(files)), draw(contents()).hex()])
        elif op == "touch":
            edits.append(["touch", draw(st.sampled_from(files))])
        elif op == "chmod":
            edits.append(["chmod", draw(st.sampled_from(files)), draw(st.sampled_from(CHMOD_MODES))])
        elif op == "chmod_dir":
            edits.append(["chmod", draw(st.sampled_from(dirs)), draw(st.sampled_from(DIR_MODES))])
        elif op == "delete":
            path = draw(st.sampled_from(existing))
            edits.append(["delete", path])
            remove(path)
        elif op == "replace":   # a type change: whatever is there becomes a file, a folder or a link
            path = draw(st.sampled_from(existing))
            kind = draw(st.sampled_from(["file", "dir", "symlink"]))
            remove(path)
            if kind == "file":
                edits.append(["write", path, draw(contents()).hex(), 0o644])
            elif kind == "dir":
                edits.append(["delete", path])
                edits.append(["mkdir", path])
            else:
                edits.append(["symlink", path, "a"])
            model[path] = kind
        elif op == "move":
            source = draw(st.sampled_from(dirs))
            target = draw(st.sampled_from(["moved", "renamed dir"]))
            if target in model or target.startswith(source + "/"):
                continue
            edits.append(["move", source, target])
            for path in [p for p in model if p == source or p.startswith(source + "/")]:
                model[target + path[len(source):]] = model.pop(path)
        elif op == "recreate":
            path = draw(st.sampled_from(dirs))
            remove(path)
            edits.append(["recreate", path, "fresh", draw(contents()).hex()])
            model[path] = "dir"
            model[f"{path}/fresh"] = "file"
    return initial, edits


def _round_trip(base: str, user, initial: dict, edits: list):
    world_ws = os.path.join(base, "ws")
    os.makedirs(world_ws)
    write_tree(world_ws, initial)
    own_tree(user, base)
    state, run_id, world = start_run(base, user, world_ws)
    merged = world.run_edits(edits)
    result = run_as(user, "capture_and_render", state, run_id)
    with open(result["patch"], "rb") as handle:
        patch = handle.read()
    assert result["conflicts"] == [], result
    copy = world.copy_workspace("git-copy")
    applied = git_apply(copy, patch, user)
    assert applied.returncode == 0, (applied.stderr.decode(errors="replace"), patch.decode(errors="replace"))
    assert as_git_sees(snapshot(copy)) == as_git_sees(merged), patch.decode(errors="replace")
    report = run_as(user, "apply_last", state)
    assert report["refused"] == []
    assert snapshot(world_ws) == merged, (edits, result["changes"])
    # The run is gone with its layers once applied.
    assert os.listdir(os.path.join(state, "runs")) == []


@settings(max_examples=int(os.environ.get("RINGFENCE_ISOLATE_EXAMPLES", "30")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(scenario=scenarios())
def test_every_change_kind_round_trips(user, overlay_ready, scenario):
    initial, edits = scenario
    base = new_base(user, "isolate-")
    try:
        _round_trip(base, user, initial, edits)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_fixed_scenario_with_every_kind(user, overlay_ready):
    """One scenario that holds each kind at least once, so no run of the
    property test can pass without them."""
    initial = {"a.txt": (b"one\ntwo\nthree\n", 0o644), "bin.dat": (b"\0\1\2" * 50, 0o644), "d/x": (b"x\n", 0o644),
               "d/sub/y": (b"y", 0o644), "link": ("symlink", "a.txt"), "mode.sh": (b"#!/bin/sh\n", 0o644),
               "t/f": (b"f\n", 0o644), "r/keep": (b"k\n", 0o644), "sp ace.txt": (b"s\n", 0o644),
               "\u00e9.txt": (b"e\n", 0o644), "u": ("symlink", "x"), "file": (b"moves\n", 0o644),
               "locked/f": (b"f\n", 0o644)}
    edits = [["append", "a.txt", b"four\n".hex()], ["write", "new.bin", (b"\0" + bytes(range(256))).hex(), 0o755],
             ["chmod", "mode.sh", 0o755], ["delete", "bin.dat"], ["symlink", "link", "d/x"], ["move", "d", "e"],
             ["write", "t", b"now a file\n".hex(), 0o644], ["recreate", "r", "new", b"n\n".hex()],
             ["touch", "sp ace.txt"], ["write", "\u00e9.txt", b"E\n".hex(), 0o644], ["mkdir", "emptydir"],
             ["write", "u", b"was a link\n".hex(), 0o644], ["move", "file", "moved-file"],
             ["write", "locked/g", b"g\n".hex(), 0o644], ["chmod", "locked", 0o300], ["chmod", "a.txt", 0o200]]
    base = new_base(user, "isolate-")
    try:
        _round_trip(base, user, initial, edits)
    finally:
        shutil.rmtree(base, ignore_errors=True)
