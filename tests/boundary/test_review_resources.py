"""Review of the hardening: host memory a run can pin, and ringfence's own
host-side work that the sandbox can stall or send astray.
"""

import os
import subprocess
import sys
import time

import pytest
from test_resources import shmem

pytestmark = pytest.mark.boundary

OPEN = "open review finding: "
MIB = 1 << 20
PINNED_MIB = 384


PIN = f"""
import os, sys, time
where = sys.argv[1]
chunk = b"\\1" * {MIB}
fd = os.memfd_create("pin") if where == "memfd" else os.open("/dev/shm/pin", os.O_WRONLY | os.O_CREAT, 0o600)
try:
    for _ in range({PINNED_MIB}):
        os.write(fd, chunk)
except OSError:
    pass
open("holding", "w").close()
for _ in range(300):
    if os.path.exists("stop"):
        break
    time.sleep(0.1)
"""


def _pinned(scene, where: str, sandbox: bool) -> int:
    """How much more shared memory the host holds while the program holds its file."""
    for name in ("holding", "stop"):
        if scene.exists(f"ws/{name}"):
            os.unlink(os.path.join(scene.ws, name))
    before = shmem()
    argv = ["python3", "pin.py", where]
    if sandbox:
        argv = [sys.executable, "-P", "-m", "ringfence", "run", "--no-tty", "--"] + argv
    kwargs = {} if scene.user.is_current else {"user": scene.user.uid, "group": scene.user.gid, "extra_groups": []}
    process = subprocess.Popen(argv, cwd=scene.ws, env=scene.env(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    deadline = time.time() + 60
    while not scene.exists("ws/holding") and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    during = shmem()
    scene.write("ws/stop")
    process.wait(timeout=60)
    return during - before


def test_a_memory_file_cannot_pin_more_than_the_limits(scene):
    """memfd pages belong to no mount and, unmapped, to no address space:
    neither temporary_space nor RLIMIT_AS sees them. A root run's memory
    cgroup does; without one, a memory limit refuses memfd_create."""
    scene.git("init", "-q")
    scene.write("ws/pin.py", PIN)
    scene.config('[limits]\nmemory = "128M"\ntemporary_space = "32M"\n')
    assert _pinned(scene, "memfd", sandbox=False) > PINNED_MIB * MIB // 2, "control: the meter sees the pages"
    assert _pinned(scene, "shm", sandbox=True) < 64 * MIB, "control: the private /dev/shm is bounded"
    assert _pinned(scene, "memfd", sandbox=True) < 128 * MIB


def test_a_planted_fifo_cannot_stall_the_next_start(scene):
    scene.git("init", "-q")
    assert scene.ringfence("status", timeout=30).returncode == 0, "control: status answers"
    scene.sh("mkdir -p a && mkfifo a/.npmrc")
    assert os.path.exists(os.path.join(scene.ws, "a", ".npmrc")), "control: the sandbox can make the FIFO"
    try:
        scene.ringfence("status", timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("ringfence status hung on a FIFO the sandbox planted")


def test_the_post_run_check_does_not_follow_a_swapped_in_link(scene):
    scene.git("init", "-q")
    scene.mkdir("ws/sub/deeper")
    scene.git("init", "-q", cwd=scene.mkdir("outside/other"))
    result = scene.sh(f"rm -rf sub && ln -s {scene.outside} sub")
    assert scene.exists("ws/sub/other/.git"), "control: the link leads to the user's repository outside"
    assert "sub/other/.git" not in result.stderr, result.stderr


def test_a_run_takes_at_most_half_of_the_users_own_process_limit(ordinary_scene):
    """RLIMIT_NPROC counts the user's processes on the host as well as the
    sandbox's: a cap above the user's own limit lets one run leave the user
    unable to fork anywhere."""
    from test_safe_defaults import _peak_processes

    scene = ordinary_scene
    scene.config("[limits]\nprocesses = 512\n")
    own_limit = 120
    bomb = "touch started; f() { for i in 1 2; do f & done; sleep 3; }; f"
    kwargs = {} if scene.user.is_current else {"user": scene.user.uid, "group": scene.user.gid, "extra_groups": []}

    def peak(wrapper):
        marker = f"rf-bomb-{os.urandom(3).hex()}"
        argv = ["timeout", "-s", "KILL", "6", "prlimit", f"--nproc={own_limit}:{own_limit * 8}", *wrapper,
                "bash", "-c", bomb, marker]
        process = subprocess.Popen(argv, cwd=scene.ws, env=scene.env(), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                   **kwargs)
        found = _peak_processes(marker.encode(), process, 6.5)
        process.wait(timeout=30)
        return found

    control = peak(["unshare", "-Urpf", "--kill-child"])
    assert control > own_limit // 2 + 10, f"control: the user's own limit is what binds ({control})"
    os.unlink(os.path.join(scene.ws, "started"))
    sandboxed = peak([sys.executable, "-P", "-m", "ringfence", "run", "--no-tty", "--timeout", "4", "--"])
    assert scene.exists("ws/started"), "the run started"
    assert sandboxed <= own_limit // 2 + 3, sandboxed  # ringfence, bwrap and its init carry the marker too
