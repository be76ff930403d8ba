"""A repository's refs, read from its files on the host without running git.

Running git on the host in the workspace would read configuration that
decides which programs git starts; reading HEAD, the loose refs and
packed-refs is all that recording "the refs at start" needs.
"""

from __future__ import annotations

import os

from ..errors import RingfenceError

_HEX = frozenset("0123456789abcdef")


def _read(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        return os.read(fd, 1 << 16).decode("utf-8", "surrogateescape")
    finally:
        os.close(fd)


def _is_object_id(text: str) -> bool:
    return len(text) in (40, 64) and set(text) <= _HEX


def git_dirs(workspace: str) -> tuple[str, str] | None:
    """(the repository's own git directory, its common directory) of a
    workspace whose top holds `.git`, or None when it is not a repository."""
    workspace = os.path.abspath(workspace)
    dot_git = os.path.join(workspace, ".git")
    if os.path.isdir(dot_git) and not os.path.islink(dot_git):
        git_dir = dot_git
    else:
        text = _read(dot_git)
        if not text or not text.startswith("gitdir:"):
            return None
        git_dir = os.path.join(workspace, text[len("gitdir:"):].strip())
    common = _read(os.path.join(git_dir, "commondir"))
    common_dir = os.path.normpath(os.path.join(git_dir, common.strip())) if common else git_dir
    return os.path.normpath(git_dir), common_dir


def read_refs(workspace: str) -> dict[str, str]:
    """{"HEAD": commit, "refs/heads/main": commit, ...}: what HEAD and every
    branch, tag and remote-tracking ref point at ({} outside a repository)."""
    found = git_dirs(workspace)
    if found is None:
        return {}
    git_dir, common_dir = found
    if os.path.isdir(os.path.join(common_dir, "reftable")):
        raise RingfenceError(f"{common_dir} keeps its refs in a reftable, which ringfence cannot read yet",
                             hint="run the isolated run outside a reftable repository, or convert it with "
                                  "`git refs migrate --ref-format=files`")
    refs: dict[str, str] = {}
    packed = _read(os.path.join(common_dir, "packed-refs")) or ""
    for line in packed.splitlines():
        if not line or line[0] in "#^":
            continue
        object_id, _, name = line.partition(" ")
        if _is_object_id(object_id) and name.startswith("refs/"):
            refs[name] = object_id
    refs_root = os.path.join(common_dir, "refs")
    for folder, dirs, files in os.walk(refs_root):
        dirs[:] = [name for name in dirs if not os.path.islink(os.path.join(folder, name))]
        for name in files:
            text = (_read(os.path.join(folder, name)) or "").strip()
            if _is_object_id(text):
                refs[os.path.relpath(os.path.join(folder, name), common_dir).replace(os.sep, "/")] = text
    head = (_read(os.path.join(git_dir, "HEAD")) or "").strip()
    if head.startswith("ref:"):
        target = refs.get(head[4:].strip())
        if target:
            refs["HEAD"] = target
    elif _is_object_id(head):
        refs["HEAD"] = head
    return refs
