"""The bwrap command line for a plan, built as data from the mount plan."""

from __future__ import annotations

from . import fds
from .mounts import BIND, DEV, MASK_DIR, MASK_FILE, OVERLAY, PLACEHOLDER, PROC, REMOUNT_RO, RO_BIND, SYMLINK, TMPFS

# The helper's sources of empty files and folders live in the sandbox's own
# /dev, which nothing outside can rename or replace while it places masks;
# it removes them before the command runs.
HELPER_FILE_SOURCE = "/dev/.ringfence-mask"
HELPER_DIR_SOURCE = "/dev/.ringfence-empty"


def namespace_args(network_isolated: bool, *, mask_helper: bool = False) -> list[str]:
    args = ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "ringfence"]
    if mask_helper:
        # The helper needs CAP_SYS_ADMIN over the sandbox's mount namespace, so bwrap
        # must not move it into a second user namespace (which --disable-userns and
        # a non-root --uid both do). The helper builds that inner namespace itself,
        # and seccomp refuses any further one. CAP_SETFCAP is what the kernel
        # (5.12+) asks of whoever maps the outer root into a new user namespace.
        args += ["--uid", "0", "--gid", "0", "--cap-add", "CAP_SYS_ADMIN", "--cap-add", "CAP_SETFCAP"]
    else:
        args.append("--disable-userns")
    if network_isolated:
        args.append("--unshare-net")
    return args


def mount_args(plan, mask_file: str, *, left_to_helper=frozenset(), overlay_sources=None) -> list[str]:
    """bwrap options for the plan, except the masks and placeholders the mask
    helper places. With `overlay_sources` (two empty folders), placeholders
    are read-only overlays of them rather than read-only binds of themselves:
    one mount(2) each, where a bind makes bwrap re-read the mount table."""
    args: list[str] = []
    helper = bool(left_to_helper)
    for step in plan.steps:
        kind, dest = step.kind, step.dest
        if kind in (MASK_FILE, PLACEHOLDER) and dest in left_to_helper:
            continue
        if kind == RO_BIND:
            args += ["--ro-bind", step.source, dest]
        elif kind == BIND:
            args += ["--bind", step.source, dest]
        elif kind == MASK_FILE:
            args += ["--ro-bind", mask_file, dest]
        elif kind in (MASK_DIR, TMPFS):
            if step.size:
                args += ["--size", str(step.size)]
            args += ["--perms", format(step.mode, "04o"), "--tmpfs", dest]
        elif kind == SYMLINK:
            args += ["--symlink", step.source, dest]
        elif kind == REMOUNT_RO:
            if dest == "/dev" and helper:
                continue  # the helper still has to remove its sources from /dev, then does this itself
            args += ["--remount-ro", dest]
        elif kind == DEV:
            args += ["--dev", dest]
        elif kind == PROC:
            args += ["--proc", dest]
        elif kind == OVERLAY:
            # bubblewrap >= 0.11 resolves both layers in the host's view.
            args += ["--overlay-src", step.source]
            args += ["--overlay", *step.layers, dest] if step.layers else ["--tmp-overlay", dest]
        elif kind == PLACEHOLDER and overlay_sources:
            args += ["--overlay-src", overlay_sources[0], "--overlay-src", overlay_sources[1], "--ro-overlay", dest]
        elif kind == PLACEHOLDER:
            args += ["--ro-bind", dest, dest]
        else:  # a new step kind must be rendered here before it is planned
            raise AssertionError(f"unrendered mount step {kind}")
    return args


def environment_args(env: dict) -> list[str]:
    """The command's environment as bwrap options. bwrap itself starts with an
    environment of ringfence's own, never this one: a variable such as
    LD_PRELOAD would otherwise act on bwrap, which runs on the host."""
    args = ["--clearenv"]
    for name, value in env.items():
        args += ["--setenv", name, value]
    return args


def bwrap_argv(bwrap_path: str, plan, *, network_isolated: bool, cwd: str, command: list[str], mask_file: str,
               helper=None, wait_for_limits: bool = True, env: dict | None = None,
               overlay_sources=None) -> list[str]:
    """The full command line. With a `helper` (a HelperJob), bwrap runs the
    mask helper (which places the job's masks and placeholders, loads seccomp
    itself, and gets the command's environment in its payload) instead of
    `command`. With `wait_for_limits`, the sandbox waits on its block
    descriptor until its limits are in place. The launcher hands everything
    before `--` to bwrap through `--args`, so that nothing of it shows on a
    command line other users can read."""
    args = [bwrap_path] + namespace_args(network_isolated, mask_helper=helper is not None)
    # The helper runs before the command with the capability to mount: it gets
    # bwrap's own fixed environment, and hands the command its own at exec.
    args += environment_args({} if helper is not None or env is None else env)
    left = frozenset(helper.masks) | frozenset(helper.placeholders) if helper is not None else frozenset()
    args += mount_args(plan, mask_file, left_to_helper=left, overlay_sources=overlay_sources)
    if helper is not None:
        if helper.masks:
            args += ["--ro-bind", mask_file, HELPER_FILE_SOURCE]
        if helper.placeholders:
            args += ["--ro-bind", helper.empty_folder, HELPER_DIR_SOURCE]
    args += ["--chdir", cwd, "--json-status-fd", str(fds.STATUS)]
    if wait_for_limits:
        args += ["--block-fd", str(fds.BLOCK)]
    if helper is None:
        args += ["--seccomp", str(fds.SECCOMP)]
    return args + ["--"] + list(helper.command if helper is not None else command)
