"""Review of the hardening: what still reaches the host side.

Each attack works without the sandbox (the control) and must fail inside it,
judged from files on the host.
"""

import os
import shutil
import sys

import pytest

from harness import must_have

pytestmark = pytest.mark.boundary

OPEN = "open review finding: "


def _target(scene):
    """A file outside the workspace that no run may change."""
    return scene.write("outside/target.txt", "original\n")


def _writable_target(scene):
    """The target, after the control has shown that this user can write it; and a repository to run in."""
    target = _target(scene)
    scene.sh(f"echo pwned > {target}", sandbox=False)
    assert scene.read("outside/target.txt") == "pwned\n", "control: the user can write the target"
    scene.write("outside/target.txt", "original\n")
    scene.git("init", "-q")
    return target


# bwrap reads --args as NUL-separated words: a NUL inside a value becomes a word
# boundary, and a non-option word ends bwrap's reading of the file, so the
# mounts, --seccomp and --block-fd that follow the environment never apply.
INJECTED = "a\\u0000--bind\\u0000/\\u0000/\\u0000--"


def test_a_project_environment_value_cannot_add_bwrap_options(scene):
    target = _writable_target(scene)
    scene.write("ws/.ringfence/config.toml", '[shell_environment_policy]\nset = { X = "a" }\n')
    scene.sh(f"echo pwned > {target}")
    assert scene.read("outside/target.txt") == "original\n", "control: a plain value changes nothing"
    scene.write("ws/.ringfence/config.toml", f'[shell_environment_policy]\nset = {{ X = "{INJECTED}" }}\n')
    result = scene.sh(f"echo pwned > {target}")
    assert scene.read("outside/target.txt") == "original\n", result.stderr


def test_an_api_environment_value_cannot_add_bwrap_options(scene):
    target = _writable_target(scene)
    script = scene.write("ws/agent.py", (
        "import os, sys\n"
        "from ringfence import Sandbox, load_policy\n"
        "value = 'a\\0--bind\\0/\\0/\\0--' if sys.argv[1] == 'inject' else 'a'\n"
        "env = dict(os.environ, X=value)\n"
        "try:\n"
        "    Sandbox(load_policy('.')).run(['sh', '-c', sys.argv[2]], env=env, capture_output=True)\n"
        "except Exception as exc:\n"
        "    print('refused:', exc)\n"))
    scene.run([sys.executable, "-P", script, "a", f"echo pwned > {target}"], sandbox=False)
    assert scene.read("outside/target.txt") == "original\n", "control: a plain value changes nothing"
    result = scene.run([sys.executable, "-P", script, "inject", f"echo pwned > {target}"],
                       sandbox=False)
    assert scene.read("outside/target.txt") == "original\n", result.stdout + result.stderr


def test_an_event_log_in_the_workspace_cannot_be_redirected(scene):
    target = _target(scene)
    scene.sh(f"echo pwned >> {target}", sandbox=False)
    assert scene.read("outside/target.txt") != "original\n", "control: the user can append to it"
    scene.write("outside/target.txt", "original\n")
    scene.git("init", "-q")
    log = os.path.join(scene.ws, "events.jsonl")
    swap = f"echo pwned >> {target}; rm events.jsonl; ln -s {target} events.jsonl; mkdir -p sub/.vscode"
    result = scene.sh(swap, args=("--events", log))
    assert scene.read("outside/target.txt") == "original\n", result.stderr


def _user_site_in_use(scene) -> bool:
    """Whether the interpreter ringfence runs on reads the user's site folder
    (a virtual environment's does not: there is nothing of it to guard)."""
    return scene.run([sys.executable, "-c", "import site; print(site.ENABLE_USER_SITE)"],
                     sandbox=False).stdout.strip() == "True"


def test_a_writable_user_site_cannot_run_code_in_ringfence(scene):
    must_have(_user_site_in_use(scene), "the interpreter running the suite reads no user site (a virtualenv)")
    marker = os.path.join(scene.outside, "pth-ran")
    site = scene.run([sys.executable, "-c", "import site; print(site.getusersitepackages())"],
                     sandbox=False).stdout.strip()
    assert site.startswith(scene.home), site
    plant = f"mkdir -p {site} && echo 'import os; open(\"{marker}\", \"w\").close()' > {site}/review.pth"
    scene.sh(plant, sandbox=False)
    scene.run([sys.executable, "-c", "pass"], sandbox=False)
    assert os.path.exists(marker), "control: a .pth in the user site runs at every Python start"
    os.unlink(marker)
    os.unlink(os.path.join(site, "review.pth"))
    scene.git("init", "-q")
    scene.config('[sandbox_workspace_write]\nwritable_roots = ["~/.local"]\n')
    result = scene.sh(plant)
    scene.ringfence("--version")
    assert not os.path.exists(marker), result.stderr


def test_a_writable_root_capped_read_only_stays_read_only(scene):
    """The user's site-packages runs its .pth files at every Python start,
    ringfence's own included: named writable, it is still capped read-only,
    and the mounts that keep protected names in place must not reopen it."""
    must_have(_user_site_in_use(scene), "the interpreter running the suite reads no user site (a virtualenv)")
    scene.git("init", "-q")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages = scene.mkdir(f"home/.local/lib/{version}/site-packages")
    planted = os.path.join(site_packages, "planted.pth")
    attack = f"echo 'import os' > {planted}"
    scene.sh(attack, sandbox=False)
    assert os.path.exists(planted), "control: the user can write there"
    os.unlink(planted)
    scene.config('default_permissions = "dev"\n[permissions.dev]\nextends = ":workspace"\n'
                 f'[permissions.dev.filesystem]\n"{site_packages}" = "write"\n')
    result = scene.sh(attack)
    assert not os.path.exists(planted), result.stderr


API_RUN_AFTER_STATE_GONE = """
import os, shutil, sys
from ringfence import Sandbox, load_policy

workspace, home, attack = sys.argv[1:4]
policy = load_policy(workspace, home=home, env=dict(os.environ),
                     overrides=[f'sandbox_workspace_write.writable_roots=["{home}"]'])
# The state folder goes between the policy's load and its first run (a user
# clearing ~/.local/state, a CI step): the run must still hide it.
shutil.rmtree(os.path.join(home, ".local", "state", "ringfence"), ignore_errors=True)
outcome = Sandbox(policy).run(["/bin/sh", "-c", attack], env=dict(os.environ), capture_output=True)
print(outcome.exit_code, outcome.stderr.decode(errors="replace"))
"""


def test_the_state_folder_stays_hidden_when_it_is_made_just_before_a_run(scene):
    state = os.path.join(scene.home, ".local", "state", "ringfence")
    planted = os.path.join(state, "cache", "seccomp-planted.bpf")
    attack = f"mkdir -p {state}/cache && printf 'x%.0s' 1 2 3 4 5 6 7 8 > {planted}"
    scene.sh(attack, sandbox=False)
    assert os.path.exists(planted), "control: the user can write ringfence's state folder"
    shutil.rmtree(state)
    script = scene.write("outside/api_run.py", API_RUN_AFTER_STATE_GONE)
    result = scene.run([sys.executable, "-P", script, scene.ws, scene.home, attack], sandbox=False)
    assert result.returncode == 0, result.stderr
    assert not os.path.exists(planted), result.stdout + result.stderr
