"""SIGKILL an apply at random points: after recovery the workspace is either
untouched or exactly the applied result, never in between.

Each iteration makes a real overlay run (many files modified, deleted,
added, a folder renamed, a file turned into a folder), starts the apply in a
child process as the scene's user, kills it with SIGKILL after a random
delay within the apply's own duration, then runs recovery as the next
command would, and compares the workspace (read on the host) with the two
allowed trees.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

from harness import SRC, SYSTEM_PATH
from isolate_scene import (new_base, overlay_ready, own_tree, run_as, snapshot, start_run, user_kwargs,  # noqa: F401
                           write_tree)

ITERATIONS = int(os.environ.get("RINGFENCE_KILL_ITERATIONS", "20"))

CHILD = r'''
import sys
sys.path.insert(0, sys.argv[1])
from ringfence.isolate.apply import apply_run
from ringfence.isolate.store import last_run
run = last_run(sys.argv[2])
sys.stdout.write("ready\n")
sys.stdout.flush()
apply_run(run)
sys.stdout.write("done\n")
'''


def _initial() -> dict:
    files = {f"src/m{index:03d}.py": (b"line\n" * (index % 7 + 1), 0o644) for index in range(120)}
    files.update({f"old/o{index:02d}.txt": (b"old %d\n" % index, 0o644) for index in range(20)})
    files.update({f"pkg/p{index:02d}": (b"\0binary %d" % index, 0o644) for index in range(20)})
    files["was-file"] = (b"becomes a folder\n", 0o644)
    return files


def _edits() -> list:
    edits = [["append", f"src/m{index:03d}.py", b"more\n".hex()] for index in range(0, 120, 1)]
    edits += [["delete", f"old/o{index:02d}.txt"] for index in range(20)]
    edits += [["write", f"new/n{index:02d}.txt", (b"new %d\n" % index).hex(), 0o644] for index in range(1)]
    edits += [["mkdir", "new"]] + [["write", f"new/n{index:02d}.txt", (b"new %d\n" % index).hex(), 0o600]
                                   for index in range(30)]
    edits += [["move", "pkg", "pkg2"], ["delete", "was-file"], ["mkdir", "was-file"],
              ["write", "was-file/inside", b"x\n".hex(), 0o755], ["chmod", "src", 0o700]]
    return edits[:120] + edits[121:]


def _prepare(base: str, user) -> tuple[str, str, dict, dict]:
    workspace = os.path.join(base, "ws")
    os.makedirs(workspace)
    write_tree(workspace, _initial())
    own_tree(user, base)
    before = snapshot(workspace)
    state, run_id, world = start_run(base, user, workspace)
    after = world.run_edits(_edits())
    run_as(user, "capture_and_render", state, run_id)
    return workspace, state, before, after


def _start_apply(state: str, user) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-I", "-c", CHILD, SRC, state], stdout=subprocess.PIPE, text=True,
                             cwd="/", env={"PATH": SYSTEM_PATH, "HOME": "/nonexistent"}, **user_kwargs(user))
    assert child.stdout.readline() == "ready\n"
    return child


def test_killed_apply_is_rolled_back_or_forward(user, overlay_ready):
    rng = random.Random(int(os.environ.get("RINGFENCE_KILL_SEED", "15")))
    root = new_base(user, "isolate-kill-")
    outcomes = {"untouched": 0, "applied": 0, "rolled_back": 0, "rolled_forward": 0}
    try:
        # One apply left to finish measures how long an apply takes here.
        base = os.path.join(root, "measure")
        os.makedirs(base)
        _workspace, state, _before, _after = _prepare(base, user)
        child = _start_apply(state, user)
        started = time.monotonic()
        assert child.wait(timeout=120) == 0
        duration = time.monotonic() - started
        for iteration in range(ITERATIONS):
            base = os.path.join(root, f"i{iteration}")
            os.makedirs(base)
            workspace, state, before, after = _prepare(base, user)
            (run_id,) = os.listdir(os.path.join(state, "runs"))
            journal = os.path.join(state, "runs", run_id, "apply", "journal.json")
            child = _start_apply(state, user)
            if iteration % 2:
                # Every other kill waits for the journal, so that many land
                # among the writes whatever the machine's load.
                deadline = time.monotonic() + 30
                while not os.path.exists(journal) and child.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.0002)
                time.sleep(rng.uniform(0, duration * 0.6))
            else:
                time.sleep(rng.uniform(0, duration * 1.1))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
            report = run_as(user, "recover", state)
            now = snapshot(workspace)
            assert now in (before, after), (
                f"iteration {iteration}: the workspace is neither as before nor as applied after {report}: "
                + json.dumps(sorted(set(now.items()) ^ set(after.items()), key=str)[:10], default=str))
            if report["rolled_back"]:
                outcomes["rolled_back"] += 1
            elif report["rolled_forward"]:
                outcomes["rolled_forward"] += 1
            else:
                outcomes["applied" if now == after else "untouched"] += 1
            if now == before:
                # Nothing of it was lost: the run can still be applied, and gives the overlay's view.
                assert run_as(user, "apply_last", state).get("applied"), iteration
                assert snapshot(workspace) == after
            shutil.rmtree(base)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    # The kills must have landed inside applies, not only before or after them.
    assert outcomes["rolled_back"] + outcomes["rolled_forward"] >= ITERATIONS // 4, outcomes
