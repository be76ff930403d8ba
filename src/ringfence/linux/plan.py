"""Everything the launcher needs to start one command under bubblewrap, as data."""

from __future__ import annotations

import os

from .._record import Record
from ..errors import CommandNotExecutable, CommandNotFound, PolicyError
from ..policy.filesystem import NONE
from ..state import state_dir
from . import seccomp
from .bwrap import bwrap_argv, locate_bwrap, read_only_overlays_work
from .mounts import MASK_FILE, build_mount_plan

# Above this many file masks, bwrap's own binds (each re-reading the mount
# table) cost more than starting the mask helper (about 15 ms).
MASK_HELPER_THRESHOLD = 48
MASK_HELPER = os.path.join(os.path.dirname(__file__), "maskhelper.py")


class LinuxPlan(Record):
    """`argv` is the full bwrap command line; `env` the command's environment;
    `seccomp_program` the BPF bytes for fd 3; `placeholders` the protected
    paths to create before start; `mask_file` the empty file masks bind."""

    __slots__ = ("argv", "env", "mounts", "seccomp_program", "network_isolated", "bwrap", "command",
                 "mask_file", "placeholders", "state", "dropped_env", "helper_masks", "helper_source",
                 "full_command", "limits", "limits_mechanism", "helper_identities", "counter_shares")
    _defaults = {"helper_identities": None, "counter_shares": ()}


def _private_note(path: str) -> str:
    return (f"{path} lies in {'/'.join(path.split('/')[:2]) or '/'}, which is private to each run (a fresh, "
            "empty tmpfs): the program there is not visible inside")


def _interpreter(path: str) -> str | None:
    """The absolute interpreter a script's `#!` line names, if any."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return os.fsdecode(words[0]) if words and words[0].startswith(b"/") else None


def resolve_command(command: list[str], env: dict, cwd: str, filesystem) -> str:
    """Find the program as the sandbox would, and refuse early with 127/126
    (never confused with the command's own status) when it cannot run."""
    name = command[0]
    if "/" in name:
        candidates = [name if os.path.isabs(name) else os.path.join(cwd, name)]
    else:
        candidates = [os.path.join(d or ".", name) if os.path.isabs(d or ".") else os.path.join(cwd, d, name)
                      for d in env.get("PATH", os.defpath).split(os.pathsep)]
    found_denied = found_private = None
    for candidate in candidates:
        if not os.path.exists(candidate) or os.path.isdir(candidate):
            continue
        decision = filesystem.access(candidate)
        if decision.private:
            found_private = found_private or candidate
            continue
        if decision.access == NONE:
            found_denied = found_denied or (candidate, decision)
            continue
        if not os.access(candidate, os.X_OK):
            raise CommandNotExecutable(f"{candidate}: permission denied (not executable)",
                                       hint=f"chmod +x {candidate}")
        interpreter = _interpreter(candidate)
        if interpreter and os.path.exists(interpreter) and filesystem.access(interpreter).private:
            raise CommandNotFound(f"{candidate} is run by {interpreter}, and {_private_note(interpreter)}",
                                  hint='share the host\'s /tmp with ":slash_tmp" = "write" (or a rule for the '
                                       'folder), or make the environment somewhere other than /tmp')
        return candidate
    if found_private:
        raise CommandNotFound(f"{name}: found at {found_private} on this machine, but {_private_note(found_private)}",
                              hint='share the host\'s /tmp with ":slash_tmp" = "write" (or a rule for the folder), '
                                   "or install the program somewhere other than /tmp")
    if found_denied:
        candidate, decision = found_denied
        rule = decision.rule.describe() if decision.rule else decision.note
        raise CommandNotExecutable(f"{candidate} is not visible in the sandbox: {rule}",
                                   hint="allow reading it with a rule, or run another program")
    raise CommandNotFound(f"{name}: command not found (searched {'the given path' if '/' in name else 'PATH'} "
                          "as the sandbox sees it)")


def plan_linux(policy, command: list[str], *, cwd: str, env_result, tty_shim: str | None = None,
               reuse: dict | None = None) -> LinuxPlan:
    """The plan for one run. `reuse` (a dict the caller keeps between runs of one
    policy) holds what does not depend on the workspace: the bwrap binary and
    the compiled seccomp program. The mounts are planned afresh every time, so
    a denied file that appeared since the last run is masked in this one."""
    filesystem = policy.filesystem
    cwd_decision = filesystem.access(cwd)
    if cwd_decision.access == NONE:
        rule = cwd_decision.rule.describe() if cwd_decision.rule else cwd_decision.note
        raise PolicyError(f"the working directory {cwd} is not visible in the sandbox ({rule})",
                          hint="run from a directory the policy allows reading")
    resolve_command(command, env_result.env, cwd, filesystem)
    state = state_dir(policy.home)
    cache = os.path.join(state, "cache")
    reuse = {} if reuse is None else reuse
    if "bwrap" not in reuse:
        reuse["bwrap"] = locate_bwrap(untrusted_roots=filesystem.writable_roots(), cache_dir=cache)
        reuse["seccomp"] = seccomp.program(cache)
    bwrap, program = reuse["bwrap"], reuse["seccomp"]
    mounts = build_mount_plan(filesystem, policy.limits.temporary_space)
    from . import limits as limit_tools

    mechanism = limit_tools.choose(policy.limits)
    limit_tools.check_enforceable(policy.limits, mechanism)
    # Always: the user's shared kernel counters are bounded at the same pause.
    limited = True
    if "counter_shares" not in reuse:
        reuse["counter_shares"] = limit_tools.counter_shares()
    mask_file = os.path.join(state, "mask", "empty")
    if "overlay_sources" not in reuse:
        sources = ensure_empty_folders(os.path.join(state, "mask"))
        reuse["overlay_sources"] = sources if read_only_overlays_work(bwrap, sources, cache) else None
    full_command = ([tty_shim, "--ctty", "--wait", "--"] + command) if tty_shim else list(command)
    masks = [step.dest for step in mounts.steps if step.kind == MASK_FILE]
    helper_masks, helper_source, helper_command = (), None, ()
    if len(masks) > MASK_HELPER_THRESHOLD:
        from .bwrap import HELPER_MASK_SOURCE

        helper_source, helper_masks = HELPER_MASK_SOURCE, tuple(masks)
        helper_command = _helper_command(filesystem)
    argv = bwrap_argv(bwrap.path, mounts, network_isolated=policy.network.isolated, cwd=cwd,
                      command=full_command, mask_file=mask_file, helper_masks=helper_masks,
                      helper_command=helper_command, wait_for_limits=limited, env=env_result.env,
                      overlay_sources=reuse["overlay_sources"] if mounts.placeholders else None)
    return LinuxPlan(argv, env_result.env, mounts, program, policy.network.isolated, bwrap, list(command),
                     mask_file, mounts.placeholders, state, env_result.dropped, helper_masks, helper_source,
                     full_command, policy.limits if limited else None, mechanism,
                     filesystem.scanned_directories if helper_masks else None, reuse["counter_shares"])


HELPER_SCRIPT_FD = 7


def ensure_empty_folders(directory: str) -> tuple[str, str]:
    """Two empty folders in ringfence's state (which no sandbox sees): the
    lower layers of read-only overlay placeholders."""
    folders = (os.path.join(directory, "empty-a"), os.path.join(directory, "empty-b"))
    for folder in folders:
        os.makedirs(folder, mode=0o755, exist_ok=True)  # the mode a placeholder shows inside
        for name in os.listdir(folder):  # only ringfence writes here; anything found is removed
            import shutil

            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    return folders


def _helper_command(filesystem) -> list[str]:
    """The mask helper runs on this Python inside the sandbox, so the policy must
    let the interpreter be read. The script itself comes in as a descriptor, so
    it need not be visible wherever ringfence happens to be installed."""
    import sys

    interpreter = os.path.realpath(sys.executable)
    for path in (interpreter, os.path.realpath(os.path.dirname(os.__file__))):
        decision = filesystem.access(path)
        if decision.access == NONE or decision.private:
            rule = decision.rule.describe() if decision.rule else decision.note
            raise PolicyError(
                f"{MASK_HELPER_THRESHOLD}+ files are masked, which needs the mask helper, but {path} is not "
                f"visible in this sandbox ({rule})",
                hint=f"allow reading {os.path.dirname(path)}, or deny the directories holding the files "
                     "instead of each file")
    return [interpreter, "-I", "-S", f"/dev/fd/{HELPER_SCRIPT_FD}"]
