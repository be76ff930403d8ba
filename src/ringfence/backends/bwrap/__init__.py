"""The bubblewrap backend: Linux namespaces, mounts and seccomp.

A policy becomes a mount plan (mounts.py), a bwrap command line (argv.py)
and a seccomp program; a run spawns bwrap with an environment of ringfence's
own, puts the limits on at a pause, and is supervised by the launcher.
"""

from __future__ import annotations

import os
import sys

from ...config import user_config_dir
from ...errors import PolicyError, RingfenceError
from ...launcher.io import INHERIT
from ...state import state_dir
from ..base import Unenforceable
from ..linux import limits as limit_tools
from .mounts import MASK_FILE, PLACEHOLDER
from .placeholders import Placeholders
from .plan import MASK_HELPER_THRESHOLD, PlanCache, helper_command, make_plan, planned_mounts
from .run import recover_leftovers, run_plan

__all__ = ["BwrapBackend"]

_SHIM_NAME = "setsid"


def _find_shim(env: dict, filesystem) -> str | None:
    """`setsid --ctty`, found as the sandbox sees it: it makes the private pty
    the command's controlling terminal, which bwrap's new session lacks."""
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory, _SHIM_NAME)
        if os.path.isabs(candidate) and os.access(candidate, os.X_OK):
            if filesystem.access(candidate).access != "none":
                return candidate
    for candidate in ("/usr/bin/setsid", "/bin/setsid"):
        if os.access(candidate, os.X_OK) and filesystem.access(candidate).access != "none":
            return candidate
    return None


def _ensure_own_directories(policy, state: str) -> bool:
    """ringfence's state and configuration directories must exist before the
    mounts are planned: a missing one is planned as nothing to mask, and the
    sandbox could then read it, or create it with contents ringfence would
    trust on the next start. True when one had to be made."""
    made = False
    for path in (state, user_config_dir(policy.home)):
        if not os.path.isdir(path):
            os.makedirs(path, mode=0o700, exist_ok=True)
            made = True
    os.chmod(state, 0o700)  # it names the secrets it masks
    return made


def _egress_problems(policy) -> list[Unenforceable]:
    import importlib.util

    from ...policy.network import pattern_problems
    from .interpreter import inside_python

    found = [Unenforceable("network domains", problem, "fix or remove the pattern")
             for problem in pattern_problems(policy.network.domains)]
    if importlib.util.find_spec("h11") is None:
        found.append(Unenforceable("network limited to listed domains", "the egress proxy needs the h11 package",
                                   "pip install 'h11>=0.16' (a dependency of ringfence)"))
    if inside_python(policy.filesystem) is None:
        found.append(Unenforceable("network limited to listed domains",
                                   f"the egress relay runs on Python inside the sandbox, and the policy shows "
                                   f"neither {os.path.realpath(sys.executable)} nor a system python3",
                                   'allow reading one, e.g. ":minimal" = "read"'))
    return found


class BwrapBackend:
    name = "bwrap"

    def __init__(self):
        self.cache = PlanCache()
        self._placeholders: Placeholders | None = None

    # --- what it cannot enforce ----------------------------------------------------

    def check(self, policy) -> tuple[Unenforceable, ...]:
        found: list[Unenforceable] = []
        if not policy.sandboxed:
            return ()
        if policy.network.mode == "limited":
            found += _egress_problems(policy)
        for what, why, fix in limit_tools.unenforceable(policy.limits, limit_tools.choose(policy.limits)):
            found.append(Unenforceable(what, why, fix))
        try:
            # The plan a run may reuse must see ringfence's own folders as they
            # will be (see _ensure_own_directories); where they cannot be made
            # now, the run plans afresh and fails there with the reason.
            try:
                _ensure_own_directories(policy, state_dir(policy.home))
                reusable = self.cache
            except OSError:
                reusable = None
            mounts = planned_mounts(policy.filesystem, policy.limits.temporary_space, reusable, for_check=True)
        except PolicyError as exc:
            found.append(Unenforceable("the filesystem view", exc.message, exc.hint))
        else:
            count = sum(1 for step in mounts.steps if step.kind in (MASK_FILE, PLACEHOLDER))
            if count > MASK_HELPER_THRESHOLD:
                try:
                    helper_command(policy.filesystem, count)
                except PolicyError as exc:
                    found.append(Unenforceable("many masks", exc.message, exc.hint))
        return tuple(found)

    def describe(self, policy) -> dict:
        from .locate import locate_bwrap

        if not policy.sandboxed:
            return {"name": "none", "detail": "danger-full-access: no sandbox"}
        try:
            bwrap = locate_bwrap(untrusted_roots=policy.filesystem.writable_roots(),
                                 cache_dir=os.path.join(state_dir(policy.home), "cache"))
        except RingfenceError as exc:
            return {"name": self.name, "error": str(exc)}
        return {"name": self.name, "path": bwrap.path, "version": ".".join(map(str, bwrap.version)),
                "origin": bwrap.origin}

    def limits(self, policy) -> dict:
        """How each limit of `policy` is put on, for `status`."""
        mechanism = limit_tools.choose(policy.limits)
        return {"process_cap_enforced_by": mechanism.processes, "enforcement": mechanism.detail,
                "memory_enforced_by": "RLIMIT_AS per process" + (
                    f", and {mechanism.memory} for the whole run (its temporary files included)"
                    if mechanism.memory else ", with memfd_create refused (no memory cgroup to count its pages)"),
                "cpu_time_enforced_by": "RLIMIT_CPU per process",
                "shared_counters": dict(limit_tools.counter_shares()),
                "shared_rlimits": "half of this user's RLIMIT_SIGPENDING and RLIMIT_MSGQUEUE"}

    # --- one run ----------------------------------------------------------------------

    def plan(self, policy, command: list[str], *, cwd: str, env_result, io, events, view=None):
        state = state_dir(policy.home)
        recovered = recover_leftovers(state, events)
        if _ensure_own_directories(policy, state) or recovered:
            self.forget_check()  # planned over leftovers just removed, or without a folder just made
        shim = None
        if io.tty and os.isatty(0) and io.stdin == INHERIT:
            shim = _find_shim(env_result.env, policy.filesystem)
        plan = make_plan(policy, command, cwd=cwd, env_result=env_result, tty_shim=shim, cache=self.cache,
                         view=view)
        if plan.limits_mechanism.processes is None and policy.limits.processes is not None:
            events.emit("limits.unenforced", limit="processes", detail=plan.limits_mechanism.detail)
        return plan

    def forget_check(self) -> None:
        """The files changed since the last check: the next plan is made anew."""
        self.cache.checked = None

    def run(self, plan, io, *, timeout: float | None, events, forward_signals: bool, keep: bool = True):
        """With `keep`, placeholders stay between runs until `close()`."""
        holder = None
        if keep:
            if self._placeholders is None:
                self._placeholders = Placeholders(plan.state)
            holder = self._placeholders
        return run_plan(plan, io, timeout=timeout, events=events, forward_signals=forward_signals,
                        placeholders=holder)

    def close(self) -> None:
        if self._placeholders is not None:
            self._placeholders.release()
            self._placeholders = None

