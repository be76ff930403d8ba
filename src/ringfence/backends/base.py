"""The seam every backend fits: what it cannot enforce, its plan, its run.

    Policy --> Backend.check(policy)  --> what this backend cannot enforce (data)
           --> Backend.plan(...)      --> its plan (data, testable as data)
           --> Backend.run(plan, io)  --> Outcome, through the backend-neutral launcher

A policy is backend-neutral; a backend turns it into its own mechanism. A
wrapper (the egress proxy, an isolated run) is a backend that adds to the
plan and the run of the one it wraps.
"""

from __future__ import annotations

from .._record import Record

# `typing` (which loads `re`) stays off the `run` path: the protocol is for
# type checkers, and at run time `Backend` is a plain class nothing derives from.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    from ..events import EventLog
    from ..launcher.io import IOSpec
    from ..launcher.outcome import Outcome
    from ..policy.environment import EnvironmentResult
    from ..policy.record import Policy
else:
    Protocol = object


class Unenforceable(Record):
    """One thing a backend cannot enforce for a policy: `what` (a rule, a
    limit, a feature), why, and how to change the policy or the machine."""

    __slots__ = ("what", "reason", "hint")
    _defaults = {"hint": None}
    what: str
    reason: str
    hint: str | None

    def message(self) -> str:
        return f"{self.what}: {self.reason}"


class Backend(Protocol):
    name: str

    def check(self, policy: Policy) -> tuple[Unenforceable, ...]:
        """Everything this backend cannot enforce for `policy`; empty means go."""
        ...

    def describe(self, policy: Policy) -> dict:
        """What enforces what, for `status`: the backend's name and version,
        and what is unavailable."""
        ...

    def limits(self, policy: Policy) -> dict:
        """How each limit of `policy` is put on, for `status`."""
        ...

    def plan(self, policy: Policy, command: list[str], *, cwd: str, env_result: EnvironmentResult, io: IOSpec,
             events: EventLog) -> Any:
        """The plan for one run (data; each backend has its own kind)."""
        ...

    def run(self, plan: Any, io: IOSpec, *, timeout: float | None, events: EventLog, forward_signals: bool,
            keep: bool = True) -> Outcome:
        """Run the plan and return its Outcome; with `keep`, what a run sets
        up to be reused (placeholders) stays until `close()`."""
        ...

    def close(self) -> None:
        """Release what the backend keeps between runs."""
        ...
