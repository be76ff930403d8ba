"""Which workspace paths an apply never writes: the protected metadata.

What a program on the host reads and acts on without review (git's
configuration and hooks, editors' tasks, agents' settings, direnv files)
stays as it was, whatever the isolated run did to it: changes there are
shown and refused. Every `.git` at any depth is protected too: an apply
must not bring a repository's config, hooks or index to life anywhere.
"""

from __future__ import annotations


def default_names() -> frozenset[str]:
    from ..policy.builtin_data import protected_names

    return frozenset(name for name, _kind in protected_names())


class Protection:
    """Decides `is_protected(relative path)`; `names` are top-level names
    (the built-in list by default), `paths` further relative paths (such as
    the folder `core.hooksPath` names)."""

    __slots__ = ("names", "paths")

    def __init__(self, names=None, paths=()):
        # Compared without case: on a case-folding filesystem `.GIT` is `.git`.
        self.names = frozenset(name.lower() for name in (default_names() if names is None else names))
        self.paths = tuple(path.strip("/").lower() for path in paths if path.strip("/"))

    def is_protected(self, path: str) -> bool:
        folded = path.lower()
        parts = folded.split("/")
        if parts[0] in self.names or ".git" in parts:
            return True
        return any(folded == other or folded.startswith(other + "/") for other in self.paths)
