"""`ringfence run --isolated` through the real sandbox, as each test user.

- every change kind round-trips: the run edits its overlay (a hypothesis
  scenario of trees and edits), then `ringfence diff` applied with `git
  apply` on a copy, `ringfence apply` on the workspace and the overlay's
  own view (reported by the run) agree;
- isolation: the run sees no $HOME unless it is mounted (control: mounted,
  it does), cannot write the real workspace (control: a plain run does),
  and its /tmp is gone afterwards;
- conflicts: the user edits a file while the run lasts; apply refuses and
  names it (control: without the edit it applies);
- phases, --apply on-success, and the Python API's changeset;
- kills: SIGKILL of ringfence at random points of a run, and of `ringfence
  apply`, many times: the workspace is untouched (or, for an apply, either
  untouched or exactly applied), and the next command reports the run.

Verdicts are read on the host: the workspace's files, the patch, git.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings

from harness import Scene
from isolate_scene import EDIT_SCRIPT, as_git_sees, git_apply, own_tree, snapshot, write_tree
from test_isolate_roundtrip import scenarios

pytestmark = pytest.mark.integration
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ringfence(scene, *args, input=None, timeout=120) -> subprocess.CompletedProcess:
    """`ringfence ARGS` as the scene's user, output as bytes."""
    return subprocess.run([sys.executable, "-P", "-m", "ringfence", *args], cwd=scene.ws, env=scene.env(),
                          capture_output=True, timeout=timeout, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL, **scene._as_user())


def start(scene, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-P", "-m", "ringfence", *args], cwd=scene.ws, env=scene.env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **scene._as_user())


def edit_in_run(scene, edits: list, *args) -> dict:
    """An isolated run that makes `edits` in its overlay and reports the merged view."""
    script = scene.write("outside/edit.py", EDIT_SCRIPT)
    edits_path = scene.write("outside/edits.json", json.dumps(edits))
    # Beside the script, not in the checkout: an isolated run sees neither the
    # home directory nor the host's /tmp, where a checkout may well be.
    with open(os.path.join(TESTS, "tree_snapshot.py"), encoding="utf-8") as source:
        scene.write("outside/tree_snapshot.py", source.read())
    done = ringfence(scene, "run", "--no-tty", "--isolated", *args, "--", sys.executable, "-I", script, scene.ws,
                     edits_path, os.path.dirname(script), "-")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return json.loads(done.stdout)


def runs(scene) -> list[str]:
    try:
        return os.listdir(os.path.join(scene.home, ".local", "state", "ringfence", "runs"))
    except FileNotFoundError:
        return []


# --- round trip -------------------------------------------------------------------------

@settings(max_examples=int(os.environ.get("RINGFENCE_ISOLATED_EXAMPLES", "10")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios())
def test_every_change_kind_round_trips_through_the_sandbox(user, sandbox_available, scenario):
    initial, edits = scenario
    scene = Scene(user)
    try:
        write_tree(scene.ws, initial)
        own_tree(user, scene.ws)
        merged = edit_in_run(scene, edits)
        if not runs(scene):   # the edits changed nothing: no run is kept
            assert snapshot(scene.ws) == merged, edits
            return
        patch = ringfence(scene, "diff")
        assert patch.returncode == 0, patch.stderr
        copy = os.path.join(scene.base, "git-copy")
        shutil.copytree(scene.ws, copy, symlinks=True)
        own_tree(user, copy)
        applied = git_apply(copy, patch.stdout, user)
        assert applied.returncode == 0, (applied.stderr, patch.stdout.decode(errors="replace"))
        assert as_git_sees(snapshot(copy)) == as_git_sees(merged), patch.stdout.decode(errors="replace")
        done = ringfence(scene, "apply")
        assert done.returncode == 0, done.stderr
        assert snapshot(scene.ws) == merged, edits
        assert runs(scene) == []
    finally:
        scene.cleanup()


# --- isolation --------------------------------------------------------------------------

def test_an_isolated_run_sees_no_home_and_cannot_write_the_workspace(scene):
    scene.write("home/docs/secret.txt", "s3cret\n")
    scene.write("ws/a.txt", "a\n")
    script = ('cat "$HOME/docs/secret.txt" > leak.txt 2>&1; echo changed > a.txt; echo t > /tmp/left-behind; '
              'ls -a /tmp > tmp-during.txt; exit 0')
    before = snapshot(scene.ws)
    result = scene.sh(script, args=["--isolated"])
    assert result.returncode == 0, result.stderr
    assert snapshot(scene.ws) == before
    patch = ringfence(scene, "diff").stdout.decode()
    assert "+changed" in patch and "left-behind" in patch   # the run did run, and had a /tmp
    assert "s3cret" not in patch
    ringfence(scene, "discard")
    # Its /tmp is gone with it: the next isolated run starts from an empty one.
    scene.sh("ls -a /tmp > tmp-after.txt", args=["--isolated"])
    after = ringfence(scene, "diff").stdout.decode()
    assert "tmp-after.txt" in after and "left-behind" not in after
    ringfence(scene, "discard")
    # Control 1: a plain run writes the workspace.
    scene.sh("echo changed > a.txt")
    assert scene.read("ws/a.txt") == "changed\n"
    # Control 2: with the folder mounted, the same run reads the secret.
    scene.config(f'[[cloud.additional_mounts]]\nsource = "{scene.home}/docs"\n')
    result = scene.sh(script, args=["--isolated"])
    assert result.returncode == 0, result.stderr
    assert "+s3cret" in ringfence(scene, "diff").stdout.decode()


def test_an_additional_mount_is_read_only_unless_it_says_otherwise(scene):
    shared = scene.mkdir("shared")
    scene.write("shared/data.txt", "data\n")
    target = os.path.join(scene.home, "shared")
    scene.config(f'[[cloud.additional_mounts]]\nsource = "{shared}"\ntarget = "{target}"\n'
                 f'[[cloud.additional_mounts]]\nsource = "{scene.mkdir("cache")}"\nreadonly = false\n')
    result = scene.sh(f"cat {target}/data.txt > copied.txt; echo x > {target}/new; echo c > {scene.base}/cache/c",
                      args=["--isolated", "--apply", "on-success"])
    assert scene.read("ws/copied.txt") == "data\n", result.stderr
    assert not scene.exists("shared/new")
    assert scene.read("cache/c") == "c\n"
    scene.config('[[cloud.additional_mounts]]\nsource = "/usr"\ntarget = "/nowhere/usr"\n')
    refused = scene.sh("true", args=["--isolated"])
    assert refused.returncode == 125 and "does not exist" in refused.stderr


def test_a_project_cannot_mount_more_into_its_own_isolated_runs(scene):
    scene.write("ws/.ringfence/config.toml", f'[[cloud.additional_mounts]]\nsource = "{scene.outside}"\n')
    result = scene.sh("true", args=["--isolated"])
    assert result.returncode == 125
    assert "loosen" in result.stderr and "additional_mounts" in result.stderr


MASKED = ('default_permissions = "p"\n[permissions.p.filesystem]\n":root" = "read"\n'
          '":project_roots" = { "." = "write", "**/*.secret" = "none" }\n')


def _many_secrets(scene):
    from ringfence.backends.bwrap.plan import MASK_HELPER_THRESHOLD

    for index in range(MASK_HELPER_THRESHOLD + 12):
        scene.write(f"ws/keys/k{index}.secret", "s3cret\n")
    scene.write("ws/top.secret", "t0psecret\n")  # the overlay's root shows the run's own folder, not the host's
    scene.config(MASKED)


LEAK = "cat keys/k3.secret top.secret > leak.txt 2>&1; echo done > new.txt"


@pytest.mark.parametrize("setup", [[], ["--setup", "mkdir -p node_modules", "--setup", "echo x > keys/new.txt"]],
                         ids=["no-setup", "setup-writes-where-masks-are"])
def test_an_isolated_run_with_many_masks_starts_and_keeps_them(scene, setup):
    # Past the helper's threshold the masks are placed inside the overlay,
    # where folders show the overlay's device, and the root and what a setup
    # wrote in show the run's own upper folder: the helper's folder check
    # must know them there, or no such run could start.
    _many_secrets(scene)
    control = scene.sh(LEAK, sandbox=False)
    assert "s3cret" in scene.read("ws/leak.txt") and "t0psecret" in scene.read("ws/leak.txt"), control.stderr
    os.unlink(os.path.join(scene.ws, "leak.txt"))
    os.unlink(os.path.join(scene.ws, "new.txt"))
    result = scene.sh(LEAK, args=["--isolated", "--apply", "on-success", *setup])
    assert result.returncode == 0, result.stderr
    assert scene.read("ws/new.txt") == "done\n"
    assert "s3cret" not in scene.read("ws/leak.txt") and "t0psecret" not in scene.read("ws/leak.txt")


def test_a_secret_renamed_on_the_host_during_the_setup_stops_the_command(scene):
    # The overlay's root shows the run's own folder, so the helper cannot see
    # a host change there: the command phase compares the host's folder with
    # the scan just before it starts, and refuses it changed.
    _many_secrets(scene)
    upper = os.path.join(scene.home, ".local/state/ringfence/runs")

    def started():
        return any(os.path.exists(os.path.join(upper, run, "layers/upper/started.txt"))
                   for run in (os.listdir(upper) if os.path.isdir(upper) else ()))

    for rename in (False, True):  # control first: unchanged, the same run starts and holds
        child = start(scene, "run", "--no-tty", "--isolated", "--setup", "echo > started.txt; sleep 1", "--",
                      "/bin/sh", "-c", "cat moved.txt top.secret > leak.txt 2>&1; exit 0")
        deadline = time.monotonic() + 30
        while not started() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert started(), "the setup ran"
        if rename:
            os.rename(os.path.join(scene.ws, "top.secret"), os.path.join(scene.ws, "moved.txt"))
        out, err = child.communicate(timeout=60)
        if rename:
            assert child.returncode == 125 and b"changed while the sandbox was being built" in err, err
        else:
            assert child.returncode == 0, err
        ringfence(scene, "discard")


def _ringfence_from_the_home(scene, *args) -> subprocess.CompletedProcess:
    """`ringfence ARGS` on an interpreter copied into the scene's home, which
    an isolated run hides; it loads this one's packages (bwrap, h11) by path."""
    import h11

    venv = os.path.join(scene.home, "venv")
    if not os.path.exists(venv):
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--copies", venv], check=True,
                       capture_output=True, **scene._as_user())
    packages = os.path.dirname(os.path.dirname(h11.__file__))
    env = dict(scene.env(), PYTHONPATH=scene.env()["PYTHONPATH"] + os.pathsep + packages)
    return subprocess.run([os.path.join(venv, "bin", "python3"), "-P", "-m", "ringfence", *args], cwd=scene.ws,
                          env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          **scene._as_user())


SYSTEM_PYTHONS = [path for path in ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3")
                  if os.path.exists(path)]


def _ran(result, refusal: str) -> bool:
    """Whether the run ran, as it must where a system python3 exists;
    without one, it must have been refused before it started, saying why."""
    if not SYSTEM_PYTHONS:
        assert result.returncode == 125 and refusal in result.stderr, result.stderr
        return False
    assert result.returncode == 0, result.stderr
    return True


def test_the_mask_helper_of_an_isolated_run_finds_a_python_outside_the_hidden_home(scene):
    # ringfence's own interpreter here lives in the home, which an isolated
    # run hides: its mask helper must run on one the run still shows, or
    # refuse saying so, not fail once the sandbox is half built.
    _many_secrets(scene)
    result = _ringfence_from_the_home(scene, "run", "--no-tty", "--isolated", "--apply", "on-success", "--",
                                      "/bin/sh", "-c", "cat keys/k3.secret > leak.txt 2>&1; echo done > new.txt")
    if _ran(result, "sees neither"):
        assert scene.read("ws/new.txt") == "done\n"
        assert "s3cret" not in scene.read("ws/leak.txt")


def test_the_egress_relay_of_an_isolated_run_finds_a_python_outside_the_hidden_home(scene):
    scene.config('default_permissions = "dev"\n[permissions.dev]\nextends = ":workspace"\n'
                 '[permissions.dev.network]\nenabled = true\nmode = "limited"\n'
                 '[permissions.dev.network.domains]\n"allowed.test" = "allow"\n')
    result = _ringfence_from_the_home(scene, "run", "--no-tty", "--isolated", "--apply", "on-success", "--",
                                      "/bin/sh", "-c", 'echo "$HTTPS_PROXY" > proxy.txt')
    if _ran(result, "no Python is visible"):
        assert scene.read("ws/proxy.txt").startswith("http://"), "the command ran behind its relay"


# --- conflicts --------------------------------------------------------------------------

@pytest.mark.parametrize("user_edits", [True, False], ids=["user-edit", "control"])
def test_a_file_edited_during_the_run_is_a_conflict(scene, user_edits):
    scene.write("ws/a.txt", "a\n")
    scene.write("ws/b.txt", "b\n")
    go = os.path.join(scene.outside, "go")
    child = start(scene, "run", "--no-tty", "--isolated", "--", "sh", "-c",
                  f"echo run >> a.txt; echo run >> b.txt; while [ ! -e {go} ]; do sleep 0.05; done")
    deadline = time.monotonic() + 30
    while not any(os.path.exists(os.path.join(scene.home, ".local/state/ringfence/runs", run, "layers/upper/b.txt"))
                  for run in runs(scene)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if user_edits:
        scene.write("ws/a.txt", "the user's edit\n")
    scene.write("outside/go")
    assert child.wait(timeout=60) == 0, child.stderr.read()
    done = ringfence(scene, "apply")
    if user_edits:
        assert done.returncode == 1
        assert b"a.txt" in done.stderr and b"changed in the workspace" in done.stderr
        assert scene.read("ws/a.txt") == "the user's edit\n" and scene.read("ws/b.txt") == "b\n"
        assert b"a.txt" in ringfence(scene, "changes").stdout   # kept for review
    else:
        assert done.returncode == 0, done.stderr
        assert scene.read("ws/a.txt") == "a\nrun\n" and scene.read("ws/b.txt") == "b\nrun\n"


# --- phases, apply modes, the API ---------------------------------------------------------

def test_setup_then_command_in_one_overlay_applied_on_success(scene, tmp_path):
    events = os.path.join(scene.outside, "events.jsonl")
    result = scene.run(["sh", "-c", "cat prepared.txt > used.txt"],
                       args=["--isolated", "--setup", "echo prepared > prepared.txt", "--setup", "true",
                             "--apply", "on-success", "--events", events])
    assert result.returncode == 0, result.stderr
    assert scene.read("ws/used.txt") == "prepared\n" and scene.read("ws/prepared.txt") == "prepared\n"
    phases = [json.loads(line) for line in open(events) if '"isolate.phase"' in line]
    assert [(e["phase"], e["exit_code"]) for e in phases] == [("setup 1", 0), ("setup 2", 0), ("command", 0)]
    assert all(e["duration"] >= 0 for e in phases)
    assert runs(scene) == []


def test_on_success_keeps_a_failed_run_for_review(scene):
    result = scene.sh("echo half > half.txt; exit 3", args=["--isolated", "--apply", "on-success"])
    assert result.returncode == 3
    assert not scene.exists("ws/half.txt")
    assert "kept for review" in result.stderr
    listed = json.loads(ringfence(scene, "changes", "--json").stdout)
    assert [change["path"] for change in listed["changes"]] == ["half.txt"]
    assert ringfence(scene, "discard").returncode == 0
    assert runs(scene) == [] and ringfence(scene, "changes").returncode == 1


def test_a_failed_setup_skips_the_command(scene):
    result = scene.sh("echo ran > ran.txt", args=["--isolated", "--setup", "exit 7"])
    assert result.returncode == 7
    assert "ran.txt" not in ringfence(scene, "changes").stdout.decode()


def test_the_api_returns_a_changeset(scene):
    code = (f"import sys, json; sys.path.insert(0, {os.path.join(TESTS, '..', 'src')!r}); "
            "from ringfence import Sandbox, load_policy; "
            "o = Sandbox(load_policy('.')).run(['sh', '-c', 'echo new > n.txt; rm gone.txt'], capture_output=True, "
            "isolated=True); c = o.changeset; "
            "print(json.dumps([o.exit_code, c.lines(), c.kept, c.diff().decode()])); "
            "c.apply(); print(json.dumps([c.kept, sorted(c.applied.applied)]))")
    scene.write("ws/gone.txt", "g\n")
    done = scene.run([sys.executable, "-P", "-c", code], sandbox=False)
    assert done.returncode == 0, done.stderr
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first[0] == 0 and first[1] == ["D gone.txt", "A n.txt"] and first[2] is True
    assert "+new" in first[3] and "deleted file mode" in first[3]
    assert second == [False, ["gone.txt", "n.txt"]]
    assert scene.read("ws/n.txt") == "new\n" and not scene.exists("ws/gone.txt")


# --- kills ------------------------------------------------------------------------------

KILLS = int(os.environ.get("RINGFENCE_KILL_ITERATIONS", "8"))


def test_a_killed_isolated_run_leaves_the_workspace_as_it_was(scene):
    rng = random.Random(int(os.environ.get("RINGFENCE_KILL_SEED", "15")))
    write_tree(scene.ws, {f"f{index}": b"%d\n" % index for index in range(50)})
    own_tree(scene.user, scene.ws)
    before = snapshot(scene.ws)
    script = ("i=0; while [ $i -lt 300 ]; do echo $i > n$i; echo x >> f$((i % 50)); rm -f f$(((i + 7) % 50)); "
              "i=$((i+1)); done; sleep 2")
    reported = 0
    for _ in range(KILLS):
        child = start(scene, "run", "--no-tty", "--isolated", "--apply", "on-success", "--", "sh", "-c", script)
        time.sleep(rng.uniform(0.05, 1.2))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        assert snapshot(scene.ws) == before
        nxt = ringfence(scene, "changes")
        reported += b"was interrupted" in nxt.stderr
        ringfence(scene, "discard")
        assert snapshot(scene.ws) == before
    assert runs(scene) == []
    assert reported >= KILLS // 3, reported   # many kills landed while the run was under way


def test_a_killed_apply_is_rolled_back_or_forward_by_the_next_command(scene):
    rng = random.Random(int(os.environ.get("RINGFENCE_KILL_SEED", "15")))
    initial = {f"src/m{index:03d}.py": b"line\n" * (index % 5 + 1) for index in range(150)}
    write_tree(scene.ws, initial)
    own_tree(scene.user, scene.ws)
    edits = [["append", path, b"more\n".hex()] for path in sorted(initial)[:120]]
    edits += [["delete", path] for path in sorted(initial)[120:]]
    edits += [["write", f"new/n{index}", b"n\n".hex(), 0o600] for index in range(30)]
    seen = {"before": 0, "after": 0}
    for _ in range(KILLS):
        before = snapshot(scene.ws)
        after = edit_in_run(scene, edits)
        child = start(scene, "apply")
        time.sleep(rng.uniform(0.15, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        ringfence(scene, "changes")   # the next command finishes or undoes it
        now = snapshot(scene.ws)
        assert now in (before, after)
        seen["before" if now == before else "after"] += 1
        if now == before:
            assert ringfence(scene, "apply").returncode == 0
            assert snapshot(scene.ws) == after
        # Back to the start for the next round.
        shutil.rmtree(scene.ws)
        os.mkdir(scene.ws)
        write_tree(scene.ws, initial)
        own_tree(scene.user, scene.base)
        for run in runs(scene):
            ringfence(scene, "discard", "--run", run)
    assert runs(scene) == []


# --- commits ----------------------------------------------------------------------------

def test_commits_arrive_as_a_ref_and_what_the_run_wrote_into_git_does_not(scene):
    scene.git("init", "-q", "-b", "main")
    scene.write("ws/a.txt", "a\n")
    scene.git("add", "a.txt")
    scene.git("commit", "-qm", "start")
    start_head = scene.git("rev-parse", "HEAD").stdout.decode().strip()
    config = scene.read("ws/.git/config")
    marker = os.path.join(scene.outside, "planted-ran")
    script = ("echo b > b.txt && git add b.txt && git commit -qm 'made in the run' && "
              f"git config core.fsmonitor 'touch {marker}; false' && "
              f"printf '#!/bin/sh\\ntouch {marker}\\n' > .git/hooks/post-checkout && chmod +x .git/hooks/post-checkout")
    result = scene.sh(script, args=["--isolated"])
    assert result.returncode == 0, result.stderr
    refs = scene.git("for-each-ref", "--format=%(refname) %(objectname)", "refs/ringfence").stdout.decode().split()
    assert len(refs) == 2 and refs[0].startswith("refs/ringfence/") and refs[0].endswith("/main"), refs
    assert scene.git("log", "-1", "--format=%s", refs[0]).stdout.decode().strip() == "made in the run"
    assert scene.git("show", f"{refs[0]}:b.txt").stdout == b"b\n"
    assert scene.git("rev-parse", "HEAD").stdout.decode().strip() == start_head
    assert scene.read("ws/.git/config") == config
    assert not scene.exists("ws/.git/hooks/post-checkout")
    # The user's next git commands, the run's branch checked out, run nothing it planted.
    scene.sh(f"git status; git checkout -q {refs[0]}; git log -1 >/dev/null", sandbox=False)
    assert not os.path.exists(marker)
    # Control: what the run wrote into its .git (in the run's upper layer) does run when copied over.
    upper = json.loads(ringfence(scene, "changes", "--json").stdout)["upper"]
    copy = os.path.join(scene.base, "naive")
    shutil.copytree(scene.ws, copy, symlinks=True)
    shutil.copy(os.path.join(upper, ".git", "config"), os.path.join(copy, ".git", "config"))
    shutil.copy(os.path.join(upper, ".git", "hooks", "post-checkout"), os.path.join(copy, ".git", "hooks"))
    own_tree(scene.user, copy)
    scene.sh("git status >/dev/null; git checkout -q -b x", sandbox=False, cwd=copy)
    assert os.path.exists(marker), "control: the planted config and hook should run"


def test_a_clean_base_system_replaces_the_hosts(scene):
    """--rootfs: the run sees the given tree as its read-only root, not the host's."""
    root = scene.mkdir("rootfs")
    for folder in ("usr/bin", "etc"):
        scene.mkdir(f"rootfs/{folder}")
    shutil.copy("/bin/sh", os.path.join(root, "usr/bin/sh"))
    libraries = subprocess.run(["ldd", "/bin/sh"], capture_output=True, text=True).stdout.split()
    for library in (word for word in libraries if word.startswith("/")):
        target = os.path.join(root, "usr", library.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(library, target)
    for name in ("bin", "lib", "lib64"):
        os.symlink(f"usr/{name}", os.path.join(root, name))
    scene.write("rootfs/etc/marker", "clean\n")
    own_tree(scene.user, root)
    script = 'read x < /etc/marker; echo "$x" > seen.txt; [ -e /etc/passwd ] && echo host > leak.txt; echo x > /etc/y; true'
    result = scene.sh(script, args=["--isolated", "--rootfs", root, "--apply", "on-success"])
    assert scene.read("ws/seen.txt") == "clean\n", result.stderr
    assert not scene.exists("ws/leak.txt") and not scene.exists("rootfs/etc/y")
