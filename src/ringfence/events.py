"""The structured event log: one JSON object per line, one schema.

Every event carries `schema`, `time` (UTC, ISO 8601), `run` (the run id)
and `type`. Types so far: `run.policy` (profile, where it was chosen, config
files, network, limits), `run.start`, `run.end`, `run.timeout`, `run.refused`,
`sandbox.error`, `signal.forwarded`, `limits.applied`, `limits.report`,
`limits.unenforced`, `placeholder.cleanup`, `cgroup.cleanup`, `git.created`
and `protected.created` (names the sandbox made that the host acts on).
Consumers must ignore fields and types they do not know; fields are only
ever added.
"""

from __future__ import annotations

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
        if path:
            # Found out now, before anything runs, rather than halfway through a run.
            try:
                with open(path, "a", encoding="utf-8"):
                    pass
            except OSError as exc:
                from .errors import RingfenceError

                raise RingfenceError(f"cannot write the event log {path}: {exc.strerror}",
                                     hint="name a file in a directory you can write") from None

    def emit(self, type_: str, **fields) -> dict:
        event = {"schema": SCHEMA, "time": _timestamp(), "run": self.run_id, "type": type_}
        event.update(fields)
        self.events.append(event)
        if self.path:
            import json

            line = json.dumps(event, sort_keys=False, default=str) + "\n"
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line)
        return event
