"""Where ringfence keeps its own files, and the guarantee that runs never see them.

Everything here (placeholder journals, the glob scan cache, compiled seccomp
programs, the empty files used as masks) would let a sandboxed command
weaken its next run if it could write it, so the policy denies the whole
directory inside every sandbox, whatever the rules say.
"""

from __future__ import annotations

import os


def state_dir(home: str) -> str:
    override = os.environ.get("RINGFENCE_STATE_DIR")
    if override:
        return override
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(home, ".local", "state")
    return os.path.join(base, "ringfence")


def write_cache(path: str, data: bytes):
    """Replace a cache file atomically, readable by its owner only (caches name
    the secrets they mask). A cache that cannot be written only makes the next
    start slower, so failure is silent."""
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except OSError:
        pass
