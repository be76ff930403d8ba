"""The run store: layout, privacy, lookups, refusals, and what the next
command does with runs and applies cut short."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys

import pytest

from harness import SRC
from isolate_scene import write_tree
from ringfence.isolate import overlay, store
from ringfence.isolate.apply import apply_run
from ringfence.isolate.changeset import capture
from ringfence.isolate.durable import Syncs
from ringfence.isolate.errors import IsolationUnavailable, RunBusy, RunNotFound
from ringfence.isolate.journal import Content, Journal, converge, read_state
from ringfence.isolate.recovery import recover
from ringfence.isolate.recovery import discard_run
from ringfence.isolate.store import create_run, finish_run, last_run, list_runs, open_run


@pytest.fixture
def world(tmp_path):
    workspace = tmp_path / "ws"
    write_tree(str(workspace), {"a": b"a\n", "d/b": b"b\n"})
    return str(workspace), str(tmp_path / "state")


def test_a_run_directory_is_private_and_complete(world):
    workspace, state = world
    run, lock = create_run(state, workspace, refs={"HEAD": "1" * 40})
    try:
        for path in (os.path.join(state, "runs"), run.directory, run.upper, run.work):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path
        assert os.stat(run.upper).st_dev == os.stat(run.work).st_dev
        with open(os.path.join(run.directory, "meta.json")) as handle:
            meta = json.load(handle)
        assert meta["workspace"] == os.path.realpath(workspace) and meta["status"] == "running"
        assert meta["refs"] == {"HEAD": "1" * 40} and meta["base"].count(":") == 1
        assert os.stat(os.path.join(run.directory, "started")).st_ctime_ns == run.stamp
        with pytest.raises(RunBusy):
            store.RunLock(run.directory)
    finally:
        lock.release()


def test_last_run_is_per_workspace_and_only_runs_left_to_review(world, tmp_path):
    workspace, state = world
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(RunNotFound):
        last_run(state)
    first, lock = create_run(state, workspace)
    finish_run(first, 0)
    lock.release()
    second, lock = create_run(state, str(other))
    finish_run(second, 1)
    lock.release()
    assert last_run(state).id == second.id
    assert last_run(state, workspace).id == first.id
    assert [run.id for run in list_runs(state)] == [second.id, first.id]
    with pytest.raises(RunNotFound):
        open_run(state, "../escape")


def test_a_run_store_inside_the_workspace_is_refused(world):
    workspace, _state = world
    with pytest.raises(IsolationUnavailable, match="overlap"):
        create_run(os.path.join(workspace, ".state"), workspace)


def test_a_filesystem_without_user_xattrs_or_on_nfs_is_refused(world, monkeypatch):
    workspace, state = world
    monkeypatch.setattr(overlay, "takes_user_xattrs", lambda path: False)
    with pytest.raises(IsolationUnavailable, match="user.. extended attributes|user\\.\\* extended"):
        create_run(state, workspace)
    monkeypatch.setattr(overlay, "filesystem_type", lambda path: "nfs4")
    with pytest.raises(IsolationUnavailable, match="network filesystem"):
        create_run(state, workspace)
    assert not os.listdir(os.path.join(state, "runs"))


def test_the_probe_speaks_in_data(tmp_path):
    from ringfence.backends.bwrap.locate import locate_bwrap

    support = overlay.probe_overlay(str(tmp_path), bwrap=locate_bwrap().path)
    assert support.kernel_ok == (overlay.kernel_release()[1] >= (5, 11))
    assert support.filesystem and support.user_xattrs
    assert support.usable and support.method in ("bwrap", "helper")
    missing = overlay.probe_overlay(str(tmp_path), bwrap="/nonexistent/bwrap")
    assert missing.bwrap_version is None and not missing.bwrap_overlay


def test_the_overlay_arguments_are_data():
    assert overlay.bwrap_overlay_args("/w", "/s/u", "/s/k") == ["--overlay-src", "/w", "--overlay", "/s/u", "/s/k", "/w"]
    layers = overlay.HELPER_LAYERS
    assert overlay.helper_args("/py", 7, "/w") == ["/py", "-I", "-S", "/dev/fd/7", "--retire", layers, "/w",
                                                   f"{layers}/upper", f"{layers}/work", "/w", "--"]
    assert overlay.helper_binds("/s/runs/r/layers") == ["--bind", "/s/runs/r/layers", layers]
    from ringfence.isolate.overlaymount import overlay_options

    assert overlay_options("/a,b:c", "/u\\x", "/w") == "lowerdir=/a\\,b\\:c,upperdir=/u\\\\x,workdir=/w,userxattr"


def _killed_creator(state: str, workspace: str) -> str:
    """A process that creates a run and is SIGKILLed while it holds it."""
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from ringfence.isolate.store import create_run; "
            "run, lock = create_run(sys.argv[2], sys.argv[3]); print(run.id, flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-I", "-c", code, SRC, state, workspace], stdout=subprocess.PIPE,
                             text=True)
    run_id = child.stdout.readline().strip()
    assert recover(state).empty   # alive: its run is left alone
    child.send_signal(signal.SIGKILL)
    child.wait()
    return run_id


def test_a_killed_run_is_reported_by_the_next_command_and_kept_for_review(world):
    workspace, state = world
    run_id = _killed_creator(state, workspace)
    os.makedirs(os.path.join(state, "runs", run_id, "layers", "work", "work"))
    os.chmod(os.path.join(state, "runs", run_id, "layers", "work", "work"), 0)
    report = recover(state)
    assert report.interrupted == (run_id,)
    assert "interrupted" in report.lines()[0]
    assert last_run(state).status == "interrupted"
    assert os.listdir(os.path.join(state, "runs", run_id, "layers", "work")) == []
    assert recover(state).empty


def test_a_creation_cut_short_is_removed(world):
    _workspace, state = world
    os.makedirs(os.path.join(state, "runs", "20260101T000000Z-dead", "upper"))
    assert recover(state).removed == ("20260101T000000Z-dead",)
    assert os.listdir(os.path.join(state, "runs")) == []


def test_discard_removes_the_layers_even_a_work_dir_at_mode_000(world):
    workspace, state = world
    run, lock = create_run(state, workspace)
    lock.release()
    os.makedirs(os.path.join(run.work, "work"))
    os.mknod(os.path.join(run.work, "work", "#3"), 0o020000, 0)
    os.chmod(os.path.join(run.work, "work"), 0)
    write_tree(run.upper, {"ro/f": b"x"})
    os.chmod(os.path.join(run.upper, "ro"), 0o500)
    discard_run(open_run(state, run.id))
    assert os.listdir(os.path.join(state, "runs")) == []


def _changed_run(world, edits: dict):
    workspace, state = world
    run, lock = create_run(state, workspace)
    write_tree(run.upper, edits)
    run = finish_run(run, 0)
    lock.release()
    return run, capture(run)


def test_recovery_rolls_an_apply_in_progress_back(world):
    workspace, state = world
    run, changeset = _changed_run(world, {"a": b"A\n", "d/b": b"B\n", "new": b"n\n"})
    from ringfence.isolate.apply import plan

    ops, _refused = plan(changeset)
    journal = Journal(run.apply_dir)
    syncs = Syncs()
    journal.write_pack(workspace, ops, syncs)
    journal.write({"run": run.id, "state": "applying", "workspace": workspace, "upper": run.upper, "token": "t",
                   "ops": ops}, syncs)
    # Half of it done, and a temporary file left, as a kill would leave them.
    converge(workspace, ops[:2], "post", Content(run.upper, journal.pack), "t", syncs)
    with open(os.path.join(workspace, ".rf-t-2.tmp"), "w") as handle:
        handle.write("partial")
    assert read_state(workspace, "a")["kind"] == "file"
    report = recover(state)
    assert report.rolled_back == (run.id,)
    with open(os.path.join(workspace, "a"), "rb") as handle:
        assert handle.read() == b"a\n"
    assert sorted(os.listdir(workspace)) == ["a", "d"]
    assert last_run(state).id == run.id   # still there to apply later
    apply_run(last_run(state))
    assert sorted(os.listdir(workspace)) == ["a", "d", "new"]


def test_recovery_completes_an_apply_whose_writes_were_all_done(world):
    workspace, state = world
    run, changeset = _changed_run(world, {"a": b"A\n"})
    report = apply_run(run, remove=False)
    journal = Journal(run.apply_dir)
    assert not journal.exists() and report.applied == ("a",)
    # An apply killed after its last write, before the journal said so:
    from ringfence.isolate.apply import plan

    ops, _ = plan(changeset)
    ops[0]["pre"] = {"kind": "file", "mode": 0o644, "digest": "0" * 64, "size": 0, "offset": 0}
    syncs = Syncs()
    os.makedirs(journal.directory)
    journal.write({"run": run.id, "state": "applying", "workspace": workspace, "upper": run.upper, "token": "t",
                   "ops": ops}, syncs)
    assert recover(state).rolled_forward == (run.id,)
    assert not os.path.exists(run.directory)


def test_review_commands_work_on_the_last_run(world):
    from ringfence.isolate import review

    workspace, state = world
    run, lock = create_run(state, workspace)
    write_tree(run.upper, {"a": b"A\n", "new": b"n\n"})
    finish_run(run, 0)
    lock.release()
    assert review.changes(state, workspace).lines() == ["M a", "A new"]
    assert b"+A\n" in review.diff(state)
    report = review.apply(state, workspace)
    assert report.applied == ("a", "new")
    with pytest.raises(RunNotFound):
        review.changes(state, workspace)
    second, lock = create_run(state, workspace)
    lock.release()
    finish_run(second, 0)
    assert review.discard(state, workspace) == second.id
    assert os.listdir(os.path.join(state, "runs")) == []
