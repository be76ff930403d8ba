"""The hard-link check of the files a glob denies, done beside the start.

A denied file with a second name is readable under that name, so each run
looks at the link count of every file its globs deny. The scan cache cannot
answer that (a link made elsewhere changes no folder the scan watches), and
with tens of thousands of masks those lstat calls are a seventh of a start.
So past `FORK_AT` files a forked child makes them while the parent plans the
mounts; the verdict is taken (`refusals()`) before anything runs.

Fails closed: a child that cannot be forked, dies or answers oddly leaves
the check to the parent, which makes it itself.
"""

from __future__ import annotations

import os
import stat

from .refusals import hard_link_refusal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..errors import PolicyError

# Below this a fork (about a millisecond with a policy this size in memory)
# costs more than the lstat calls it moves.
FORK_AT = 1000
_DONE = b"done"
# SIGKILL's number on Linux: `import signal` would load enum and collections,
# milliseconds of every start, for a call made only on a policy dropped unread.
_SIGKILL = 9


def _linked(paths) -> list[int]:
    """Indexes of the regular files among `paths` with more than one name. A
    file gone since the scan has no second name to leak through."""
    lstat, is_regular = os.lstat, stat.S_ISREG
    found = []
    for index, path in enumerate(paths):
        try:
            info = lstat(path)
        except OSError:
            continue
        if info.st_nlink > 1 and is_regular(info.st_mode):
            found.append(index)
    return found


def _alone() -> bool:
    """Whether this is the process's only thread: where others run, one could
    hold a lock the child would need."""
    import sys

    return len(sys._current_frames()) == 1


class LinkCheck:
    """The link counts of `entries` ((path, rule label, root) each), checked
    at once or in a child; `refusals()` is the verdict, the same either way."""

    def __init__(self, entries):
        self.entries = list(entries)
        self.pid: int | None = None
        self._read_end: int | None = None
        self._verdict: tuple[PolicyError, ...] | None = None
        if len(self.entries) >= FORK_AT and _alone():
            self._fork()

    def _fork(self):
        try:
            read_end, write_end = os.pipe()
        except OSError:
            return
        try:
            pid = os.fork()
        except OSError:
            os.close(read_end)
            os.close(write_end)
            return
        if pid == 0:  # the child: it only reads link counts, and never returns
            code = 1
            try:
                import gc

                gc.disable()  # nothing to collect in a life this short, and no pages to copy for it
                answer = b"".join(b"%d\n" % index for index in _linked(entry[0] for entry in self.entries))
                view = memoryview(answer + _DONE)
                while view:
                    view = view[os.write(write_end, view):]
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        self.pid, self._read_end = pid, read_end

    def _join(self) -> list[int] | None:
        """The child's answer, or None if it gave none that can be trusted.
        Interrupted (a ^C), it still closes and reaps, and the next call to
        `refusals` makes the check in the parent."""
        data = b""
        assert self._read_end is not None, "only a forked check is joined"
        status = None
        try:
            while True:
                chunk = os.read(self._read_end, 1 << 16)
                if not chunk:
                    break
                data += chunk
        except OSError:
            data = b""
        finally:
            os.close(self._read_end)
            self._read_end = None
            status = self._reap()
        if status != 0 or not data.endswith(_DONE):
            return None
        lines = data[:-len(_DONE)].split()
        if not all(line.isdigit() and int(line) < len(self.entries) for line in lines):
            return None
        return [int(line) for line in lines]

    def _reap(self, stop: bool = False) -> int | None:
        """The child's exit code, once it is reaped (None if someone else
        reaped it: its answer alone is not proof enough). With `stop`, a
        child still running is killed first; one already gone is not
        signalled, since its pid may belong to another process by now."""
        pid, self.pid = self.pid, None
        if pid is None:
            return None
        try:
            if stop:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    return os.waitstatus_to_exitcode(status)
                os.kill(pid, _SIGKILL)
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return None
        return os.waitstatus_to_exitcode(status)

    def refusals(self) -> tuple[PolicyError, ...]:
        if self._verdict is None:
            linked = self._join() if self._read_end is not None else None
            if linked is None:
                linked = _linked(entry[0] for entry in self.entries)
            self._verdict = tuple(hard_link_refusal(*self.entries[index]) for index in linked)
        return self._verdict

    def __del__(self):
        # A policy dropped unread (the build a project's configuration is
        # measured against, a status that stopped early) must neither wait for
        # its child nor leave it a zombie in a long-lived caller.
        if self._read_end is not None:
            try:
                os.close(self._read_end)
            except OSError:
                pass
            self._read_end = None
        self._reap(stop=True)
