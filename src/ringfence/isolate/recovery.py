"""What the next ringfence command does about runs and applies cut short.

Cheap when there is nothing to do (one listing of `<state>/runs`), so every
command can call `recover` first. A run whose lock is held belongs to a live
process and is left alone.
"""

from __future__ import annotations

import os

from .._record import Record
from ..errors import RingfenceError
from ..printable import printable
from .journal import Journal, recover_journal
from .overlay import clean_workdir
from .store import Run, RunLock, load_run, remove_run, run_ids, runs_dir, save_run, try_lock


class RecoveryReport(Record):
    """Run ids by what was done: applies `rolled_back` or `rolled_forward`;
    runs found `interrupted` (killed while their sandbox ran; their changes
    stay for review); directories `removed` (a creation cut short, an apply
    that had finished); `failed` (run id, message) where recovery could not
    finish and the run was left as it is."""

    __slots__ = ("rolled_back", "rolled_forward", "interrupted", "removed", "failed")
    rolled_back: tuple[str, ...]
    rolled_forward: tuple[str, ...]
    interrupted: tuple[str, ...]
    removed: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]

    @property
    def empty(self) -> bool:
        return not any(self._values())

    def lines(self) -> list[str]:
        """One sentence per finding, for the command's stderr."""
        out = [f"isolated run {run}: an interrupted apply was rolled back; the workspace is as before it"
               for run in self.rolled_back]
        out += [f"isolated run {run}: an interrupted apply was completed" for run in self.rolled_forward]
        out += [f"isolated run {run} was interrupted; review it with `ringfence changes`, or discard it"
                for run in self.interrupted]
        out += [f"isolated run {run}: recovery failed: {printable(message)}" for run, message in self.failed]
        return out


def recover_run(directory: str, *, locked: bool = False) -> str | None:
    """Finish one run's interrupted work (its lock held by the caller when
    `locked`, else taken here; None when a live process holds it). Returns
    what was done: "rolled_back", "rolled_forward", "removed",
    "interrupted" or "" for nothing."""
    lock = None
    if not locked:
        lock = try_lock(directory)
        if lock is None:
            return None
    try:
        if not os.path.exists(os.path.join(directory, "meta.json")):
            remove_run(directory)   # its creation was cut short: nothing ran in it
            return "removed"
        run = load_run(directory)
        outcome = recover_journal(Journal(run.apply_dir))
        if outcome in ("applied", "rolled_forward"):
            remove_run(directory)
            return "rolled_forward" if outcome == "rolled_forward" else "removed"
        if run.status == "running":
            clean_workdir(run.work)
            save_run(run.replace(status="interrupted"))
            return "interrupted"
        return outcome or ""
    finally:
        if lock is not None:
            lock.release()


def recover(state: str) -> RecoveryReport:
    """Recover every run in `<state>/runs` that no live process holds."""
    found: dict[str, list[str]] = {"rolled_back": [], "rolled_forward": [], "interrupted": [], "removed": []}
    failed = []
    for run_id in run_ids(state):
        try:
            outcome = recover_run(os.path.join(runs_dir(state), run_id))
        except (OSError, ValueError, RingfenceError) as exc:
            failed.append((run_id, str(exc)))
            continue
        if outcome in found:
            found[outcome].append(run_id)
    return RecoveryReport(tuple(found["rolled_back"]), tuple(found["rolled_forward"]), tuple(found["interrupted"]),
                          tuple(found["removed"]), tuple(failed))


def discard_run(run: Run) -> None:
    """Throw the run's changes away: its upper and work directories, capture and record."""
    with RunLock(run.directory):
        # An apply cut short must be put right first, or its backups would go with the run.
        if recover_run(run.directory, locked=True) not in ("removed", "rolled_forward"):
            remove_run(run.directory)
