"""A private pseudo-terminal between the user's terminal and the sandbox.

The sandbox never receives a descriptor of the user's terminal: it gets the
slave side of a fresh pty, ringfence relays bytes, and terminal injection
(TIOCSTI) could only ever reach the sandbox's own input. Keys such as Ctrl-C
travel as bytes and become signals inside the pty, for the sandboxed
program's foreground process group, exactly as in a normal terminal.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios


class RawMode:
    """Put a terminal into raw mode and always put it back."""

    def __init__(self, fd: int):
        self.fd = fd
        self.saved = None

    def __enter__(self):
        try:
            self.saved = termios.tcgetattr(self.fd)
        except termios.error:
            return self
        mode = termios.tcgetattr(self.fd)
        iflag, oflag, cflag, lflag = 0, 1, 2, 3
        mode[iflag] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON)
        mode[oflag] &= ~termios.OPOST
        mode[cflag] = (mode[cflag] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
        mode[lflag] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
        mode[6][termios.VMIN] = 1
        mode[6][termios.VTIME] = 0
        termios.tcsetattr(self.fd, termios.TCSAFLUSH, mode)
        return self

    def __exit__(self, *exc):
        self.restore()

    def restore(self):
        if self.saved is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSAFLUSH, self.saved)
            except termios.error:
                pass
            self.saved = None


def copy_window_size(from_fd: int, to_fd: int):
    try:
        size = fcntl.ioctl(from_fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(to_fd, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def open_pty(size_from: int | None):
    """A (master, slave) pair; the slave keeps the user's terminal settings and size."""
    master, slave = os.openpty()
    if size_from is not None:
        copy_window_size(size_from, slave)
        try:
            termios.tcsetattr(slave, termios.TCSANOW, termios.tcgetattr(size_from))
        except termios.error:
            pass
    os.set_blocking(master, False)
    return master, slave


def foreground_group(master: int) -> int | None:
    try:
        return os.tcgetpgrp(master)
    except OSError:
        return None


class ClipboardFilter:
    """Drops OSC 52 sequences from the sandbox's terminal output.

    OSC 52 asks the terminal to set the system clipboard: a sandboxed program
    could put a command there for the user to paste into a shell outside.
    Sequences may arrive split across reads, so the filter keeps state.
    """

    STARTS = (b"\x1b]52;", b"\x9d52;")
    ENDS = (b"\x07", b"\x1b\\", b"\x9c")

    def __init__(self):
        self.pending = b""
        self.dropping = False

    def feed(self, data: bytes) -> bytes:
        data, self.pending = self.pending + data, b""
        out = []
        position = 0
        while position < len(data):
            if self.dropping:
                ends = [(found, len(end)) for end in self.ENDS if (found := data.find(end, position)) >= 0]
                if not ends:
                    # A terminator may be split across reads: keep a lone ESC for the next one.
                    self.pending = b"\x1b" if data.endswith(b"\x1b") else b""
                    return b"".join(out)
                found, length = min(ends)
                position = found + length
                self.dropping = False
                continue
            starts = [(found, len(start)) for start in self.STARTS if (found := data.find(start, position)) >= 0]
            if not starts:
                tail = _partial_prefix(data[position:], self.STARTS)
                out.append(data[position:len(data) - len(tail)])
                self.pending = tail
                return b"".join(out)
            found, length = min(starts)
            out.append(data[position:found])
            position = found + length
            self.dropping = True
        return b"".join(out)


def _partial_prefix(data: bytes, starts) -> bytes:
    """The longest end of `data` that could begin one of `starts`."""
    for size in range(min(len(data), max(map(len, starts)) - 1), 0, -1):
        if any(start.startswith(data[-size:]) for start in starts):
            return data[-size:]
    return b""
