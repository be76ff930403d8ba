"""Protected metadata: the names that run code when a program on the host
opens a folder (`.git`, `.ringfence`, editor and agent settings), where
they are protected, and ringfence's own files."""

from __future__ import annotations

import os
import sys

from ..config import user_config_dir
from ..errors import PolicyError
from ..paths import canonical, is_within, symlink_components
from ..state import state_dir
from .builtin_data import BUILTIN
from .filesystem import NONE, READ, TIER_PROTECTED, WRITE, Cap, GlobSpec, PathRule, ProtectedPath
from .git import default_hooks, git_config_chain, gitdir_target, hooks_path
from .globs import hard_link_count
from .refusals import refuse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..config.vocabulary import Access, RuleKind


# Installed dependencies are not opened as projects, and their packages often
# ship editor folders: protecting those would make every reinstall fail on a
# mount point it cannot remove. Their .git entries stay protected.
DEPENDENCY_TREES = ("**/node_modules/**", "**/site-packages/**", "**/dist-packages/**")


def writable_before_scan(rules, project_roots, provisional) -> list[str]:
    """The roots the sandbox may write on the host, from the rules known before
    the glob scan (globs only ever add denials and protections)."""
    roots = {rule.path for rule in rules if rule.access == WRITE and rule.kind == "path" and rule.path != "/"}
    roots |= {root for root in project_roots if provisional.decide_canonical(root).access == WRITE}
    return sorted(root for root in roots
                  if provisional.decide_canonical(root).access == WRITE
                  and not provisional.decide_canonical(root).private)


def outermost(roots: list[str]) -> list[str]:
    kept: list[str] = []
    for root in sorted(roots):
        if not any(is_within(root, outer) for outer in kept):
            kept.append(root)
    return kept


def nested_protection_specs(roots, names) -> list[GlobSpec]:
    """Glob specs that find every existing protected name below each root."""
    specs = []
    for root in roots:
        specs.append(GlobSpec(root=root, pattern="**/.git", access=READ, origin=BUILTIN,
                              label="nested .git (built-in protected metadata)", tier=TIER_PROTECTED))
        for name, _kind in names:
            if name != ".git":
                specs.append(GlobSpec(root=root, pattern=f"**/{name}", access=READ, origin=BUILTIN,
                                      label=f"nested {name} (built-in protected metadata)", tier=TIER_PROTECTED,
                                      excludes=DEPENDENCY_TREES))
    return specs


# In a repository that is committed to in place, git writes objects, refs,
# logs, the index, HEAD and the like; what makes git run code, or read its
# configuration from elsewhere, stays read-only, and a missing one of these
# cannot be created. (`commondir`, which an empty placeholder would break,
# and the index's submodules are checked after the run: launcher/gitguard.py.)
GIT_IN_PLACE_PROTECTED = (("config", "file"), ("config.worktree", "file"), ("hooks", "dir"), ("info", "dir"),
                          ("modules", "dir"), ("worktrees", "dir"))


def own_repositories(project_roots, writable_roots) -> list[str]:
    """The projects whose own repository is committed to in place: a writable
    project root whose `.git` is a real folder holding a repository (not the
    empty placeholder a Sandbox keeps there between runs; a linked
    worktree's gitdir, elsewhere, stays read-only whole)."""
    found = []
    for root in project_roots:
        dot_git = os.path.join(root, ".git")
        head = os.path.join(dot_git, "HEAD")
        if root in writable_roots and os.path.isdir(dot_git) and not os.path.islink(dot_git) \
                and os.path.isfile(head) and not os.path.islink(head):
            found.append(root)
    return found


def protected_entries(writable_roots, names, home, env, repositories=(), refusals=None, in_place=()):
    """Protected metadata at the top of each writable root, the hooks directory
    git is configured to use, and every git config file (includes too) that a
    writable root holds, as ProtectedPath records. `repositories` are the
    work trees of nested repositories, whose hooks and config count too;
    `in_place` the roots whose own `.git` is writable but for
    GIT_IN_PLACE_PROTECTED (see own_repositories)."""
    entries = []

    def writable(path):
        return any(is_within(path, root) for root in writable_roots)

    def refuse_swappable_links(spelled: str, what: str, hint: str):
        # A name reached through a link the sandbox can replace is protected
        # only where the link pointed at the start: the sandbox swaps the link
        # for a directory of its own, and git on the host reads that instead.
        for link in symlink_components(spelled):
            if writable(os.path.dirname(link)):
                refuse(refusals, PolicyError(f"{what} {spelled} is reached through the symlink {link}, which "
                                              "the sandbox could replace", hint=hint))
                return

    def refuse_hard_linked(path: str, what: str):
        # A read-only mount covers one name; another name of the same file in
        # a writable root rewrites what git on the host reads or runs.
        if hard_link_count(path) > 1:
            refuse(refusals, PolicyError(
                f"{what} {path} has {hard_link_count(path)} hard links: the sandbox could change it under "
                "another name", hint=f"replace it with a copy of its own (cp --remove-destination '{path}' ...)"))

    def hook_link_targets(hooks: str):
        # The hooks directory is read-only, but a hook that is a symlink runs
        # whatever it points to: a tracked scripts/pre-commit the sandbox can
        # rewrite. Its target is protected in its place.
        found = []
        named = _hook_entries(hooks)
        if len(named) > MAX_HOOK_ENTRIES:
            refuse(refusals, PolicyError(f"the git hooks folder {hooks} holds more than {MAX_HOOK_ENTRIES} "
                                          "entries: too many to check for links out of it",
                                          hint="remove what git does not run from it"))
        for name, is_link in named[:MAX_HOOK_ENTRIES]:
            path = os.path.join(hooks, name)
            if not is_link:
                if writable(path):
                    refuse_hard_linked(path, "the git hook")
                continue
            spelled_target = os.path.join(hooks, os.readlink(path))
            target = canonical(spelled_target)
            if writable(target):
                refuse_swappable_links(spelled_target, f"the git hook {path} links to {target}, which",
                                       "make the hook a copy, or link it to a path outside the writable roots")
                refuse_hard_linked(target, "the git hook")
                exists = os.path.lexists(target)
                found.append(ProtectedPath(target, "dir" if os.path.isdir(target) else "file", exists,
                                           f"target of the git hook {path}"))
        return found

    for root in list(writable_roots) + [r for r in repositories if r not in writable_roots]:
        chain = git_config_chain(root, home, env) if os.path.lexists(os.path.join(root, ".git")) else []
        for spelled in chain:
            config = canonical(spelled)
            if writable(config) and (root in in_place or not is_within(config, os.path.join(root, ".git"))):
                refuse_swappable_links(spelled, "the git config file", "include the real path instead")
                entries.append(ProtectedPath(config, "file", os.path.lexists(config), f"git config read for {root}"))
        for spelled in chain:
            if writable(canonical(spelled)):
                refuse_hard_linked(spelled, "the git config file")
        spelled_hooks = hooks_path(root, home, chain) if chain else None
        hooks = canonical(spelled_hooks) if spelled_hooks else None
        if hooks and writable(hooks) and hooks != root:
            refuse_swappable_links(spelled_hooks, "core.hooksPath", "point core.hooksPath at the real directory")
            if os.path.islink(hooks):
                refuse(refusals, PolicyError(f"core.hooksPath {hooks} is a symlink inside a writable root",
                                              hint="point core.hooksPath at the real directory"))
            entries.append(ProtectedPath(hooks, "dir", os.path.isdir(hooks), f"core.hooksPath of {root}"))
        if chain and not hooks and root in in_place:
            hooks = canonical(default_hooks(root))
        elif chain and not hooks:
            default = default_hooks(root)
            hooks = canonical(default)
            if os.path.islink(default) and writable(hooks):
                # .git/hooks itself may be a link (to a tracked scripts/hooks):
                # .git is read-only, the folder it leads to is not.
                refuse_swappable_links(os.path.join(os.path.dirname(default), os.readlink(default)),
                                       f"the git hooks folder {default} leads to {hooks}, which",
                                       "make .git/hooks a real folder")
                entries.append(ProtectedPath(hooks, "dir", os.path.isdir(hooks), f"hooks folder of {root}"))
        if hooks:
            entries.extend(hook_link_targets(hooks))
        # A nested repository is a project of its own: the whole list holds there.
        for name, kind in names:
            path = os.path.join(root, name)
            label = f'protected "{name}" in {root}'
            if os.path.islink(path):
                refuse(refusals, PolicyError(
                    f"{path} is a symlink inside the writable root {root}: the sandbox could replace it "
                    "and escape the protection of its target",
                    hint=f"replace the symlink with the real {kind}, or make {root} read-only"))
                continue
            exists = os.path.lexists(path)
            if name == ".git" and root in in_place:
                for inner, inner_kind in GIT_IN_PLACE_PROTECTED:
                    inside = os.path.join(path, inner)
                    if os.path.islink(inside):
                        refuse(refusals, PolicyError(f"{inside} is a symlink in a repository committed to in "
                                                     "place: the sandbox could replace it",
                                                     hint=f"replace the symlink with the real {inner_kind}"))
                        continue
                    there = os.path.lexists(inside)
                    entries.append(ProtectedPath(inside, "file" if there and not os.path.isdir(inside)
                                                 else inner_kind, there,
                                                 f'protected "{inner}" of the repository {root} (committed to '
                                                 "in place)"))
                continue
            entries.append(ProtectedPath(path, "file" if exists and not os.path.isdir(path) else kind, exists, label))
            if name == ".git" and exists and os.path.isfile(path):
                spelled_target = gitdir_target(path)
                target = canonical(spelled_target) if spelled_target else None
                if target and any(is_within(writable_root, target) for writable_root in writable_roots):
                    # Protecting it would make the writable root read-only
                    # with it; leaving it would hand over the config and
                    # hooks git on the host reads there.
                    refuse(refusals, PolicyError(
                        f"{path} names {target} as its git directory, which holds the writable root "
                        f"{next(r for r in writable_roots if is_within(r, target))}",
                        hint="point gitdir: at the repository's real git directory"))
                elif target and writable(target):
                    refuse_swappable_links(spelled_target, f"the gitdir of {path},",
                                           "write the real path after gitdir: in the .git file")
                    entries.append(ProtectedPath(target, "dir", os.path.isdir(target), f'gitdir of {path}'))
    return entries


# Git runs hooks by their names; a hooks folder of thousands of entries is no
# repository's, and checking each would slow every start.
MAX_HOOK_ENTRIES = 256


def _hook_entries(hooks: str) -> list[tuple[str, bool]]:
    """(name, is a symlink) of the hooks git could run: samples never run."""
    try:
        with os.scandir(hooks) as entries:
            found = []
            for entry in entries:
                if not entry.name.endswith(".sample"):
                    found.append((entry.name, entry.is_symlink()))
                if len(found) > MAX_HOOK_ENTRIES:
                    break
            return found
    except OSError:
        return []


def own_files(home: str, writable_roots) -> list[Cap]:
    """ringfence's own state (never visible), its user configuration (never
    writable), and the Python and ringfence it runs on when they lie in a
    writable root: a sandbox that could change them would run its code on the
    host at the next start."""
    def cap(path: str, access: Access, label: str, kind: RuleKind = "protected") -> Cap:
        return Cap(path, access, PathRule(path, access, BUILTIN, label, kind=kind, tier=TIER_PROTECTED))

    caps = [cap(canonical(state_dir(home)), NONE, "ringfence state (built-in, always hidden)", "state"),
            cap(canonical(user_config_dir(home)), READ, "ringfence user configuration (built-in, never writable)")]
    for path in sorted({canonical(p) for p in _startup_paths()}):
        # Both ways: a writable root inside the installation (a venv's
        # site-packages) is as dangerous as the installation inside a root.
        if any(is_within(path, root) or is_within(root, path) for root in writable_roots):
            caps.append(cap(path, READ, "ringfence's own installation and interpreter, and what Python runs "
                                        "when it starts (built-in, never writable)"))
    return caps


def _startup_paths() -> set[str]:
    """Where the code ringfence runs on comes from: its package, the
    interpreter, and the site folders whose .pth files Python runs at every
    start (the user's own included, with the folder of its scripts)."""
    import site

    paths = {os.path.dirname(os.path.dirname(os.path.abspath(__file__))), sys.prefix, sys.base_prefix,
             os.path.dirname(os.path.realpath(sys.executable)), os.path.join(sys.prefix, "bin")}
    paths.update(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        paths.add(site.getusersitepackages())
        paths.add(os.path.join(site.getuserbase(), "bin"))
    return {path for path in paths if path}
