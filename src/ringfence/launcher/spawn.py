"""Start a process with exactly the file descriptors we choose.

bwrap hands every descriptor it inherits to the sandboxed command, so the
descriptor table of the spawned process is built explicitly: the requested
targets (stdin, stdout, stderr, the seccomp and status pipes) and nothing
else. `os.posix_spawn` is used rather than `subprocess` because the latter
costs more to import than the rest of the `run` path together.
"""

from __future__ import annotations

import fcntl
import os

from . import signals

_DEFAULT_SIGNALS = (signals.SIGPIPE, signals.SIGXFSZ, signals.SIGINT, signals.SIGQUIT, signals.SIGTERM,
                    signals.SIGHUP, signals.SIGCHLD, signals.SIGTSTP, signals.SIGTTIN, signals.SIGTTOU,
                    signals.SIGWINCH, signals.SIGUSR1, signals.SIGUSR2, signals.SIGALRM)
_HIGH_FD = 64
# What every process ringfence starts on the host (bwrap, helpers) gets as its
# environment: nothing from the user's shell, the policy or the workspace, so
# that no configuration layer can load a library into it (LD_PRELOAD) or steer
# it otherwise. The sandboxed command's own environment is handed over inside.
HOST_ENVIRONMENT: dict[str, str] = {}


def _open_fds() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(0, 256))


def spawn(path: str, argv: list[str], env: dict, fds: dict[int, int], *, new_session: bool = True) -> int:
    """Spawn `path` with `fds` mapping child fd -> parent fd; every other fd is closed.

    Child fds 0-2 that are not in `fds` are inherited from the parent as they are.
    """
    staged = {}
    try:
        for target, source in fds.items():
            staged[target] = fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)
        actions: list[tuple[int, ...]] = [(os.POSIX_SPAWN_DUP2, staged[target], target) for target in sorted(staged)]
        keep = set(staged) | {fd for fd in (0, 1, 2) if fd not in staged}
        for fd in _open_fds():
            if fd not in keep and fd not in staged.values():
                actions.append((os.POSIX_SPAWN_CLOSE, fd))
        return os.posix_spawn(path, argv, env, file_actions=actions, setsid=new_session,
                              setsigdef=_DEFAULT_SIGNALS, setsigmask=())
    finally:
        for fd in staged.values():
            os.close(fd)
