"""Readers for the built-in data files in `ringfence/data/`.

The files are plain text so that reading them costs no TOML parser on the
start-up path.
"""

from __future__ import annotations

import os

_DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")

BUILTIN = "built-in"  # the origin of every rule ringfence adds itself
# Private to each run: fresh tmpfs, gone afterwards. /run holds the host's
# sockets (the user's session bus, agents, docker), so it is private as well.
PRIVATE_PATHS = ("/tmp", "/var/tmp", "/run")
# With the host's network, name resolution may need systemd-resolved's stub file.
RESOLVER_PATHS = ("/run/systemd/resolve",)


def _lines(name: str):
    with open(os.path.join(_DATA, name), encoding="utf-8") as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if line:
                yield line


def credential_entries():
    """(spelled path, access, except-globs, holding-words) for each built-in credential rule."""
    entries = []
    for line in _lines("credentials.txt"):
        line, _, holds = line.partition(" if-holds ")
        head, _, excepts = line.partition(" except ")
        path, access = head.rsplit(None, 1)
        entries.append((path.strip(), access, tuple(excepts.split()), tuple(holds.split())))
    return entries


def protected_names():
    """(name, kind) pairs; kind is "dir" or "file"."""
    return tuple((line.rstrip("/"), "dir" if line.endswith("/") else "file")
                 for line in _lines("protected.txt"))
