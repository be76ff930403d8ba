"""Real overlays for the isolated-run tests, mounted as the scene's user.

`unshare -Urm` gives the test a user and mount namespace of its own, in which
ringfence's in-sandbox mount script (`overlaymount.py`, the same one the
sandbox runs) mounts the overlay; the edits then happen in the merged view,
and a snapshot of that view is written to a file on the host side before the
namespace (and with it the mount) goes away.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from harness import SRC, SYSTEM_PATH, must_have, scene_root
from tree_snapshot import snapshot  # noqa: F401  (test modules import it from here)

# Runs inside the namespace, after the mount: applies edits, then records the merged view.
EDIT_SCRIPT = r'''
import json, os, shutil, sys
sys.path.insert(0, sys.argv[3])
from tree_snapshot import snapshot
root, edits_path, _, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
with open(edits_path) as handle:
    edits = json.load(handle)
# Without root, a mode that takes its owner's read or list away (0200, 0300)
# would stop this script's own later edits below it (a copy for a folder
# moved in the overlay, a removal): such modes are set last.
deferred = []
for edit in edits:
    kind, path = edit[0], os.path.join(root, edit[1])
    if kind == "chmod" and os.geteuid() != 0:
        deferred.append(edit)
        continue
    if kind == "write":
        data = bytes.fromhex(edit[2])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
        with open(path, "wb") as handle:
            handle.write(data)
        os.chmod(path, edit[3])
    elif kind == "append":
        with open(path, "ab") as handle:
            handle.write(bytes.fromhex(edit[2]))
    elif kind == "touch":   # opened for writing, as an editor would, and nothing written
        os.close(os.open(path, os.O_WRONLY))
        os.utime(path)
    elif kind == "chmod":
        os.chmod(path, edit[2])
    elif kind == "delete":
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    elif kind == "symlink":
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
        os.symlink(edit[2], path)
    elif kind == "mkdir":
        if os.path.lexists(path) and not os.path.isdir(path):
            os.unlink(path)
        os.makedirs(path, exist_ok=True)
    elif kind == "move":
        shutil.move(path, os.path.join(root, edit[2]))
    elif kind == "recreate":
        shutil.rmtree(path)
        os.mkdir(path)
        with open(os.path.join(path, edit[2]), "wb") as handle:
            handle.write(bytes.fromhex(edit[3]))
    elif kind == "exec":
        import subprocess
        subprocess.run(edit[2], cwd=root, check=True, env=edit[3])
    else:
        raise SystemExit(f"unknown edit {kind}")
for edit in deferred:
    path = os.path.join(root, edit[1])
    if os.path.lexists(path) and not os.path.islink(path):
        os.chmod(path, edit[2])
if out == "-":
    sys.stdout.write(json.dumps(snapshot(root)))
else:
    with open(out, "w") as handle:
        json.dump(snapshot(root), handle)
'''


def as_git_sees(tree: dict) -> dict:
    """What a patch can carry: files with only the owner's exec bit, symlinks, no folders."""
    return {path: [kind, 0o755 if kind == "file" and mode & 0o100 else (0o644 if kind == "file" else 0), value]
            for path, (kind, mode, value) in tree.items() if kind != "dir"}


def user_kwargs(user) -> dict:
    if user.is_current:
        return {}
    return {"user": user.uid, "group": user.gid, "extra_groups": []}


def own_tree(user, root: str):
    if user.is_current:
        return
    for folder, dirs, files in os.walk(root):
        os.lchown(folder, user.uid, user.gid)
        for name in dirs + files:
            os.lchown(os.path.join(folder, name), user.uid, user.gid)


class OverlayWorld:
    """A workspace, the layers of one run on it, and a place for files of the test."""

    def __init__(self, base: str, user, *, upper: str | None = None, work: str | None = None):
        self.base = base
        self.user = user
        self.workspace = os.path.join(base, "ws")
        self.upper = upper or os.path.join(base, "layers", "upper")
        self.work = work or os.path.join(base, "layers", "work")
        self.merged = os.path.join(base, "merged")
        for path in (self.workspace, self.upper, self.work, self.merged):
            os.makedirs(path, exist_ok=True)

    def own(self, *paths):
        """Hand the test's own files to the user (never the workspace: a chown
        changes ctimes, which is what conflict detection reads)."""
        if self.user.is_current:
            return
        for path in paths:
            os.lchown(path, self.user.uid, self.user.gid)

    def run_edits(self, edits: list, *, target: str | None = None) -> dict:
        """Mount the overlay (on `merged`, or on the workspace itself), apply
        `edits` there, and return the merged view's snapshot."""
        from ringfence.isolate.overlay import MOUNT_SCRIPT

        target = target or self.merged
        edits_path = os.path.join(self.base, "edits.json")
        out = os.path.join(self.base, "merged.json")
        with open(edits_path, "w") as handle:
            json.dump(edits, handle)
        tests_dir = os.path.dirname(os.path.abspath(__file__))
        script = os.path.join(self.base, "edit.py")
        with open(script, "w") as handle:
            handle.write(EDIT_SCRIPT)
        self.own(self.merged, edits_path, script)
        argv = ["unshare", "-Urm", sys.executable, "-I", "-S", MOUNT_SCRIPT, self.workspace, self.upper, self.work,
                target, "--", sys.executable, "-I", script, target, edits_path, tests_dir, out]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                              env={"PATH": SYSTEM_PATH, "PYTHONPATH": SRC}, **user_kwargs(self.user))
        if done.returncode != 0:
            raise AssertionError(f"overlay edit failed ({done.returncode}): {done.stderr}")
        with open(out) as handle:
            return json.load(handle)

    def copy_workspace(self, name: str) -> str:
        target = os.path.join(self.base, name)
        shutil.copytree(self.workspace, target, symlinks=True)
        own_tree(self.user, target)
        return target


def git_apply(directory: str, patch: bytes, user) -> subprocess.CompletedProcess:
    """`git apply` as a user would run it, with no configuration of anyone's."""
    env = {"PATH": SYSTEM_PATH, "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
           "LC_ALL": "C"}
    return subprocess.run(["git", "apply", "--allow-empty", "--whitespace=nowarn", "-"], cwd=directory, input=patch,
                          capture_output=True, env=env, **user_kwargs(user))


def write_tree(root: str, files: dict):
    """files: {relative path: bytes | ("symlink", target) | ("dir",) | (bytes, mode)}"""
    for relative, value in sorted(files.items()):
        path = os.path.join(root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(value, tuple) and value[0] == "symlink":
            os.symlink(value[1], path)
        elif isinstance(value, tuple) and value[0] == "dir":
            os.makedirs(path, exist_ok=True)
        else:
            data, mode = value if isinstance(value, tuple) else (value, 0o644)
            with open(path, "wb") as handle:
                handle.write(data)
            os.chmod(path, mode)


def unshare_problem() -> str | None:
    """Why a test cannot mount an overlay in `unshare -Urm` here, or None."""
    if shutil.which("unshare") is None:
        return "util-linux unshare is not installed"
    done = subprocess.run(["unshare", "-Urm", "true"], capture_output=True, text=True)
    if done.returncode != 0:
        return f"unshare -Urm fails: {done.stderr.strip()}"
    return None


# --- steps run as the scene's user (in this process for the current user) ---

def step_create_run(state: str, workspace: str) -> str:
    from ringfence.isolate.store import create_run

    run, lock = create_run(state, workspace)
    lock.release()
    return run.id


def step_capture_and_render(state: str, run_id: str) -> dict:
    from ringfence.isolate.changeset import capture
    from ringfence.isolate.diff import render_diff
    from ringfence.isolate.store import finish_run, open_run

    run = finish_run(open_run(state, run_id), 0)
    changeset = capture(run)
    patch = os.path.join(os.path.dirname(state), f"patch-{run_id}.diff")
    with open(patch, "wb") as handle:
        handle.write(render_diff(changeset))
    return {"patch": patch, "conflicts": [[c.path, c.reason] for c in changeset.conflicts],
            "changes": [[c.letter, c.path, c.source] for c in changeset.changes]}


def step_apply_last(state: str, force: bool = False) -> dict:
    from ringfence.isolate.apply import apply_run
    from ringfence.isolate.errors import ApplyConflict
    from ringfence.isolate.store import last_run

    try:
        report = apply_run(last_run(state), force=force)
    except ApplyConflict as exc:
        return {"conflicts": [[c.path, c.reason] for c in exc.conflicts], "message": str(exc)}
    return {"applied": list(report.applied), "refused": [list(item) for item in report.refused],
            "fsyncs": report.fsyncs}


def step_recover(state: str) -> dict:
    from ringfence.isolate.recovery import recover

    report = recover(state)
    return {name: [list(item) if isinstance(item, tuple) else item for item in getattr(report, name)]
            for name in report.__slots__}


def step_fetch_bundle(workspace: str, bundle: str, run_id: str, scratch: str) -> list:
    from ringfence.isolate.bundle import fetch_bundle

    return [[ref.source, ref.ref, ref.commit] for ref in fetch_bundle(workspace, bundle, run_id, scratch=scratch)]


STEPS = {"fetch_bundle": step_fetch_bundle, "create_run": step_create_run, "capture_and_render": step_capture_and_render,
         "apply_last": step_apply_last, "recover": step_recover}


def run_as(user, step: str, *args):
    """Run one step as `user`: in this process for the current user, else
    in a child process with that user's ids; returns the step's result."""
    if user.is_current:
        return STEPS[step](*args)
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    code = ("import json, sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import isolate_scene; "
            "print(json.dumps(isolate_scene.STEPS[sys.argv[3]](*json.loads(sys.argv[4]))))")
    done = subprocess.run([sys.executable, "-I", "-c", code, SRC, tests_dir, step, json.dumps(args)],
                          capture_output=True, text=True, timeout=120, cwd="/",
                          env={"PATH": SYSTEM_PATH, "HOME": "/nonexistent", "LANG": "C.UTF-8"},
                          **user_kwargs(user))
    if done.returncode != 0:
        raise AssertionError(f"step {step} as {user.name} failed: {done.stderr}")
    return json.loads(done.stdout)


def start_run(base: str, user, workspace: str) -> tuple[str, str, OverlayWorld]:
    """Create an isolated run of `workspace` as `user`: (state dir, run id,
    the overlay world whose layers are the run's)."""
    state = os.path.join(base, "state")
    run_id = run_as(user, "create_run", state, workspace)
    run_dir = os.path.join(state, "runs", run_id)
    world = OverlayWorld(base, user, upper=os.path.join(run_dir, "layers", "upper"),
                         work=os.path.join(run_dir, "layers", "work"))
    return state, run_id, world


def new_base(user, prefix: str) -> str:
    path = tempfile.mkdtemp(prefix=prefix, dir=scene_root(user))
    os.chmod(path, 0o755)
    return path


# Fixtures: a test module imports them by name.

@pytest.fixture(scope="module")
def overlay_ready():
    must_have(unshare_problem() is None, f"an overlay cannot be mounted here: {unshare_problem()}")


@pytest.fixture
def base(user, overlay_ready):
    path = new_base(user, "isolate-")
    yield path
    shutil.rmtree(path, ignore_errors=True)
