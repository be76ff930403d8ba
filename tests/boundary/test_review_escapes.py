"""Escapes found in review, kept as attacks with controls: each must work
without the sandbox and fail inside it, judged on the host."""

import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.boundary


def host_git_status(scene, cwd):
    """What the user does next on the host: the moment planted config would run."""
    env = dict(scene.env(), GIT_CONFIG_NOSYSTEM="1")
    kwargs = {} if scene.user.is_current else {"user": scene.user.uid, "group": scene.user.gid, "extra_groups": []}
    subprocess.run(["git", "-c", "protocol.file.allow=always", "status"], cwd=cwd, env=env,
                   capture_output=True, **kwargs)


def test_nested_git_cannot_be_replaced_by_renaming_its_parent(scene):
    """A submodule's .git is protected; renaming the submodule's directory would
    carry the protection away and let a fresh .git point at a planted gitdir."""
    upstream = scene.mkdir("upstream")
    scene.git("init", "-q", cwd=upstream)
    scene.write("upstream/f", "x\n")
    scene.git("add", "f", cwd=upstream)
    scene.git("commit", "-qm", "x", cwd=upstream)
    scene.git("init", "-q")
    scene.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", upstream, "libfoo")
    scene.git("commit", "-qm", "add submodule")
    marker = os.path.join(scene.outside, "fsmonitor-ran")
    attack = ("mv libfoo libfoo.moved && mkdir libfoo && git init -q --bare .evilgit && "
              f"git --git-dir=.evilgit config core.fsmonitor 'touch {marker}; false' && "
              "git --git-dir=.evilgit config core.bare false && "
              "git --git-dir=.evilgit config core.worktree ../libfoo && "
              "echo 'gitdir: ../.evilgit' > libfoo/.git")
    scene.sh(attack, sandbox=False)
    host_git_status(scene, scene.ws)
    assert os.path.exists(marker), "control: the planted fsmonitor should run on the host's git status"
    os.unlink(marker)
    subprocess.run(["rm", "-rf", "libfoo", ".evilgit"], cwd=scene.ws, check=True)
    subprocess.run(["mv", "libfoo.moved", "libfoo"], cwd=scene.ws, check=True)
    scene.sh(attack)
    host_git_status(scene, scene.ws)
    assert not os.path.exists(marker)
    assert scene.exists("ws/libfoo/f") and not scene.exists("ws/libfoo.moved")


def test_git_config_include_cannot_move_or_plant_hooks(scene):
    scene.git("init", "-q")
    scene.write("ws/team.gitconfig", "[core]\n\thooksPath = githooks-shared\n")
    with open(os.path.join(scene.ws, ".git", "config"), "a") as handle:
        handle.write("[include]\n\tpath = ../team.gitconfig\n")
    marker = os.path.join(scene.outside, "included-fsmonitor-ran")
    attack = (f"mkdir -p githooks-shared && echo evil > githooks-shared/pre-commit; "
              f"printf '[core]\\n\\tfsmonitor = \"touch {marker}; false\"\\n' >> team.gitconfig")
    scene.sh(attack, sandbox=False)
    host_git_status(scene, scene.ws)
    assert os.path.exists(marker) and scene.exists("ws/githooks-shared/pre-commit"), "control failed"
    os.unlink(marker)
    subprocess.run(["rm", "-rf", "githooks-shared"], cwd=scene.ws, check=True)
    scene.write("ws/team.gitconfig", "[core]\n\thooksPath = githooks-shared\n")
    scene.sh(attack)
    host_git_status(scene, scene.ws)
    assert not os.path.exists(marker)
    assert not scene.exists("ws/githooks-shared/pre-commit")


def test_home_inside_a_writable_root_keeps_ringfence_config_read_only(scene):
    """With $HOME inside a root the user made writable explicitly, the sandbox
    must not write the configuration or the caches ringfence trusts next time."""
    home = scene.mkdir("ws/home")
    scene.mkdir("ws/home/.local/state/ringfence/cache")
    scene.extra_env["HOME"] = home
    scene.write("ws/home/.ringfence/config.toml",
                f'default_permissions = "p"\n[permissions.p.filesystem]\n":root" = "read"\n"{scene.ws}" = "write"\n')
    # Swapping in a fresh state directory would let the sandbox plant caches
    # (a parsed config, a scan) that the next start trusts.
    attack = ("mkdir -p home/.ringfence; echo 'sandbox_mode = \"danger-full-access\"' > home/.ringfence/config.toml; "
              "mv home/.ringfence home/.ringfence.old; mv home/.local home/.local.old && "
              "mkdir -p home/.local/state/ringfence/cache && echo planted > home/.local/state/ringfence/cache/x; "
              "mkdir -p home/.ringfence && echo 'sandbox_mode = \"danger-full-access\"' > home/.ringfence/config.toml")
    scene.sh(attack, sandbox=False)
    assert "danger" in (scene.read("ws/home/.ringfence/config.toml") or ""), "control could not write it"
    assert scene.exists("ws/home/.local.old"), "control could not swap the state directory"
    subprocess.run(["rm", "-rf", os.path.join(home, ".ringfence"), os.path.join(home, ".ringfence.old"),
                    os.path.join(home, ".local")], check=True)
    os.rename(os.path.join(home, ".local.old"), os.path.join(home, ".local"))
    scene.write("ws/home/.ringfence/config.toml",
                f'default_permissions = "p"\n[permissions.p.filesystem]\n":root" = "read"\n"{scene.ws}" = "write"\n')
    result = scene.sh(attack)
    assert result.returncode != 125, result.stderr
    assert "danger" not in (scene.read("ws/home/.ringfence/config.toml") or "")
    assert not scene.exists("ws/home/.local.old")
    assert scene.read("ws/home/.local/state/ringfence/cache/x") is None
    target = scene.write("outside/target.txt", "original\n")
    scene.sh(f"echo pwned > {target}")
    assert scene.read("outside/target.txt") == "original\n", "the next run must still be sandboxed"


def _run_in_background_until(scene, placeholder: str) -> subprocess.Popen:
    """Start a two-second run and return once its placeholder exists."""
    run = subprocess.Popen([sys.executable, "-P", "-m", "ringfence", "run", "--no-tty", "--", "sleep", "2"],
                           cwd=scene.ws, env=scene.env(), stdin=subprocess.DEVNULL, **(
                               {} if scene.user.is_current else
                               {"user": scene.user.uid, "group": scene.user.gid, "extra_groups": []}))
    deadline = time.time() + 20
    while not scene.exists(placeholder):
        assert time.time() < deadline
        time.sleep(0.05)
    return run


def test_concurrent_runs_keep_each_others_protection(scene):
    """Run B shares run A's placeholder; A ending must not leave B unprotected."""
    first = _run_in_background_until(scene, "ws/.vscode")
    second = scene.sh("for i in $(seq 60); do [ -e .vscode ] || break; sleep 0.1; done; "
                      "mkdir -p .vscode; echo evil > .vscode/tasks.json")
    first.wait(timeout=30)
    assert not scene.exists("ws/.vscode/tasks.json"), second.stderr


def test_concurrent_runs_keep_folders_made_for_a_nested_placeholder(scene):
    """core.hooksPath names tools/hooks and neither exists: run A makes both.
    Run B, starting while A lasts, sees them as existing; A ending must remove
    neither while B has them mounted."""
    scene.git("init", "-q")
    scene.git("config", "core.hooksPath", "tools/hooks")
    first = _run_in_background_until(scene, "ws/tools/hooks")
    second = scene.sh("for i in $(seq 60); do [ -e tools/hooks ] || break; sleep 0.1; done; "
                      "mkdir -p tools/hooks; echo evil > tools/hooks/pre-commit")
    first.wait(timeout=30)
    assert not scene.exists("ws/tools/hooks/pre-commit"), second.stderr
    assert not scene.exists("ws/tools"), "the last run out removes what was made"


def test_running_from_home_is_refused(scene):
    result = scene.sh("touch ran", cwd=scene.home)
    assert result.returncode == 125
    assert not scene.exists("home/ran")
    assert "is your home directory" in result.stderr and "fix:" in result.stderr


def test_a_workspace_holding_home_is_refused(scene):
    scene.git("init", "-q")
    scene.extra_env["HOME"] = scene.mkdir("ws/home")
    result = scene.sh("touch ran")
    assert result.returncode == 125 and not scene.exists("ws/ran")
    assert "contains your home directory" in result.stderr
