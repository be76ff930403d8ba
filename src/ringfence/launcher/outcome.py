"""What a run returns."""

from __future__ import annotations

from .._record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal

    Reason = Literal["exited", "timeout", "interrupted"]


class Outcome(Record):
    """The result of one run.

    `exit_code` is the command's own status (128+N when a signal N ended it);
    `stdout`/`stderr` are bytes when captured, else None; `events` the run's
    event log; `reason` one of "exited", "timeout", "interrupted";
    `changeset` is reserved for isolated runs; `shown_tail` is the end (64
    KiB) of what the command showed on the user's terminal through
    ringfence's relay, when it had one (what a denial report can read when
    the output was not captured).
    """

    __slots__ = ("exit_code", "stdout", "stderr", "events", "duration", "reason", "sandboxed",
                 "changeset", "shown_tail")
    _defaults = {"stdout": None, "stderr": None, "events": (), "duration": 0.0, "reason": "exited",
                 "sandboxed": True, "changeset": None, "shown_tail": None}
    exit_code: int
    stdout: bytes | None
    stderr: bytes | None
    events: tuple[dict[str, Any], ...]
    duration: float
    reason: Reason
    sandboxed: bool
    changeset: object | None
    shown_tail: bytes | None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def returncode(self) -> int:
        return self.exit_code
