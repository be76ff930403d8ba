"""Errors of isolated runs, each saying what failed and how to fix it."""

from __future__ import annotations

from ..errors import BackendUnavailable, RingfenceError


class IsolationUnavailable(BackendUnavailable):
    """This machine or this state directory cannot hold an overlay."""


class RunNotFound(RingfenceError):
    """No isolated run has that id, or none is left to review."""


class RunBusy(RingfenceError):
    """Another ringfence process is running, applying or discarding that run."""


class ApplyConflict(RingfenceError):
    """The workspace is no longer what the run started from; nothing was applied.

    `conflicts` holds one `Conflict` per path (path and reason)."""

    def __init__(self, conflicts, *, hint: str | None = None):
        self.conflicts = tuple(conflicts)
        shown = "\n".join(f"  {conflict.path}: {conflict.reason}" for conflict in self.conflicts[:50])
        more = len(self.conflicts) - 50
        if more > 0:
            shown += f"\n  ... and {more} more"
        super().__init__(f"nothing was applied: {len(self.conflicts)} path(s) changed in the workspace since "
                         f"the run started:\n{shown}",
                         hint=hint or "review them, then apply with force to overwrite them with the run's "
                                      "version, or discard the run")


class ApplyRefused(RingfenceError):
    """Apply cannot back up or write a path exactly (a socket or device in the way)."""


class BundleRefused(RingfenceError):
    """A bundle from an isolated run is malformed or names refs it may not."""
