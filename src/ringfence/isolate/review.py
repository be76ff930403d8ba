"""The review commands' core: the last isolated run's changes, diff, apply, discard.

What `ringfence changes | diff | apply | discard` (and `Outcome.changeset`)
call. Each first finishes what a killed run or apply left (`recover`), then
works on the newest run of the workspace that waits for review, or on the
run named by `run_id`.
"""

from __future__ import annotations

import os

from .changeset import Changeset


def _run(state: str, workspace: str | None, run_id: str | None):
    from .recovery import recover
    from .store import last_run, open_run

    recover(state)
    return open_run(state, run_id) if run_id else last_run(state, workspace)


def changes(state: str, workspace: str | None = None, *, run_id: str | None = None) -> Changeset:
    """The run's changeset (captured now if the run ended before its capture)."""
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


class RunChanges:
    """`Outcome.changeset` of an isolated run: what it changed, and what to do with it.

    `changes` the captured Change records (empty when nothing changed);
    `conflicts` workspace paths changed while the run lasted; `commits` the
    refs its commits arrived as (FetchedRef: source, ref, commit); `applied`
    the ApplyReport once applied; `apply_error` why an apply that was asked
    for did not happen; `kept` whether the run waits for review (`ringfence
    changes`, `diff`, `apply`, `discard` act on it)."""

    def __init__(self, state: str, run_id: str, changeset: Changeset | None, *, commits=(), applied=None,
                 apply_error: str | None = None, kept: bool = True):
        self.state = state
        self.run_id = run_id
        self.changeset = changeset
        self.commits = tuple(commits)
        self.applied = applied
        self.apply_error = apply_error
        self.kept = kept

    @property
    def changes(self) -> tuple:
        return self.changeset.changes if self.changeset is not None else ()

    @property
    def conflicts(self) -> tuple:
        return self.changeset.conflicts if self.changeset is not None else ()

    def __len__(self) -> int:
        return len(self.changes)

    def __iter__(self):
        return iter(self.changes)

    def lines(self) -> list[str]:
        """One line per change, as `ringfence changes` shows them."""
        return self.changeset.lines() if self.changeset is not None else []

    def to_json(self) -> dict:
        data = self.changeset.to_json() if self.changeset is not None else {"run": self.run_id, "changes": [],
                                                                             "conflicts": []}
        data["commits"] = [{"branch": ref.source, "ref": ref.ref, "commit": ref.commit} for ref in self.commits]
        data["kept"] = self.kept
        data["applied"] = list(self.applied.applied) if self.applied is not None else None
        return data

    def diff(self) -> bytes:
        """The changes as a patch `git apply` takes."""
        from .diff import render_diff

        return render_diff(self.changeset) if self.changeset is not None else b""

    def apply(self, *, force: bool = False):
        """Apply the kept run to the workspace (ApplyConflict when it moved on); the ApplyReport."""
        self._kept_or_refuse("applied")
        self.applied = apply(self.state, run_id=self.run_id, force=force)
        self.kept = False
        return self.applied

    def discard(self) -> None:
        self._kept_or_refuse("discarded")
        discard(self.state, run_id=self.run_id)
        self.kept = False

    def _kept_or_refuse(self, what: str):
        if not self.kept:
            from .errors import RunNotFound

            raise RunNotFound(f"isolated run {self.run_id} was already "
                              + ("applied" if self.applied is not None else "removed") + f": it cannot be {what}")

    def __repr__(self):
        return f"RunChanges({self.run_id!r}, {len(self.changes)} changes, kept={self.kept})"


def ask_on_terminal(changes: RunChanges, *, tty: str = "/dev/tty") -> bool:
    """Show the run's changes on the controlling terminal and ask whether to
    apply them; no terminal, or anything but yes, is no."""
    try:
        fd = os.open(tty, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        # A path is the run's to name: nothing in it may act on the terminal.
        shown = ["".join(char if char.isprintable() else f"\\x{ord(char):02x}" for char in line)
                 for line in changes.lines()[:200]]
        if len(changes.lines()) > 200:
            shown.append(f"... and {len(changes.lines()) - 200} more (ringfence changes)")
        os.write(fd, ("ringfence: the isolated run changed:\n  " + "\n  ".join(shown)
                      + "\napply these changes to the workspace? [y/N] ").encode("utf-8", "replace"))
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = os.read(fd, 64)
            if not chunk:
                break
            answer += chunk
        return answer.strip().lower() in (b"y", b"yes")
    finally:
        os.close(fd)


def grouped_lines(changeset: Changeset) -> list[str]:
    """`changeset.lines()`, with the run's writes to the repository's own
    `.git` (objects, refs, the index) as one line: they come back as commits."""
    inside = [change for change in changeset.changes if change.path == ".git" or change.path.startswith(".git/")]
    if not inside:
        return changeset.lines()
    others = changeset.replace(changes=tuple(change for change in changeset.changes if change not in inside))
    return [f"  .git: {len(inside)} change(s) in the run's repository, never applied (its commits come back "
            "as refs)"] + others.lines()


def listing(state: str, changeset: Changeset) -> list[str]:
    """What `ringfence changes` prints: the run, then one line per change."""
    from .store import open_run

    try:
        run = open_run(state, changeset.run_id)
        status = f"exit {run.exit_code}" if run.exit_code is not None else run.status
        head = f"isolated run {run.id} of {run.workspace} ({status})"
    except Exception:   # the listing matters more than its heading
        head = f"isolated run {changeset.run_id}"
    lines = grouped_lines(changeset)
    return [head] + (lines or ["(no changes)"])


def apply_summary(report) -> list[str]:
    out = [f"applied {len(report.applied)} path(s) from isolated run {report.run_id} "
           f"({report.fsyncs} fsync calls)"]
    in_git = [path for path, _ in report.refused if path == ".git" or path.startswith(".git/")]
    if in_git:
        out.append(f"not applied: {len(in_git)} path(s) in .git (protected)")
    out += [f"not applied: {path}: {reason}" for path, reason in report.refused if path not in in_git]
    out += [f"overwrote the workspace's own change to {conflict.path}" for conflict in report.overridden]
    return out


def run_summary(changes: RunChanges) -> list[str]:
    """What `ringfence run --isolated` says on stderr when the run ends."""
    out = []
    for ref in changes.commits:
        out.append(f"the run's commits on {ref.source} are at {ref.ref} ({ref.commit[:12]}): "
                   f"git log {ref.ref}")
    if changes.applied is not None:
        out += apply_summary(changes.applied)
    elif changes.apply_error:
        out.append(f"the run's changes were not applied: {changes.apply_error}")
    if changes.kept:
        out.append(f"isolated run {changes.run_id} changed {len(changes.changes)} path(s), kept for review: "
                   "ringfence changes | diff | apply | discard")
        assert changes.changeset is not None, "a kept run holds its captured changeset"
        lines = grouped_lines(changes.changeset)
        out += [f"  {line}" for line in lines[:20]]
        if len(lines) > 20:
            out.append(f"  ... ({len(lines) - 20} more)")
    elif changes.applied is None:
        out.append(f"isolated run {changes.run_id} changed nothing")
    return out
