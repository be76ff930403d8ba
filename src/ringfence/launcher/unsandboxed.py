"""A command run without any sandbox (danger-full-access, or an approved
request to run outside it), and saying so.

Only the environment policy still applies. The command shares ringfence's
process group, so terminal keys reach it directly, as in a shell.
"""

from __future__ import annotations

import time

from ..errors import TIMED_OUT
from . import signals
from .io import CAPTURE, DEVNULL, PIPE
from .outcome import Outcome


def run_unsandboxed(policy, command, *, cwd, env, io, timeout, events, why: str | None = None) -> Outcome:
    """`why` says what let it run outside a sandbox policy (None: the policy is danger-full-access)."""
    import subprocess

    events.emit("run.start", argv=command, backend="none", sandboxed=False,
                warning=f"no sandbox: {why}" if why else "danger-full-access: no sandbox")
    started = time.monotonic()
    stdin = subprocess.PIPE if io.stdin == PIPE else (subprocess.DEVNULL if io.stdin == DEVNULL else None)
    capture = subprocess.PIPE if io.stdout == CAPTURE else None
    previous = {}
    for signum in (signals.SIGINT, signals.SIGQUIT):
        try:
            previous[signum] = signals.signal(signum, signals.SIG_IGN)
        except ValueError:
            pass
    reason = "exited"
    try:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdin=stdin, stdout=capture, stderr=capture,
                                   pass_fds=io.pass_fds, restore_signals=True)
        try:
            stdout, stderr = process.communicate(io.input, timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            reason = "timeout"
    finally:
        for signum, handler in previous.items():
            signals.signal(signum, handler)
    code = TIMED_OUT if reason == "timeout" else (process.returncode if process.returncode >= 0
                                            else 128 - process.returncode)
    duration = time.monotonic() - started
    events.emit("run.end", exit_code=code, reason=reason, duration=round(duration, 4))
    return Outcome(exit_code=code, stdout=stdout, stderr=stderr, events=tuple(events.events), duration=duration,
                   reason=reason, sandboxed=False)
