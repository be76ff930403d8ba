"""The run store: one private directory per isolated run in the state directory.

```
<state>/runs/<id>/       0700; id = UTC start time (to the second) + random
    lock                 flock: held while a process runs, applies or discards it
    started              empty; its ctime is the run's start stamp
    meta.json            Run (workspace, start, base identity, refs, status)
    layers/upper/  layers/work/   the overlay's layers (one mount, outside the workspace)
    capture.json         the changeset, with the identity of every touched path
    apply/               the journal of an apply in progress
```

A run's lifetime: `create_run` (status "running", lock held) -> the sandbox
runs -> `finish_run` ("finished") -> review -> apply or discard, which remove
the directory. A process killed on the way leaves its lock free: the next
command's `recover` sees it (see recovery.py).

The start stamp is a ctime, which no program can set back, taken from the
kernel's own (coarse) clock as the workspace's timestamps are. `create_run`
returns only once that clock has moved past the stamp, so a workspace entry
changed after the run started has a ctime newer than the stamp, and one
changed before has one no newer (see changeset.changed_since).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from .._record import Record
from .durable import read_json, write_json
from .errors import IsolationUnavailable, RunBusy, RunNotFound

TYPE_CHECKING = False   # typing costs milliseconds on the run path; checkers read the aliases
if TYPE_CHECKING:
    from typing import Literal

    RunStatus = Literal["running", "finished", "interrupted"]
FORMAT = 1


class Run(Record):
    """One isolated run as recorded in its `meta.json`.

    `base` is the workspace directory's identity ("dev:ino") at start;
    `stamp` the start stamp (ns); `refs` the git refs at start
    ({refname: commit}, empty outside a repository); `exit_code` the
    command's status once finished."""

    __slots__ = ("id", "directory", "workspace", "started", "stamp", "base", "refs", "status", "exit_code")
    _defaults = {"exit_code": None}
    id: str
    directory: str
    workspace: str
    started: float
    stamp: int
    base: str
    refs: dict[str, str]
    status: RunStatus
    exit_code: int | None

    @property
    def layers(self) -> str:
        return os.path.join(self.directory, "layers")

    @property
    def upper(self) -> str:
        return os.path.join(self.directory, "layers", "upper")

    @property
    def work(self) -> str:
        return os.path.join(self.directory, "layers", "work")

    @property
    def capture_path(self) -> str:
        return os.path.join(self.directory, "capture.json")

    @property
    def apply_dir(self) -> str:
        return os.path.join(self.directory, "apply")

    def to_json(self) -> dict:
        return {"format": FORMAT, "id": self.id, "workspace": self.workspace, "started": self.started,
                "stamp": self.stamp, "base": self.base, "refs": dict(self.refs), "status": self.status,
                "exit_code": self.exit_code}


def runs_dir(state: str) -> str:
    return os.path.join(state, "runs")


def check_state_filesystem(state: str, workspace: str | None = None) -> str:
    """Make `<state>/runs` (0700) and refuse, before any run, a place that
    cannot hold an overlay's upper layer. Returns the runs directory."""
    from .overlay import probe_overlay

    directory = runs_dir(state)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    support = probe_overlay(directory)
    if support.network_filesystem or not support.user_xattrs:
        raise IsolationUnavailable(f"isolated runs cannot keep their changes in {directory}: {support.problems[0]}",
                                   hint="point XDG_STATE_HOME or RINGFENCE_STATE_DIR at a local filesystem "
                                        "with user xattrs (ext4, xfs, btrfs)")
    if workspace:
        real_state, real_workspace = os.path.realpath(directory), os.path.realpath(workspace)
        for inner, outer in ((real_state, real_workspace), (real_workspace, real_state)):
            if inner == outer or inner.startswith(outer.rstrip("/") + "/"):
                raise IsolationUnavailable(
                    f"the run store {real_state} and the workspace {real_workspace} overlap: an overlay's layers "
                    "must lie outside the directory they cover",
                    hint="set XDG_STATE_HOME or RINGFENCE_STATE_DIR outside the workspace")
    return directory


class RunLock:
    """An exclusive flock on a run's `lock` file; released with `release()`
    or at exit (a killed holder releases it with its descriptors)."""

    def __init__(self, directory: str, *, wait: bool = False):
        self.directory = directory
        self.fd = os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                          0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(self.fd)
            raise RunBusy(f"isolated run {os.path.basename(directory)} is in use by another ringfence process",
                          hint="wait for it to end, then try again") from None

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def try_lock(directory: str) -> RunLock | None:
    """The run's lock, or None when a live process holds it."""
    try:
        return RunLock(directory)
    except RunBusy:
        return None


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(4).hex()


def create_run(state: str, workspace: str, *, refs: dict | None = None) -> tuple[Run, RunLock]:
    """Make the directory of a new isolated run of `workspace` and hold its lock.

    The caller keeps the lock while the sandbox runs and calls
    `finish_run` after it; `refs` are the repository's refs at start
    (`gitrefs.read_refs`), from which the run's commits are told apart."""
    workspace = os.path.realpath(workspace)
    directory = check_state_filesystem(state, workspace)
    info = os.stat(workspace)
    for _ in range(8):
        run_id = new_run_id()
        path = os.path.join(directory, run_id)
        try:
            os.mkdir(path, 0o700)
            break
        except FileExistsError:
            continue
    else:
        raise IsolationUnavailable(f"cannot make a run directory in {directory}")
    lock = RunLock(path)
    try:
        os.mkdir(os.path.join(path, "layers"), 0o700)
        os.mkdir(os.path.join(path, "layers", "upper"), 0o700)
        os.mkdir(os.path.join(path, "layers", "work"), 0o700)
        stamp = _take_stamp(os.path.join(path, "started"))
        run = Run(run_id, path, workspace, time.time(), stamp, f"{info.st_dev}:{info.st_ino}", dict(refs or {}),
                  "running")
        # Written last: a directory without it is a creation cut short.
        write_json(os.path.join(path, "meta.json"), run.to_json())
    except BaseException:
        lock.release()
        raise
    return run, lock


# The clock the kernel stamps ctimes from (before multigrain floors).
_COARSE_CLOCK = getattr(time, "CLOCK_REALTIME_COARSE", 5)


def _take_stamp(marker: str, *, patience: float = 0.05) -> int:
    """The ctime of a new `marker`, once the kernel's coarse clock has moved
    past it (one tick, a few ms; at most `patience` seconds, for a clock
    that is set back meanwhile)."""
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        stamp = os.fstat(fd).st_ctime_ns
    finally:
        os.close(fd)
    deadline = time.monotonic() + patience
    while time.clock_gettime_ns(_COARSE_CLOCK) <= stamp and time.monotonic() < deadline:
        time.sleep(0.0005)
    return stamp


def load_run(directory: str) -> Run:
    try:
        data = read_json(os.path.join(directory, "meta.json"))
    except FileNotFoundError:
        raise RunNotFound(f"{directory} holds no isolated run") from None
    except (OSError, ValueError) as exc:
        raise RunNotFound(f"cannot read the record of the isolated run in {directory}: {exc}",
                          hint="discard the run") from None
    if data.get("format") != FORMAT:
        raise RunNotFound(f"the isolated run in {directory} was recorded by another version of ringfence",
                          hint="discard the run")
    return Run(data["id"], directory, data["workspace"], data["started"], data["stamp"], data["base"],
               dict(data["refs"]), data["status"], data.get("exit_code"))


def save_run(run: Run) -> Run:
    write_json(os.path.join(run.directory, "meta.json"), run.to_json())
    return run


def finish_run(run: Run, exit_code: int | None) -> Run:
    """Record that the sandbox ended (the overlay is unmounted with it) and
    empty the work directory."""
    from .overlay import clean_workdir

    clean_workdir(run.work)
    return save_run(run.replace(status="finished", exit_code=exit_code))


def run_ids(state: str) -> list[str]:
    """Every run directory's name, newest first."""
    try:
        names = os.listdir(runs_dir(state))
    except FileNotFoundError:
        return []
    return sorted((name for name in names if not name.startswith(".")), reverse=True)


def open_run(state: str, run_id: str) -> Run:
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise RunNotFound(f"{run_id!r} is not the id of an isolated run")
    return load_run(os.path.join(runs_dir(state), run_id))


def list_runs(state: str, workspace: str | None = None) -> list[Run]:
    """Recorded runs, newest first (of `workspace` only, when given)."""
    wanted = os.path.realpath(workspace) if workspace else None
    runs = []
    for run_id in run_ids(state):
        try:
            run = open_run(state, run_id)
        except RunNotFound:
            continue
        if wanted is None or run.workspace == wanted:
            runs.append(run)
    # Ids sort by the second only; the recorded start orders runs within one.
    return sorted(runs, key=lambda run: (run.started, run.id), reverse=True)


def last_run(state: str, workspace: str | None = None) -> Run:
    """The newest isolated run (of `workspace`, when given) left to review."""
    for run in list_runs(state, workspace):
        if run.status in ("finished", "interrupted"):
            return run
    where = f" of {os.path.realpath(workspace)}" if workspace else ""
    raise RunNotFound(f"no isolated run{where} is waiting for review",
                      hint="start one with `ringfence run --isolated -- COMMAND`")


def remove_run(run_directory: str) -> None:
    """Remove a run's directory, its layers included (the caller holds its lock).

    The lock file goes last, so a process that opens it meanwhile finds a
    directory being removed, not a fresh run."""
    from .tree import remove_tree

    for name in sorted(os.listdir(run_directory)):
        if name != "lock":
            remove_tree(os.path.join(run_directory, name))
    try:
        os.unlink(os.path.join(run_directory, "lock"))
        os.rmdir(run_directory)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY):
            raise
