"""Which means caps a run's processes, decided from the host's cgroup layout.

The hierarchies are fakes built in a temporary directory: this machine may
have either cgroup version, and the choice must be right for both.
"""

import os
import time

import pytest

from ringfence.errors import PolicyError
from ringfence.backends.linux import limits
from ringfence.policy.limits import Limits


def mountinfo(tmp_path, cgroup2_at=None):
    lines = ["22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw"]
    if cgroup2_at:
        lines.append(f"30 22 0:26 / {cgroup2_at} rw,nosuid shared:4 - cgroup2 cgroup2 rw")
    path = tmp_path / "mountinfo"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def unified(tmp_path, subtree="cpu memory pids"):
    root = tmp_path / "unified"
    root.mkdir()
    (root / "cgroup.subtree_control").write_text(subtree + "\n")
    return str(root)


def test_v2_with_pids_enabled_comes_before_v1(tmp_path):
    v2 = unified(tmp_path)
    v1 = tmp_path / "v1pids"
    v1.mkdir()
    found = limits.pids_parents(mountinfo(tmp_path, v2), str(v1))
    assert found == [("cgroup v2 pids", v2), ("cgroup v1 pids", str(v1))]


def test_v2_without_pids_in_subtree_control_is_not_used(tmp_path):
    # Enabling it ourselves would rewrite the host's hierarchy: never done.
    v2 = unified(tmp_path, subtree="cpu memory")
    assert limits.pids_parents(mountinfo(tmp_path, v2), str(tmp_path / "no-v1")) == []
    assert (tmp_path / "unified" / "cgroup.subtree_control").read_text() == "cpu memory\n"


def test_no_cgroups_at_all(tmp_path):
    assert limits.pids_parents(mountinfo(tmp_path), str(tmp_path / "no-v1")) == []


def test_root_takes_the_first_parent_and_an_ordinary_user_the_rlimit(tmp_path, monkeypatch):
    v2 = unified(tmp_path)
    monkeypatch.setattr(limits, "pids_parents", lambda: [("cgroup v2 pids", v2)])
    monkeypatch.setattr(os, "getuid", lambda: 0)
    chosen = limits.choose(Limits())
    assert (chosen.processes, chosen.group_parent) == ("cgroup v2 pids", v2)
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    assert limits.choose(Limits()).processes == "rlimit"


def test_root_without_any_pids_cgroup_refuses_an_explicit_cap(monkeypatch):
    monkeypatch.setattr(limits, "pids_parents", lambda: [])
    monkeypatch.setattr(os, "getuid", lambda: 0)
    default = limits.choose(Limits())
    assert default.processes is None and "not enforced" in default.detail
    assert limits.unenforceable(Limits(), default) == []  # the built-in cap is reported, not refused
    [(what, _why, fix)] = limits.unenforceable(Limits(processes=64, processes_explicit=True), default)
    assert "processes = 64" in what and "cgroup.subtree_control" in fix


def test_a_run_group_is_made_under_the_chosen_parent(tmp_path, monkeypatch):
    parent = unified(tmp_path)
    written = {}
    monkeypatch.setattr(limits, "_write", lambda path, text: written.__setitem__(os.path.relpath(path, parent), text))
    mechanism = limits.Mechanism("cgroup v2 pids", "test", parent)
    applied = limits.apply(os.getpid(), Limits(processes=77), mechanism, "run1")
    assert applied.cgroup == os.path.join(parent, "ringfence-run1")
    assert written == {"ringfence-run1/pids.max": "77", "ringfence-run1/cgroup.procs": str(os.getpid())}
    (tmp_path / "unified" / "ringfence-run1" / "pids.events").write_text("max 5\n")
    assert limits.release(applied) == {"process_cap_hits": 5}


def test_only_old_run_groups_are_swept(tmp_path):
    parent = tmp_path / "pids"
    for name in ("ringfence-old", "ringfence-new", "someone-else"):
        (parent / name).mkdir(parents=True)
    long_ago = time.time() - 3600
    for name in ("ringfence-old", "someone-else"):
        os.utime(parent / name, (long_ago, long_ago))
    # A group made moments ago may be another run's, still moving its first process in.
    assert limits.remove_stale_groups([("cgroup v1 pids", str(parent))]) == ["ringfence-old"]
    assert sorted(os.listdir(parent)) == ["ringfence-new", "someone-else"]


def test_a_run_groups_age_is_read_from_the_second_its_run_id_names(tmp_path):
    parent = tmp_path / "pids"
    old = "ringfence-" + time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() - 3600)) + "-0a0b0c0d"
    new = "ringfence-" + time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-0a0b0c0d"
    for name in (old, new):
        (parent / name).mkdir(parents=True)
        # The directory's own time says the opposite: the name decides.
        stamp = time.time() if name == old else time.time() - 3600
        os.utime(parent / name, (stamp, stamp))
    assert limits.remove_stale_groups([("cgroup v1 pids", str(parent))]) == [old]
    assert os.listdir(parent) == [new]


def test_a_v1_run_group_is_made_before_the_sandbox_and_it_is_born_there(tmp_path, monkeypatch):
    # Moving another process into a v1 group waits for an RCU grace period; a
    # thread moving itself does not: the spawning thread goes in and back out.
    mount = tmp_path / "pids"
    (mount / "outer").mkdir(parents=True)
    written = []
    monkeypatch.setattr(limits, "_write", lambda path, text: written.append((os.path.relpath(path, mount), text)))
    monkeypatch.setattr(limits, "_own_group", lambda at, controller: os.path.join(at, "outer"))
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    mechanism = limits.Mechanism("cgroup v1 pids", "test", str(mount))
    prepared = limits.prepare_groups(Limits(processes=77), mechanism, "run1")
    # The bwrap process that starts the sandbox is in the group too.
    assert written == [("ringfence-run1/pids.max", "78")]
    with limits.BornInto(prepared):
        assert written[-1] == ("ringfence-run1/tasks", "0")
    assert written[-1] == ("outer/tasks", "0")
    (mount / "ringfence-run1" / "cgroup.procs").write_text("4242\n")
    written.clear()
    monkeypatch.setattr("resource.prlimit", lambda *args: None)  # no such processes: only the groups matter
    assert limits.apply(4242, Limits(processes=77), mechanism, "run1", prepared) is prepared
    assert written == [], "a sandbox born in its group is not moved again"
    # One that is not there (it was forked before the thread got in) is moved the slow way.
    assert limits.apply(4343, Limits(processes=77), mechanism, "run1", prepared) is prepared
    assert written == [("ringfence-run1/pids.max", "77"), ("ringfence-run1/cgroup.procs", "4343")]


def test_a_group_the_thread_could_not_enter_gets_the_exact_cap_when_the_sandbox_is_moved_in(tmp_path, monkeypatch):
    mount = tmp_path / "pids"
    mount.mkdir()
    written = []
    monkeypatch.setattr(limits, "_write", lambda path, text: written.append((os.path.relpath(path, mount), text)))
    monkeypatch.setattr(limits, "_own_group", lambda at, controller: None)  # say, another cgroup namespace's view
    monkeypatch.setattr("resource.prlimit", lambda *args: None)
    mechanism = limits.Mechanism("cgroup v1 pids", "test", str(mount))
    prepared = limits.prepare_groups(Limits(processes=6), mechanism, "run1")
    with limits.BornInto(prepared):
        pass
    assert ("ringfence-run1/tasks", "0") not in written
    written.clear()
    limits.apply(4343, Limits(processes=6), mechanism, "run1", prepared)
    assert written == [("ringfence-run1/pids.max", "6"), ("ringfence-run1/cgroup.procs", "4343")]


def test_the_threads_own_group_must_list_it(tmp_path):
    # /proc names the group from the cgroup namespace's root, which need not
    # be the mount's: a directory that does not list this thread is not its group.
    proc = tmp_path / "proc"
    (proc / "77" / "task" / "78").mkdir(parents=True)
    (proc / "77" / "task" / "78" / "cgroup").write_text("9:memory:/\n8:pids:/user.slice\n1:name=systemd:/\n")
    (proc / "thread-self").symlink_to("77/task/78")
    mount = tmp_path / "pids"
    (mount / "user.slice").mkdir(parents=True)
    (mount / "user.slice" / "tasks").write_text("1\n2\n")
    assert limits._own_group(str(mount), "pids", str(proc / "thread-self")) is None
    (mount / "user.slice" / "tasks").write_text("1\n78\n")
    assert limits._own_group(str(mount), "pids", str(proc / "thread-self")) == str(mount / "user.slice")


def test_a_thread_that_cannot_leave_the_run_group_stops_the_run(tmp_path, monkeypatch):
    from ringfence.errors import BackendUnavailable

    mount = tmp_path / "pids"
    (mount / "outer").mkdir(parents=True)

    def write(path, text):
        if path.endswith("outer/tasks"):
            raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(limits, "_write", write)
    monkeypatch.setattr(limits, "_own_group", lambda at, controller: os.path.join(at, "outer"))
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    prepared = limits.prepare_groups(Limits(processes=8), limits.Mechanism("cgroup v1 pids", "test", str(mount)), "r")
    with pytest.raises(BackendUnavailable, match="could not leave"):
        with limits.BornInto(prepared):
            pass


def test_a_thread_interrupted_just_after_moving_in_still_moves_back(tmp_path, monkeypatch):
    mount = tmp_path / "pids"
    (mount / "outer").mkdir(parents=True)
    written = []

    def write(path, text):
        written.append(os.path.relpath(path, mount))
        if path.endswith("ringfence-r/tasks"):
            raise KeyboardInterrupt  # the move happened; the signal arrives before it is noted

    monkeypatch.setattr(limits, "_write", write)
    monkeypatch.setattr(limits, "_own_group", lambda at, controller: os.path.join(at, "outer"))
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    prepared = limits.prepare_groups(Limits(processes=8), limits.Mechanism("cgroup v1 pids", "test", str(mount)), "r")
    with pytest.raises(KeyboardInterrupt):
        with limits.BornInto(prepared):
            pass
    assert written[-2:] == ["ringfence-r/tasks", "outer/tasks"]


def test_a_sandbox_gone_before_its_limits_is_a_start_failure_not_a_crash():
    # bwrap names the sandbox's first process, then fails a mount and takes it
    # down: limiting a process that no longer exists must end in bwrap's own
    # error, reported, not in a ProcessLookupError out of the launcher.
    from types import SimpleNamespace

    from ringfence.backends.bwrap.run import _apply_limits
    from ringfence.events import EventLog

    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # a process that was, and is no more
    plan = SimpleNamespace(limits=Limits(processes=64), limits_mechanism=limits.Mechanism("rlimit", "test"),
                           counter_shares=())
    status_read, status_write = os.pipe()
    block_read, block_write = os.pipe()
    os.write(status_write, b'{"child-pid": %d}\n' % pid)
    try:
        data, applied = _apply_limits(plan, status_read, block_write, EventLog(), limits.CounterCeilings(()), None)
    finally:
        for fd in (status_read, status_write, block_read):
            os.close(fd)
    assert applied is None and b"child-pid" in data
