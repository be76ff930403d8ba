"""The review commands' core: the last isolated run's changes, diff, apply, discard.

What `ringfence changes | diff | apply | discard` (and `Outcome.changeset`)
call. Each first finishes what a killed run or apply left (`recover`), then
works on the newest run of the workspace that waits for review, or on the
run named by `run_id`.
"""

from __future__ import annotations

from .changeset import Changeset


def _run(state: str, workspace: str | None, run_id: str | None):
    from .recovery import recover
    from .store import last_run, open_run

    recover(state)
    return open_run(state, run_id) if run_id else last_run(state, workspace)


def changes(state: str, workspace: str | None = None, *, run_id: str | None = None) -> Changeset:
    """The run's changeset (captured now if the run ended before its capture)."""
    import os

    from .changeset import capture, load_changeset

    run = _run(state, workspace, run_id)
    if os.path.exists(run.capture_path):
        return load_changeset(run)
    return capture(run)


def diff(state: str, workspace: str | None = None, *, run_id: str | None = None) -> bytes:
    from .diff import render_diff

    return render_diff(changes(state, workspace, run_id=run_id))


def apply(state: str, workspace: str | None = None, *, run_id: str | None = None, force: bool = False):
    """Apply the run's changes (see apply.apply_run); returns the ApplyReport."""
    from .apply import apply_run

    changeset = changes(state, workspace, run_id=run_id)
    return apply_run(_run(state, workspace, changeset.run_id), changeset, force=force)


def discard(state: str, workspace: str | None = None, *, run_id: str | None = None) -> str:
    """Remove the run and its layers; returns its id."""
    from .recovery import discard_run

    run = _run(state, workspace, run_id)
    discard_run(run)
    return run.id
