"""Watch one spawned sandbox until it ends: relay I/O, forward signals,
enforce the timeout, and read the backend's status pipe, if it has one.

Everything is one poll loop over descriptors (the process's pidfd included),
so it works from any thread and needs no SIGCHLD handler. What a backend's
status pipe says (the sandbox's first process, the command's exit code) is
read by a parser the backend gives; without one, the exit code is the
spawned process's own.
"""

from __future__ import annotations

import errno
import os
import select
import time

from . import signals


TAIL_BYTES = 64 * 1024  # of what the user's terminal was shown, for the denial report
GRACE_SECONDS = 3.0
DRAIN_SECONDS = 2.0
TERMINATING = (signals.SIGINT, signals.SIGTERM, signals.SIGHUP, signals.SIGQUIT)


class Supervised:
    """What the loop observed: the command's status and anything captured."""

    __slots__ = ("exit_code", "wait_status", "stdout", "stderr", "reason", "tail")

    def __init__(self):
        self.exit_code = None
        self.wait_status = None
        self.stdout = None
        self.stderr = None
        self.reason = "exited"
        self.tail = None


class Supervisor:
    def __init__(self, pid: int, *, status_fd: int | None = None, initial_status: bytes = b"", status_parser=None,
                 stdout_fd: int | None = None,
                 stderr_fd: int | None = None, input_fd: int | None = None, input_data: bytes = b"",
                 pty_master: int | None = None, pty_output: int | None = None,
                 pty_input: int | None = None, timeout: float | None = None, on_event=None,
                 relays: dict[int, int] | None = None, input_relay: tuple[int, int] | None = None):
        """`relays` maps the read end of a pipe the sandbox writes to onto the
        user's terminal that its bytes go to, through the filter; `input_relay`
        is (the user's terminal, the pipe the sandbox reads from): without a
        pty of its own, the sandbox still never holds the user's terminal."""
        self.pid = pid
        self.status_fd = status_fd
        self.status_parser = status_parser
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self.input_fd = input_fd
        self.input_data = memoryview(input_data or b"")
        self.pty_master = pty_master
        self.pty_output = pty_output
        self.pty_input = pty_input
        self.deadline = time.monotonic() + timeout if timeout else None
        self.on_event = on_event or (lambda *a, **k: None)
        self.result = Supervised()
        self.sandbox_pid = None
        self.kill_at: float | None = None
        self.signals_seen = 0
        self.to_pty = bytearray()
        self.relays = dict(relays or {})
        # A filter (and the terminal module) only where there is a terminal to
        # guard: loading and building one costs a start a millisecond or two.
        self.pty_filter = None
        self.relay_filters = {}
        if pty_output is not None or self.relays:
            from .terminal import filter_for

            self.pty_filter = filter_for(pty_output) if pty_output is not None else None
            self.relay_filters = {fd: filter_for(terminal) for fd, terminal in self.relays.items()}
        self.input_relay = input_relay
        self.to_input = bytearray()
        self._status = initial_status
        if initial_status:
            self._parse_status()
        if status_parser is None:
            # The spawned process is the command itself, leading its own session.
            self.sandbox_pid = pid
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        # The end of the errors shown on the user's terminal (the pty's output,
        # or the stderr relay), so a failure can still be explained.
        self._tail = bytearray() if pty_output is not None or 2 in self.relays.values() else None

    # --- signals -----------------------------------------------------------------

    def forward(self, signum: int):
        """Called from a signal handler in the CLI: pass the signal on."""
        if signum == signals.SIGWINCH:
            if self.pty_master is not None and self.pty_output is not None:
                from .terminal import copy_window_size

                copy_window_size(self.pty_output, self.pty_master)
            return
        self.signals_seen += 1
        if self.signals_seen > 1 or self.sandbox_pid is None:
            self.kill_everything("interrupted")
            return
        group = None
        if self.pty_master is not None:
            from .terminal import foreground_group

            group = foreground_group(self.pty_master)
        target = group or self.sandbox_pid
        try:
            os.killpg(target, signum)
        except OSError:
            pass
        self.on_event("signal.forwarded", signal=signals.name(signum), group=target)
        self.kill_at = time.monotonic() + GRACE_SECONDS
        self.result.reason = "interrupted"

    def kill_everything(self, reason: str):
        """SIGKILL the sandbox's init: the kernel then kills every process in its
        pid namespace, daemons and grandchildren included."""
        self.result.reason = reason
        if self.status_parser is None:
            try:  # no pid namespace to take the rest along: its whole session goes
                os.killpg(self.pid, signals.SIGKILL)
            except OSError:
                pass
        for pid in (self.sandbox_pid, self.pid):
            if pid:
                try:
                    os.kill(pid, signals.SIGKILL)
                except OSError:
                    pass
        self.kill_at = None

    # --- the loop ------------------------------------------------------------------

    def run(self) -> Supervised:
        poller = select.poll()
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            pidfd = None
        watched = {}

        def watch(fd, mask, name):
            if fd is not None:
                poller.register(fd, mask)
                watched[fd] = name

        def unwatch(fd):
            if fd in watched:
                poller.unregister(fd)
                del watched[fd]

        watch(pidfd, select.POLLIN, "pid")
        watch(self.status_fd, select.POLLIN, "status")
        watch(self.stdout_fd, select.POLLIN, "stdout")
        watch(self.stderr_fd, select.POLLIN, "stderr")
        watch(self.pty_master, select.POLLIN, "pty")
        watch(self.pty_input, select.POLLIN, "user-input")
        for fd in self.relays:
            watch(fd, select.POLLIN, "relay")
        if self.input_relay is not None:
            os.set_blocking(self.input_relay[1], False)
            watch(self.input_relay[0], select.POLLIN, "relay-input")
        if self.input_fd is not None:
            if self.input_data:
                os.set_blocking(self.input_fd, False)
                watch(self.input_fd, select.POLLOUT, "input")
            else:
                os.close(self.input_fd)
                self.input_fd = None

        exited_at = None
        try:
            while True:
                if exited_at is None:
                    exited_at = self._reap(block=False)
                readers = [n for n in watched.values() if n in ("stdout", "stderr", "status", "pty", "relay")]
                if exited_at is not None and (not readers or time.monotonic() - exited_at > DRAIN_SECONDS):
                    break
                timeout_ms = self._poll_timeout(exited_at)
                try:
                    ready = poller.poll(timeout_ms)
                except InterruptedError:
                    continue
                for fd, mask in ready:
                    name = watched.get(fd)
                    if name is None:
                        continue
                    if name == "pid":
                        unwatch(fd)
                    elif name == "input":
                        self._write_input(fd, unwatch)
                    elif name == "user-input":
                        self._read_user(fd, unwatch)
                    elif name == "pty":
                        self._pty_ready(fd, mask, poller, unwatch)
                    elif name in ("relay-input", "relay-input-out"):
                        self._relay_input(name, watch, unwatch)
                    else:
                        self._read(fd, name, unwatch)
                self._check_deadlines()
        finally:
            if pidfd is not None:
                os.close(pidfd)
            if self.input_fd is not None:
                os.close(self.input_fd)
            if self.input_relay is not None:
                os.close(self.input_relay[1])
                self.input_relay = None
            self._reset_terminals()
        if self.result.wait_status is None:
            self._reap(block=True)
        self._parse_status()
        self._exit_code_from_wait()
        if self.stdout_fd is not None:
            self.result.stdout = b"".join(self._out)
        if self.stderr_fd is not None:
            self.result.stderr = b"".join(self._err)
        if self._tail is not None:
            self.result.tail = bytes(self._tail)
        return self.result

    def _keep(self, chunk: bytes):
        assert self._tail is not None, "called only while the tail is kept"
        self._tail += chunk
        if len(self._tail) > TAIL_BYTES:
            del self._tail[:len(self._tail) - TAIL_BYTES]

    def _poll_timeout(self, exited_at):
        limits = []
        now = time.monotonic()
        if exited_at is not None:
            limits.append(exited_at + DRAIN_SECONDS - now)
        else:
            for moment in (self.deadline, self.kill_at):
                if moment is not None:
                    limits.append(moment - now)
        if exited_at is None and self.status_fd is None and self._pidfd_missing():
            limits.append(0.05)
        if not limits:
            return None
        # poll() takes an int of milliseconds: a far deadline is reached in steps.
        return max(0, min(int(min(limits) * 1000) + 1, 60_000))

    def _pidfd_missing(self):
        return not hasattr(os, "pidfd_open")

    def _check_deadlines(self):
        now = time.monotonic()
        if self.result.wait_status is not None:
            return
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            self.on_event("run.timeout")
            self.kill_everything("timeout")
        elif self.kill_at is not None and now >= self.kill_at:
            self.kill_everything(self.result.reason)

    def _reap(self, block: bool):
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return time.monotonic()
        if pid == 0:
            return None
        self.result.wait_status = status
        return time.monotonic()

    def _read(self, fd, name, unwatch):
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            unwatch(fd)
            return
        if name == "stdout":
            self._out.append(chunk)
        elif name == "stderr":
            self._err.append(chunk)
        elif name == "relay":
            if self.relays[fd] == 2 and self._tail is not None:
                self._keep(chunk)
            chunk = self.relay_filters[fd].feed(chunk)
            if chunk:
                _write_all(self.relays[fd], chunk)
        else:
            self._status += chunk
            if self.sandbox_pid is None:
                self._parse_status()

    def _write_input(self, fd, unwatch):
        try:
            written = os.write(fd, self.input_data[:65536])
        except BlockingIOError:
            return
        except BrokenPipeError:
            written = len(self.input_data)
        self.input_data = self.input_data[written:]
        if not self.input_data:
            unwatch(fd)
            os.close(fd)
            self.input_fd = None

    def _read_user(self, fd, unwatch):
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            unwatch(fd)
            return
        self.to_pty += chunk
        self._flush_pty()

    def _flush_pty(self):
        if not self.to_pty or self.pty_master is None:
            return
        try:
            written = os.write(self.pty_master, self.to_pty)
        except BlockingIOError:
            return
        except OSError:
            self.to_pty.clear()
            return
        del self.to_pty[:written]

    def _pty_ready(self, fd, mask, poller, unwatch):
        if mask & select.POLLOUT:
            self._flush_pty()
        if mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                chunk = None
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                chunk = b""  # EIO: every holder of the slave has gone
            if chunk == b"":
                unwatch(fd)
                return
            if chunk:
                if self._tail is not None:
                    self._keep(chunk)
                # With only stdin a terminal, what the pty shows (its echo) has no screen to go to.
                if self.pty_filter is not None:
                    chunk = self.pty_filter.feed(chunk)
                    if chunk:
                        _write_all(self.pty_output, chunk)
        if fd in (self.pty_master,):
            try:
                poller.modify(fd, select.POLLIN | (select.POLLOUT if self.to_pty else 0))
            except (KeyError, ValueError, OSError):
                pass

    def _relay_input(self, name, watch, unwatch):
        source, pipe = self.input_relay
        if name == "relay-input":
            try:
                chunk = os.read(source, 4096)
            except OSError:
                chunk = b""
            if not chunk:  # the user's end of input: the command's too
                unwatch(source)
                unwatch(pipe)
                os.close(pipe)
                self.input_relay = None
                return
            self.to_input += chunk
        try:
            del self.to_input[:os.write(pipe, self.to_input)]
        except BlockingIOError:
            pass
        except OSError:  # the command closed its input: what the user types stays theirs
            self.to_input.clear()
            unwatch(source)
            unwatch(pipe)
            return
        # While the command does not read, stop taking the user's keys.
        if self.to_input:
            unwatch(source)
            watch(pipe, select.POLLOUT, "relay-input-out")
        else:
            unwatch(pipe)
            watch(source, select.POLLIN, "relay-input")

    def _reset_terminals(self):
        """Turn off the modes the sandbox left on (alternate screen, mouse, ...)."""
        targets = [(self.pty_filter, self.pty_output)] if self.pty_output is not None else []
        targets += [(self.relay_filters[fd], self.relays[fd]) for fd in self.relays]
        for terminal_filter, fd in targets:
            reset = terminal_filter.reset_sequence()
            if reset:
                try:
                    _write_all(fd, reset)
                except OSError:
                    pass

    def _parse_status(self):
        if self.status_parser is None:
            return
        sandbox_pid, exit_code = self.status_parser(self._status.decode(errors="replace"))
        if sandbox_pid is not None:
            self.sandbox_pid = sandbox_pid
        if exit_code is not None:
            self.result.exit_code = exit_code

    def _exit_code_from_wait(self):
        """Without a status pipe, the spawned process is the command: its own
        status, with 128+N for a signal N, as a shell reports it."""
        if self.status_parser is None and self.result.wait_status is not None:
            code = os.waitstatus_to_exitcode(self.result.wait_status)
            self.result.exit_code = code if code >= 0 else 128 - code


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        except BrokenPipeError:
            return
        view = view[written:]
