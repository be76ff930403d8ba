"""Resource limits for one sandbox, applied before its command can fork.

bwrap is started with `--block-fd`: it builds the sandbox and then waits.
Meanwhile ringfence learns the sandbox's first process from bwrap's status
pipe, puts the limits on it, and only then lets it go on, so every process
of the run inherits them and none can escape by forking early.

Process counts: RLIMIT_NPROC binds every user except the kernel's root (kuid
0 is exempt in every user namespace), so a root run uses a pids cgroup
instead. cgroup v2 delegation is not used yet: where no pids cgroup is
available to root, the process cap cannot be enforced, and `status` and the
event log say so (an explicitly configured cap is then refused).
"""

from __future__ import annotations

import os

from .._record import Record
from ..errors import PolicyError

CGROUP_V1_PIDS = "/sys/fs/cgroup/pids"


class Mechanism(Record):
    """How the limits of a run are enforced: `processes` names the means
    ("rlimit", "cgroup v1 pids" or None when it cannot be), `detail` explains."""

    __slots__ = ("processes", "detail")


def choose(limits) -> Mechanism:
    if limits.processes is None:
        return Mechanism(None, "no process cap")
    if os.getuid() != 0:
        return Mechanism("rlimit", "RLIMIT_NPROC on the sandbox (counts its own processes and threads)")
    if os.path.isdir(CGROUP_V1_PIDS) and os.access(CGROUP_V1_PIDS, os.W_OK):
        return Mechanism("cgroup v1 pids", f"a pids cgroup under {CGROUP_V1_PIDS}")
    return Mechanism(None, "not enforced: root is exempt from RLIMIT_NPROC and no pids cgroup is available")


def check_enforceable(limits, mechanism: Mechanism):
    if limits.processes is not None and mechanism.processes is None and limits.processes_explicit:
        raise PolicyError(f"[limits] processes = {limits.processes} cannot be enforced here: "
                          f"{mechanism.detail}",
                          hint="run as an ordinary user, or mount the cgroup v1 pids controller")


class Applied:
    """What was put in place for one run, to be undone by `release`."""

    def __init__(self):
        self.cgroup = None
        self.notes: list[str] = []


def apply(pid: int, limits, mechanism: Mechanism, run_id: str) -> Applied:
    """Put the limits on `pid`, the sandbox's first process, while it waits."""
    import resource

    applied = Applied()
    if limits.processes is not None and mechanism.processes == "rlimit":
        resource.prlimit(pid, resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    elif limits.processes is not None and mechanism.processes == "cgroup v1 pids":
        group = os.path.join(CGROUP_V1_PIDS, f"ringfence-{run_id}")
        os.mkdir(group)
        applied.cgroup = group
        _write(os.path.join(group, "pids.max"), str(limits.processes))
        _write(os.path.join(group, "cgroup.procs"), str(pid))
    if limits.memory is not None:
        resource.prlimit(pid, resource.RLIMIT_AS, (limits.memory, limits.memory))
    if limits.cpu_time is not None:
        resource.prlimit(pid, resource.RLIMIT_CPU, (limits.cpu_time, limits.cpu_time))
    return applied


def release(applied: Applied) -> dict:
    """Remove the run's cgroup; report how often the process cap refused a fork."""
    report = {}
    if applied.cgroup:
        try:
            with open(os.path.join(applied.cgroup, "pids.events")) as handle:
                for line in handle:
                    key, _, value = line.partition(" ")
                    if key == "max":
                        report["process_cap_hits"] = int(value)
        except OSError:
            pass
        # The sandbox's last processes may still be exiting when bwrap returns;
        # a group that is not empty yet is removed by the next run instead of
        # making this one wait.
        _remove_group(applied.cgroup, wait=0)
    return report


def _write(path: str, text: str):
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _remove_group(group: str, wait: float) -> bool:
    """rmdir a cgroup once its last task is gone; killed tasks may linger briefly."""
    import time

    deadline = time.monotonic() + wait
    while True:
        try:
            os.rmdir(group)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def remove_stale_groups() -> list[str]:
    """Empty cgroups left by runs that were killed; called before a new run."""
    removed = []
    try:
        names = os.listdir(CGROUP_V1_PIDS)
    except OSError:
        return removed
    for name in names:
        if name.startswith("ringfence-") and _remove_group(os.path.join(CGROUP_V1_PIDS, name), wait=0):
            removed.append(name)
    return removed
