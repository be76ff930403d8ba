"""Resource limits as policy: how many processes, how much memory and CPU
time, and how long a run may take."""

from __future__ import annotations

import os

from .._record import Record

# Enough for parallel builds and browsers (threads count too), few enough
# that a fork bomb stops while the host stays responsive.
DEFAULT_PROCESSES = 4096
class Limits(Record):
    """None means no limit. `origins` maps each set field to where it was set."""

    __slots__ = ("processes", "memory", "cpu_time", "timeout", "origins", "processes_explicit",
                 "temporary_space")
    _defaults = {"processes": DEFAULT_PROCESSES, "memory": None, "cpu_time": None, "timeout": None,
                 "origins": (), "processes_explicit": False, "temporary_space": None}
    processes: int | None
    memory: int | None
    cpu_time: int | None
    timeout: float | None
    origins: tuple[tuple[str, str], ...]
    processes_explicit: bool
    temporary_space: int | None

    def describe(self) -> list[str]:
        words = []
        words.append(f"processes {self.processes}" if self.processes else "processes unlimited")
        if self.temporary_space:
            words.append(f"temporary space {self.temporary_space >> 20} MiB in all (/tmp, /var/tmp, /dev/shm, "
                         "/run)")
        if self.memory:
            words.append(f"memory {self.memory >> 20} MiB per process (address space)")
        if self.cpu_time:
            words.append(f"cpu time {self.cpu_time} s per process")
        if self.timeout:
            words.append(f"timeout {self.timeout:g} s")
        return words


def default_temporary_space() -> int:
    """A quarter of the machine's memory: what a run's private tmpfs mounts may
    hold together when no `[limits] temporary_space` says otherwise."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError):
        return 1 << 30
