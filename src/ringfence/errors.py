"""The error hierarchy. Every error says what failed and how to fix it.

Exit statuses follow the convention of `env`, `timeout` and container
runtimes, so that they are never confused with the command's own status:
125 the sandbox could not be built, 126 the command cannot be run, 127 the
command was not found; 124 a timeout ended the run, 130 an interruption.
"""

from __future__ import annotations

SANDBOX_FAILED = 125
COMMAND_NOT_RUNNABLE = 126
COMMAND_NOT_FOUND = 127
# As timeout(1) and a shell's Ctrl-C report them.
TIMED_OUT = 124
INTERRUPTED = 130


class RingfenceError(Exception):
    """Base class: the command did not run."""

    exit_status = SANDBOX_FAILED

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  fix: {self.hint}"
        return self.message


class ConfigError(RingfenceError):
    """A configuration file, `-c` override or flag is invalid."""

    def __init__(self, source: str, key: str, message: str, *, accepted: str | None = None,
                 hint: str | None = None):
        self.source = source
        self.key = key
        self.accepted = accepted
        text = f"{source}: {key}: {message}" if key else f"{source}: {message}"
        if accepted:
            text += f" (accepted: {accepted})"
        super().__init__(text, hint=hint)


class PolicyError(RingfenceError):
    """The policy is valid but cannot be enforced exactly as written."""


class BackendUnavailable(RingfenceError):
    """The enforcement backend (bubblewrap, namespaces, seccomp) is missing or refused."""


class CommandRefused(RingfenceError):
    """A command rule forbids this command."""

    exit_status = COMMAND_NOT_RUNNABLE


class CommandNotFound(RingfenceError):
    exit_status = COMMAND_NOT_FOUND


class CommandNotExecutable(RingfenceError):
    exit_status = COMMAND_NOT_RUNNABLE
