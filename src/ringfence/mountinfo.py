"""/proc/self/mountinfo, read once per question: where each filesystem is
mounted, and which filesystem holds a path."""

from __future__ import annotations

from ._record import Record

MOUNTINFO = "/proc/self/mountinfo"


class Mount(Record):
    """One line: the mount point (octal escapes undone) and the filesystem type."""

    __slots__ = ("point", "fstype")
    point: str
    fstype: str


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash in mount points as \\ooo.
    if "\\" not in field:
        return field
    out, index = [], 0
    while index < len(field):
        if field[index] == "\\" and field[index + 1:index + 4].isdigit():
            out.append(chr(int(field[index + 1:index + 4], 8)))
            index += 4
        else:
            out.append(field[index])
            index += 1
    return "".join(out)


def mounts(path: str = MOUNTINFO) -> list[Mount]:
    """Every mount, in the kernel's order; [] when the table cannot be read."""
    found = []
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                try:
                    separator = fields.index("-")
                    found.append(Mount(_unescape(fields[4]), fields[separator + 1]))
                except (ValueError, IndexError):
                    continue
    except OSError:
        return []
    return found


def filesystem_type(path: str, table: str = MOUNTINFO) -> str | None:
    """The type of the filesystem holding `path` (the longest mount point above it)."""
    best, best_type = "", None
    for mount in mounts(table):
        point = mount.point
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, best_type = point, mount.fstype
    return best_type


def first_mount_of(fstype: str, table: str = MOUNTINFO) -> str | None:
    """Where a filesystem of `fstype` (cgroup2, say) is first mounted."""
    for mount in mounts(table):
        if mount.fstype == fstype:
            return mount.point
    return None
