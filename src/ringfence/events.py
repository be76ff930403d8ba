"""The structured event log: one JSON object per line, one schema.

Every event carries `schema`, `time` (UTC, ISO 8601), `run` (the run id)
and `type`. Types so far: `run.policy` (profile, where it was chosen, config
files, network, limits), `run.start`, `run.end`, `run.timeout`, `run.refused`,
`sandbox.error`, `signal.forwarded`, `limits.applied`, `limits.report`,
`limits.unenforced`, `placeholder.cleanup`, `cgroup.cleanup`, `git.created`
and `protected.created` (names the sandbox made that the host acts on),
`protected.unchecked` (folders the run left that the check could not list),
`git.neutralized` (what the in-place git check undid, and why), for
isolated runs `isolate.recovered`, `isolate.run`, `isolate.phase`,
`isolate.captured`, `isolate.commits`, `isolate.kept`, `isolate.applied`,
`isolate.apply_refused`, `isolate.discarded` (their own run id is
`isolated_run`), and from approvals (`ringfence.approval.flow` lists their
fields): `command.decision`, `approval.answer` (who answered what, for which
rule), `rules.amended` / `rules.already_covered` ("always" answers), and
`sandbox.denial` (what the sandbox refused a failed run, and its rule).
Consumers must ignore fields and types they do not know; fields are only
ever added.
"""

from __future__ import annotations

import errno
import os
import time

SCHEMA = "ringfence.event/1"


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + os.urandom(4).hex()


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


class EventLog:
    def __init__(self, run_id: str | None = None, path: str | None = None):
        self.run_id = run_id or new_run_id()
        self.path = path
        self.events: list[dict] = []
        self._fd = None
        if path:
            # Opened once, now, not following a link: a log in a folder the
            # sandbox can write would otherwise be swapped during the run for
            # a link to the user's ~/.bashrc, and the next event appended there.
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                                   0o600)
            except OSError as exc:
                from .errors import RingfenceError

                reason = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
                raise RingfenceError(f"cannot write the event log {path}: {reason}",
                                     hint="name a regular file in a directory you can write") from None
            import weakref

            weakref.finalize(self, os.close, self._fd)

    def emit(self, type_: str, **fields) -> dict:
        event = {"schema": SCHEMA, "time": _timestamp(), "run": self.run_id, "type": type_}
        event.update(fields)
        self.events.append(event)
        if self._fd is not None:
            import json

            os.write(self._fd, (json.dumps(event, sort_keys=False, default=str) + "\n").encode())
        return event
