"""Other processes on the host: invisible, unsignalable, their memory unreadable;
and no way to gain privileges (mount, setuid) inside."""

import os
import shutil
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.boundary

SECRET = "victim-secret-5d2e"
VICTIM = """
import signal, sys, time
log = sys.argv[1]
def record(number, frame):
    with open(log, "a") as handle:
        handle.write(f"{number}\\n")
for name in ("SIGTERM", "SIGUSR1", "SIGINT", "SIGHUP"):
    signal.signal(getattr(signal, name), record)
open(log + ".ready", "w").close()
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def victim(scene):
    log = os.path.join(scene.outside, "signals.log")
    kwargs = {} if scene.user.is_current else {"user": scene.user.uid, "group": scene.user.gid,
                                                "extra_groups": []}
    process = subprocess.Popen([sys.executable, "-c", VICTIM, log],
                               env={"RF_VICTIM_TOKEN_FREE_NAME": SECRET, "PATH": "/usr/bin:/bin"}, **kwargs)
    deadline = time.time() + 10
    while not os.path.exists(log + ".ready"):
        assert time.time() < deadline, "victim did not start"
        time.sleep(0.02)
    yield process, log
    process.kill()
    process.wait()


def test_signal_a_host_process(scene, victim):
    process, log = victim
    script = f"kill -USR1 {process.pid}; kill -TERM {process.pid}"
    scene.sh(script, sandbox=False)
    time.sleep(0.5)
    assert os.path.exists(log), "control could not signal the victim"
    os.unlink(log)
    scene.sh(script)
    time.sleep(0.5)
    assert not os.path.exists(log)
    assert process.poll() is None


def test_see_a_host_process(scene, victim):
    process, _ = victim
    script = f"ls /proc/{process.pid} > leak.txt 2>&1; ps -e -o pid,comm >> leak.txt 2>&1; ls /proc >> leak.txt"
    scene.sh(script, sandbox=False)
    assert "environ" in (scene.read("ws/leak.txt") or ""), "control could not see the victim"
    scene.write("ws/leak.txt", "")
    scene.sh(script)
    seen = scene.read("ws/leak.txt") or ""
    assert "environ" not in seen
    assert f"\n{process.pid}\n" not in "\n" + seen


def test_read_proc_environ_of_a_host_process(scene, victim):
    process, _ = victim
    script = f"cat /proc/{process.pid}/environ > leak.txt; cat /proc/{process.pid}/cmdline >> leak.txt"
    scene.sh(script, sandbox=False)
    assert SECRET in (scene.read("ws/leak.txt") or ""), "control could not read the victim's environment"
    scene.write("ws/leak.txt", "")
    result = scene.sh(script)
    assert SECRET not in (scene.read("ws/leak.txt") or "") + result.stdout + result.stderr


def test_mount_to_redirect_a_read_only_path(scene):
    target = scene.write("outside/target.txt", "original\n")
    scene.write("ws/src/marker", "inside\n")
    redirect = f"mount --bind src {scene.outside} && echo pwned > {target}"
    control = scene.sh(f"unshare -Urm sh -c '{redirect}'", sandbox=False)
    assert scene.read("ws/src/target.txt") == "pwned\n", f"control could not mount: {control.stderr}"
    os.unlink(os.path.join(scene.ws, "src/target.txt"))
    scene.sh(f"{redirect}; unshare -Urm sh -c '{redirect}'; unshare -m sh -c '{redirect}'")
    assert not scene.exists("ws/src/target.txt")
    assert scene.read("outside/target.txt") == "original\n"


@pytest.fixture
def unprivileged_scene(sandbox_available):
    """A scene for the unprivileged user; building a setuid-root probe needs a root suite."""
    from harness import Scene, check_user_can_run_ringfence, must_have, unprivileged_user

    must_have(os.getuid() == 0, "a setuid-root probe can only be built when the suite runs as root")
    user = unprivileged_user()
    check_user_can_run_ringfence(user)
    world = Scene(user)
    yield world
    world.cleanup()


def test_setuid_binary_gives_no_privilege(unprivileged_scene):
    scene = unprivileged_scene
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler is needed to build the setuid probe"
    source = os.path.join(scene.base, "probe.c")
    with open(source, "w") as handle:
        handle.write('#include <fcntl.h>\n#include <unistd.h>\n'
                     'int main(int c, char **v) { int fd = open(v[1], O_CREAT | O_WRONLY, 0600);'
                     ' return fd < 0; }\n')
    binary = os.path.join(scene.base, "probe")
    subprocess.run([compiler, "-o", binary, source], check=True)
    os.chown(binary, 0, 0)
    os.chmod(binary, 0o4755)
    rootonly = os.path.join(scene.base, "rootonly")
    os.mkdir(rootonly, 0o700)
    marker = os.path.join(rootonly, "marker")
    scene.run([binary, marker], sandbox=False)
    assert os.path.exists(marker), "control: the setuid probe did not gain root"
    os.unlink(marker)
    scene.run([binary, marker])
    assert not os.path.exists(marker)
