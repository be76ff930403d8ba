"""Review of the hardening: protected names (git hooks and config, editor and
agent folders) and the post-run report of those the sandbox creates.

The verdict is what git on the host does next, or what ringfence reported.
Tests marked xfail(strict) show an open finding (see test_review_host_side).
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


@pytest.mark.xfail(strict=True, reason=OPEN + "a symlink inside a protected .git (hooks/pre-commit -> "
                                             "../../scripts/pre-commit) leads to a writable file: .git is "
                                             "read-only, the hook it runs is not")
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


def _fsmonitor(marker: str) -> str:
    return f"git config core.fsmonitor 'touch {marker}; false'"


@pytest.mark.xfail(strict=True, reason=OPEN + "a root made writable by a glob rule (\"/src/*\" = \"write\") gets "
                                             "no protection and no post-run check: only path rules count")
def test_a_root_made_writable_by_a_glob_is_protected(scene):
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
    scene.config(profile + f'"{scene.base}/src/*" = "write"\n')
    result = scene.sh(attack)
    _host_git(scene, "status", cwd=repo)
    assert not os.path.exists(marker), result.stderr


def test_a_repository_hidden_from_listing_is_still_reported(scene, request):
    """The post-run check lists changed folders; one the sandbox made
    unlistable (mode 0311: entered, not read) is skipped without a word, yet
    git on the host finds its .git by name and runs its config."""
    if not scene.user.is_current or os.getuid() != 0:
        # root lists any folder whatever its mode: only an ordinary user's run misses it.
        request.applymarker(pytest.mark.xfail(strict=True, reason=OPEN + "an unlistable folder hides a new "
                                                                         "repository from the post-run report"))
    scene.git("init", "-q")
    marker = os.path.join(scene.outside, "fsmonitor-ran")
    plant = f"mkdir evil && cd evil && git init -q && {_fsmonitor(marker)} && cd .. && chmod 0311 evil"
    result = scene.sh(plant)
    _host_git(scene, "status", cwd=os.path.join(scene.ws, "evil"))
    assert os.path.exists(marker), "control: git on the host runs the new repository's fsmonitor"
    os.chmod(os.path.join(scene.ws, "evil"), 0o755)  # for the scene's clean-up
    assert "evil/.git" in result.stderr, "the run must warn about the repository it created"


@pytest.mark.xfail(strict=True, reason=OPEN + ".exrc and .nvimrc (vim/neovim 'exrc') left the protected list "
                                             "after they were added; the boundary test lost them with it")
@pytest.mark.parametrize("name", [".exrc", ".nvimrc"])
def test_editor_exrc_files_cannot_be_created(scene, name):
    scene.git("init", "-q")
    attack = f"echo '!touch pwned' > {name}"
    scene.sh(attack, sandbox=False)
    assert scene.exists(f"ws/{name}"), "control"
    os.unlink(os.path.join(scene.ws, name))
    scene.sh(attack)
    assert not scene.exists(f"ws/{name}")
