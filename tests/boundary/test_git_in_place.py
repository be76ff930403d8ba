"""Commits in the project's own repository, and the host's git stays safe.

The fake-submodule trick: with the index writable, a run stages a gitlink
(mode 160000) at a path where it wrote a repository of its own, whose
config names a `core.fsmonitor` command; the host's next `git status`,
`git diff` or `git commit` runs git there, and the command. Each attack
runs twice: without the sandbox (the control: with a writable `.git`,
the host's git runs the planted command) and inside it. The verdict is a
marker file the planted command would create on the host.
"""

import os

import pytest

from harness import SYSTEM_PATH
from test_protected_metadata import repo  # noqa: F401  (a committed repository as the workspace)

pytestmark = pytest.mark.boundary

HOST_GIT = ("status", "diff", "commit -qam host")


def host_git(scene, *commands):
    """What the user does next on the host, with git's own defaults."""
    for command in commands:
        scene.sh(f"git {command} >/dev/null 2>&1; true", sandbox=False,
                 env={"PATH": SYSTEM_PATH, "GIT_CONFIG_NOSYSTEM": "1"})


def _attack(scene, marker: str, kind: str) -> str:
    """The run's script: a repository at sub/ (a .git folder, or a .git file
    naming a gitdir it made), with fsmonitor; then the gitlink in the index."""
    if kind == "folder":
        make = "mkdir sub && git -C sub init -q"
        gitdir = "sub/.git"
    else:
        make = "git init -q --separate-git-dir=planted.git sub"
        gitdir = "planted.git"
    return (f"{make} && git --git-dir={gitdir} config core.fsmonitor 'touch {marker}; false' && echo s > sub/s && "
            "git -C sub add s && git -C sub commit -qm s && "
            "git update-index --add --cacheinfo 160000,$(git -C sub rev-parse HEAD),sub")


@pytest.mark.parametrize("kind", ["folder", "gitfile"])
def test_a_staged_fake_submodule_runs_nothing_on_the_host(repo, kind):
    marker = os.path.join(repo.outside, "fsmonitor-ran")
    control = repo.sh(_attack(repo, marker, kind), sandbox=False)
    assert control.returncode == 0, control.stderr
    host_git(repo, "status")
    assert os.path.exists(marker), "control: the planted fsmonitor should run"
    os.unlink(marker)
    repo.sh("git update-index --force-remove sub; rm -rf sub planted.git", sandbox=False)
    attacked = repo.sh(_attack(repo, marker, kind))
    assert attacked.returncode == 0, attacked.stderr   # the run could do all of it inside
    assert "index restored" in attacked.stderr and "sub" in attacked.stderr
    host_git(repo, *HOST_GIT)
    assert not os.path.exists(marker)


def test_a_repository_made_at_an_existing_submodule_is_moved_aside(repo):
    marker = os.path.join(repo.outside, "fsmonitor-ran")
    upstream = repo.mkdir("upstream")
    repo.git("init", "-q", cwd=upstream)
    repo.write("upstream/f", "x\n")
    repo.git("add", "f", cwd=upstream)
    repo.git("commit", "-qm", "x", cwd=upstream)
    commit = repo.git("rev-parse", "HEAD", cwd=upstream).stdout.decode().strip()
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{commit},vendor")   # registered, not checked out
    repo.git("commit", "-qm", "vendor")
    plant = (f"mkdir -p vendor && git -C vendor init -q && git -C vendor config core.fsmonitor 'touch {marker}; false'"
             " && git -C vendor fetch -q ../../upstream && git -C vendor checkout -q FETCH_HEAD")
    control = repo.sh(plant, sandbox=False)
    assert control.returncode == 0, control.stderr
    host_git(repo, "status")
    assert os.path.exists(marker), "control: the planted fsmonitor should run"
    os.unlink(marker)
    repo.sh("rm -rf vendor", sandbox=False)
    attacked = repo.sh(plant)
    assert attacked.returncode == 0, attacked.stderr
    assert "moved aside" in attacked.stderr
    host_git(repo, *HOST_GIT)
    assert not os.path.exists(marker)
    assert not repo.exists("ws/vendor/.git")


def test_a_commondir_made_in_git_is_removed(repo):
    marker = os.path.join(repo.outside, "fsmonitor-ran")
    plant = (f"mkdir -p elsewhere && git init -q --bare elsewhere/x.git && "
             f"git --git-dir=elsewhere/x.git config core.fsmonitor 'touch {marker}; false' && "
             f"echo ../elsewhere/x.git > .git/commondir")
    control = repo.sh(plant, sandbox=False)
    assert control.returncode == 0, control.stderr
    host_git(repo, "status")
    assert os.path.exists(marker), "control: git reads the config commondir names"
    os.unlink(marker)
    repo.sh("rm -rf elsewhere .git/commondir", sandbox=False)
    repo.sh(plant)
    assert not repo.exists("ws/.git/commondir")
    host_git(repo, *HOST_GIT)
    assert not os.path.exists(marker)


def test_git_metadata_that_runs_code_stays_read_only_while_commits_work(repo):
    config = repo.read("ws/.git/config")
    result = repo.sh("echo change >> file.txt && git commit -qam second; "
                     "echo '[core] fsmonitor = evil' >> .git/config; mkdir -p .git/hooks/x; "
                     "echo evil > .git/hooks/pre-commit; echo '* filter=x' > .git/info/attributes; "
                     "mkdir .git/modules/y; mkdir .git/worktrees/z; echo '[core]' > .git/config.worktree; "
                     "mv .git .git-moved; true")
    assert result.returncode == 0
    assert repo.git("log", "-1", "--format=%s").stdout.decode().strip() == "second"
    assert repo.read("ws/.git/config") == config
    for path in (".git/hooks/pre-commit", ".git/hooks/x", ".git/info/attributes", ".git/modules/y",
                 ".git/worktrees/z", ".git-moved"):
        assert not repo.exists(f"ws/{path}"), path
    assert not repo.read("ws/.git/config.worktree")
