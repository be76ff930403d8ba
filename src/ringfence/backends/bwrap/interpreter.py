"""The Python that ringfence's own helpers run on inside the sandbox.

The mask helper and the egress relay are standard-library scripts handed in
as descriptors; they need an interpreter the policy lets the sandbox see.
ringfence's own comes first; a profile that hides it (one that names only
system directories) still has the system's.
"""

from __future__ import annotations

import os
import sys

SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3")


def inside_python(filesystem, sees=None) -> str | None:
    """The first interpreter whose binary (and, for ringfence's own, its
    standard library) the sandbox sees; None when it sees none. `sees`, from
    a wrapping backend's view, says which host paths its view still shows
    (an isolated run hides the home, where ringfence's own Python may be)."""
    own = os.path.realpath(sys.executable)
    candidates: list[tuple[str, str | None]] = [(own, os.path.realpath(os.path.dirname(os.__file__)))]
    candidates += [(os.path.realpath(path), None) for path in SYSTEM_PYTHONS if os.path.exists(path)]
    for interpreter, library in candidates:
        if all(_visible(filesystem, path) and (sees is None or sees(path)) for path in (interpreter, library) if path):
            return interpreter
    return None


def _visible(filesystem, path: str) -> bool:
    decision = filesystem.access(path)
    return decision.access != "none" and not decision.private
