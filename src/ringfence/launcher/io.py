"""What the command's stdin, stdout and stderr are, prepared for one run.

Backend-neutral: whatever spawns the sandbox gets a table of descriptors
for 0, 1 and 2, and the supervisor the other ends. The user's terminal is
never among them: with `tty` the command gets a private pseudo-terminal,
without it pipes that the supervisor relays through the terminal filter.
"""

from __future__ import annotations

import os

from .._record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` loads `re`: checkers only
    from typing import Final, Literal

    from .terminal import RawMode, SavedModes

    StdinMode = Literal["inherit", "devnull", "pipe"]
    OutputMode = Literal["inherit", "capture"]

INHERIT: Final = "inherit"
DEVNULL: Final = "devnull"
PIPE: Final = "pipe"
CAPTURE: Final = "capture"


class IOSpec(Record):
    """stdin: inherit | devnull | pipe (with `input`); stdout/stderr: inherit |
    capture; `tty`: give tty descriptors a private pty instead of the real one;
    `pass_fds`: extra descriptors the caller hands to the command on purpose."""

    __slots__ = ("stdin", "input", "stdout", "stderr", "tty", "pass_fds")
    _defaults = {"stdin": INHERIT, "input": None, "stdout": INHERIT, "stderr": INHERIT, "tty": True,
                 "pass_fds": ()}
    stdin: StdinMode
    input: bytes | None
    stdout: OutputMode
    stderr: OutputMode
    tty: bool
    pass_fds: tuple[int, ...]


def terminal_fds(io: IOSpec) -> list[int]:
    """Which of stdin, stdout and stderr would hand the sandbox the user's terminal."""
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


class Streams:
    """The descriptors of one run's standard streams.

    `child` maps the command's descriptor to ours (for the spawner);
    `supervision` holds the supervisor's keyword arguments; `after_spawn()`
    closes our copies of the child's ends; `close()` puts everything back."""

    def __init__(self, io: IOSpec):
        self.io = io
        self.child: dict[int, int] = {}
        self.supervision: dict = {}
        self._child_ends: list[int] = []
        self._ours: list[int] = []
        self._raw: RawMode | None = None
        self._saved: SavedModes | None = None
        self._master = None
        self._until_supervised: list[int] = []  # ours until a supervisor takes them over

    def open(self) -> "Streams":
        io = self.io
        terminals = terminal_fds(io)
        if terminals:
            # The terminal module (with termios, fcntl and struct) loads only
            # where there is a terminal: most runs of an agent have none.
            from .terminal import SavedModes

            self._saved = SavedModes(terminals)
        relays: dict[int, int] = {}
        input_relay = None
        if terminals and io.tty:
            from .terminal import open_pty

            master, slave = open_pty(size_from=terminals[0])
            self._master = master
            self._child_ends.append(slave)
            for fd in terminals:
                self.child[fd] = slave
            self.supervision.update(pty_master=master,
                                    pty_output=1 if 1 in terminals else (2 if 2 in terminals else None),
                                    pty_input=0 if 0 in terminals else None)
        elif terminals:
            for fd in terminals:
                if fd == 0 and not _in_foreground(0):
                    self.child[0] = self._devnull()
                    continue
                read_end, write_end = os.pipe()
                if fd == 0:
                    self._child_ends.append(read_end)
                    self.child[0] = read_end
                    input_relay = (0, write_end)
                    self._until_supervised.append(write_end)
                else:
                    self._child_ends.append(write_end)
                    self._ours.append(read_end)
                    self.child[fd] = write_end
                    relays[read_end] = fd
        self.supervision.update(relays=relays, input_relay=input_relay)
        if io.stdin == DEVNULL:
            self.child[0] = self._devnull()
        elif io.stdin == PIPE:
            read_end, write_end = os.pipe()
            self._child_ends.append(read_end)
            self.child[0] = read_end
            self.supervision.update(input_fd=write_end, input_data=io.input or b"")
            self._until_supervised.append(write_end)
        for fd, mode, name in ((1, io.stdout, "stdout_fd"), (2, io.stderr, "stderr_fd")):
            if mode == CAPTURE:
                read_end, write_end = os.pipe()
                self._child_ends.append(write_end)
                self._ours.append(read_end)
                self.child[fd] = write_end
                self.supervision[name] = read_end
        return self

    def _devnull(self) -> int:
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._child_ends.append(fd)
        return fd

    def after_spawn(self):
        for fd in self._child_ends:
            os.close(fd)
        self._child_ends = []

    def supervised(self):
        """A supervisor now owns the input pipes' write ends (and closes them)."""
        self._until_supervised = []

    def enter_raw(self):
        """The user's keys go to the private pty as they are typed."""
        pty_input = self.supervision.get("pty_input")
        if pty_input is not None:
            from .terminal import RawMode

            self._raw = RawMode(pty_input).__enter__()

    def close(self):
        if self._raw is not None:
            self._raw.restore()
            self._raw = None
        if self._saved is not None:
            self._saved.restore()
            self._saved = None
        self.after_spawn()
        for fd in self._ours + self._until_supervised:
            os.close(fd)
        self._ours = []
        self._until_supervised = []
        if self._master is not None:
            os.close(self._master)
            self._master = None
