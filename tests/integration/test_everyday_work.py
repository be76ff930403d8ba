"""Everyday work keeps working inside the default sandbox."""

import os
import subprocess

import pytest

pytestmark = pytest.mark.integration


def test_git_init_add_commit_in_the_workspace(scene):
    script = ("git init -q proj && cd proj && echo hello > a.txt && git add a.txt && "
              "git commit -qm first && echo more >> a.txt && git commit -qam second && "
              "git log --oneline | wc -l > ../count.txt")
    result = scene.sh(script)
    assert result.returncode == 0, result.stderr
    assert scene.read("ws/count.txt").strip() == "2"
    assert scene.exists("ws/proj/.git/index")
    assert not scene.exists("ws/proj/.git/index.lock")


def test_commits_in_the_projects_own_repository_work_in_place(scene):
    scene.git("init", "-q")
    scene.write("ws/a.txt", "1\n")
    scene.git("add", "a.txt")
    scene.git("commit", "-qm", "first")
    head = scene.git("rev-parse", "HEAD").stdout.decode().strip()
    config = scene.read("ws/.git/config")
    scene.write("ws/a.txt", "2\n")
    result = scene.sh("git status --short > status.txt && git diff > diff.txt && git log --oneline > log.txt")
    assert result.returncode == 0, result.stderr
    assert "a.txt" in scene.read("ws/status.txt")
    assert "+2" in scene.read("ws/diff.txt")
    scene.write("ws/b.txt", "new\n")
    result = scene.sh("git add b.txt && git commit -qam second && git commit -q --amend -m 'second, amended'")
    assert result.returncode == 0, result.stderr
    log = scene.git("log", "--format=%s %P").stdout.decode().splitlines()
    assert log[0] == f"second, amended {head}"
    assert scene.git("show", "HEAD:b.txt").stdout == b"new\n"
    assert scene.read("ws/.git/config") == config
    assert "b.txt" not in scene.git("status", "--short").stdout.decode()


def _write_wheel(path: str):
    """A minimal pure-Python wheel: pip installs it without building anything,
    so the test needs no network and no build backend inside the sandbox."""
    import zipfile

    files = {
        "localpkg/__init__.py": "VALUE = 42\n",
        "localpkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: localpkg\nVersion: 1.0\n",
        "localpkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "localpkg-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
        wheel.writestr("localpkg-1.0.dist-info/RECORD", record)


def test_python_and_a_venv_with_pip_install(scene):
    _write_wheel(scene.write("ws/localpkg-1.0-py3-none-any.whl"))
    script = ("python3 -m venv venv && "
              "venv/bin/python -m pip install -q --no-index ./localpkg-1.0-py3-none-any.whl && "
              "venv/bin/python -c 'import localpkg; print(localpkg.VALUE)' > value.txt")
    result = scene.sh(script, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert scene.read("ws/value.txt").strip() == "42"


def test_a_compiler_works(scene):
    scene.write("ws/hello.c", '#include <stdio.h>\nint main(void){puts("compiled");return 0;}\n')
    result = scene.sh("cc -o hello hello.c && ./hello > out.txt")
    assert result.returncode == 0, result.stderr
    assert scene.read("ws/out.txt") == "compiled\n"


def test_a_test_suite_runs(scene):
    scene.write("ws/test_sample.py", "def test_ok():\n    assert 1 + 1 == 2\n")
    result = scene.sh("python3 -m unittest -q 2>err.txt; python3 -c 'import test_sample; "
                      "test_sample.test_ok(); open(\"passed\", \"w\").write(\"yes\")'")
    assert scene.read("ws/passed") == "yes", result.stderr


def test_private_tmp_is_writable_and_gone_afterwards(scene):
    marker = "rf-private-" + os.urandom(4).hex()
    result = scene.sh(f"echo x > /tmp/{marker} && cat /tmp/{marker} > seen.txt && echo $TMPDIR > tmpdir.txt")
    assert result.returncode == 0, result.stderr
    assert scene.read("ws/seen.txt") == "x\n"
    assert scene.read("ws/tmpdir.txt") == "/tmp\n"
    assert not os.path.exists(f"/tmp/{marker}")


def test_exit_status_passes_through(scene):
    assert scene.sh("exit 42").returncode == 42
    assert scene.sh("kill -TERM $$").returncode == 128 + 15


def test_command_not_found_is_127(scene):
    result = scene.run(["no-such-command-xyz"])
    assert result.returncode == 127
    assert "not found" in result.stderr


def test_command_not_executable_is_126(scene):
    scene.write("ws/script.sh", "#!/bin/sh\necho hi\n", mode=0o644)
    result = scene.run(["./script.sh"])
    assert result.returncode == 126
    assert "not executable" in result.stderr


def test_missing_bubblewrap_is_125_and_says_so(scene):
    result = scene.run(["true"], env={"RINGFENCE_BWRAP": "/nonexistent/bwrap"})
    assert result.returncode == 125
    assert "RINGFENCE_BWRAP" in result.stderr


def test_config_error_is_125_and_names_file_and_key(scene):
    config = scene.config('sandbox_mode = "workspace-wrte"\n')
    result = scene.run(["true"])
    assert result.returncode == 125
    assert config in result.stderr and "sandbox_mode" in result.stderr and "workspace-write" in result.stderr
    # The same code for the commands that only read the policy.
    for command in (["status"], ["explain", "."]):
        result = scene.ringfence(*command)
        assert result.returncode == 125 and config in result.stderr, command


def test_danger_full_access_runs_unwrapped_and_says_so(scene):
    target = scene.write("outside/target.txt", "original\n")
    result = scene.sh(f"echo changed > {target}", args=["--sandbox", "danger-full-access"])
    assert result.returncode == 0
    assert "WITHOUT a sandbox" in result.stderr
    assert scene.read("outside/target.txt") == "changed\n"


def test_read_only_mode_denies_workspace_writes(scene):
    result = scene.sh("echo x > out.txt", args=["--sandbox", "read-only"])
    assert result.returncode != 0
    assert not scene.exists("ws/out.txt")


def test_named_profile_from_config(scene):
    scene.config('[permissions.ci.filesystem]\n":root" = "read"\n":project_roots" = { "." = "read", "build" = "write" }\n')
    scene.mkdir("ws/build")
    result = scene.sh("echo a > build/out.txt; echo b > top.txt", args=["-P", "ci"])
    assert scene.read("ws/build/out.txt") == "a\n"
    assert not scene.exists("ws/top.txt"), result.stderr


def test_status_and_explain(scene):
    status = scene.ringfence("status")
    assert status.returncode == 0, status.stderr
    assert ":workspace" in status.stdout and "bwrap" in status.stdout
    explain = scene.ringfence("explain", "/etc/passwd", "--json")
    assert '"access": "read"' in explain.stdout
    scene.write("home/.ssh/id_rsa", "KEY")
    explain = scene.ringfence("explain", os.path.join(scene.home, ".ssh/id_rsa"))
    assert ": none" in explain.stdout and "credentials" in explain.stdout


def test_stdin_passes_through(scene):
    result = scene.run(["sh", "-c", "cat > got.txt"], input="piped data\n")
    assert result.returncode == 0, result.stderr
    assert scene.read("ws/got.txt") == "piped data\n"


def test_a_program_in_the_hosts_tmp_is_not_found_and_says_why(scene):
    """A virtualenv made in the host's /tmp: /tmp is private to each run."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="rf-venv-", dir="/tmp")
    try:
        os.chmod(folder, 0o755)
        tool = os.path.join(folder, "tool")
        with open(tool, "w") as handle:
            handle.write("#!/bin/sh\necho ran\n")
        os.chmod(tool, 0o755)
        script = scene.write("ws/script.py", f"#!{tool}\n", mode=0o755)
        control = scene.run([tool], sandbox=False)
        assert control.stdout == "ran\n", "control"
        for argv, env in (([tool], None), (["tool"], {"PATH": folder + ":" + "/usr/bin:/bin"}), ([script], None)):
            result = scene.run(argv, env=env)
            assert result.returncode == 127, (argv, result.stderr)
            assert "private to each run" in result.stderr and ":slash_tmp" in result.stderr
            assert "Traceback" not in result.stderr
    finally:
        import shutil

        shutil.rmtree(folder)


def test_a_writable_folder_holding_other_users_closed_folders_works(scene):
    """A shared writable folder (the host's /tmp, say) holds other users'
    folders: the scan for protected names passes by those this user can
    neither list nor write (nothing can be planted in them)."""
    shared = scene.mkdir("outside/shared")
    closed = os.path.join(shared, "someone-elses")
    os.mkdir(closed)  # the suite's user's, not the scene's (as nobody: another user's)
    os.chmod(closed, 0o711)
    os.chmod(shared, 0o1777)
    try:
        scene.git("init", "-q")
        scene.config(f'[sandbox_workspace_write]\nwritable_roots = ["{shared}"]\n')
        result = scene.sh(f"touch {shared}/written")
        assert result.returncode == 0, result.stderr
        assert scene.exists("outside/shared/written")
    finally:
        os.chmod(closed, 0o755)
