"""A backend that enforces nothing, for tests of what lies above the seam.

Like httpx's MockTransport: the API, the CLI, refusals, events, the
launcher's I/O, timeouts and signals can be exercised without bubblewrap.
`refuse` makes `check` report what a real backend could not enforce; a
`handler` (plan -> (exit code, stdout, stderr)) answers instead of running
anything; without one the command runs as a plain child process, through
the same launcher as a real run. Never a boundary: `Outcome.sandboxed` is
False, and the events say `backend: fake`.
"""

from __future__ import annotations

import time

from .._record import Record
from ..launcher.io import IOSpec, Streams
from ..launcher.outcome import Outcome
from ..launcher.resolve import resolve_command
from ..launcher.session import exit_status, supervise
from .base import Unenforceable


class FakePlan(Record):
    __slots__ = ("command", "cwd", "env", "dropped_env")
    command: list[str]
    cwd: str
    env: dict[str, str]
    dropped_env: tuple[tuple[str, str], ...]


class FakeBackend:
    name = "fake"

    def __init__(self, refuse: tuple[Unenforceable, ...] = (), handler=None):
        self.refusals = tuple(refuse)
        self.handler = handler
        self.plans: list[FakePlan] = []
        self.closed = False

    def check(self, policy) -> tuple[Unenforceable, ...]:
        return self.refusals

    def describe(self, policy) -> dict:
        return {"name": self.name, "detail": "enforces nothing: for tests"}

    def limits(self, policy) -> dict:
        return {"process_cap_enforced_by": None, "enforcement": "not enforced (fake backend)",
                "memory_enforced_by": "not enforced", "cpu_time_enforced_by": "not enforced",
                "shared_counters": {}, "shared_rlimits": "not enforced"}

    def plan(self, policy, command: list[str], *, cwd: str, env_result, io: IOSpec, events) -> FakePlan:
        resolve_command(command, env_result.env, cwd, policy.filesystem)
        plan = FakePlan(command=list(command), cwd=cwd, env=dict(env_result.env), dropped_env=env_result.dropped)
        self.plans.append(plan)
        return plan

    def run(self, plan: FakePlan, io: IOSpec, *, timeout: float | None, events, forward_signals: bool,
            keep: bool = True) -> Outcome:
        started = time.monotonic()
        events.emit("run.start", argv=plan.command, backend=self.name,
                    env_dropped=sorted({name for name, _reason in plan.dropped_env}))
        tail = None
        if self.handler is not None:
            code, stdout, stderr = self.handler(plan)
            reason = "exited"
        else:
            import subprocess  # only in tests

            streams = Streams(io).open()
            try:
                child = streams.child
                process = subprocess.Popen(plan.command, cwd=plan.cwd, env=plan.env, stdin=child.get(0),
                                           stdout=child.get(1), stderr=child.get(2), pass_fds=io.pass_fds,
                                           start_new_session=True)
                streams.after_spawn()
                result = supervise(process.pid, streams, timeout=timeout, on_event=events.emit,
                                   forward_signals=forward_signals)
                process.returncode = result.exit_code  # reaped by the supervisor
            finally:
                streams.close()
            code, stdout, stderr, reason, tail = (exit_status(result), result.stdout, result.stderr, result.reason,
                                                  result.tail)
        duration = time.monotonic() - started
        events.emit("run.end", exit_code=code, reason=reason, duration=round(duration, 4))
        return Outcome(exit_code=code, stdout=stdout, stderr=stderr, events=tuple(events.events), duration=duration,
                       reason=reason, sandboxed=False, shown_tail=tail)

    def close(self) -> None:
        self.closed = True
