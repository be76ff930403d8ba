"""Everything the bwrap backend needs to start one command, as data."""

from __future__ import annotations

import os
import sys

from ..._record import Record
from ...errors import PolicyError
from ...launcher.resolve import resolve_command
from ...policy.filesystem import NONE
from ...state import state_dir
from ..linux import limits as limit_tools
from ..linux import seccomp
from . import fds
from ...policy.network import LIMITED
from .argv import bwrap_argv
from .locate import locate_bwrap, read_only_overlays_work
from .mounts import MASK_FILE, PLACEHOLDER, build_mount_plan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ...config.vocabulary import EntryKind
    from ...policy.limits import Limits
    from ..linux.limits import Mechanism
    from .egress import EgressPlan
    from .locate import Bwrap
    from .mounts import MountPlan

# Above this many masks and placeholders, bwrap's own binds (each re-reading
# the mount table) cost more than starting the mask helper (about 15 ms).
MASK_HELPER_THRESHOLD = 48
MASK_HELPER = os.path.join(os.path.dirname(__file__), "maskhelper.py")


class HelperJob(Record):
    """What the mask helper places: file masks and placeholders (paths), the
    scanned identity of each folder holding masks, the empty folder it binds
    over placeholders, and how bwrap starts it."""

    __slots__ = ("masks", "placeholders", "identities", "empty_folder", "command")
    masks: tuple[str, ...]
    placeholders: tuple[str, ...]
    identities: dict[str, tuple[int, int, int]]
    empty_folder: str
    command: list[str]


class BwrapPlan(Record):
    """One run under bwrap. `argv` is the whole bwrap command line (what comes
    before `--` reaches bwrap through --args); `env` the command's environment;
    `seccomp_program` BPF bytes; `mask_file` the empty file masks bind;
    `placeholders` the protected paths to create before start; `limits` and
    `limits_mechanism` what is put on the sandbox at the pause, with
    `counter_shares` the per-user counters' ceilings; `egress` the proxy and
    relay of a limited network (an EgressPlan), else None."""

    __slots__ = ("argv", "env", "mounts", "seccomp_program", "network_isolated", "bwrap", "command",
                 "full_command", "mask_file", "placeholders", "state", "dropped_env", "limits",
                 "limits_mechanism", "counter_shares", "helper", "egress")
    _defaults = {"counter_shares": (), "helper": None, "egress": None}
    argv: list[str]
    env: dict[str, str]
    mounts: MountPlan
    seccomp_program: bytes
    network_isolated: bool
    bwrap: Bwrap
    command: list[str]
    full_command: list[str]
    mask_file: str
    placeholders: tuple[tuple[str, EntryKind], ...]
    state: str
    dropped_env: tuple[tuple[str, str], ...]
    limits: Limits
    limits_mechanism: Mechanism
    counter_shares: tuple[tuple[str, int], ...]
    helper: HelperJob | None
    egress: EgressPlan | None


class PlanCache:
    """What does not depend on the workspace, kept by a backend between runs:
    the bwrap binary, the compiled seccomp program, the counters' ceilings,
    and whether placeholders can be overlays."""

    __slots__ = ("bwrap", "seccomp", "counter_shares", "overlay_sources", "empty_folders", "checked")

    def __init__(self):
        self.bwrap = self.counter_shares = self.overlay_sources = self.empty_folders = None
        # by whether new unix sockets and memory files are refused
        self.seccomp: dict[tuple[bool, bool], bytes] = {}
        self.checked = None  # (filesystem, temporary_space, MountPlan, when): see planned_mounts


# How long the mount plan `check` made stays good for the run's own plan.
# Shorter than any question a person answers: a run that waited on one plans
# anew, so that a denied file created meanwhile is masked.
CHECKED_FRESH_S = 0.2


def planned_mounts(filesystem, temporary_space, cache: PlanCache | None, *, for_check: bool = False):
    """The mount plan of `filesystem`. With thousands of masks it is the
    costliest step of a start, and a run checks the policy just before it
    plans: the plan reuses the check's once, for the same policy object and
    only while fresh (CHECKED_FRESH_S), unless the backend was told that
    files changed since (`forget_check`)."""
    import time

    if cache is not None and not for_check and cache.checked is not None:
        checked, cache.checked = cache.checked, None
        if checked[0] is filesystem and checked[1] == temporary_space \
                and time.monotonic() - checked[3] < CHECKED_FRESH_S:
            return checked[2]
    # Past the helper's threshold the helper places the masks, and refuses a
    # name gone since the build instead of creating it: only then is the
    # build's lstat of each denied path taken (see FilesystemPolicy.kinds).
    seen = filesystem.fresh_kinds() if len(filesystem.kinds) > MASK_HELPER_THRESHOLD else {}
    mounts = build_mount_plan(filesystem, temporary_space, seen)
    if cache is not None and for_check:
        cache.checked = (filesystem, temporary_space, mounts, time.monotonic())
    return mounts


def make_plan(policy, command: list[str], *, cwd: str, env_result, tty_shim: str | None = None,
              cache: PlanCache | None = None, view=None) -> BwrapPlan:
    """The plan for one run. The mounts are planned afresh every time, so a
    denied file that appeared since the last run is masked in this one.
    `view`, given by a wrapping backend, turns the policy's MountPlan into
    the one this run mounts (an isolated run's overlay): called on the plan,
    it gives that plan; its `sees(path)` says whether a host path is still
    there, and `helper_identities` gives the scan's folder identities as the
    mask helper will find them."""
    filesystem = policy.filesystem
    cwd_decision = filesystem.access(cwd)
    if cwd_decision.access == NONE:
        rule = cwd_decision.rule.describe() if cwd_decision.rule else cwd_decision.note
        raise PolicyError(f"the working directory {cwd} is not visible in the sandbox ({rule})",
                          hint="run from a directory the policy allows reading")
    resolve_command(command, env_result.env, cwd, filesystem)
    state = state_dir(policy.home)
    cache_dir = os.path.join(state, "cache")
    cache = cache or PlanCache()
    if cache.bwrap is None:
        cache.bwrap = locate_bwrap(untrusted_roots=filesystem.writable_roots(), cache_dir=cache_dir)
        cache.counter_shares = limit_tools.counter_shares()
        cache.empty_folders = ensure_empty_folders(os.path.join(state, "mask"))
        cache.overlay_sources = cache.empty_folders if read_only_overlays_work(
            cache.bwrap, cache.empty_folders, cache_dir) else None
    mechanism = limit_tools.choose(policy.limits)
    variant = (policy.network.unix_sockets_refused, policy.limits.memory is not None and not mechanism.memory)
    if variant not in cache.seccomp:
        cache.seccomp[variant] = seccomp.program(cache_dir, deny_unix_sockets=variant[0],
                                                 deny_memory_files=variant[1])
    mounts = planned_mounts(filesystem, policy.limits.temporary_space, cache)
    if view is not None:
        mounts = view(mounts)
    mask_file = os.path.join(state, "mask", "empty")
    egress = None
    inner = list(command)
    sees = view.sees if view is not None else None
    if policy.network.mode == LIMITED:
        from .egress import egress_plan, relay_command  # threading and json: only for a limited network
        from .interpreter import inside_python

        egress = egress_plan(policy.network)
        inner = relay_command(inside_python(filesystem, sees) or os.path.realpath(sys.executable), egress.services,
                              inner)
    full_command = ([tty_shim, "--ctty", "--wait", "--"] + inner) if tty_shim else inner
    masks = tuple(step.dest for step in mounts.steps if step.kind == MASK_FILE)
    placeholders = tuple(step.dest for step in mounts.steps if step.kind == PLACEHOLDER)
    helper = None
    if len(masks) + len(placeholders) > MASK_HELPER_THRESHOLD:
        identities = filesystem.scanned_directories
        if view is not None:
            identities = view.helper_identities(identities)
        helper = HelperJob(masks=masks, placeholders=placeholders, identities=identities,
                           empty_folder=cache.empty_folders[0],
                           command=helper_command(filesystem, len(masks) + len(placeholders), sees))
    argv = bwrap_argv(cache.bwrap.path, mounts, network_isolated=policy.network.isolated, cwd=cwd,
                      command=full_command, mask_file=mask_file, helper=helper, env=env_result.env,
                      overlay_sources=cache.overlay_sources if placeholders else None)
    return BwrapPlan(argv=argv, env=env_result.env, mounts=mounts, seccomp_program=cache.seccomp[variant],
                     network_isolated=policy.network.isolated, bwrap=cache.bwrap, command=list(command),
                     full_command=full_command, mask_file=mask_file, placeholders=mounts.placeholders,
                     state=state, dropped_env=env_result.dropped, limits=policy.limits,
                     limits_mechanism=mechanism, counter_shares=cache.counter_shares, helper=helper,
                     egress=egress)


def ensure_empty_folders(directory: str) -> tuple[str, str]:
    """Two empty folders in ringfence's state (which no sandbox sees): the
    lower layers of read-only overlay placeholders, and what the mask helper
    binds over placeholders."""
    folders = (os.path.join(directory, "empty-a"), os.path.join(directory, "empty-b"))
    for folder in folders:
        os.makedirs(folder, mode=0o755, exist_ok=True)  # the mode a placeholder shows inside
        for name in os.listdir(folder):  # only ringfence writes here; anything found is removed
            import shutil  # with fnmatch, re, bz2 and lzma behind it: only when there is something to remove

            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    return folders


def helper_command(filesystem, count: int, sees=None) -> list[str]:
    """The mask helper runs on a Python inside the sandbox, so the policy (and
    the view of a wrapping backend, `sees`) must let one be read. The script
    itself comes in as a descriptor, so it need not be visible wherever
    ringfence happens to be installed; its descriptors' numbers come on its
    command line."""
    from .interpreter import inside_python  # only a plan with the mask helper asks

    interpreter = inside_python(filesystem, sees)
    if interpreter is None:
        own = os.path.realpath(sys.executable)
        raise PolicyError(f"{count} masks and placeholders need the mask helper, which runs on Python inside the "
                          f"sandbox, and the sandbox sees neither {own} nor a system python3",
                          hint=f"allow reading {os.path.dirname(own)} (or :minimal), or deny the directories "
                               "holding the files instead of each file")
    return [interpreter, "-I", "-S", f"/dev/fd/{fds.HELPER_SCRIPT}", str(fds.HELPER_LIST), str(fds.HELPER_REPORT),
            str(fds.SECCOMP)]
