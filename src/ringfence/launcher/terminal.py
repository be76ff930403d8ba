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
# Terminals read the numbers in a sequence as numbers, so "0052" is 52; one
# with more digits than this (zeros in front aside) is no command or mode a
# terminal has, and some would wrap it into one.
SIGNIFICANT_DIGITS = 8
# A sequence longer than this that has not ended yet is dropped rather than
# held: what the filter keeps between reads stays small whatever is written.
_LONGEST_HELD = 256

ESC = 0x1B
CSI, OSC, STRING, KEYPAD = "csi", "osc", "string", "keypad"
# ESC P (DCS), ESC X (SOS), ESC ^ (PM) and ESC _ (APC) open strings that act
# beyond the screen: kitty's remote control, its graphics protocol reading
# and unlinking host files, tmux passthrough to the terminal around tmux,
# DECUDK reprogramming the user's function keys, status string requests.
# None is shown on screen, so all are dropped whole.
_AFTER_ESC = {ord("["): CSI, ord("]"): OSC, ord("P"): STRING, ord("X"): STRING, ord("^"): STRING,
              ord("_"): STRING, ord("="): KEYPAD, ord(">"): KEYPAD}
_C1 = {0x9B: CSI, 0x9D: OSC, 0x90: STRING, 0x98: STRING, 0x9E: STRING, 0x9F: STRING}

# Compiled by the first filter: `re` (with enum behind it) costs every run's
# start a few milliseconds, and most runs never filter a terminal.
_ESCAPE = _C1_IN_UTF8 = _C1_RAW = _CSI_BODY = _CSI_BYTES = _DIGITS = _OSC_END = _STRING_END = None


def _compile_patterns() -> None:
    import re

    global _ESCAPE, _C1_IN_UTF8, _C1_RAW, _CSI_BODY, _CSI_BYTES, _DIGITS, _OSC_END, _STRING_END
    # Every CSI but a few is passed without a look: colours and cursor motion
    # are most of what programs write. The few: window operations (t), modes
    # (h, l) and kitty's keyboard stack (u), and anything with a prefix or an
    # unusual byte, which the slow path reads.
    _ESCAPE = re.compile(rb"\x1b(?!\[[0-9;:]*[\x40-\x67\x69-\x6b\x6d-\x73\x76-\x7e])")
    # In UTF-8, 0x90-0x9f are also the continuation bytes of characters (the
    # "А" of Cyrillic is D0 90); a terminal decoding UTF-8 acts on them only as
    # U+0090..U+009F (C2 90..C2 9F) or as bytes no character explains.
    _C1_IN_UTF8 = re.compile(rb"[\x90\x98\x9b\x9d\x9e\x9f]"
                             rb"(?<![\xc3-\xdf\xe1-\xef\xf0-\xf3].)(?<![\xe0-\xf4][\x80-\xbf].)"
                             rb"(?<![\xf0-\xf4][\x80-\xbf][\x80-\xbf].)", re.DOTALL)
    _C1_RAW = re.compile(rb"[\x90\x98\x9b\x9d\x9e\x9f]")
    _CSI_BODY = re.compile(rb"[\x30-\x3f]*[\x20-\x2f]*")
    _CSI_BYTES = re.compile(rb"[\x20-\x3f]*")
    _DIGITS = re.compile(rb"[0-9]*")
    _OSC_END = re.compile(rb"[\x07\x1b\x9c]")
    _STRING_END = re.compile(rb"[\x1b\x9c]")


class TerminalFilter:
    """What the sandbox writes to the user's terminal, less what would act
    beyond its screen, and a record of the modes it left on.

    Sequences may arrive split across reads, so the filter keeps state: at
    most a short unfinished sequence, never the inside of a string it drops.
    Only introducers are searched for, with C-level scans, so plain and
    coloured output costs almost nothing.
    """

    def __init__(self, utf8: bool = True):
        self.pending = b""   # the start of a sequence the next read completes
        self.context = b""   # the bytes before `pending`: they tell a C1 control from UTF-8
        self.state = self._ground
        self.osc = None      # [introducer, significant digits, any digit seen] while a number is read
        self.osc_string = False
        self.left_on = LeftOn()
        if _ESCAPE is None:
            _compile_patterns()
        self._c1 = _C1_IN_UTF8 if utf8 else _C1_RAW
        self._c1_at = 0

    def feed(self, data: bytes) -> bytes:
        buf = self.context + self.pending + data
        position = len(self.context)
        self.pending = b""
        self._c1_at = len(buf) if buf.isascii() else -1
        out: list[bytes] = []
        while position < len(buf):
            position = self.state(buf, position, out)
        kept = len(buf) - len(self.pending)
        self.context = buf[max(0, kept - 3):kept]
        return b"".join(out)

    def reset_sequence(self) -> bytes:
        """What turns off every mode the sandbox left on, and shows the cursor."""
        return self.left_on.reset()

    # --- states: each takes the buffer and a position, returns where to go on

    def _ground(self, buf, position, out):
        start = self._next_introducer(buf, position)
        if start == len(buf):
            return self._text_to_the_end(buf, position, out)
        if buf[start] != ESC:
            return self._c1_control(buf, position, start, out)
        out.append(buf[position:start])
        if start + 1 == len(buf):
            return self._hold(buf, start)
        second = buf[start + 1]
        kind = _AFTER_ESC.get(second)
        if kind is not None:
            return self._introduced(kind, buf, start, start + 2, out)
        if not 0x20 <= second <= 0x7E:
            # A terminal goes on with the escape after a control byte ("ESC
            # LF ]" is still OSC): without its ESC the byte is plain again.
            return start + 1
        out.append(buf[start:start + 2])
        return start + 2

    def _text_to_the_end(self, buf, position, out):
        if self._c1 is _C1_IN_UTF8 and buf.endswith(b"\xc2"):
            # The first half of a C1 control in UTF-8 waits for its second.
            out.append(buf[position:-1])
            return self._hold(buf, len(buf) - 1)
        out.append(buf[position:])
        return len(buf)

    def _c1_control(self, buf, position, start, out):
        body = start + 1
        if self._c1 is _C1_IN_UTF8 and start > position and buf[start - 1] == 0xC2:
            start -= 1  # the control goes whole, not its first byte alone
        out.append(buf[position:start])
        return self._introduced(_C1[buf[body - 1]], buf, start, body, out)

    def _next_introducer(self, buf, position):
        found = _ESCAPE.search(buf, position)
        escape = found.start() if found else len(buf)
        if self._c1_at < position:
            found = self._c1.search(buf, position)
            self._c1_at = found.start() if found else len(buf)
        return min(escape, self._c1_at)

    def _introduced(self, kind, buf, start, body, out):
        if kind == CSI:
            return self._csi(buf, start, body, out)
        if kind == OSC:
            self.osc = [buf[start:body], b"", False]
            self.state = self._osc_number
            return body
        if kind == STRING:
            return self._drop_string(body, osc=False)
        self.left_on.keypad(application=buf[body - 1] == ord("="))
        out.append(buf[start:body])
        return body

    def _csi(self, buf, start, body, out):
        parsed = _CSI_BODY.match(buf, body)
        end = parsed.end()
        if end == len(buf):
            if end - start <= _LONGEST_HELD:
                return self._hold(buf, start)
            self.state = self._dropping_csi
            return end
        final = buf[end]
        if not 0x40 <= final <= 0x7E:
            # Not a sequence a terminal finishes (a control byte inside, a
            # parameter after an intermediate): dropped up to the odd byte.
            return end
        if self._csi_allowed(buf[body:end], final):
            out.append(buf[start:end + 1])
        return end + 1

    def _csi_allowed(self, body: bytes, final: int) -> bool:
        if final == ord("t"):
            # Window operations: title and size reports typed into the input
            # (a title the program chose, outliving the run), resizes, moves.
            return False
        return self.left_on.csi(body, final)

    def _dropping_csi(self, buf, position, out):
        end = _CSI_BYTES.match(buf, position).end()
        if end < len(buf):
            self.state = self._ground
            if 0x40 <= buf[end] <= 0x7E:
                end += 1
        return end

    def _osc_number(self, buf, position, out):
        introducer, digits, seen = self.osc
        end = _DIGITS.match(buf, position).end()
        seen = seen or end > position
        digits = (digits + buf[position:end]).lstrip(b"0")
        if len(digits) > SIGNIFICANT_DIGITS:
            return self._drop_string(end, osc=True)
        if end == len(buf):
            self.osc = [introducer, digits, seen]
            return end
        self.osc = None
        # Only a number, then ";" or the end, is a command whose meaning is
        # known; anything else (no number, a control byte a terminal would
        # skip between the digits) is dropped with its string.
        if not seen or buf[end] not in b";\x07\x1b\x9c" or int(digits or b"0") in DENIED_OSC:
            return self._drop_string(end, osc=True)
        # The number goes on as read, without the zeros: what the terminal
        # acts on is the number judged here.
        out.append(introducer + (digits or b"0"))
        self.left_on.osc_passed = True
        self.state = self._ground
        return end

    def _drop_string(self, position, *, osc: bool):
        self.osc_string = osc
        self.state = self._dropping_string
        return position

    def _dropping_string(self, buf, position, out):
        ends = _OSC_END if self.osc_string else _STRING_END
        while True:
            found = ends.search(buf, position)
            if found is None:
                return len(buf)
            index = found.start()
            if buf[index] != ESC:
                self.state = self._ground
                return index + 1
            if index + 1 == len(buf):
                return self._hold(buf, index)
            after = buf[index + 1]
            if after == ord("\\"):
                self.state = self._ground
                return index + 2
            # tmux passthrough (DCS tmux; ...) doubles every ESC inside it:
            # an ESC ESC pair never ends the string.
            position = index + 2 if after == ESC and not self.osc_string else index + 1

    def _hold(self, buf, start):
        self.pending = buf[start:]
        return len(buf)


def filter_for(fd: int) -> TerminalFilter:
    """A filter for the terminal on `fd`, which decodes UTF-8 unless its locale says otherwise."""
    encoding = (os.device_encoding(fd) or "utf-8").lower().replace("-", "").replace("_", "")
    return TerminalFilter(utf8=encoding == "utf8")


# DEC private modes a program may leave on when it is killed: cursor keys
# (1), keypad (66), mouse reporting (9, 1000-1006, 1015, 1016), focus events,
# alternate screen (47, 1047, 1049), bracketed paste. 25 (cursor shown) is
# on by default, so what is tracked for it is being off.
TRACKED_MODES = frozenset({1, 9, 47, 66, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1015, 1016, 1047, 1049,
                           2004})
CURSOR = 25
ALTERNATE_SCREEN = frozenset({47, 1047, 1049})
# ANSI modes that change what the user's keys do: keyboard locked (2),
# insert (4), newline (20); send/receive (12) is set by default, and reset
# echoes every key twice.
ANSI_MODES = frozenset({2, 4, 20})
LOCAL_ECHO = 12
_MODE_FINALS = b"hlr"


class LeftOn:
    """The terminal state a program can leave behind when it ends or is
    killed (modes, keyboard protocols), and the bytes that undo it."""

    def __init__(self):
        self.modes_on: set[int] = set()
        self.cursor_hidden = False
        self.ansi_on: set[int] = set()
        self.local_echo = False
        self.application_keypad = False
        self.key_resources: set[int] = set()
        self.osc_passed = False
        # kitty's keyboard protocol keeps a stack of flags for each screen.
        self.pushed = {False: 0, True: 0}
        self.flags_set = {False: False, True: False}

    def csi(self, body: bytes, final: int) -> bool:
        """Record what CSI `body` `final` turns on; False to drop it (a mode
        sequence whose numbers no terminal reads the same way)."""
        prefix = body[:1] if body[:1] in (b"?", b">", b"<", b"=") else b""
        handler = _CSI_HANDLERS.get((prefix, final))
        if handler is None:
            return True
        numbers = _numbers(body[len(prefix):])
        if numbers is None:
            return False
        handler(self, final, numbers)
        return True

    def _dec_modes(self, final, numbers):
        # XTRESTORE (r) puts back saved values: any of them may be on again.
        on, hidden = final != ord("l"), final != ord("h")
        for mode in numbers:
            if mode == CURSOR:
                self.cursor_hidden = hidden
            elif mode in TRACKED_MODES:
                (self.modes_on.add if on else self.modes_on.discard)(mode)

    def _ansi_modes(self, final, numbers):
        on = final == ord("h")
        for mode in numbers:
            if mode == LOCAL_ECHO:
                self.local_echo = not on
            elif mode in ANSI_MODES:
                (self.ansi_on.add if on else self.ansi_on.discard)(mode)

    def _keyboard_push(self, final, numbers):
        self.pushed[self._alternate()] += 1

    def _keyboard_pop(self, final, numbers):
        screen = self._alternate()
        self.pushed[screen] = max(0, self.pushed[screen] - (numbers[0] if numbers and numbers[0] else 1))

    def _keyboard_set(self, final, numbers):
        screen = self._alternate()
        if not self.pushed[screen]:
            self.flags_set[screen] = True

    def _key_resource(self, final, numbers):
        # xterm's modifyOtherKeys and kin (CSI > Pp ; Pv m): keys sent as
        # CSI 27 ; ... sequences that a shell does not read.
        if numbers:
            self.key_resources.add(numbers[0])

    def keypad(self, application: bool):
        self.application_keypad = application

    def _alternate(self) -> bool:
        return bool(self.modes_on & ALTERNATE_SCREEN)

    def reset(self) -> bytes:
        # A title or link left unterminated would swallow what follows,
        # ringfence's own warnings included; an ST with nothing open is ignored.
        out = [b"\x1b\\"] if self.osc_passed else []
        # Each screen has its own keyboard stack: the alternate one is
        # unwound while it is still shown.
        if self._alternate():
            out.append(self._keyboard_reset(True))
        out += [b"\x1b[?%dl" % mode for mode in sorted(self.modes_on, reverse=True)]
        out.append(self._keyboard_reset(False))
        out += [b"\x1b[%dl" % mode for mode in sorted(self.ansi_on)]
        if self.local_echo:
            out.append(b"\x1b[%dh" % LOCAL_ECHO)
        if self.application_keypad:
            out.append(b"\x1b>")
        out += [b"\x1b[>%dm" % resource for resource in sorted(self.key_resources)]
        if self.cursor_hidden:
            out.append(b"\x1b[?25h")
        return b"".join(out)

    def _keyboard_reset(self, screen: bool) -> bytes:
        out = b"\x1b[<%du" % self.pushed[screen] if self.pushed[screen] else b""
        return out + (b"\x1b[=0;1u" if self.flags_set[screen] else b"")


_CSI_HANDLERS = {(b"?", final): LeftOn._dec_modes for final in _MODE_FINALS}
_CSI_HANDLERS.update({(b"", ord("h")): LeftOn._ansi_modes, (b"", ord("l")): LeftOn._ansi_modes,
                      (b">", ord("u")): LeftOn._keyboard_push, (b"<", ord("u")): LeftOn._keyboard_pop,
                      (b"=", ord("u")): LeftOn._keyboard_set, (b">", ord("m")): LeftOn._key_resource})


def _numbers(text: bytes) -> list[int] | None:
    """The parameters of a sequence (an empty one is 0), or None when one is
    not a plain number or has more digits than any terminal reads alike."""
    numbers = []
    for part in text.split(b";") if text else ():
        significant = part.lstrip(b"0")
        if (part and not part.isdigit()) or len(significant) > SIGNIFICANT_DIGITS:
            return None
        numbers.append(int(significant or b"0"))
    return numbers


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
