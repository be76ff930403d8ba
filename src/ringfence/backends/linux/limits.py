"""Resource limits for one sandbox, applied before its command can fork.

bwrap is started with `--block-fd`: it builds the sandbox and then waits.
Meanwhile ringfence learns the sandbox's first process from bwrap's status
pipe, puts the limits on it, and only then lets it go on, so every process
of the run inherits them and none can escape by forking early.

Process counts: RLIMIT_NPROC binds every user except the kernel's root (kuid
0 is exempt in every user namespace), so a root run uses a pids cgroup
instead: cgroup v2 where the pids controller is enabled at the top of the
unified hierarchy (systemd enables it there), else cgroup v1's pids
hierarchy. Both name their files alike (pids.max, pids.events,
cgroup.procs), so one code path serves them. An ordinary user keeps the
rlimit, which needs no delegated subtree. Where root has neither, the process
cap cannot be enforced, and `status` and the event log say so (an explicitly
configured cap is then refused).

Memory: RLIMIT_AS bounds each process's address space. A root run also gets
a memory cgroup where the controller is available the same way, which bounds
the whole run, the pages of its private tmpfs mounts included (tmpfs is
charged to the cgroup of whoever writes it, and to no rlimit).
"""

from __future__ import annotations

import os

from ..._record import Record
from ...mountinfo import first_mount_of

CGROUP_V1 = "/sys/fs/cgroup"
CGROUP_V1_PIDS = CGROUP_V1 + "/pids"
MOUNTINFO = "/proc/self/mountinfo"
GROUP_PREFIX = "ringfence-"
STALE_AFTER_S = 10


class Mechanism(Record):
    """How the limits of a run are enforced: `processes` names the means
    ("rlimit", "cgroup v2 pids", "cgroup v1 pids" or None when it cannot be),
    `detail` explains, `group_parent` is where a run's pids cgroup is made;
    `memory` and `memory_parent` the same for a whole-run memory cgroup."""

    __slots__ = ("processes", "detail", "group_parent", "memory", "memory_parent")
    _defaults = {"group_parent": None, "memory": None, "memory_parent": None}
    processes: str | None
    detail: str
    group_parent: str | None
    memory: str | None
    memory_parent: str | None


_CGROUP2_SEEN: dict[str, tuple[float, str | None]] = {}   # mount table -> (when read, what it said)
_SEEN_FOR_S = 1.0


def cgroup2_mount(mountinfo: str = MOUNTINFO) -> str | None:
    """Where the unified (v2) hierarchy is mounted, if anywhere.

    A run asks four times (stale groups and the limits, for pids and for
    memory) within milliseconds; the table is read once a second at most,
    which no remount of the cgroup hierarchy between two runs outlasts."""
    import time

    now = time.monotonic()
    seen = _CGROUP2_SEEN.get(mountinfo)
    if seen is None or now - seen[0] > _SEEN_FOR_S:
        seen = _CGROUP2_SEEN[mountinfo] = (now, first_mount_of("cgroup2", mountinfo))
    return seen[1]


def controller_parents(controller: str, mountinfo: str = MOUNTINFO, v1: str | None = None) -> list[tuple[str, str]]:
    """(mechanism, directory) where root may make a cgroup with `controller`, best first.

    A v2 directory qualifies only if the controller is already in its
    cgroup.subtree_control: enabling it ourselves could fail half-way (a
    group with processes of its own refuses) and would change the host's
    hierarchy for everyone."""
    found = []
    mount = cgroup2_mount(mountinfo)
    if mount:
        try:
            with open(os.path.join(mount, "cgroup.subtree_control")) as handle:
                enabled = handle.read().split()
        except OSError:
            enabled = []
        if controller in enabled and os.access(mount, os.W_OK):
            found.append((f"cgroup v2 {controller}", mount))
    v1 = v1 or os.path.join(CGROUP_V1, controller)
    if os.path.isdir(v1) and os.access(v1, os.W_OK):
        found.append((f"cgroup v1 {controller}", v1))
    return found


def pids_parents(mountinfo: str = MOUNTINFO, v1: str = CGROUP_V1_PIDS) -> list[tuple[str, str]]:
    return controller_parents("pids", mountinfo, v1)


def memory_parents() -> list[tuple[str, str]]:
    return controller_parents("memory")


def choose(limits) -> Mechanism:
    memory = memory_parent = None
    if limits.memory is not None and os.getuid() == 0:
        for name, parent in memory_parents():
            memory, memory_parent = name, parent
            break
    if limits.processes is None:
        return Mechanism(None, "no process cap", None, memory, memory_parent)
    if os.getuid() != 0:
        return Mechanism("rlimit", "RLIMIT_NPROC on the sandbox (counts its own processes and threads)")
    for name, parent in pids_parents():
        return Mechanism(name, f"a pids cgroup under {parent}", parent, memory, memory_parent)
    return Mechanism(None, "not enforced: root is exempt from RLIMIT_NPROC and no pids cgroup is available "
                           "(cgroup v2 with pids enabled at the top, or cgroup v1's pids hierarchy)",
                     None, memory, memory_parent)


def unenforceable(limits, mechanism: Mechanism) -> list[tuple[str, str, str]]:
    """(what, why, fix) for each configured limit this machine cannot put on.
    The built-in process cap is reported as not enforced, not refused."""
    if limits.processes is not None and mechanism.processes is None and limits.processes_explicit:
        return [(f"[limits] processes = {limits.processes}", f"cannot be enforced here: {mechanism.detail}",
                 "run as an ordinary user, or enable the pids controller "
                 "(cgroup v2: echo +pids > /sys/fs/cgroup/cgroup.subtree_control)")]
    return []


def nproc_cap(configured: int, user_limit: tuple[int, int]) -> int:
    """The sandbox's processes also count against its user's own limit on
    the host (user namespaces charge every level above them): a cap above
    half of it would let one run leave the user's shell unable to fork.
    Concurrent runs each take up to that half."""
    import resource

    soft, hard = user_limit
    cap = configured
    if soft != resource.RLIM_INFINITY:
        cap = min(cap, max(1, soft // 2))
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    return cap


class Applied:
    """What was put in place for one run, to be undone by `release`.
    `born_in` maps each group the sandbox is spawned into (see BornInto)
    to its hierarchy (the v1 mount, the controller)."""

    def __init__(self):
        self.groups: list[str] = []
        self.notes: list[str] = []
        self.born_in: dict[str, tuple[str, str]] = {}
        self.entered: set[str] = set()  # the born_in groups the spawning thread got into

    @property
    def cgroup(self) -> str | None:
        return self.groups[0] if self.groups else None


def _group_settings(limits, mechanism: Mechanism) -> dict[str, dict[str, str]]:
    """cgroup parent -> {file: value} for the run's groups."""
    settings: dict[str, dict[str, str]] = {}
    if limits.processes is not None and mechanism.processes != "rlimit" and mechanism.group_parent:
        settings.setdefault(mechanism.group_parent, {})["pids.max"] = str(limits.processes)
    if limits.memory is not None and mechanism.memory_parent:
        assert mechanism.memory is not None, "chosen together with memory_parent"
        names = ("memory.max", "memory.swap.max") if mechanism.memory.startswith("cgroup v2") else \
            ("memory.limit_in_bytes",)
        files = settings.setdefault(mechanism.memory_parent, {})
        files[names[0]] = str(limits.memory)
        if len(names) > 1:
            files[names[1]] = "0"  # swap would let the run grow past its bound on disk
    return settings


def prepare_groups(limits, mechanism: Mechanism, run_id: str) -> Applied:
    """The run's cgroup v1 groups, made and limited before the sandbox is
    spawned, so that it can be born in them (BornInto) rather than moved in
    once it exists: moving another process into a v1 group waits for an RCU
    grace period (10 to 17 ms on the machines measured, a quarter of a
    start), a thread moving itself does not. The bwrap process that starts
    the sandbox is born there too, so the process cap allows one more."""
    applied = Applied()
    v1 = {}
    if mechanism.processes and mechanism.processes.startswith("cgroup v1") and mechanism.group_parent:
        v1[mechanism.group_parent] = "pids"
    if mechanism.memory and mechanism.memory.startswith("cgroup v1") and mechanism.memory_parent:
        v1[mechanism.memory_parent] = "memory"
    try:
        for parent, files in _group_settings(limits, mechanism).items():
            controller = v1.get(parent)
            if controller is None:
                continue
            group = os.path.join(parent, f"{GROUP_PREFIX}{run_id}")
            os.mkdir(group)
            applied.groups.append(group)
            applied.born_in[group] = (parent, controller)
            for name, value in files.items():
                _write(os.path.join(group, name), str(int(value) + 1) if name == "pids.max" else value)
    except BaseException:
        for group in applied.groups:
            _remove_group(group, wait=0)
        raise
    return applied


def _own_group(mount: str, controller: str, thread_self: str = "/proc/thread-self") -> str | None:
    """The v1 group of `controller` this thread is in, as a directory under
    `mount`, and only if that directory's `tasks` lists this thread: in a
    cgroup namespace, or with a mount rooted below the hierarchy's root (a
    container's), /proc names the group from another root than the mount's."""
    try:
        thread = os.readlink(thread_self).rpartition("/")[2]
        with open(os.path.join(thread_self, "cgroup")) as handle:
            for line in handle:
                _id, controllers, path = line.rstrip("\n").split(":", 2)
                if controller in controllers.split(","):
                    group = os.path.normpath(os.path.join(mount, path.lstrip("/")))
                    with open(os.path.join(group, "tasks")) as tasks:
                        return group if thread in tasks.read().split() else None
    except (OSError, ValueError):
        pass
    return None


class BornInto:
    """While it lasts, this thread is in the run's prepared v1 groups, so
    that the process it spawns starts there; on leaving, the thread moves
    back. A group it cannot enter is left to `apply`, which moves the
    sandbox in the slow way; a group it cannot leave ends the run: its own
    thread would otherwise stay in the sandbox's group."""

    def __init__(self, applied: Applied):
        self.applied = applied
        self.origins: list[str] = []

    def __enter__(self) -> "BornInto":
        try:
            for group, (mount, controller) in self.applied.born_in.items():
                origin = _own_group(mount, controller)
                if origin is None or not os.access(os.path.join(origin, "tasks"), os.W_OK):
                    continue
                # Noted first: interrupted just after the move, the thread still goes back.
                self.origins.append(origin)
                try:
                    _write(os.path.join(group, "tasks"), "0")
                except OSError:
                    self.origins.pop()
                    continue
                self.applied.entered.add(group)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc_info) -> None:
        stuck = []
        for origin in self.origins:
            try:
                _write(os.path.join(origin, "tasks"), "0")
            except OSError as exc:
                stuck.append(f"{origin}: {exc.strerror}")
        self.origins = []
        if stuck:
            from ...errors import BackendUnavailable

            raise BackendUnavailable("ringfence could not leave the cgroup it made for the run: "
                                     + "; ".join(stuck), hint="report this; the run was stopped")


def _holds(group: str, pid: int) -> bool:
    try:
        with open(os.path.join(group, "cgroup.procs")) as handle:
            return str(pid) in handle.read().split()
    except OSError:
        return False


def apply(pid: int, limits, mechanism: Mechanism, run_id: str, prepared: Applied | None = None) -> Applied:
    """Put the limits on `pid`, the sandbox's first process, while it waits.
    With `prepared` (prepare_groups), a group it was born in is only checked."""
    import resource

    applied = prepared if prepared is not None else Applied()
    # Queued signals and message-queue bytes are counted per user too; the
    # sandbox gets half of what this process may use.
    for which in (resource.RLIMIT_SIGPENDING, resource.RLIMIT_MSGQUEUE):
        soft, hard = resource.getrlimit(which)
        if soft != resource.RLIM_INFINITY and soft > 1:
            resource.prlimit(pid, which, (soft // 2, min(hard, soft // 2)))
    if limits.processes is not None and mechanism.processes == "rlimit":
        cap = nproc_cap(limits.processes, resource.getrlimit(resource.RLIMIT_NPROC))
        if cap < limits.processes:
            applied.notes.append(f"process cap lowered to {cap}: half of this user's own limit")
        resource.prlimit(pid, resource.RLIMIT_NPROC, (cap, cap))
    if limits.memory is not None:
        resource.prlimit(pid, resource.RLIMIT_AS, (limits.memory, limits.memory))
    if limits.cpu_time is not None:
        resource.prlimit(pid, resource.RLIMIT_CPU, (limits.cpu_time, limits.cpu_time))
    for parent, files in _group_settings(limits, mechanism).items():
        group = os.path.join(parent, f"{GROUP_PREFIX}{run_id}")
        if group in applied.entered and _holds(group, pid):
            continue
        if group not in applied.groups:
            os.mkdir(group)
            applied.groups.append(group)
        # Written (again) here: a group made for a bwrap born in it that was
        # not allows one process more than the sandbox, now moved in alone, may have.
        for name, value in files.items():
            _write(os.path.join(group, name), value)
        _write(os.path.join(group, "cgroup.procs"), str(pid))
    return applied


def release(applied: Applied) -> dict:
    """Remove the run's cgroups; report how often the process cap refused a
    fork and whether the memory bound killed a process."""
    report = {}
    for group in applied.groups:
        for name, key, wanted in (("pids.events", "process_cap_hits", "max"),
                                  ("memory.events", "memory_bound_kills", "oom_kill")):
            try:
                with open(os.path.join(group, name)) as handle:
                    for line in handle:
                        field, _, value = line.partition(" ")
                        if field == wanted:
                            report[key] = int(value)
            except OSError:
                pass
        # The sandbox's last processes may still be exiting when bwrap returns;
        # a group that is not empty yet is removed by the next run instead of
        # making this one wait.
        _remove_group(group, wait=0)
    return report


# Per-user kernel counters a run shares with its user's other processes.
# Each user namespace has its own ceiling, and a run's use counts against
# every ceiling up to the host's, so capping the sandbox's namespace at half
# of what the host allows keeps the other half for the user's own programs
# (128 inotify instances is the usual ceiling: one busy test suite takes
# them all, and the user's editor then gets EMFILE). Namespaces, the other
# counters there, need capabilities the sandbox does not have.
SHARED_COUNTERS = ("max_inotify_instances", "max_inotify_watches", "max_fanotify_groups", "max_fanotify_marks")
USER_SYSCTLS = "/proc/sys/user"
CLONE_NEWUSER = 0x10000000


def counter_shares(directory: str = USER_SYSCTLS) -> tuple[tuple[str, int], ...]:
    """(name, half of the host's ceiling) for each shared counter this kernel has."""
    shares = []
    for name in SHARED_COUNTERS:
        try:
            with open(os.path.join(directory, name)) as handle:
                ceiling = int(handle.read().strip())
        except (OSError, ValueError):
            continue
        shares.append((name, max(1, ceiling // 2)))
    return tuple(shares)


_SETNS: list = []  # the setns callable, once this process has made one


def _setns():
    """setns(2): os.setns from Python 3.12; before, the C function reached
    through _ctypes alone (the ctypes package costs several milliseconds to
    import, more than the rest of this)."""
    if hasattr(os, "setns"):
        _SETNS.append(os.setns)
        return os.setns
    import _ctypes

    class c_int(_ctypes._SimpleCData):
        _type_ = "i"

    class Function(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = c_int

    class Library:
        _handle = _ctypes.dlopen(None, os.RTLD_NOW)

    call = Function(("setns", Library()))

    def setns(fd: int, kind: int):
        if call(fd, kind) != 0:
            raise OSError(_ctypes.get_errno(), os.strerror(_ctypes.get_errno()))

    _SETNS.append(setns)
    return setns


class CounterCeilings:
    """Sets the shared counters' ceilings in the sandbox's user namespace.

    Only a process inside that namespace may write them, so a forked child
    joins it (setns) and writes them there. It is forked before bwrap starts
    and waits for it, so that the fork overlaps bwrap's own start; `place(pid)`
    hands it the sandbox's first process and waits for its one-byte answer,
    not for its exit (tearing down a forked interpreter takes longer than the
    writes): it is reaped when the run ends."""

    def __init__(self, shares):
        self.shares = shares
        self.pid = None
        self.write_end = self.answer = None
        if not shares:
            return
        import sys

        # Making setns callable (loading _ctypes, defining the call) takes a
        # millisecond: the child does it while the parent starts bwrap. Not
        # where other threads run: one could hold an import lock at the fork.
        setns = _SETNS[0] if _SETNS else (None if len(sys._current_frames()) == 1 else _setns())
        read_end, self.write_end = os.pipe()
        self.answer, answer_end = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: it touches nothing of the parent's, and never returns
            ok = b"0"
            try:
                try:
                    setns = setns or _setns()
                except Exception:
                    setns = None  # answered "not held" below, once the parent has named the sandbox
                # Nothing of the parent's may stay open here: a copy of bwrap's
                # status pipe would hide its early death from the launcher.
                keep = sorted((read_end, answer_end))
                os.closerange(0, keep[0])
                os.closerange(keep[0] + 1, keep[1])
                os.closerange(keep[1] + 1, 1 << 20)
                target = int(os.read(read_end, 32) or b"0")
                if target and setns is not None:
                    namespace = os.open(f"/proc/{target}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
                    setns(namespace, CLONE_NEWUSER)
                    for name, value in shares:
                        fd = os.open(os.path.join(USER_SYSCTLS, name), os.O_WRONLY | os.O_CLOEXEC)
                        os.write(fd, str(value).encode())
                        os.close(fd)
                    ok = b"1"
            finally:
                try:
                    os.write(answer_end, ok)
                finally:
                    os._exit(0)
        os.close(read_end)
        os.close(answer_end)

    def place(self, sandbox_pid: int) -> bool:
        """Write the ceilings for the namespace of `sandbox_pid`; True if they hold."""
        if self.pid is None:
            return False
        try:
            os.write(self.write_end, str(sandbox_pid).encode())
        except BrokenPipeError:
            return False  # the child is gone: the ceilings do not hold, and the run says so
        finally:
            os.close(self.write_end)
            self.write_end = None
        return os.read(self.answer, 1) == b"1"

    def abandon(self):
        """Let the child go (when the run is over, or failed before its sandbox existed)."""
        for name in ("write_end", "answer"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)
        if self.pid is not None:
            os.waitpid(self.pid, 0)
            self.pid = None


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


def remove_stale_groups(parents=None) -> list[str]:
    """Empty cgroups left by runs that were killed; called before a new run."""
    import time

    removed = []
    # Run ids begin with their UTC second: a name older than this was made more
    # than STALE_AFTER_S ago, no lstat needed (runs in quick succession leave
    # dozens of groups their last processes were still leaving).
    cutoff = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() - STALE_AFTER_S))
    for _name, parent in ((pids_parents() + memory_parents()) if parents is None else parents):
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            if not name.startswith(GROUP_PREFIX):
                continue
            group = os.path.join(parent, name)
            # A group made moments ago belongs to a run still moving its first
            # process in: removing it would make that run fail to start.
            stamp = name[len(GROUP_PREFIX):len(GROUP_PREFIX) + len(cutoff)]
            if len(stamp) == len(cutoff) and stamp[8:9] == "T" and (stamp[:8] + stamp[9:]).isdigit():
                stale = stamp < cutoff
            else:
                stale = _age(group) > STALE_AFTER_S  # a run id of the caller's own choosing
            if stale and _remove_group(group, wait=0):
                removed.append(name)
    return removed


def _age(path: str) -> float:
    import time

    try:
        return time.time() - os.lstat(path).st_mtime
    except OSError:
        return 0.0
