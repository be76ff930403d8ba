"""Where a repository's git reads its configuration and hooks: the config
files (includes followed), `core.hooksPath`, a `.git` file's `gitdir:`.
Read as git reads them (gitconfig.py), never by running git."""

from __future__ import annotations

import os

from ..paths import expand_home, read_regular_file
from . import gitconfig


def git_config_chain(root: str, home: str, env: dict) -> list[str]:
    """Every config file git reads for the repository at `root`, includes
    followed (conditional ones too: protecting a file git might not read is
    harmless, missing one it does read is not), in the order git reads them."""
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    # A linked worktree's .git is a file naming its gitdir, whose `commondir`
    # names the repository that holds the shared config.
    git_dir, common_dir = repository_dirs(root)
    first = ["/etc/gitconfig",
             env.get("GIT_CONFIG_GLOBAL") or os.path.join(xdg, "git", "config"),
             os.path.join(home, ".gitconfig"),
             os.path.join(common_dir, "config"),
             os.path.join(git_dir, "config.worktree")]
    chain: list[str] = []

    def visit(path: str, depth: int):
        if depth > 10 or path in chain:
            return
        chain.append(path)
        for section, key, value in gitconfig.read(path):
            if (section == "include" or section.startswith("includeif.")) and key == "path" and value:
                target = expand_home(value, home)
                if not os.path.isabs(target):
                    target = os.path.join(os.path.dirname(path), target)
                visit(target, depth + 1)

    for path in first:
        visit(path, 0)
    return chain


def hooks_path(root: str, home: str, chain: list[str]) -> str | None:
    """Where git looks for this repository's hooks when core.hooksPath moves them."""
    value = None
    for path in chain:
        for section, key, setting in gitconfig.read(path):
            if section == "core" and key == "hookspath":
                value = setting
    if not value:
        return None
    value = expand_home(value, home)
    # Not normalised: `link/..` must stay for the kernel (and the link check) to resolve.
    return value if os.path.isabs(value) else os.path.join(root, value)


def repository_dirs(root: str) -> tuple[str, str]:
    """(the git directory, the common directory holding config and hooks)
    of the repository at `root`. A linked worktree's .git is a file naming
    its gitdir, whose `commondir` names the repository that holds the rest."""
    git_dir = os.path.join(root, ".git")
    if os.path.isfile(git_dir):
        git_dir = gitdir_target(git_dir) or git_dir
    common_dir = git_dir
    named = (read_regular_file(os.path.join(git_dir, "commondir"), 4096) or b"").decode(errors="replace")
    named = named.splitlines()[0].strip() if named.strip() else ""
    if named:
        common_dir = os.path.join(git_dir, named)
    return git_dir, common_dir


def default_hooks(root: str) -> str:
    return os.path.join(repository_dirs(root)[1], "hooks")


def gitdir_target(dot_git_file: str) -> str | None:
    text = (read_regular_file(dot_git_file, 4096) or b"").decode("utf-8", errors="replace")
    first = text.splitlines()[0].strip() if text.strip() else ""
    if not first.startswith("gitdir:"):
        return None
    target = first[len("gitdir:"):].strip()
    if not os.path.isabs(target):
        target = os.path.join(os.path.dirname(dot_git_file), target)
    return target
