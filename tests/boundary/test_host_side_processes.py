"""What ringfence starts on the host (bwrap, the mask helper) runs with an
environment of ringfence's own: nothing a policy or a project sets for the
command reaches it. Judged on the host: a preloaded library that ran outside
the sandbox leaves a file where the sandbox cannot write."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from harness import must_have

pytestmark = pytest.mark.boundary

PLANTED = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void planted(void) {
    FILE *marker = fopen("%s", "a");
    if (marker) { fprintf(marker, "ran in pid %%d\n", getpid()); fclose(marker); }
}
"""


def planted_library(scene) -> tuple[str, str]:
    """A library that, once loaded anywhere, appends to a file outside the
    workspace (read-only inside the sandbox)."""
    must_have(shutil.which("gcc") is not None, "gcc builds the planted library")
    marker = os.path.join(scene.outside, "preload-ran")
    source = scene.write("ws/planted.c", PLANTED % marker)
    library = os.path.join(scene.ws, "planted.so")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", library, source], check=True)
    os.chmod(library, 0o755)
    return library, marker


def test_project_environment_never_reaches_bwrap_on_the_host(scene):
    library, marker = planted_library(scene)
    scene.git("init", "-q")
    scene.write("ws/.ringfence/config.toml",
                f'[shell_environment_policy]\nset = {{ LD_PRELOAD = "{library}" }}\n')
    subprocess.run(["/bin/true"], env={"LD_PRELOAD": library}, check=True)
    assert os.path.exists(marker), "control: the library should run wherever it is preloaded"
    os.unlink(marker)
    result = scene.run(["/bin/true"])
    assert result.returncode == 0, result.stderr
    assert not os.path.exists(marker), open(marker).read()
    # The command itself still gets the variable it was given.
    result = scene.run(["/bin/sh", "-c", 'echo "$LD_PRELOAD"'])
    assert result.stdout.strip() == library


def test_mask_helper_gets_no_policy_environment(scene):
    """With many masks, a helper with the capability to mount runs first inside
    the sandbox; a preloaded library there could undo the masks."""
    library, marker = planted_library(scene)
    scene.git("init", "-q")
    for index in range(60):
        scene.write(f"ws/secrets/s{index}.secret", "secret\n")
    scene.config('default_permissions = "p"\n[permissions.p.filesystem]\n":root" = "read"\n'
                 '":project_roots" = { "." = "write", "**/*.secret" = "none" }\n'
                 f'[shell_environment_policy]\nset = {{ LD_PRELOAD = "{library}" }}\n')
    # Inside, the helper would write its marker into the workspace, which it can.
    inner_marker = os.path.join(scene.ws, "helper-preload-ran")
    with open(os.path.join(scene.ws, "planted.c")) as handle:
        source = handle.read().replace(marker, inner_marker)
    scene.write("ws/planted.c", source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", library, os.path.join(scene.ws, "planted.c")], check=True)
    subprocess.run(["/bin/true"], env={"LD_PRELOAD": library}, check=True)
    assert os.path.exists(inner_marker), "control"
    os.unlink(inner_marker)
    result = scene.run(["/bin/cat", "secrets/s0.secret"])
    assert result.returncode != 0 and "secret" not in result.stdout
    # Exactly one process loaded it: the command (cat), not the helper before it.
    lines = open(inner_marker).read().splitlines() if os.path.exists(inner_marker) else []
    assert len(lines) == 1, lines


def command_lines_holding(text: str) -> list[str]:
    """Every process's command line that holds `text`, as any user can read them."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                line = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in line:
            found.append(line)
    return found


def test_environment_values_never_appear_on_a_host_command_line(scene):
    """Command lines are readable by every user of the machine: a secret the
    command is given must not sit in bwrap's."""
    secret = "s3cr3t-value-" + os.urandom(4).hex()
    scene.git("init", "-q")
    scene.config(f'[shell_environment_policy]\nset = {{ VISIBLE_ONLY_INSIDE = "{secret}" }}\n')
    control = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)", secret])
    try:
        deadline = time.time() + 5
        while not command_lines_holding(secret) and time.time() < deadline:
            time.sleep(0.02)
        assert command_lines_holding(secret), "control: a value on a command line is visible to all"
    finally:
        control.kill()
        control.wait()
    run = subprocess.Popen([sys.executable, "-P", "-m", "ringfence", "run", "--no-tty", "--",
                            "/bin/sh", "-c", 'test -n "$VISIBLE_ONLY_INSIDE" && touch seen && sleep 2'],
                           cwd=scene.ws, env=scene.env(), stdin=subprocess.DEVNULL,
                           **({} if scene.user.is_current else
                              {"user": scene.user.uid, "group": scene.user.gid, "extra_groups": []}))
    try:
        deadline = time.time() + 20
        while not scene.exists("ws/seen"):
            assert time.time() < deadline and run.poll() is None, "the run did not start"
            time.sleep(0.05)
        assert command_lines_holding(secret) == []
    finally:
        run.wait(timeout=30)
