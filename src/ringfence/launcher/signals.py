"""Signal numbers and handlers without the `signal` module's enum wrappers.

`import signal` imports `enum` (and with it `functools` and `collections`),
which costs more than the rest of the launcher. `_signal` is the C module
underneath it, with the same functions and integer constants.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # `_signal` has no stubs of its own: checkers read `signal`'s
    import signal as _impl
else:
    try:
        import _signal as _impl
    except ImportError:  # an interpreter without the C module: pay for the wrapper
        import signal as _impl

SIGHUP, SIGINT, SIGQUIT, SIGKILL, SIGTERM = _impl.SIGHUP, _impl.SIGINT, _impl.SIGQUIT, _impl.SIGKILL, _impl.SIGTERM
SIGPIPE, SIGCHLD, SIGTSTP, SIGTTIN, SIGTTOU = _impl.SIGPIPE, _impl.SIGCHLD, _impl.SIGTSTP, _impl.SIGTTIN, _impl.SIGTTOU
SIGWINCH, SIGXFSZ, SIGUSR1, SIGUSR2, SIGALRM = _impl.SIGWINCH, _impl.SIGXFSZ, _impl.SIGUSR1, _impl.SIGUSR2, _impl.SIGALRM
SIG_IGN = _impl.SIG_IGN
signal = _impl.signal

NAMES: dict[int, str] = {SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGKILL: "SIGKILL",
                         SIGTERM: "SIGTERM", SIGWINCH: "SIGWINCH", SIGUSR1: "SIGUSR1", SIGUSR2: "SIGUSR2"}


def name(number: int) -> str:
    return NAMES.get(number, f"signal {number}")
