"""What a run can take from the host: memory through its private temporary
space, and the per-user kernel counters it shares with the user's other
processes. Judged on the host: its /proc/meminfo while the run holds what it
took, and whether a host process can still get what it asks for."""

import os
import subprocess
import sys
import time

import pytest

from harness import must_have

pytestmark = pytest.mark.boundary

MiB = 1 << 20
FILL = "for d in /tmp /var/tmp /dev/shm /run /dev; do dd if=/dev/zero of=$d/fill bs=1M count={mib} 2>/dev/null; done"


def shmem() -> int:
    """Bytes in tmpfs and shared memory on the host, as the kernel counts them."""
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("Shmem:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no Shmem line in /proc/meminfo")


def held_while_running(scene, script: str, *, args=(), sandbox=True) -> int:
    """Start `script` (which ends by touching `holding` and sleeping), and
    return how much more shared memory the host holds once it says so."""
    before = shmem()
    argv = ["/bin/sh", "-c", script + "; touch holding; sleep 30"]
    if sandbox:
        argv = [sys.executable, "-P", "-m", "ringfence", "run", "--no-tty", *args, "--", *argv]
    process = subprocess.Popen(argv, cwd=scene.ws, env=scene.env(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               **({} if scene.user.is_current else
                                  {"user": scene.user.uid, "group": scene.user.gid, "extra_groups": []}))
    try:
        deadline = time.time() + 60
        while not scene.exists("ws/holding"):
            assert process.poll() is None, process.stderr.read()
            assert time.time() < deadline
            time.sleep(0.05)
        return shmem() - before
    finally:
        process.kill()
        process.wait()
        os.unlink(os.path.join(scene.ws, "holding"))


def test_private_temporary_space_is_bounded_together(scene):
    scene.git("init", "-q")
    scene.config('[limits]\ntemporary_space = "64M"\n')
    control_file = f"/dev/shm/rf-control-{os.getpid()}"
    try:
        control = held_while_running(scene, f"dd if=/dev/zero of={control_file} bs=1M count=400", sandbox=False)
    finally:
        subprocess.run(["rm", "-f", control_file])
    assert control > 300 * MiB, f"control: tmpfs writes pin the host's memory ({control >> 20} MiB)"
    held = held_while_running(scene, FILL.format(mib=200))
    assert held < 96 * MiB, f"the run holds {held >> 20} MiB of the host's memory in tmpfs"


def test_dev_itself_is_read_only(scene):
    scene.git("init", "-q")
    result = scene.sh("touch /dev/planted 2>&1; echo x > /dev/null && echo devices-work")
    assert "devices-work" in result.stdout
    assert "Read-only" in result.stdout


def test_a_memory_limit_bounds_a_root_run_with_its_temporary_files(root_scene):
    from ringfence.backends.linux.limits import memory_parents

    must_have(bool(memory_parents()), "root runs use a memory cgroup: needs the memory controller")
    scene = root_scene
    scene.git("init", "-q")
    scene.config('[limits]\nmemory = "64M"\n')
    held = held_while_running(scene, "dd if=/dev/zero of=/tmp/fill bs=1M count=300 2>/dev/null; true")
    assert held < 96 * MiB, f"the run holds {held >> 20} MiB despite memory = 64M"


SETUP = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
rt = ctypes.CDLL("librt.so.1", use_errno=True)
class Attr(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_long), ("maxmsg", ctypes.c_long), ("msgsize", ctypes.c_long),
                ("curmsgs", ctypes.c_long), ("pad", ctypes.c_long * 4)]
attr = Attr(0, 10, 8192, 0)
serial = iter(range(1 << 30))
def queue():
    # Unlinked at once: the queue (and what it counts against the user) lives
    # as long as its descriptor, so nothing outlives this process.
    name = f"/rf-{os.getpid()}-{next(serial)}".encode()
    fd = rt.mq_open(name, os.O_CREAT | os.O_RDWR, 0o600, ctypes.byref(attr))
    rt.mq_unlink(name)
    return fd
"""
GRAB = SETUP + """
kept = []
while len(kept) < 100000:
    fd = {call}
    if fd < 0:
        break
    kept.append(fd)
open("holding", "w").close()
time.sleep(30)
"""
PROBE = SETUP + """
sys.exit(0 if {call} >= 0 else 1)
"""
COUNTED_PER_USER = {"inotify": "libc.inotify_init()", "fanotify": "libc.fanotify_init(0x200, 0)",
                    "message-queues": "queue()"}


@pytest.mark.parametrize("call", list(COUNTED_PER_USER.values()), ids=list(COUNTED_PER_USER))
def test_the_sandbox_cannot_take_all_of_the_users_kernel_counters(scene, call):
    """inotify and fanotify instances and message-queue bytes are counted per
    user, across the sandbox and the user's other programs: a run takes at
    most half."""
    scene.git("init", "-q")
    scene.write("ws/grab.py", GRAB.replace("{call}", call))
    probe = [sys.executable, "-c", PROBE.replace("{call}", call)]
    as_user = {} if scene.user.is_current else {"user": scene.user.uid, "group": scene.user.gid, "extra_groups": []}
    must_have(subprocess.run(probe, **as_user).returncode == 0, f"{call} works for this user at all")

    def host_can_still_get_one(sandbox: bool) -> bool:
        argv = ["python3", "grab.py"]
        if sandbox:
            argv = [sys.executable, "-P", "-m", "ringfence", "run", "--no-tty", "--", *argv]
        holder = subprocess.Popen(argv, cwd=scene.ws, env=scene.env(), stdin=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, **as_user)
        try:
            deadline = time.time() + 60
            while not scene.exists("ws/holding"):
                assert holder.poll() is None and time.time() < deadline, holder.stderr.read()
                time.sleep(0.05)
            return subprocess.run(probe, **as_user).returncode == 0
        finally:
            holder.kill()
            holder.wait()
            os.unlink(os.path.join(scene.ws, "holding"))

    assert not host_can_still_get_one(sandbox=False), "control: one process can take them all"
    assert host_can_still_get_one(sandbox=True)
