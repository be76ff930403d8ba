"""Run one bwrap plan: prepare the host side (placeholders, the descriptor
table, the mask helper's payload), spawn bwrap with an environment of
ringfence's own, put the limits on while it waits, supervise, clean up."""

from __future__ import annotations

import os
import stat
import sys
import time

from ...errors import BackendUnavailable
from ...launcher.io import IOSpec, Streams
from ...launcher.outcome import Outcome
from ...launcher.session import exit_status, kill_and_reap, supervise
from ...launcher.spawn import HOST_ENVIRONMENT, spawn
from ..linux import limits as limit_tools
from . import fds
from .argv import HELPER_DIR_SOURCE, HELPER_FILE_SOURCE
from .placeholders import Placeholders
from .plan import MASK_HELPER, BwrapPlan


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


def status_fields(text: str) -> tuple[int | None, int | None]:
    """(the sandbox's first process, the command's exit code) from bwrap's
    JSON status so far. A number is read up to its first non-digit, so a
    value split across two reads is never taken half."""
    return _field(text, '"child-pid"'), _field(text, '"exit-code"')


def _field(text: str, name: str):
    index = text.find(name)
    if index < 0:
        return None
    rest = text[index + len(name):].lstrip(" :")
    digits = ""
    for char in rest:
        if char.isdigit() or (char == "-" and not digits):
            digits += char
        else:
            break
    if not digits or digits == "-" or len(rest) == len(digits):
        return None
    return int(digits)


def helper_payload(plan: BwrapPlan, identities: dict | None = None) -> bytes:
    """The mask helper's work, as its docstring describes it. `identities`
    (see _after_own_placeholders) stands in for the scan's."""
    job = plan.helper
    assert job is not None, "only a plan with a helper job has a payload"
    # Built as text and encoded once (as os.fsencode would each field): with
    # tens of thousands of masks, per-field work is most of a start.
    fields = [str(os.getuid()), str(os.getgid()), HELPER_FILE_SOURCE if job.masks else "-",
              HELPER_DIR_SOURCE if job.placeholders else "-"]
    # Placeholders first, shallowest first: one made for a missing folder
    # comes before what is placed inside it. File masks (leaves, never inside
    # a placeholder, which is new and empty) keep the plan's order, which
    # already groups them by folder: sorting tens of thousands of them again
    # would be a twentieth of a start. Every entry carries its folder's
    # identity: the helper checks each run of entries in one folder by its
    # first.
    identities = (job.identities or {}) if identities is None else identities
    shown: dict[str, str] = {}

    def identity(directory: str) -> str:
        text = shown.get(directory)
        if text is None:
            found = identities.get(directory)
            if not found:
                text = "-"
            elif found[0] is None:  # a view's own device (see isolated.View.helper_identities)
                text = "*:%d:%d" % tuple(found[1:])
            else:
                text = "%d:%d:%d" % tuple(found)
            shown[directory] = text
        return text

    for kind, paths in (("d", sorted(job.placeholders, key=lambda path: (path.count("/"), path))),
                        ("f", job.masks)):
        last_directory, seen = None, "-"
        for path in paths:
            directory, _, name = path.rpartition("/")  # canonical paths: one separator, no trailing one
            directory = directory or "/"
            if directory != last_directory:
                last_directory, seen = directory, identity(directory)
            fields += [kind, directory, seen, name]
    fields.append("")
    fields.append(str(len(plan.env)))
    fields += [f"{name}={value}" for name, value in plan.env.items()]
    fields += plan.full_command
    text = "\0".join(fields)
    if text.count("\0") != len(fields) - 1:
        raise BackendUnavailable("the mask helper's work holds a NUL character: refusing to start",
                                 hint="remove the NUL from the configuration or environment that holds it")
    return text.encode(sys.getfilesystemencoding(), "surrogateescape")


def _identity(directory: str):
    try:
        info = os.stat(directory, follow_symlinks=False)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_ctime_ns)


def _after_own_placeholders(plan: BwrapPlan, placeholders: Placeholders):
    """Create the plan's placeholders; return the scan's folder identities as
    the mask helper should check them. A placeholder made in a folder that
    holds masks changes that folder's ctime, and the helper would take it
    for a swap: such a folder's identity is taken again after the mkdir, but
    only if it was still the scan's just before, so that a change by anyone
    else since the scan is still refused."""
    identities = plan.helper.identities if plan.helper is not None and plan.helper.identities else {}
    watched = {os.path.dirname(path) for path, _kind in plan.placeholders} & set(identities)
    before = {directory: _identity(directory) for directory in watched}
    placeholders.acquire([path for path, _kind in plan.placeholders], hold=plan.mounts.shared)
    if not watched:
        return None
    adjusted = dict(identities)
    for directory in watched:
        if before[directory] is not None and before[directory] == tuple(identities[directory]):
            adjusted[directory] = _identity(directory) or identities[directory]
    return adjusted


def _nul_separated(words: list[str]) -> bytes:
    """bwrap's --args file. A NUL inside a word would make the rest of it an
    option of bwrap's own: fail closed, whatever let it this far."""
    data = []
    for word in words:
        if "\0" in word:
            raise BackendUnavailable(f"a bwrap option holds a NUL character ({word[:40]!r}): refusing to start",
                                     hint="remove the NUL from the configuration or environment that holds it")
        data.append(os.fsencode(word) + b"\0")
    return b"".join(data)


def _anonymous_file(data: bytes, name: str) -> int:
    """`data` in a memory file read from its start: bwrap's --args and the
    helper's payload fit no pipe buffer, and need no thread to feed them."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _apply_limits(plan: BwrapPlan, status_fd: int, block_fd: int, events, ceilings, prepared):
    """Wait for bwrap to name the sandbox's first process, limit it, release it.

    Returns the status bytes read so far and what was applied. If bwrap dies
    before naming the process, nothing is applied and the run's supervision
    reports the failure.
    """
    data = b""
    child = None
    try:
        while child is None:
            chunk = os.read(status_fd, 4096)
            if not chunk:
                return data, None
            data += chunk
            child = status_fields(data.decode(errors="replace"))[0]
        try:
            bounded = ceilings.place(child)
            applied = limit_tools.apply(child, plan.limits, plan.limits_mechanism, events.run_id, prepared)
        except ProcessLookupError:
            # Gone before it could be limited: bwrap failed to build the sandbox
            # (a mount it could not make). Nothing ran; supervision reports bwrap's error.
            return data, None
        events.emit("limits.applied", mechanism=plan.limits_mechanism.processes or "none",
                    detail=plan.limits_mechanism.detail, limits=plan.limits.describe(),
                    shared_counters={name: value for name, value in plan.counter_shares} if bounded else {},
                    notes=applied.notes)
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
            kill_and_reap(child)
        raise
    finally:
        os.close(block_fd)


def recover_leftovers(state: str, events) -> list[str]:
    """Remove what killed runs left behind. Call before planning: a leftover
    placeholder would otherwise be planned as a real entry and vanish under it."""
    recovered = Placeholders(state).recover()
    if recovered:
        events.emit("placeholder.cleanup", paths=recovered)
    if os.getuid() == 0:
        groups = limit_tools.remove_stale_groups()
        if groups:
            events.emit("cgroup.cleanup", groups=groups)
    return recovered


def _pass_through(io: IOSpec, child_fds: dict[int, int]):
    for fd in io.pass_fds:
        if fd < fds.FIRST_FREE:
            raise ValueError(f"pass_fds cannot hold {fd}: descriptors 0-{fds.FIRST_FREE - 1} are used by the "
                             f"sandbox; dup it to {fds.FIRST_FREE} or above")
        child_fds[fd] = fd


def run_plan(plan: BwrapPlan, io: IOSpec, *, timeout: float | None, events, forward_signals: bool,
             placeholders: Placeholders | None = None) -> Outcome:
    """Run one plan. With `placeholders` (kept by a Sandbox across runs), the
    placeholders stay until their holder releases them; without, they go
    when this run ends."""
    started = time.monotonic()
    ensure_mask_file(plan.mask_file)
    # Forked first, before any of the run's descriptors exist, and while bwrap
    # starts: see CounterCeilings.
    ceilings = limit_tools.CounterCeilings(plan.counter_shares)
    keep_placeholders = placeholders is not None
    if placeholders is None:
        placeholders = Placeholders(plan.state)
    streams = Streams(io)
    ours: list[int] = []      # closed when the run ends
    theirs: list[int] = []    # the child's ends, closed once it has them
    applied = spawned = egress = prepared = None
    finished = False
    try:
        if plan.egress is not None:
            from .egress import RunningEgress

            # Started before bwrap, so that the two start side by side.
            egress = RunningEgress(plan.egress, events)
        identities = _after_own_placeholders(plan, placeholders)
        _pass_through(io, {})
        streams.open()
        child_fds = dict(streams.child)
        _pass_through(io, child_fds)

        def hand(number: int, fd: int):
            theirs.append(fd)
            child_fds[number] = fd

        seccomp_read, seccomp_write = os.pipe()
        os.write(seccomp_write, plan.seccomp_program)
        os.close(seccomp_write)
        hand(fds.SECCOMP, seccomp_read)
        status_read, status_write = os.pipe()
        ours.append(status_read)
        hand(fds.STATUS, status_write)
        report_read = None
        if plan.helper is not None:
            hand(fds.HELPER_LIST, _anonymous_file(helper_payload(plan, identities), "ringfence-mask-helper"))
            report_read, report_write = os.pipe()
            ours.append(report_read)
            hand(fds.HELPER_REPORT, report_write)
            hand(fds.HELPER_SCRIPT, os.open(MASK_HELPER, os.O_RDONLY | os.O_CLOEXEC))
        block_read, block_write = os.pipe()
        hand(fds.BLOCK, block_read)
        if egress is not None:
            for number, fd in egress.sandbox_fds().items():
                hand(number, fd)
        # bwrap takes the command itself only from its real command line; the
        # command's argv is on view there anyway, as the sandboxed process's own.
        separator = plan.argv.index("--")
        args_fd = next(fd for fd in range(fds.FIRST_FREE, 1 << 20) if fd not in child_fds)
        hand(args_fd, _anonymous_file(_nul_separated(plan.argv[1:separator]), "ringfence-bwrap-args"))

        events.emit("run.start", argv=plan.command, backend="bwrap", bwrap=plan.bwrap.path,
                    network="isolated" if plan.network_isolated else "host",
                    mounts=len(plan.mounts.steps), masks=plan.mounts.count("mask-file"),
                    env_dropped=sorted({name for name, _reason in plan.dropped_env}))
        prepared = limit_tools.prepare_groups(plan.limits, plan.limits_mechanism, events.run_id)
        with limit_tools.BornInto(prepared):
            spawned = spawn(plan.argv[0], [plan.argv[0], "--args", str(args_fd)] + plan.argv[separator:],
                            HOST_ENVIRONMENT, child_fds)
        for fd in theirs:
            os.close(fd)
        theirs.clear()
        streams.after_spawn()
        # Only now, with our copies of the child's ends closed, does a bwrap
        # that dies early show up as the end of its status pipe.
        initial_status, applied = _apply_limits(plan, status_read, block_write, events, ceilings, prepared)
        if egress is not None and applied is not None:
            egress.release()  # the command never runs without its proxy
        result = supervise(spawned, streams, timeout=timeout, on_event=events.emit, forward_signals=forward_signals,
                           status_fd=status_read, initial_status=initial_status, status_parser=status_fields)
        finished = True
        if report_read is not None:
            os.set_blocking(report_read, False)
            try:
                report = os.read(report_read, 65536)
            except BlockingIOError:
                report = b""
            if not report.startswith(b"R"):
                raise BackendUnavailable("the mask helper could not prepare the sandbox: "
                                         + (report[1:].decode(errors="replace") or "it did not start"),
                                         hint="run `ringfence status` to see the masks; deny a directory "
                                              "instead of many files")
    finally:
        ceilings.abandon()
        if spawned is not None and not finished:
            # Something failed between spawn and the end of supervision: the
            # sandbox must not go on unwatched (or, with the block fd closed,
            # without its limits).
            kill_and_reap(spawned)
        if applied is None and prepared is not None:
            applied = prepared  # made for a sandbox that never got its limits: removed all the same
        if applied is not None:
            released = limit_tools.release(applied)
            if released:
                events.emit("limits.report", **released)
        streams.close()
        for fd in ours + theirs:
            os.close(fd)
        if egress is not None:
            egress.stop()
        removed = [] if keep_placeholders else placeholders.release()

    duration = time.monotonic() - started
    code = exit_status(result)
    if code is None:
        from ..linux.diagnose import explain_start_failure  # only when bwrap failed to start

        message, hint = explain_start_failure(plan.bwrap.path)
        events.emit("sandbox.error", message=message, duration=round(duration, 4))
        raise BackendUnavailable(message, hint=hint)
    events.emit("run.end", exit_code=code, reason=result.reason, duration=round(duration, 4),
                placeholders_removed=len(removed))
    return Outcome(exit_code=code, stdout=result.stdout, stderr=result.stderr, events=tuple(events.events),
                   duration=duration, reason=result.reason, sandboxed=True, shown_tail=result.tail)
