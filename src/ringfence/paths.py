"""Path spelling: `~`, canonical forms, ancestry. No policy here."""

from __future__ import annotations

import os


def expand_home(path: str, home: str) -> str:
    if path == "~":
        return home
    if path.startswith("~/"):
        return os.path.join(home, path[2:])
    return path


def canonical(path: str) -> str:
    """The path with every symlink resolved; missing tails are kept as written.

    Rules and queries both go through this, so a rule written through a
    symlink and a query through its target meet at the same key.
    """
    return os.path.realpath(path)


def is_within(path: str, root: str) -> bool:
    if root == "/":
        return path.startswith("/")
    return path == root or path.startswith(root + "/")


def ancestors(path: str):
    """`path` itself, then each parent up to and including `/`."""
    while True:
        yield path
        if path == "/":
            return
        path = os.path.dirname(path)


def depth(path: str) -> int:
    return 0 if path == "/" else path.count("/")


def symlink_components(path: str) -> list[str]:
    """The prefixes of an absolute path (as written) that are symlinks."""
    found = []
    current = "/"
    for part in path.strip("/").split("/"):
        if not part or part == ".":
            continue
        if part == "..":
            # As the kernel does: `..` leaves where the links so far led, not
            # the text before it (`link/..` is the link target's parent).
            current = os.path.dirname(current)
            continue
        current = os.path.join(current, part)
        if os.path.islink(current):
            found.append(current)
            current = os.path.realpath(current)
    return found


def read_regular_file(path: str, limit: int = 1 << 20) -> bytes | None:
    """The first `limit` bytes of `path` if it is a regular file; None if it
    is missing, unreadable, or anything else. Files ringfence reads from a
    workspace may have been planted there: a FIFO would block the open (and
    every later start) forever, a device would read without end."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, total = [], 0
        while total < limit:
            chunk = os.read(fd, min(1 << 16, limit - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)
