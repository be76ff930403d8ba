"""Commits made in an isolated run come back as refs, and nothing else does.

The run commits in its overlay's repository, then plants what would run code
on the host (a `core.fsmonitor` in .git/config, a reference-transaction
hook) and bundles its commits with the in-run script. On the host the
bundle is fetched by ringfence: the commit arrives as
refs/ringfence/<run>/main, and neither the config nor the hook arrives or
runs, judged by marker files the planted commands would create on the host.
Controls: the planted config and hook do run when the overlay's .git is
copied over a repository, and a hook of the real repository runs under a
plain `git fetch` of the same bundle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from harness import SYSTEM_PATH, must_have
from isolate_scene import base, overlay_ready, own_tree, run_as, start_run, user_kwargs  # noqa: F401

GIT_ENV = {"PATH": SYSTEM_PATH, "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "LC_ALL": "C"}


def git(user, cwd, *args, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=check,
                          **user_kwargs(user))


@pytest.fixture(autouse=True)
def git_installed():
    must_have(shutil.which("git") is not None, "git is not installed")


def _run_that_commits(base: str, user):
    from ringfence.isolate.bundle import INRUN_SCRIPT, start_refs_text
    from ringfence.isolate.gitrefs import read_refs

    workspace = os.path.join(base, "ws")
    os.makedirs(workspace)
    own_tree(user, base)
    git(user, workspace, "init", "-q", "-b", "main")
    with open(os.path.join(workspace, "a.txt"), "w") as handle:
        handle.write("a\n")
    own_tree(user, workspace)
    git(user, workspace, "add", "a.txt")
    git(user, workspace, "commit", "-qm", "start")
    refs = read_refs(workspace)
    assert set(refs) == {"HEAD", "refs/heads/main"}
    start = os.path.join(base, "start-refs")
    with open(start, "wb") as handle:
        handle.write(start_refs_text(refs))
    state, run_id, world = start_run(base, user, workspace)
    upper = world.upper
    markers = {name: os.path.join(base, f"marker-{name}") for name in ("fsmonitor", "hook")}
    hook = f"#!/bin/sh\ntouch {markers['hook']}\n"
    head_file = os.path.join(base, "run-head")
    own_tree(user, base)
    edits = [
        ["write", "b.txt", b"b\n".hex(), 0o644],
        ["exec", ".", ["git", "add", "b.txt"], GIT_ENV],
        ["exec", ".", ["git", "commit", "-qm", "made in the run"], GIT_ENV],
        ["exec", ".", ["sh", "-c", f"git rev-parse HEAD > {head_file}"], GIT_ENV],
        ["exec", ".", ["git", "config", "core.fsmonitor", f"touch {markers['fsmonitor']}"], GIT_ENV],
        ["write", ".git/hooks/reference-transaction", hook.encode().hex(), 0o755],
        ["exec", ".", [sys.executable, "-I", "-S", INRUN_SCRIPT, ".", start, ".git/ringfence.bundle"], GIT_ENV],
    ]
    world.run_edits(edits)
    with open(head_file) as handle:
        run_head = handle.read().strip()
    for marker in markers.values():
        assert not os.path.exists(marker)   # nothing planted ran inside the run either
    return workspace, state, run_id, upper, markers, run_head, refs


def test_commits_arrive_as_refs_and_config_and_hooks_do_not(base, user):
    workspace, state, run_id, upper, markers, run_head, refs = _run_that_commits(base, user)
    with open(os.path.join(workspace, ".git", "config"), "rb") as handle:
        config_before = handle.read()
    scratch = os.path.join(base, "scratch")
    os.makedirs(scratch)
    own_tree(user, scratch)
    fetched = run_as(user, "fetch_bundle", workspace, os.path.join(upper, ".git", "ringfence.bundle"), run_id,
                     scratch)
    assert fetched == [["refs/heads/main", f"refs/ringfence/{run_id}/main", run_head]]
    shown = git(user, workspace, "rev-parse", f"refs/ringfence/{run_id}/main")
    assert shown.stdout.strip() == run_head
    assert git(user, workspace, "cat-file", "-p", f"{run_head}:b.txt").stdout == "b\n"
    assert git(user, workspace, "rev-parse", "refs/heads/main").stdout.strip() == refs["refs/heads/main"]
    with open(os.path.join(workspace, ".git", "config"), "rb") as handle:
        assert handle.read() == config_before
    assert not os.path.exists(os.path.join(workspace, ".git", "hooks", "reference-transaction"))
    # The user's next git commands on the host run nothing the run planted.
    git(user, workspace, "status")
    git(user, workspace, "branch", "from-run", f"refs/ringfence/{run_id}/main")
    for name, marker in markers.items():
        assert not os.path.exists(marker), name
    assert os.listdir(scratch) == []


def test_control_planted_config_and_hook_do_run_when_copied(base, user):
    workspace, _state, _run_id, upper, markers, _run_head, _refs = _run_that_commits(base, user)
    copy = os.path.join(base, "naive-copy")
    shutil.copytree(workspace, copy, symlinks=True)
    shutil.copy(os.path.join(upper, ".git", "config"), os.path.join(copy, ".git", "config"))
    shutil.copy(os.path.join(upper, ".git", "hooks", "reference-transaction"),
                os.path.join(copy, ".git", "hooks", "reference-transaction"))
    own_tree(user, copy)
    git(user, copy, "status")
    git(user, copy, "branch", "x")
    assert os.path.exists(markers["fsmonitor"]) and os.path.exists(markers["hook"])


def test_a_hook_of_the_real_repository_does_not_run_during_the_fetch(base, user):
    workspace, _state, run_id, upper, markers, run_head, _refs = _run_that_commits(base, user)
    hook = os.path.join(workspace, ".git", "hooks", "reference-transaction")
    with open(hook, "w") as handle:
        handle.write(f"#!/bin/sh\ntouch {markers['hook']}\n")
    os.chmod(hook, 0o755)
    own_tree(user, os.path.dirname(hook))
    bundle = os.path.join(upper, ".git", "ringfence.bundle")
    control = os.path.join(base, "control")
    shutil.copytree(workspace, control, symlinks=True)
    own_tree(user, control)
    git(user, control, "fetch", "-q", bundle, "main:refs/control/main")
    assert os.path.exists(markers["hook"])   # control: a plain fetch runs the repository's hook
    os.unlink(markers["hook"])
    scratch = os.path.join(base, "scratch")
    os.makedirs(scratch)
    own_tree(user, scratch)
    fetched = run_as(user, "fetch_bundle", workspace, bundle, run_id, scratch)
    assert fetched[0][2] == run_head
    assert not os.path.exists(markers["hook"])


def test_a_bundle_behind_a_symlink_or_with_odd_refs_is_refused(base, user, tmp_path):
    from ringfence.isolate.bundle import BundleRefused, fetch_bundle, read_header, safe_branch

    workspace, _state, run_id, upper, _markers, _run_head, _refs = _run_that_commits(base, user)
    link = os.path.join(base, "link.bundle")
    os.symlink(os.path.join(upper, ".git", "ringfence.bundle"), link)
    with pytest.raises(BundleRefused, match="cannot open"):
        fetch_bundle(workspace, link, run_id, scratch=str(tmp_path))
    forged = tmp_path / "forged.bundle"
    forged.write_bytes(b"# v2 git bundle\n" + b"1" * 40 + b" refs/heads/../../config\n\nPACK")
    assert read_header(str(forged)).refs == (("refs/heads/../../config", "1" * 40),)
    with pytest.raises(BundleRefused, match="does not take"):
        fetch_bundle(workspace, str(forged), run_id, scratch=str(tmp_path))
    assert not safe_branch("a/.hidden") and not safe_branch("x.lock") and safe_branch("feature/x")
