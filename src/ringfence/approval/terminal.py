"""Asking a person on the controlling terminal.

The question goes to /dev/tty, not to stdin or stdout: those belong to the
command and may be pipes. Without a controlling terminal nobody can be
asked, and the answer is no. What the question shows (a command, a rule, a
justification) comes from the command and from rules files, so control
characters are shown escaped: nothing shown can move the cursor or rewrite
the question.
"""

from __future__ import annotations

import os

from ..printable import printable

NOBODY = "nobody (no terminal to ask on)"
_ANSWERS = {"o": "once", "once": "once", "y": "once", "yes": "once", "a": "always", "always": "always",
            "n": "no", "no": "no", "": "no"}


def question(request) -> str:
    from ..policy.commands import display_argv

    kind_line = {"prompt": "run this command?", "escalation": "run this command OUTSIDE the sandbox?",
                 "retry-unsandboxed": "it failed because of the sandbox; run it again OUTSIDE the sandbox?"}
    lines = ["", f"ringfence: {kind_line.get(request.kind, 'approve?')}",
             f"  command:   {printable(display_argv(request.command))}"]
    if tuple(request.command) != tuple(request.argv):
        lines.append(f"  part of:   {printable(display_argv(request.argv))}")
    if request.rule:
        lines.append(f"  rule:      {printable(request.rule)} [{printable(request.origin or '')}]")
    if request.justification:
        lines.append(f"  why:       {printable(request.justification)}")
    if request.reason:
        lines.append(f"  because:   {printable(request.reason)}")
    choices = "[o]nce, [a]lways, [n]o" if request.remember else "[o]nce, [n]o"
    if request.remember:
        lines.append(f"  always adds: {printable(request.remember)}")
    lines.append(f"  {choices} (default no): ")
    return "\n".join(lines)


class TerminalApprover:
    """An approver that asks on the controlling terminal; "no" when there is none."""

    def __init__(self, tty: str = "/dev/tty", *, attempts: int = 3):
        self.tty = tty
        self.attempts = attempts
        self.answered_by: str | None = None  # who gave the last answer, for the event log

    def __call__(self, request) -> str:
        self.answered_by = NOBODY
        try:
            fd = os.open(self.tty, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError:
            return "no"
        try:
            answer = self._ask(fd, request)
        except OSError:  # the terminal went away (EIO once its other side closes): nobody to ask
            return "no"
        finally:
            os.close(fd)
        self.answered_by = f"a person on the terminal ({self.tty})" if answer is not None else NOBODY
        return answer or "no"

    def _ask(self, fd: int, request) -> str | None:
        text = question(request)
        for _ in range(self.attempts):
            _write(fd, text.encode("utf-8", "replace"))
            line = _read_line(fd)
            if line is None:
                return None  # end of input: nobody answered
            answer = _ANSWERS.get(line.strip().lower())
            if answer == "always" and not request.remember:
                answer = None
            if answer is not None:
                return answer
            text = "  please answer " + ("o, a or n: " if request.remember else "o or n: ")
        return "no"


def _write(fd: int, data: bytes):
    while data:
        data = data[os.write(fd, data):]


def _read_line(fd: int) -> str | None:
    """One line from the terminal, or None at end of input."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            return None
        if not chunk:
            return None if not chunks else b"".join(chunks).decode("utf-8", "replace")
        chunks.append(chunk)
        if b"\n" in chunk or b"\r" in chunk:
            return b"".join(chunks).decode("utf-8", "replace")
