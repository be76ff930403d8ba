"""Run one plan: prepare the host side, spawn bwrap, supervise, clean up."""

from __future__ import annotations

import os
from . import signals as signal
import stat
import time

from .._record import Record
from ..errors import BackendUnavailable
from .outcome import Outcome
from .placeholders import Placeholders
from .spawn import HOST_ENVIRONMENT, spawn
from .supervise import TERMINATING, Supervisor
from .terminal import RawMode, SavedModes, open_pty

INHERIT, DEVNULL, PIPE, CAPTURE = "inherit", "devnull", "pipe", "capture"


class IOSpec(Record):
    """stdin: inherit | devnull | pipe (with `input`); stdout/stderr: inherit |
    capture; `tty`: give tty descriptors a private pty instead of the real one;
    `pass_fds`: extra descriptors the caller hands to the command on purpose."""

    __slots__ = ("stdin", "input", "stdout", "stderr", "tty", "pass_fds")
    _defaults = {"stdin": INHERIT, "input": None, "stdout": INHERIT, "stderr": INHERIT, "tty": True,
                 "pass_fds": ()}


def ensure_mask_file(path: str):
    """An empty file nobody may read or write: binding it over a denied file
    makes reads fail with EACCES rather than return plausible empty data."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    try:
        info = os.lstat(path)
        if stat.S_ISREG(info.st_mode) and info.st_size == 0 and stat.S_IMODE(info.st_mode) == 0 \
                and info.st_uid == os.getuid():
            return
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0)
    os.fchmod(fd, 0)
    os.close(fd)


def _terminal_fds(io: IOSpec) -> list[int]:
    """Which of stdin, stdout and stderr would hand the sandbox the user's
    terminal. None of them ever does: with `io.tty` they get a private pty,
    without it pipes that ringfence relays."""
    return [fd for fd, mode in ((0, io.stdin), (1, io.stdout), (2, io.stderr))
            if mode == INHERIT and os.isatty(fd)]


def _in_foreground(fd: int) -> bool:
    """Whether reading the terminal on `fd` is ours to do: a run started in the
    background of a shell would be stopped by SIGTTIN, or take keys meant for
    the shell. A terminal that is not our controlling one has no job control."""
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return True


def _helper_payload(plan) -> bytes:
    """NUL-separated: uid, gid, mask source, then (directory, its identity as
    the scan saw it or "-", name) for each mask, an empty field, the number of
    environment entries and each NAME=VALUE, then the command."""
    fields = [str(os.getuid()).encode(), str(os.getgid()).encode(), os.fsencode(plan.helper_source)]
    identities = plan.helper_identities or {}
    for path in sorted(plan.helper_masks):
        directory, name = os.path.split(path)
        seen = identities.get(directory)
        fields += [os.fsencode(directory), ("%d:%d:%d" % seen).encode() if seen else b"-", os.fsencode(name)]
    fields.append(b"")
    fields.append(str(len(plan.env)).encode())
    fields += [os.fsencode(f"{name}={value}") for name, value in plan.env.items()]
    fields += [os.fsencode(arg) for arg in plan.full_command]
    return b"\0".join(fields)


def _argument_file(argv: list[str]) -> int:
    """bwrap's options in an anonymous file for `--args`: nothing in them
    (the command's environment above all) shows on bwrap's command line,
    which every user of the machine can read, and no pipe can fill up."""
    fd = os.memfd_create("ringfence-bwrap-args", os.MFD_CLOEXEC)
    data = b"".join(os.fsencode(arg) + b"\0" for arg in argv)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _feed(fd: int, data: bytes):
    """Write `data` to a pipe from a thread, since it may exceed the pipe buffer."""
    import threading

    def write():
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            pass
        finally:
            os.close(fd)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def _apply_limits(plan, status_fd: int, block_fd: int, events, ceilings):
    """Wait for bwrap to name the sandbox's first process, limit it, release it.

    Returns the status bytes read so far and what was applied. If bwrap dies
    before naming the process, nothing is applied and the run's supervision
    reports the failure.
    """
    from ..linux import limits as limit_tools
    from .supervise import _field

    data = b""
    child = None
    try:
        while child is None:
            chunk = os.read(status_fd, 4096)
            if not chunk:
                return data, None
            data += chunk
            child = _field(data.decode(errors="replace"), '"child-pid"')
        bounded = ceilings.place(child)
        applied = limit_tools.apply(child, plan.limits, plan.limits_mechanism, events.run_id)
        events.emit("limits.applied", mechanism=plan.limits_mechanism.processes or "none",
                    detail=plan.limits_mechanism.detail, limits=plan.limits.describe(),
                    shared_counters={name: value for name, value in plan.counter_shares} if bounded else {})
        if plan.counter_shares and not bounded:
            events.emit("limits.unenforced", limit="shared kernel counters",
                        detail="could not set the sandbox's inotify and fanotify ceilings")
        os.write(block_fd, b"x")
        return data, applied
    except BaseException:
        # Closing the block descriptor lets the sandbox go on (EOF unblocks it
        # as data would), so it dies first. Its first process is the pid
        # namespace's init: killed from outside, it takes every process in
        # the namespace along, even if bwrap had not yet armed die-with-parent.
        if child is not None:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise
    finally:
        os.close(block_fd)


def _kill_and_reap(pid: int):
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _read_available(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""


class _Handlers:
    """Forward terminating signals (and window changes) to the supervisor."""

    def __init__(self, supervisor, with_winch: bool):
        self.previous = {}
        wanted = list(TERMINATING) + ([signal.SIGWINCH] if with_winch else [])
        for signum in wanted:
            try:
                self.previous[signum] = signal.signal(signum, lambda n, f: supervisor.forward(n))
            except (ValueError, OSError):  # not the main thread: the caller handles signals
                pass

    def restore(self):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def report_new_protected(policy, known: set, events) -> list[str]:
    """Protected names (`.git`, `.ringfence`, editor and agent folders, ...)
    that appeared in a writable tree while the run lasted.

    What they hold was written by the sandbox, and programs on the host act on
    it without review: git runs a new repository's config and hooks
    (core.fsmonitor on `git status`), ringfence itself loads a `.ringfence`
    configuration, editors and agents the tasks and hooks of their folders.
    Mounts cannot stop a name from being created anywhere in a writable tree,
    so the run ends with a warning naming them. `known` holds what was there
    before (and grows with what was reported).
    """
    from ..policy.filesystem import TIER_PROTECTED
    from ..policy.globs import entries_named

    names = {glob.pattern[3:] for glob in policy.filesystem.globs
             if glob.tier == TIER_PROTECTED and glob.pattern.startswith("**/")}
    if not names:
        return []
    found = []
    for snapshot in policy.filesystem.writable_snapshots():
        found += [path for path in entries_named(snapshot, names) if path not in known]
    if not found:
        return found
    known.update(found)
    repositories = sorted(path for path in found if os.path.basename(path) == ".git")
    others = sorted(path for path in found if os.path.basename(path) != ".git")
    if repositories:
        events.emit("git.created", paths=repositories,
                    warning="repositories created by the sandbox: their config and hooks run when git is "
                            "used there; review them before running git in those directories")
    if others:
        events.emit("protected.created", paths=others,
                    warning="configuration created by the sandbox that programs on the host act on: "
                            "ringfence loads .ringfence/config.toml, editors and agents their folders' "
                            "tasks, settings and hooks; review or delete them before working there")
    return found


def recover_leftovers(state: str, events) -> list[str]:
    """Remove what killed runs left behind. Call before planning: a leftover
    placeholder would otherwise be planned as a real entry and vanish under it."""
    recovered = Placeholders(state).recover()
    if recovered:
        events.emit("placeholder.cleanup", paths=recovered)
    if os.getuid() == 0:
        from ..linux.limits import remove_stale_groups

        groups = remove_stale_groups()
        if groups:
            events.emit("cgroup.cleanup", groups=groups)
    return recovered


def run_plan(plan, io: IOSpec, *, timeout: float | None, events, forward_signals: bool,
             placeholders: Placeholders | None = None) -> Outcome:
    """Run one plan. With `placeholders` (kept by a Sandbox across runs), the
    placeholders stay until their holder releases them; without, they go
    when this run ends."""
    started = time.monotonic()
    ensure_mask_file(plan.mask_file)
    from ..linux.limits import CounterCeilings

    # Forked first, before any of the run's descriptors exist, and while bwrap
    # starts: see CounterCeilings.
    ceilings = CounterCeilings(plan.counter_shares if plan.limits is not None else ())
    keep_placeholders = placeholders is not None
    if placeholders is None:
        placeholders = Placeholders(plan.state)
    child_fds: dict[int, int] = {}
    to_close: list[int] = []
    master = None
    raw = None
    saved_modes = None
    relay_ends: list[int] = []
    input_relay = None
    handlers = None
    applied = None
    spawned = None
    finished = False
    try:
        placeholders.acquire([path for path, _kind in plan.placeholders], hold=plan.mounts.shared)
        seccomp_read, seccomp_write = os.pipe()
        to_close.append(seccomp_read)
        os.write(seccomp_write, plan.seccomp_program)
        os.close(seccomp_write)
        status_read, status_write = os.pipe()
        to_close.append(status_write)
        child_fds[3] = seccomp_read
        child_fds[4] = status_write
        for fd in io.pass_fds:
            if fd <= 8:  # 3-8 carry seccomp, status, the mask helper's pipes and the limits hand-shake
                raise ValueError(f"pass_fds cannot hold {fd}: descriptors 0-8 are used by the sandbox; "
                                 "dup it to 9 or above")
            child_fds[fd] = fd

        terminals = _terminal_fds(io)
        saved_modes = SavedModes(terminals)
        tty_fds = terminals if io.tty else []
        pty_output = pty_input = None
        relays: dict[int, int] = {}
        input_relay = None
        if terminals and not io.tty:
            for fd in terminals:
                read_end, write_end = os.pipe()
                if fd == 0 and _in_foreground(0):
                    to_close.append(read_end)
                    child_fds[0] = read_end
                    input_relay = (0, write_end)
                elif fd == 0:
                    os.close(read_end)
                    os.close(write_end)
                    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                    to_close.append(devnull)
                    child_fds[0] = devnull
                else:
                    to_close.append(write_end)
                    child_fds[fd] = write_end
                    relays[read_end] = fd
                    relay_ends.append(read_end)
        if tty_fds:
            master, slave = open_pty(size_from=tty_fds[0])
            to_close.append(slave)
            for fd in tty_fds:
                child_fds[fd] = slave
            pty_output = 1 if 1 in tty_fds else (2 if 2 in tty_fds else None)
            pty_input = 0 if 0 in tty_fds else None
        input_fd = stdout_fd = stderr_fd = None
        if io.stdin == DEVNULL:
            devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            to_close.append(devnull)
            child_fds[0] = devnull
        elif io.stdin == PIPE:
            read_end, input_fd = os.pipe()
            to_close.append(read_end)
            child_fds[0] = read_end
        if io.stdout == CAPTURE:
            stdout_fd, write_end = os.pipe()
            to_close.append(write_end)
            child_fds[1] = write_end
        if io.stderr == CAPTURE:
            stderr_fd, write_end = os.pipe()
            to_close.append(write_end)
            child_fds[2] = write_end

        events.emit("run.start", argv=plan.command, backend="bwrap", bwrap=plan.bwrap.path,
                    network="isolated" if plan.network_isolated else "host",
                    mounts=len(plan.mounts.steps), masks=plan.mounts.count("mask-file"),
                    env_dropped=sorted({name for name, _reason in plan.dropped_env}))
        report_read = None
        feeder = None
        if plan.helper_masks:
            list_read, list_write = os.pipe()
            report_read, report_write = os.pipe()
            to_close += [list_read, report_write]
            child_fds[5] = list_read
            child_fds[6] = report_write
            from ..linux.plan import HELPER_SCRIPT_FD, MASK_HELPER

            script = os.open(MASK_HELPER, os.O_RDONLY | os.O_CLOEXEC)
            to_close.append(script)
            child_fds[HELPER_SCRIPT_FD] = script
        block_write = None
        if plan.limits is not None:
            from ..linux.bwrap import BLOCK_FD

            block_read, block_write = os.pipe()
            to_close.append(block_read)
            child_fds[BLOCK_FD] = block_read
        # bwrap takes the command itself only from its real command line; the
        # command's argv is on view there anyway, as the sandboxed process's own.
        separator = plan.argv.index("--")
        arguments = _argument_file(plan.argv[1:separator])
        to_close.append(arguments)
        args_fd = next(fd for fd in range(9, 1 << 20) if fd not in child_fds)
        child_fds[args_fd] = arguments
        pid = spawn(plan.argv[0], [plan.argv[0], "--args", str(args_fd)] + plan.argv[separator:],
                    HOST_ENVIRONMENT, child_fds)
        spawned = pid
        if plan.helper_masks:
            feeder = _feed(list_write, _helper_payload(plan))
        for fd in to_close:
            os.close(fd)
        to_close.clear()
        initial_status = b""
        if block_write is not None:
            # Only now, with our copies of the child's ends closed, does a bwrap
            # that dies early show up as the end of its status pipe.
            initial_status, applied = _apply_limits(plan, status_read, block_write, events, ceilings)

        supervisor = Supervisor(pid, status_fd=status_read, initial_status=initial_status, stdout_fd=stdout_fd,
                                stderr_fd=stderr_fd,
                                input_fd=input_fd, input_data=io.input or b"", pty_master=master,
                                pty_output=pty_output, pty_input=pty_input, timeout=timeout,
                                on_event=events.emit, relays=relays, input_relay=input_relay)
        input_relay = None  # the supervisor closes it
        if forward_signals:
            handlers = _Handlers(supervisor, with_winch=master is not None)
        if pty_input is not None:
            raw = RawMode(pty_input).__enter__()
        result = supervisor.run()
        finished = True
        if feeder is not None:
            feeder.join()
        os.close(status_read)
        if report_read is not None:
            report = _read_available(report_read)
            os.close(report_read)
            if not report.startswith(b"R"):
                raise BackendUnavailable("the mask helper could not prepare the sandbox: "
                                         + (report[1:].decode(errors="replace") or "it did not start"),
                                         hint="run `ringfence status` to see the masks; deny a directory "
                                              "instead of many files")
        for fd in (stdout_fd, stderr_fd):
            if fd is not None:
                os.close(fd)
    finally:
        ceilings.abandon()
        if spawned is not None and not finished:
            # Something failed between spawn and the end of supervision: the
            # sandbox must not go on unwatched (or, with the block fd closed,
            # without its limits).
            _kill_and_reap(spawned)
        if applied is not None:
            from ..linux.limits import release

            report = release(applied)
            if report:
                events.emit("limits.report", **report)
        if raw is not None:
            raw.restore()
        if saved_modes is not None:
            saved_modes.restore()
        for fd in relay_ends:
            os.close(fd)
        if input_relay is not None:
            os.close(input_relay[1])
        if handlers is not None:
            handlers.restore()
        for fd in to_close:
            os.close(fd)
        if master is not None:
            os.close(master)
        removed = [] if keep_placeholders else placeholders.release()

    duration = time.monotonic() - started
    if result.reason == "timeout":
        exit_code = 124
    elif result.exit_code is not None:
        exit_code = result.exit_code
    elif result.reason == "interrupted":
        exit_code = 130
    else:
        from ..linux.diagnose import explain_start_failure

        message, hint = explain_start_failure(plan, result)
        events.emit("sandbox.error", message=message, duration=round(duration, 4))
        raise BackendUnavailable(message, hint=hint)
    events.emit("run.end", exit_code=exit_code, reason=result.reason, duration=round(duration, 4),
                placeholders_removed=len(removed))
    return Outcome(exit_code, result.stdout, result.stderr, tuple(events.events), duration, result.reason,
                   True, None)
