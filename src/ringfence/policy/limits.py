"""Resource limits as policy: how many processes, how much memory and CPU
time, and how long a run may take."""

from __future__ import annotations

from .._record import Record

# Enough for parallel builds and browsers (threads count too), few enough
# that a fork bomb stops while the host stays responsive.
DEFAULT_PROCESSES = 4096
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class Limits(Record):
    """None means no limit. `origins` maps each set field to where it was set."""

    __slots__ = ("processes", "memory", "cpu_time", "timeout", "origins", "processes_explicit")
    _defaults = {"processes": DEFAULT_PROCESSES, "memory": None, "cpu_time": None, "timeout": None,
                 "origins": (), "processes_explicit": False}

    def describe(self) -> list[str]:
        words = []
        words.append(f"processes {self.processes}" if self.processes else "processes unlimited")
        if self.memory:
            words.append(f"memory {self.memory >> 20} MiB per process (address space)")
        if self.cpu_time:
            words.append(f"cpu time {self.cpu_time} s per process")
        if self.timeout:
            words.append(f"timeout {self.timeout:g} s")
        return words


def parse_memory(value) -> int | None:
    """Bytes from an integer or a string such as "512M" or "2G"; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str):
        text = value.strip().upper().removesuffix("B").removesuffix("I")
        unit = _UNITS.get(text[-1:], 1)
        number = text[:-1] if text[-1:] in _UNITS else text
        if number.isdigit() and int(number) > 0:
            return int(number) * unit
    return None
