"""Review of the hardening: protected names (git hooks and config, editor and
agent folders) and the post-run report of those the sandbox creates.

The verdict is what git on the host does next, or what ringfence reported.
"""

import os
import subprocess

import pytest

pytestmark = pytest.mark.boundary

OPEN = "open review finding: "


def _host_git(scene, *args, cwd):
    """What the user does next on the host, as the scene's user."""
    env = dict(scene.env(), GIT_CONFIG_NOSYSTEM="1")
    kwargs = {} if scene.user.is_current else {"user": scene.user.uid, "group": scene.user.gid, "extra_groups": []}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, **kwargs)


def _hook(marker: str) -> str:
    return f"printf '#!/bin/sh\\ntouch {marker}\\n' > "


def test_a_hook_linked_to_a_tracked_script_cannot_be_rewritten(scene):
    scene.git("init", "-q")
    scene.write("ws/scripts/pre-commit", "#!/bin/sh\nexit 0\n", mode=0o755)
    link = os.path.join(scene.ws, ".git", "hooks", "pre-commit")
    os.symlink("../../scripts/pre-commit", link)
    if not scene.user.is_current:
        os.lchown(link, scene.user.uid, scene.user.gid)
    marker = os.path.join(scene.outside, "hook-ran")
    attack = _hook(marker) + ".git/hooks/pre-commit"
    scene.sh(attack, sandbox=False)
    scene.write("ws/f", "x\n")
    _host_git(scene, "add", "f", cwd=scene.ws)
    _host_git(scene, "commit", "-qm", "control", cwd=scene.ws)
    assert os.path.exists(marker), "control: the rewritten hook runs at the host's next commit"
    os.unlink(marker)
    scene.write("ws/scripts/pre-commit", "#!/bin/sh\nexit 0\n", mode=0o755)
    result = scene.sh(attack)
    scene.write("ws/f", "y\n")
    _host_git(scene, "commit", "-qam", "after the run", cwd=scene.ws)
    assert not os.path.exists(marker), result.stderr


def test_a_hooks_folder_linked_to_a_tracked_folder_cannot_be_written(scene):
    scene.git("init", "-q")
    scripts = scene.mkdir("ws/scripts/hooks")
    hooks = os.path.join(scene.ws, ".git", "hooks")
    subprocess.run(["rm", "-rf", hooks], check=True)
    os.symlink("../scripts/hooks", hooks)
    if not scene.user.is_current:
        os.lchown(hooks, scene.user.uid, scene.user.gid)
    marker = os.path.join(scene.outside, "hook-ran")
    attack = _hook(marker) + "scripts/hooks/pre-commit && chmod +x scripts/hooks/pre-commit"
    scene.sh(attack, sandbox=False)
    assert os.access(os.path.join(scripts, "pre-commit"), os.X_OK), "control: the user can write the hook"
    os.unlink(os.path.join(scripts, "pre-commit"))
    result = scene.sh(attack)
    assert not os.path.exists(os.path.join(scripts, "pre-commit")), result.stderr


def test_a_hard_linked_hook_refuses_to_run(scene):
    scene.git("init", "-q")
    script = scene.write("ws/scripts/pre-commit", "#!/bin/sh\nexit 0\n", mode=0o755)
    hook = os.path.join(scene.ws, ".git", "hooks", "pre-commit")
    assert scene.sh("true").returncode == 0, "control: the repository runs"
    os.link(script, hook)
    result = scene.sh("echo changed > scripts/pre-commit")
    assert result.returncode != 0 and "hard links" in result.stderr, result.stderr
    assert scene.read("ws/scripts/pre-commit") == "#!/bin/sh\nexit 0\n"


def test_a_gitdir_naming_the_workspace_refuses_to_run(scene):
    scene.mkdir("ws/sub")
    scene.write("ws/sub/.git", f"gitdir: {scene.ws}\n")
    scene.git("init", "-q")
    result = scene.sh("echo x > f")
    assert result.returncode != 0 and "git directory" in result.stderr, result.stderr
    assert not scene.exists("ws/f")


def _fsmonitor(marker: str) -> str:
    return f"git config core.fsmonitor 'touch {marker}; false'"


def test_a_root_made_writable_by_a_glob_is_refused(scene):
    repo = scene.mkdir("src/repo")
    scene.git("init", "-q", cwd=repo)
    scene.git("init", "-q")
    marker = os.path.join(scene.outside, "fsmonitor-ran")
    attack = f"cd {repo} && {_fsmonitor(marker)}"
    profile = 'default_permissions = "dev"\n[permissions.dev]\nextends = ":workspace"\n[permissions.dev.filesystem]\n'
    scene.config(profile + f'"{repo}" = "write"\n')
    scene.sh(attack)
    _host_git(scene, "status", cwd=repo)
    assert not os.path.exists(marker), "control: a root named by a path rule is protected"
    scene.sh(attack, sandbox=False)
    _host_git(scene, "status", cwd=repo)
    assert os.path.exists(marker), "control: the planted fsmonitor runs at the host's next git status"
    os.unlink(marker)
    _host_git(scene, "config", "--unset", "core.fsmonitor", cwd=repo)
    # Protections are placed in roots named by path rules: a glob may not grant write at all.
    scene.config(profile + f'"{scene.base}/src/*" = "write"\n')
    result = scene.sh(attack)
    _host_git(scene, "status", cwd=repo)
    assert not os.path.exists(marker), result.stderr
    assert result.returncode != 0 and "grants write" in result.stderr, result.stderr


def test_a_repository_hidden_from_listing_is_still_reported(scene):
    """The post-run check lists changed folders; one the sandbox made
    unlistable (mode 0311: entered, not read) is skipped without a word, yet
    git on the host finds its .git by name and runs its config."""
    scene.git("init", "-q")
    marker = os.path.join(scene.outside, "fsmonitor-ran")
    plant = f"mkdir evil && cd evil && git init -q && {_fsmonitor(marker)} && cd .. && chmod 0311 evil"
    result = scene.sh(plant)
    _host_git(scene, "status", cwd=os.path.join(scene.ws, "evil"))
    assert os.path.exists(marker), "control: git on the host runs the new repository's fsmonitor"
    os.chmod(os.path.join(scene.ws, "evil"), 0o755)  # for the scene's clean-up
    assert "evil/.git" in result.stderr, "the run must warn about the repository it created"


@pytest.mark.parametrize("name", [".exrc", ".nvimrc"])
def test_editor_exrc_files_cannot_be_created(scene, name):
    scene.git("init", "-q")
    attack = f"echo '!touch pwned' > {name}"
    scene.sh(attack, sandbox=False)
    assert scene.exists(f"ws/{name}"), "control"
    os.unlink(os.path.join(scene.ws, name))
    scene.sh(attack)
    assert not scene.exists(f"ws/{name}")
