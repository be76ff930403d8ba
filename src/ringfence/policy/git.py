"""Where a repository's git reads its configuration and hooks: the config
files (includes followed), `core.hooksPath`, a `.git` file's `gitdir:`.
Read as git reads them (gitconfig.py), never by running git."""

from __future__ import annotations

import os

from ..paths import expand_home
from . import gitconfig


def git_config_chain(root: str, home: str, env: dict) -> list[str]:
    """Every config file git reads for the repository at `root`, includes
    followed (conditional ones too: protecting a file git might not read is
    harmless, missing one it does read is not), in the order git reads them."""
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    # A linked worktree's .git is a file naming its gitdir, whose `commondir`
    # names the repository that holds the shared config.
    git_dir = os.path.join(root, ".git")
    if os.path.isfile(git_dir):
        git_dir = gitdir_target(git_dir) or git_dir
    common_dir = git_dir
    try:
        with open(os.path.join(git_dir, "commondir"), encoding="utf-8", errors="replace") as handle:
            named = handle.readline().strip()
        if named:
            common_dir = os.path.join(git_dir, named)
    except OSError:
        pass
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


def gitdir_target(dot_git_file: str) -> str | None:
    try:
        with open(dot_git_file, encoding="utf-8", errors="replace") as handle:
            first = handle.readline().strip()
    except OSError:
        return None
    if not first.startswith("gitdir:"):
        return None
    target = first[len("gitdir:"):].strip()
    if not os.path.isabs(target):
        target = os.path.join(os.path.dirname(dot_git_file), target)
    return target
