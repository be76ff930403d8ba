"""Resource limits as policy: how many processes, how much memory and CPU
time, and how long a run may take."""

from __future__ import annotations

import os

from .._record import Record

# Enough for parallel builds and browsers (threads count too), few enough
# that a fork bomb stops while the host stays responsive.
DEFAULT_PROCESSES = 4096
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# The kernel's own ceilings: pids.max and pid numbers stop at PID_MAX_LIMIT,
# and an rlimit beyond 2**63 reads as "unlimited" to some programs.
MAX_PROCESSES = 4_194_304
MAX_MEMORY = 1 << 62
MIN_MEMORY = 1 << 20
# A run longer than this is a mistake in the number; poll() and the kernel's
# timers both take far less than the largest float.
MAX_SECONDS = 30 * 24 * 3600


class Limits(Record):
    """None means no limit. `origins` maps each set field to where it was set."""

    __slots__ = ("processes", "memory", "cpu_time", "timeout", "origins", "processes_explicit",
                 "temporary_space")
    _defaults = {"processes": DEFAULT_PROCESSES, "memory": None, "cpu_time": None, "timeout": None,
                 "origins": (), "processes_explicit": False, "temporary_space": None}

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


def parse_memory(value) -> int | None:
    """Bytes from an integer or a string such as "512M" or "2G"; None if
    invalid or outside MIN_MEMORY..MAX_MEMORY."""
    if isinstance(value, bool):
        return None
    amount = None
    if isinstance(value, int):
        amount = value
    elif isinstance(value, str):
        text = value.strip().upper().removesuffix("B").removesuffix("I")
        unit = _UNITS.get(text[-1:], 1)
        number = text[:-1] if text[-1:] in _UNITS else text
        if number.isdigit():
            amount = int(number) * unit
    if amount is None or not MIN_MEMORY <= amount <= MAX_MEMORY:
        return None
    return amount


def seconds_problem(value) -> str | None:
    """Why `value` is not a usable number of seconds, or None. NaN compares
    false with everything, so it would pass `value <= 0` and then break the
    timer after the command has started."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "is not a number"
    if not math.isfinite(value):
        return "is not a finite number"
    if value <= 0:
        return "is not positive"
    if value > MAX_SECONDS:
        return f"is more than {MAX_SECONDS} seconds (30 days)"
    return None
