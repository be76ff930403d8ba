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
    from typing import Protocol
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

    def check(self, policy) -> tuple[Unenforceable, ...]:
        """Everything this backend cannot enforce for `policy`; empty means go."""
        ...

    def describe(self, policy) -> dict:
        """What enforces what, for `status`: the backend's name and version,
        how each limit is put on, and what is unavailable."""
        ...

    def plan(self, policy, command: list[str], *, cwd: str, env_result, io):
        """The plan for one run (data)."""
        ...

    def run(self, plan, io, *, timeout: float | None, events, forward_signals: bool):
        """Run the plan and return its Outcome."""
        ...

    def close(self) -> None:
        """Release what the backend keeps between runs."""
        ...
