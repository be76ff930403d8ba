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
