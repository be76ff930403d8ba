"""When the sandbox cannot be built exactly as the policy says, the command
does not run, and the error says what failed and how to fix it."""

import json
import os
import stat
import sys

import pytest

pytestmark = pytest.mark.integration


def fake_bwrap(scene, script: str) -> str:
    path = scene.write("fake-bwrap", "#!/bin/sh\n" + script, mode=0o755)
    os.chmod(path, 0o755 | stat.S_IXOTH)
    return path


def test_denied_path_through_a_writable_symlink_refuses_to_run(scene):
    scene.write("outside/real/secret.txt", "s3cret")
    os.symlink(os.path.join(scene.outside, "real"), os.path.join(scene.ws, "link"))
    scene.config('default_permissions = "p"\n[permissions.p.filesystem]\n":root" = "read"\n'
                 f'":project_roots" = {{ "." = "write" }}\n"{scene.ws}/link/secret.txt" = "none"\n')
    result = scene.sh("touch ran")
    assert result.returncode == 125
    assert not scene.exists("ws/ran")
    assert "symlink" in result.stderr and f"{scene.ws}/link" in result.stderr and "fix:" in result.stderr


def test_protected_name_that_is_a_symlink_refuses_to_run(scene):
    os.symlink(scene.outside, os.path.join(scene.ws, ".codex"))
    result = scene.sh("touch ran")
    assert result.returncode == 125 and not scene.exists("ws/ran")
    assert ".codex" in result.stderr and "symlink" in result.stderr
    # status still shows the policy, with what keeps it from running.
    status = scene.ringfence("status")
    assert status.returncode == 0, status.stderr
    assert "CANNOT RUN" in status.stdout and ".codex" in status.stdout and "filesystem" in status.stdout
    data = json.loads(scene.ringfence("status", "--json").stdout)
    assert any(".codex" in refusal["message"] for refusal in data["refusals"])
    explained = scene.ringfence("explain", ".codex")
    assert explained.returncode == 0 and "cannot run" in explained.stdout


def test_nested_protected_name_that_is_a_symlink_refuses_to_run(scene):
    scene.mkdir("ws/app")
    os.symlink(scene.outside, os.path.join(scene.ws, "app", ".vscode"))
    result = scene.sh("touch ran")
    assert result.returncode == 125 and not scene.exists("ws/ran")
    assert "symlink" in result.stderr and "fix:" in result.stderr


def test_glob_rooted_at_slash_is_refused(scene):
    scene.config('default_permissions = "p"\n[permissions.p.filesystem]\n":root" = "read"\n"/**/*.pem" = "none"\n')
    result = scene.sh("touch ran")
    assert result.returncode == 125 and not scene.exists("ws/ran")
    assert "rooted at" in result.stderr


def test_unreadable_directory_under_a_glob_fails_closed(ordinary_scene):
    """Root can list a mode-000 directory, so this runs as an ordinary user."""
    scene = ordinary_scene
    locked = scene.mkdir("ws/locked")
    os.chmod(locked, 0)
    scene.config('default_permissions = "p"\n[permissions.p.filesystem]\n":root" = "read"\n'
                 '":project_roots" = { "." = "write", "**/*.key" = "none" }\n')
    result = scene.sh("touch ran")
    os.chmod(locked, 0o755)
    assert result.returncode == 125 and not scene.exists("ws/ran")
    assert "cannot list" in result.stderr and "locked" in result.stderr


def test_bwrap_too_old_is_refused(scene):
    scene.extra_env["RINGFENCE_BWRAP"] = fake_bwrap(scene, 'echo "bubblewrap 0.4.0"\n')
    result = scene.sh("touch ran")
    assert result.returncode == 125 and not scene.exists("ws/ran")
    assert ">= 0.8" in result.stderr


def test_refused_user_namespaces_are_explained(scene):
    """A bwrap that cannot create namespaces (as under Ubuntu's AppArmor rule):
    the run stops with 125, bwrap's own words and what to do about it."""
    scene.extra_env["RINGFENCE_BWRAP"] = fake_bwrap(
        scene, 'if [ "$1" = --version ]; then echo "bubblewrap 0.9.0"; exit 0; fi\n'
               'echo "bwrap: setting up uid map: Permission denied" >&2\nexit 1\n')
    result = scene.sh("touch ran")
    assert result.returncode == 125 and not scene.exists("ws/ran")
    assert "user namespaces are refused" in result.stderr
    assert "setting up uid map" in result.stderr
    assert "fix:" in result.stderr


def test_a_domain_pattern_that_cannot_be_enforced_is_refused_not_weakened(scene):
    scene.config('default_permissions = "net"\n[permissions.net]\nextends = ":workspace"\n'
                 '[permissions.net.network]\nenabled = true\nmode = "limited"\n'
                 '[permissions.net.network.domains]\n"pypi.org" = "allow"\n"*.*.example.com" = "deny"\n')
    result = scene.sh("touch ran")
    assert result.returncode == 125 and not scene.exists("ws/ran")
    assert "*.*.example.com" in result.stderr and "fix:" in result.stderr


def test_command_rule_refuses_before_spawning(scene):
    scene.config('[[rules]]\nprefix = "touch"\nallow = false\n')
    result = scene.run(["touch", "ran"])
    assert result.returncode == 126 and not scene.exists("ws/ran")
    assert 'prefix = "touch"' in result.stderr


def test_a_failed_command_says_which_rule_denied_its_path(scene):
    secret = scene.write("home/.aws/credentials", "[default]\naws_secret_access_key = x\n")
    result = scene.run(["cat", secret])
    assert result.returncode != 0
    assert f"denied by the sandbox: read of {secret}" in result.stderr
    assert ":credentials" in result.stderr and "to allow it" in result.stderr


def test_repositories_created_inside_are_reported(scene):
    """Their config would run on the host when git is used there: the run warns."""
    scene.git("init", "-q")
    scene.mkdir("ws/vendor/lib")
    result = scene.sh("git init -q vendor/lib/new && git init -q fresh")
    assert result.returncode == 0, result.stderr
    assert "created git repositories" in result.stderr
    assert f"{scene.ws}/vendor/lib/new/.git" in result.stderr and f"{scene.ws}/fresh/.git" in result.stderr
    quiet = scene.sh("true")
    assert "created git repositories" not in quiet.stderr


def test_command_line_mistakes_are_one_clear_line_not_a_traceback(scene):
    conflicting = scene.sh("touch ran", args=("--sandbox", "read-only", "--sandbox", "danger-full-access"))
    assert conflicting.returncode == 125 and "given twice" in conflicting.stderr
    assert not scene.exists("ws/ran")
    events = scene.sh("true", args=("--events", os.path.join(scene.base, "missing", "events.jsonl")))
    assert events.returncode == 125 and "cannot write the event log" in events.stderr
    gone = scene.mkdir("ws/gone")
    vanished = scene.run(["sh", "-c", f"cd {gone} && rmdir {gone} && {sys.executable} -P -m ringfence run -- true"],
                         sandbox=False)
    assert vanished.returncode == 125 and "no longer exists" in vanished.stderr
    never = scene.sh("touch ran", args=("--timeout", "nan"))
    assert never.returncode == 125 and "--timeout" in never.stderr and not scene.exists("ws/ran")
    scene.config("[limits]\ntimeout = inf\n")
    infinite = scene.sh("touch ran")
    assert infinite.returncode == 125 and "limits.timeout" in infinite.stderr and not scene.exists("ws/ran")
    for result in (conflicting, events, vanished, never, infinite):
        assert "Traceback" not in result.stderr


def test_running_from_the_root_directory_is_refused_before_any_scan(scene):
    result = scene.run([sys.executable, "-P", "-m", "ringfence", "run", "--cd", "/", "--", "true"], sandbox=False,
                       timeout=30)
    assert result.returncode == 125 and "contains your home directory" in result.stderr, result.stderr


def test_explain_gives_keys_that_load_and_honours_exceptions_and_cd(scene):
    scene.git("init", "-q")
    scene.write("ws/sub/.env", "x")
    scene.write("ws/sub/.env.example", "x")
    result = scene.ringfence("explain", "--cd", os.path.join(scene.ws, "sub"), ".env", ".env.example",
                             cwd=scene.base)
    assert result.returncode == 0, result.stderr
    assert f'add "{os.path.join(scene.ws, "sub", ".env")}" = "read"' in result.stdout \
        or 'add "~/' in result.stdout
    assert "this file was not there" not in result.stdout
    key = result.stdout.split('add "', 1)[1].split('"', 1)[0]
    scene.config(f'default_permissions = "p"\n[permissions.p]\nextends = ":workspace"\n'
                 f'[permissions.p.filesystem]\n"{key}" = "read"\n')
    assert scene.sh("cat sub/.env").returncode == 0
