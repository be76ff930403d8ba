"""The hard-link check of glob-denied files: made in a forked child past a
thousand files, with the same verdict as made at once, and made by the
parent itself whenever the child gives no answer it can trust."""

import os
import threading

import pytest

from ringfence.policy import linkcheck
from ringfence.policy.linkcheck import LinkCheck
from ringfence.sandbox import load_policy

REAL_ALONE = linkcheck._alone


def _denied(tmp_path, count, linked=()):
    folder = tmp_path / "keys"
    folder.mkdir()
    entries = []
    for index in range(count):
        path = folder / f"k{index}.secret"
        path.write_text("s3cret")
        entries.append((str(path), '"**/*.secret" = "none"', str(tmp_path)))
    for index in linked:
        os.link(folder / f"k{index}.secret", tmp_path / f"copy{index}")
    return entries


def _flagged(check):
    return sorted(refusal.message.split(" is denied")[0] for refusal in check.refusals())


@pytest.fixture
def forks(monkeypatch):
    """The children forked, by pid. The test process may hold threads other
    tests left: the check is told it runs alone (its child only reads link
    counts and writes a pipe), except where a test asks for the real answer."""
    made = []
    real_fork = os.fork
    monkeypatch.setattr(linkcheck, "_alone", lambda: True)

    def counted():
        pid = real_fork()
        if pid:
            made.append(pid)
        return pid

    monkeypatch.setattr(linkcheck.os, "fork", counted)
    return made


def test_past_the_threshold_the_check_is_forked_and_finds_the_same_files(tmp_path, forks):
    entries = _denied(tmp_path, linkcheck.FORK_AT, linked=(3, 700))
    forked = LinkCheck(entries)
    assert forks, "checked in a child"
    at_once = LinkCheck(entries[:linkcheck.FORK_AT - 1])  # below the threshold: no child
    assert len(forks) == 1
    expected = sorted([entries[3][0], entries[700][0]])
    assert _flagged(forked) == expected
    assert _flagged(at_once) == expected
    assert forked.pid is None, "the child is reaped"


def test_a_child_that_dies_leaves_the_check_to_the_parent(tmp_path, monkeypatch, forks):
    entries = _denied(tmp_path, linkcheck.FORK_AT, linked=(5,))
    parent, real = os.getpid(), linkcheck._linked

    def dies_in_the_child(paths):
        if os.getpid() != parent:
            os._exit(3)
        return real(paths)

    monkeypatch.setattr(linkcheck, "_linked", dies_in_the_child)
    check = LinkCheck(entries)
    assert forks
    assert _flagged(check) == [entries[5][0]]


def test_an_odd_answer_is_not_trusted(tmp_path, monkeypatch, forks):
    entries = _denied(tmp_path, linkcheck.FORK_AT, linked=(9,))
    parent, real = os.getpid(), linkcheck._linked
    # A child that answers "nothing linked" with an index out of range: the
    # whole answer is dropped, and the parent finds the link itself.
    monkeypatch.setattr(linkcheck, "_linked",
                        lambda paths: [len(entries) + 1] if os.getpid() != parent else real(paths))
    assert _flagged(LinkCheck(entries)) == [entries[9][0]]


def test_with_other_threads_running_nothing_is_forked(tmp_path, forks, monkeypatch):
    monkeypatch.setattr(linkcheck, "_alone", REAL_ALONE)
    entries = _denied(tmp_path, linkcheck.FORK_AT, linked=(1,))
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        check = LinkCheck(entries)
    finally:
        stop.set()
        other.join()
    assert not forks
    assert _flagged(check) == [entries[1][0]]


def test_a_policy_dropped_unread_leaves_no_child_behind(tmp_path, forks):
    check = LinkCheck(_denied(tmp_path, linkcheck.FORK_AT))
    pid = forks[0]
    del check
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_a_policy_refuses_a_hard_linked_glob_match_found_by_the_child(tmp_path, monkeypatch, forks):
    home, ws = tmp_path / "home", tmp_path / "home" / "proj"
    (ws / ".git").mkdir(parents=True)
    (home / ".ringfence").mkdir()
    (home / ".ringfence" / "config.toml").write_text(
        'default_permissions = "p"\n[permissions.p.filesystem]\n":root" = "read"\n'
        '":project_roots" = { "." = "write", "**/*.secret" = "none" }\n')
    entries = _denied(ws, linkcheck.FORK_AT)
    monkeypatch.setenv("RINGFENCE_STATE_DIR", str(tmp_path / "state"))
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    clean = load_policy(str(ws), home=str(home), env=env)
    assert forks and clean.refusals == ()  # control: nothing linked, nothing refused
    os.link(entries[42][0], tmp_path / "readable-elsewhere")
    linked = load_policy(str(ws), home=str(home), env=env)
    assert len(forks) == 2
    assert [refusal.message.split(" is denied")[0] for refusal in linked.refusals] == [entries[42][0]]


def test_an_interrupted_wait_for_the_child_leaves_the_check_to_the_parent(tmp_path, monkeypatch, forks):
    entries = _denied(tmp_path, linkcheck.FORK_AT, linked=(11,))
    check = LinkCheck(entries)
    real_read = os.read

    def interrupted(fd, size):
        monkeypatch.setattr(linkcheck.os, "read", real_read)
        raise KeyboardInterrupt

    monkeypatch.setattr(linkcheck.os, "read", interrupted)
    with pytest.raises(KeyboardInterrupt):
        check.refusals()
    assert check.pid is None, "the child is reaped all the same"
    assert _flagged(check) == [entries[11][0]]


def test_a_child_reaped_by_someone_else_is_not_signalled(tmp_path, monkeypatch, forks):
    # A caller's SIGCHLD handler may reap every child: its pid may then be
    # another process's, which a dropped policy must not kill.
    check = LinkCheck(_denied(tmp_path, linkcheck.FORK_AT))
    os.waitpid(forks[0], 0)  # as the caller's reaper would
    killed = []
    monkeypatch.setattr(linkcheck.os, "kill", lambda pid, number: killed.append(pid))
    del check
    assert killed == []
