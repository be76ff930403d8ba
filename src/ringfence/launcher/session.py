"""Watch one spawned sandbox to its end, whatever backend spawned it: signal
forwarding, the user's terminal in raw mode, and the exit status a run reports."""

from __future__ import annotations

import os

from ..errors import INTERRUPTED, TIMED_OUT
from . import signals
from .io import Streams
from .supervise import TERMINATING, Supervised, Supervisor


class _Handlers:
    """Forward terminating signals (and window changes) to the supervisor."""

    def __init__(self, supervisor, with_winch: bool):
        self.previous = {}
        wanted = list(TERMINATING) + ([signals.SIGWINCH] if with_winch else [])
        for signum in wanted:
            try:
                self.previous[signum] = signals.signal(signum, lambda n, f: supervisor.forward(n))
            except (ValueError, OSError):  # not the main thread: the caller handles signals
                pass

    def restore(self):
        for signum, handler in self.previous.items():
            signals.signal(signum, handler)


def supervise(pid: int, streams: Streams, *, timeout: float | None, on_event, forward_signals: bool,
              status_fd: int | None = None, initial_status: bytes = b"", status_parser=None) -> Supervised:
    """Relay the run's streams until it ends and return what was observed."""
    supervisor = Supervisor(pid, status_fd=status_fd, initial_status=initial_status, status_parser=status_parser,
                            timeout=timeout, on_event=on_event, **streams.supervision)
    streams.supervised()
    handlers = _Handlers(supervisor, with_winch="pty_master" in streams.supervision) if forward_signals else None
    try:
        streams.enter_raw()
        return supervisor.run()
    finally:
        if handlers is not None:
            handlers.restore()


def exit_status(result: Supervised) -> int | None:
    """The status a run reports: the command's own, 124 after a timeout, 130
    when interrupted; None when the command never ran (the backend says why)."""
    if result.reason == "timeout":
        return TIMED_OUT
    if result.exit_code is not None:
        return result.exit_code
    if result.reason == "interrupted":
        return INTERRUPTED
    return None


def kill_and_reap(pid: int):
    try:
        os.kill(pid, signals.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
