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


# Operating system commands (ESC ] N ; ... ST) that act outside the sandbox's
# own screen: 52 sets the system clipboard (text waiting to be pasted into a
# shell outside), 1337 is iTerm2's (file downloads, clipboard, user variables),
# 5522 kitty's clipboard protocol, 5113 kitty's file transfer.
DENIED_OSC = frozenset({52, 1337, 5113, 5522})
# Window reports (CSI 20 t, CSI 21 t) make the terminal type a title the
# program chose into its input, which outlives the run.
DENIED_EXACT = (b"\x1b[20t", b"\x1b[21t", b"\x9b20t", b"\x9b21t")
OSC_STARTS = (b"\x1b]", b"\x9d")
OSC_ENDS = (b"\x07", b"\x1b\\", b"\x9c")
PRIVATE_MODE = b"\x1b[?"
# DEC private modes a program may leave on when it is killed: alternate
# screen, mouse reporting, focus events, bracketed paste. 25 (cursor shown)
# is on by default, so what is tracked for it is being off.
TRACKED_MODES = frozenset({47, 1047, 1049, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1015, 2004})
CURSOR = 25
_NEEDLES = OSC_STARTS + DENIED_EXACT + (PRIVATE_MODE,)
_LONGEST_HELD = 32  # an OSC number or mode list longer than this is no sequence we act on


class TerminalFilter:
    """What the sandbox writes to the user's terminal, less what would act
    beyond its screen, and a record of the modes it left on.

    Sequences may arrive split across reads, so the filter keeps state. Only
    a few introducers are searched for (each with one C-level find), so
    plain and coloured output costs almost nothing.
    """

    def __init__(self):
        self.pending = b""
        self.dropping = False
        self.modes_on: set[int] = set()
        self.cursor_hidden = False

    def feed(self, data: bytes) -> bytes:
        data, self.pending = self.pending + data, b""
        out: list[bytes] = []
        position, length = 0, len(data)
        while position < length:
            if self.dropping:
                ends = [(found, len(end)) for end in OSC_ENDS if (found := data.find(end, position)) >= 0]
                if not ends:
                    # A terminator may be split across reads: keep a lone ESC for the next one.
                    self.pending = b"\x1b" if data.endswith(b"\x1b") else b""
                    return b"".join(out)
                found, size = min(ends)
                position = found + size
                self.dropping = False
                continue
            start = min((found for needle in _NEEDLES if (found := data.find(needle, position)) >= 0),
                        default=-1)
            if start < 0:
                tail = _partial_prefix(data[position:])
                out.append(data[position:length - len(tail)])
                self.pending = tail
                break
            out.append(data[position:start])
            verdict, end = self._sequence_at(data, start)
            if verdict == "incomplete":
                self.pending = data[start:]
                break
            if verdict == "drop-until-end":
                self.dropping = True
            elif verdict == "pass":
                out.append(data[start:end])
            position = end
        return b"".join(out)

    def _sequence_at(self, data: bytes, start: int):
        """("pass" | "drop" | "drop-until-end" | "incomplete", where it ends)."""
        for exact in DENIED_EXACT:
            if data.startswith(exact, start):
                return "drop", start + len(exact)
        if data.startswith(PRIVATE_MODE, start):
            return self._private_mode(data, start)
        introducer = 2 if data[start] == 0x1B else 1
        index = start + introducer
        while index < len(data) and 0x30 <= data[index] <= 0x39 and index - start < _LONGEST_HELD:
            index += 1
        if index >= len(data):
            return ("incomplete", 0) if index - start < _LONGEST_HELD else ("pass", index)
        digits = data[start + introducer:index]
        if digits and data[index] in b";\x07\x1b\x9c" and int(digits) in DENIED_OSC:
            return "drop-until-end", index
        return "pass", start + introducer

    def _private_mode(self, data: bytes, start: int):
        index = start + len(PRIVATE_MODE)
        while index < len(data) and (0x30 <= data[index] <= 0x39 or data[index] == 0x3B) \
                and index - start < _LONGEST_HELD:
            index += 1
        if index >= len(data):
            return ("incomplete", 0) if index - start < _LONGEST_HELD else ("pass", index)
        final = data[index]
        if final in b"hl":
            for part in data[start + len(PRIVATE_MODE):index].split(b";"):
                if not part.isdigit():
                    continue
                mode = int(part)
                if mode == CURSOR:
                    self.cursor_hidden = final == ord("l")
                elif mode in TRACKED_MODES:
                    (self.modes_on.add if final == ord("h") else self.modes_on.discard)(mode)
        return "pass", index + 1

    def reset_sequence(self) -> bytes:
        """What turns off every mode the sandbox left on, and shows the cursor."""
        out = b"".join(b"\x1b[?%dl" % mode for mode in sorted(self.modes_on, reverse=True))
        if self.cursor_hidden:
            out += b"\x1b[?25h"
        return out


def _partial_prefix(data: bytes) -> bytes:
    """The longest end of `data` that could begin one of the sequences searched for."""
    for size in range(min(len(data), max(map(len, _NEEDLES)) - 1), 0, -1):
        if any(needle.startswith(data[-size:]) for needle in _NEEDLES):
            return data[-size:]
    return b""


class SavedModes:
    """The terminal settings of every terminal among stdin, stdout and stderr,
    put back when the run ends, whatever happened to them meanwhile."""

    def __init__(self, fds):
        self.saved = []
        for fd in fds:
            try:
                self.saved.append((fd, termios.tcgetattr(fd)))
            except termios.error:
                pass

    def restore(self):
        for fd, mode in self.saved:
            try:
                termios.tcsetattr(fd, termios.TCSADRAIN, mode)
            except termios.error:
                pass
        self.saved = []
