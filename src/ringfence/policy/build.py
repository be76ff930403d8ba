"""From merged configuration to a `Policy`: select the profile, expand tokens,
scan globs, add the built-in protections, and check what cannot be enforced.
"""

from __future__ import annotations

import os

from ..errors import ConfigError, PolicyError
from ..paths import ancestors, canonical, expand_home, is_within, symlink_components
from ..state import state_dir
from . import Policy, gitconfig
from .commands import CommandRules
from .environment import EnvironmentPolicy
from .filesystem import (NONE, READ, TIER_BUILTIN, TIER_PROFILE, TIER_PROTECTED, WRITE, Cap,
                         FilesystemPolicy, GlobRule, GlobSpec, PathRule)
from .globs import compile_pattern, hard_link_count, is_glob, scan, static_prefix
from .limits import Limits
from .network import FULL, LIMITED, OFF, NetworkPolicy

BUILTIN = "built-in"
MINIMAL_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
# Private to each run: fresh tmpfs, gone afterwards. /run holds the host's
# sockets (the user's session bus, agents, docker), so it is private as well.
PRIVATE_PATHS = ("/tmp", "/var/tmp", "/run")
# With the host's network, name resolution may need systemd-resolved's stub file.
RESOLVER_PATHS = ("/run/systemd/resolve",)


class Selection:
    __slots__ = ("name", "origin")

    def __init__(self, name, origin):
        self.name = name
        self.origin = origin


def _layer_rank(config, setting) -> int:
    for index, layer in enumerate(config.layers):
        if layer.source == setting.source:
            return index
    return -1


def select_profile(config) -> Selection:
    """The permission profile in force. A higher layer's choice wins; within one
    layer `sandbox_mode` wins over `default_permissions`, as in Codex."""
    mode = config.get("sandbox_mode")
    named = config.get("default_permissions")
    if mode is not None and named is not None and _layer_rank(config, named) > _layer_rank(config, mode):
        mode = None
    if mode is not None:
        name = {"read-only": ":read-only", "workspace-write": ":workspace",
                "danger-full-access": ":danger-full-access"}[mode.value]
        return Selection(name, f"sandbox_mode = \"{mode.value}\" ({mode.source})")
    if named is not None:
        return Selection(named.value, f"default_permissions = \"{named.value}\" ({named.source})")
    return Selection(":workspace", "default (no sandbox_mode or default_permissions set)")


BUILTIN_PROFILES = (":read-only", ":workspace", ":danger-full-access")


def _builtin_profile(name: str, config) -> tuple[dict, dict]:
    """Filesystem and network tables of a built-in profile, as Settings."""
    from ..config import Setting

    origin = f"built-in profile {name}"
    if name == ":read-only":
        # The project is named explicitly so that it stays visible even under
        # the private /tmp (a project in /tmp would otherwise vanish).
        return {":root": Setting(READ, origin, ":root"),
                ":project_roots": Setting({".": Setting(READ, origin, ':project_roots."."')}, origin,
                                          ":project_roots")}, {}
    if name == ":workspace":
        fs = {":root": Setting(READ, origin, ":root"),
              ":project_roots": Setting({".": Setting(WRITE, origin, ":project_roots.\".\"")}, origin,
                                        ":project_roots")}
        roots = config.get("sandbox_workspace_write", "writable_roots")
        if roots is not None:
            for root in roots.value:
                fs[root] = Setting(WRITE, roots.source, f'sandbox_workspace_write.writable_roots "{root}"')
        network = {}
        access = config.get("sandbox_workspace_write", "network_access")
        if access is not None:
            network["enabled"] = Setting(access.value, access.source, "sandbox_workspace_write.network_access")
        return fs, network
    return {":root": Setting(WRITE, origin, ":root")}, {"enabled": Setting(True, origin, "network")}


def _resolve_profile(name: str, config, chain=(), referrer=None) -> tuple[dict, dict, dict]:
    if name in BUILTIN_PROFILES:
        return _builtin_profile(name, config) + ({},)
    profiles = config.get("permissions") or {}
    if name not in profiles:
        available = ", ".join(sorted(list(profiles) + list(BUILTIN_PROFILES)))
        source = referrer or config.get("default_permissions") or config.get("sandbox_mode")
        raise ConfigError(source.source if source else "command line",
                          source.key if source else "default_permissions",
                          f'no permission profile named "{name}"', accepted=available)
    if name in chain:
        cycle = " -> ".join(chain + (name,))
        raise ConfigError(profiles[name]["extends"].source, f"permissions.{name}.extends",
                          f"extends forms a cycle: {cycle}")
    table = profiles[name]
    fs: dict = {}
    network: dict = {}
    limits: dict = {}
    if "extends" in table:
        fs, network, limits = _resolve_profile(table["extends"].value, config, chain + (name,), table["extends"])
        fs, network, limits = dict(fs), dict(network), dict(limits)
    for key, value in (table.get("filesystem") or {}).items():
        inherited = fs.get(key)
        if inherited is not None and isinstance(inherited.value, dict) and isinstance(value.value, dict):
            # A scoped table extends the inherited one: adding a glob under
            # :project_roots must not drop the parent's "." = "write".
            value = value.replace(value={**inherited.value, **value.value})
        fs[key] = value
    for key, value in (table.get("network") or {}).items():
        network[key] = value
    for key, value in (table.get("limits") or {}).items():
        limits[key] = value
    return fs, network, limits


class Expander:
    """Turns filesystem keys (tokens, ~, scoped tables, globs) into rules."""

    def __init__(self, cwd, home, project_roots, tmpdir, env=None):
        self.cwd = cwd
        self.home = home
        self.project_roots = project_roots
        self.tmpdir = tmpdir
        self.env = env or {}

    def bases(self, key: str) -> list[str]:
        if key == ":root":
            return ["/"]
        if key == ":minimal":
            return [p for p in MINIMAL_PATHS if os.path.lexists(p)]
        if key in (":project_roots", ":workspace_roots"):
            return list(self.project_roots)
        if key == ":tmpdir":
            return [self.tmpdir] if self.tmpdir else []
        if key == ":slash_tmp":
            return ["/tmp"]
        return [os.path.normpath(expand_home(key, self.home))]

    def expand(self, fs_table: dict, tier: int):
        rules: list[PathRule] = []
        globs: list[tuple] = []
        default_depth = fs_table.get("glob_scan_max_depth")
        max_depth = default_depth.value if default_depth is not None else None
        for key, setting in fs_table.items():
            if key == "glob_scan_max_depth":
                continue
            for base in self.bases(key):
                if isinstance(setting.value, dict):
                    for rel, access_setting in setting.value.items():
                        target = base if rel == "." else os.path.join(base, rel)
                        label = f'{setting.key}."{rel}" = "{access_setting.value}"'
                        self._add(target, access_setting, label, tier, rules, globs, max_depth)
                else:
                    label = f'{setting.key} = "{setting.value}"'
                    self._add(base, setting, label, tier, rules, globs, max_depth)
        return rules, globs

    def _add(self, target, setting, label, tier, rules, globs, max_depth):
        if is_glob(target):
            root = static_prefix(target)
            if root == "/":
                raise ConfigError(setting.source, setting.key,
                                  f'the glob "{target}" is rooted at "/": it would scan the whole system',
                                  hint="root the glob in a directory, such as :project_roots or ~/")
            pattern = target[len(root):].lstrip("/")
            globs.append(GlobSpec(root=canonical(root), pattern=pattern, access=setting.value, origin=setting.source,
                                  label=label, tier=tier, max_depth=max_depth))
        else:
            rules.append(PathRule(canonical(target), setting.value, setting.source, label,
                                  kind="path", tier=tier, spelled=target))


def _canonical_under(parents: dict, path: str) -> str:
    """`canonical(path)`, resolving each parent directory once: the credential
    list names dozens of paths under the same few directories."""
    parent, _, name = path.rpartition("/")
    resolved = parents.get(parent)
    if resolved is None:
        resolved = parents[parent] = canonical(parent)
    full = f"{resolved}/{name}" if resolved != "/" else f"/{name}"
    return canonical(full) if os.path.islink(full) else full


def _credential_rules(expander: Expander, enabled: bool):
    if not enabled:
        return [], []
    from .builtin_data import credential_entries

    parents: dict = {}
    rules, globs = [], []
    agent = expander.env.get("SSH_AUTH_SOCK", "")
    if agent.startswith("/") and not any(is_within(canonical(agent), private) for private in PRIVATE_PATHS):
        # Wherever the agent's socket lives, the sandbox reaching it could sign
        # as the user; under the private /tmp or /run it is out of reach anyway.
        rules.append(PathRule(canonical(agent), NONE, BUILTIN,
                              f'"{agent}" = "none"  (built-in :credentials: the ssh agent named by SSH_AUTH_SOCK)',
                              kind="credentials", tier=TIER_BUILTIN, spelled=agent))
    for spelled, access, excludes, holds in credential_entries():
        label = f'{spelled} = "{access}"  (built-in :credentials)'
        bases = [expander.home] if spelled.startswith("~/") else list(expander.project_roots)
        relative = spelled[2:]
        for base in bases:
            target = os.path.join(base, relative)
            if is_glob(relative):
                root = static_prefix(target)
                pattern = target[len(root):].lstrip("/")
                globs.append(GlobSpec(root=canonical(root), pattern=pattern, access=access, origin=BUILTIN,
                                      label=label, tier=TIER_BUILTIN, excludes=excludes, fold=True, holds=holds))
            else:
                rules.append(PathRule(_canonical_under(parents, target), access, BUILTIN, label,
                                      kind="credentials", tier=TIER_BUILTIN, spelled=target))
    return rules, globs


def _other_names(path: str, root: str, limit: int = 5, seconds: float = 2.0) -> list[str]:
    """Other names of `path`'s inode under `root`. Only on the error path, and
    a home can be large: the walk stops after `seconds`."""
    import time

    try:
        target = os.stat(path)
    except OSError:
        return []
    found = []
    deadline = time.monotonic() + seconds
    for directory, _dirs, files in os.walk(root):
        if time.monotonic() > deadline:
            break
        for name in files:
            candidate = os.path.join(directory, name)
            try:
                info = os.lstat(candidate)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) == (target.st_dev, target.st_ino) and candidate != path:
                found.append(candidate)
                if len(found) >= limit:
                    return found
    return found


def _scan_globs(glob_specs, provisional: FilesystemPolicy, cache_dir=None, home=None, snapshots=None,
                identities=None, refusals=None):
    """Scan every glob once per (root, depth); return rules and GlobRule summaries."""
    groups: dict = {}
    for spec in glob_specs:
        groups.setdefault((spec.root, spec.max_depth), []).append(spec)

    reopened_above = set()
    for path, rule in provisional.index.items():
        if rule.access != NONE:
            reopened_above.update(ancestors(os.path.dirname(path)))

    decide = provisional.decider()

    def denied_without_exceptions(path):
        if path in reopened_above:
            return False
        decision = decide(path)
        return decision.access == NONE and decision.rule is not None

    rules: list[PathRule] = []
    caps: list[Cap] = []
    summaries: list[GlobRule] = []
    for (root, max_depth), entries in groups.items():
        patterns = sorted({entry.pattern for entry in entries})
        folded = {entry.pattern for entry in entries if entry.fold}
        # A glob that grants access may re-open something inside a denied
        # directory, so only groups that only deny (or protect) may skip denied subtrees.
        only_denies = all(entry.access == NONE or entry.tier == TIER_PROTECTED for entry in entries)
        # Pruning only matters where something under the root is denied already.
        denies_below = any(rule.access == NONE and is_within(path, root) for path, rule in provisional.index.items())
        snapshot = None
        if snapshots is not None and max_depth is None and any(e.tier == TIER_PROTECTED for e in entries):
            snapshot = snapshots.setdefault(root, {})
        matches = scan(root, patterns, max_depth,
                       skip=denied_without_exceptions if only_denies and denies_below else None,
                       cache_dir=cache_dir, snapshot=snapshot, identities=identities, folded=folded,
                       protection_only=all(entry.tier == TIER_PROTECTED for entry in entries))
        by_pattern: dict = {}
        for match in matches:
            by_pattern.setdefault(match.pattern, []).append(match)
        for entry in entries:
            pattern, access, origin, label, tier = entry.pattern, entry.access, entry.origin, entry.label, entry.tier
            hits = by_pattern.get(pattern, [])
            if entry.excludes and hits:
                compiled = [compile_pattern(e, fold=entry.fold) for e in entry.excludes]
                hits = [m for m in hits
                        if not any(c.fullmatch(os.path.relpath(m.path, root)) for c in compiled)]
            if entry.holds and hits:
                hits = [m for m in hits if m.is_dir or _holds_any(m.path, entry.holds)]
            for match in hits:
                if tier == TIER_PROTECTED and match.via_link:
                    # A mount would land on the target; the sandbox could
                    # replace the link itself with a folder of its own.
                    _refuse(refusals, PolicyError(
                        f"{match.link} is a symlink (to {match.path}) inside a writable folder: the sandbox "
                        "could replace it and escape the protection of its target",
                        hint="replace the symlink with the real file or folder, or make its folder read-only"))
                    continue
                if match.dangling:
                    continue  # nothing there to mask
                if match.via_link and not is_within(match.path, root) and not (home and is_within(match.path, home)):
                    if access != NONE:
                        continue  # a glob that grants reaches no further than its root
                    if match.is_dir:
                        # Masking a folder outside (x.pem -> /usr/lib/python3) could
                        # break the system view; leaving it would leak what the name denies.
                        _refuse(refusals, PolicyError(
                            f"{match.link} is denied by {label} and links to the folder {match.path} outside "
                            "the workspace: denying the name must deny what it reaches, and ringfence will not "
                            "hide a folder outside on a link's say-so",
                            hint=f"remove or rename the link, deny {match.path} with a rule of its own, or allow "
                                 f"the name with a rule for {match.path}"))
                        continue
                    # A denied name denies what it reaches: the file the link leads to.
                if tier == TIER_PROTECTED:
                    caps.append(Cap(match.path, READ, PathRule(match.path, READ, origin, label, kind="protected",
                                                               tier=TIER_PROTECTED, spelled=match.path)))
                    continue
                if access == NONE and not match.is_dir and hard_link_count(match.path) > 1:
                    _refuse(refusals, _hard_link_refusal(match.path, label, root))
                kind = "credentials" if tier == TIER_BUILTIN else "glob"
                rules.append(PathRule(match.path, access, origin, label, kind=kind, tier=tier,
                                      spelled=match.path))
            summaries.append(GlobRule(root, pattern, access, origin, label, tier, max_depth,
                                      tuple(m.path for m in hits), tuple(entry.excludes)))
    return rules, summaries, caps


# Installed dependencies are not opened as projects, and their packages often
# ship editor folders: protecting those would make every reinstall fail on a
# mount point it cannot remove. Their .git entries stay protected.
DEPENDENCY_TREES = ("**/node_modules/**", "**/site-packages/**", "**/dist-packages/**")


def _writable_before_scan(rules, project_roots, provisional) -> list[str]:
    """The roots the sandbox may write on the host, from the rules known before
    the glob scan (globs only ever add denials and protections)."""
    roots = {rule.path for rule in rules if rule.access == WRITE and rule.kind == "path" and rule.path != "/"}
    roots |= {root for root in project_roots if provisional.decide_canonical(root).access == WRITE}
    return sorted(root for root in roots
                  if provisional.decide_canonical(root).access == WRITE
                  and not provisional.decide_canonical(root).private)


def _outermost(roots: list[str]) -> list[str]:
    kept: list[str] = []
    for root in sorted(roots):
        if not any(is_within(root, outer) for outer in kept):
            kept.append(root)
    return kept


def _nested_protection_specs(roots, names) -> list[GlobSpec]:
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


def _holds_any(path: str, words) -> bool:
    """Whether the file's first 256 KiB hold one of `words`. Unreadable counts
    as holding: a file the scan cannot judge stays denied."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 18)
    except OSError:
        return True
    return any(word.encode() in head for word in words)


def _refuse(refusals, error: PolicyError):
    """Record what keeps the policy from being enforced; the run refuses, while
    `status` and `explain` still show everything else. Without a list (a caller
    that only wants a policy it can run), refuse at once."""
    if refusals is None:
        raise error
    refusals.append(error)


def _hard_link_refusal(path: str, label: str, root: str) -> PolicyError:
    others = _other_names(path, root)
    where = ("; other names: " + ", ".join(others)) if others else f"; none of them under {root}"
    return PolicyError(
        f"{path} is denied by {label} but has {hard_link_count(path)} hard links, "
        f"and a mask covers one name only{where}",
        hint=f"find every name with `find / -xdev -samefile '{path}'` and delete the ones "
             "that should not hold the secret (copying the file would leave the secret in them)")


def _protected_entries(writable_roots, names, home, env, repositories=(), refusals=None):
    """Protected metadata at the top of each writable root, the hooks directory
    git is configured to use, and every git config file (includes too) that a
    writable root holds: (path, kind, exists, label). `repositories` are the
    work trees of nested repositories, whose hooks and config count too."""
    entries = []

    def writable(path):
        return any(is_within(path, root) for root in writable_roots)

    def refuse_swappable_links(spelled: str, what: str, hint: str):
        # A name reached through a link the sandbox can replace is protected
        # only where the link pointed at the start: the sandbox swaps the link
        # for a directory of its own, and git on the host reads that instead.
        for link in symlink_components(spelled):
            if writable(os.path.dirname(link)):
                _refuse(refusals, PolicyError(f"{what} {spelled} is reached through the symlink {link}, which "
                                              "the sandbox could replace", hint=hint))
                return

    for root in list(writable_roots) + [r for r in repositories if r not in writable_roots]:
        chain = _git_config_chain(root, home, env) if os.path.lexists(os.path.join(root, ".git")) else []
        for spelled in chain:
            config = canonical(spelled)
            if writable(config) and not is_within(config, os.path.join(root, ".git")):
                refuse_swappable_links(spelled, "the git config file", "include the real path instead")
                entries.append((config, "file", os.path.lexists(config), f"git config read for {root}"))
        spelled_hooks = _hooks_path(root, home, chain) if chain else None
        hooks = canonical(spelled_hooks) if spelled_hooks else None
        if hooks and writable(hooks) and hooks != root:
            refuse_swappable_links(spelled_hooks, "core.hooksPath", "point core.hooksPath at the real directory")
            if os.path.islink(hooks):
                _refuse(refusals, PolicyError(f"core.hooksPath {hooks} is a symlink inside a writable root",
                                              hint="point core.hooksPath at the real directory"))
            entries.append((hooks, "dir", os.path.isdir(hooks), f"core.hooksPath of {root}"))
        # A nested repository is a project of its own: the whole list holds there.
        for name, kind in names:
            path = os.path.join(root, name)
            label = f'protected "{name}" in {root}'
            if os.path.islink(path):
                _refuse(refusals, PolicyError(
                    f"{path} is a symlink inside the writable root {root}: the sandbox could replace it "
                    "and escape the protection of its target",
                    hint=f"replace the symlink with the real {kind}, or make {root} read-only"))
                continue
            exists = os.path.lexists(path)
            entries.append((path, "file" if exists and not os.path.isdir(path) else kind, exists, label))
            if name == ".git" and exists and os.path.isfile(path):
                spelled_target = _gitdir_target(path)
                if spelled_target:
                    target = canonical(spelled_target)
                    if writable(target):
                        refuse_swappable_links(spelled_target, f"the gitdir of {path},",
                                               "write the real path after gitdir: in the .git file")
                    entries.append((target, "dir", os.path.isdir(target), f'gitdir of {path}'))
    return entries


def _git_config_chain(root: str, home: str, env: dict) -> list[str]:
    """Every config file git reads for the repository at `root`, includes
    followed (conditional ones too: protecting a file git might not read is
    harmless, missing one it does read is not), in the order git reads them."""
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    # A linked worktree's .git is a file naming its gitdir, whose `commondir`
    # names the repository that holds the shared config.
    git_dir = os.path.join(root, ".git")
    if os.path.isfile(git_dir):
        git_dir = _gitdir_target(git_dir) or git_dir
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


def _hooks_path(root: str, home: str, chain: list[str]) -> str | None:
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


def _refuse_home_as_workspace(project_roots, home, provisional):
    """With no project marker between the working directory and $HOME, the
    project root is the working directory itself; when that is $HOME (or
    above it), making it writable would hand the sandbox the user's shell
    start-up files and ringfence's own configuration."""
    for root in project_roots:
        rule = provisional.index.get(root)
        implicit = rule is not None and rule.access == WRITE and ":project_roots" in rule.label
        if implicit and is_within(home, root):
            what = "is your home directory" if root == home else f"contains your home directory ({home})"
            raise PolicyError(
                f"refusing to make {root} the writable workspace: it {what}, and a sandbox that can write "
                "there can change your shell start-up files and ringfence's own configuration",
                hint="run from a project directory (one holding .git or a project_root_markers entry), "
                     'or name the directories to write explicitly, e.g. "~/scratch" = "write"')


def _refuse_credentials_as_workspace(project_roots, provisional):
    """Run from inside ~/.aws or ~/.ssh with no project marker, the working
    directory would become the writable workspace, and its rule, being more
    specific, would open the very folder the credential layer denies."""
    for root in project_roots:
        rule = provisional.index.get(root)
        if rule is None or rule.access != WRITE or ":project_roots" not in rule.label:
            continue
        for denied in provisional.rules:
            if denied.kind == "credentials" and denied.access == NONE and is_within(root, denied.path):
                raise PolicyError(
                    f"refusing to make {root} the writable workspace: it lies in {denied.path}, which "
                    f"{denied.label} denies",
                    hint="run from a project directory, or allow that folder explicitly with a rule "
                         f'("{denied.spelled or denied.path}" = "read" or "write") if you mean to')


def _own_files(home: str, writable_roots) -> list[Cap]:
    """ringfence's own state (never visible), its user configuration (never
    writable), and the Python and ringfence it runs on when they lie in a
    writable root: a sandbox that could change them would run its code on the
    host at the next start."""
    import sys

    from ..config import user_config_dir

    def cap(path, access, label, kind="protected"):
        return Cap(path, access, PathRule(path, access, BUILTIN, label, kind=kind, tier=TIER_PROTECTED))

    caps = [cap(canonical(state_dir(home)), NONE, "ringfence state (built-in, always hidden)", "state"),
            cap(canonical(user_config_dir(home)), READ, "ringfence user configuration (built-in, never writable)")]
    installed = {os.path.dirname(os.path.dirname(os.path.abspath(__file__))), sys.prefix, sys.base_prefix,
                 os.path.dirname(os.path.realpath(sys.executable))}
    for path in sorted(canonical(p) for p in installed):
        if any(is_within(path, root) for root in writable_roots):
            caps.append(cap(path, READ, "ringfence's own installation and interpreter (built-in, never writable)"))
    return caps


def _gitdir_target(dot_git_file: str) -> str | None:
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


def _check_symlinks(rules, provisional: FilesystemPolicy, refusals=None):
    """A denied or read-only path reached through a symlink that the sandbox can
    rewrite is refused: the protection would follow the link, not the name."""
    for rule in rules:
        if rule.kind != "path" or rule.access == WRITE or not rule.spelled:
            continue
        for link in symlink_components(rule.spelled):
            parent = os.path.dirname(link)
            if provisional.decide_canonical(canonical(parent)).access == WRITE:
                _refuse(refusals, PolicyError(
                    f"{rule.describe()} reaches {rule.path} through the symlink {link}, "
                    f"which the sandbox can rewrite ({parent} is writable)",
                    hint=f"write the rule for the real path {rule.path}, or make {parent} read-only"))


def _check_hard_links(rules, provisional: FilesystemPolicy, home: str, refusals=None):
    """A denied file with other hard links (~/netrc.bak made from ~/.netrc)
    is readable under the other names, which a mask on this one cannot cover.
    Globs' matches are checked as they are found; these are the path rules'."""
    for rule in rules:
        if rule.access != NONE or rule.kind not in ("path", "credentials"):
            continue
        if provisional.index.get(rule.path) is not rule:
            continue  # replaced at its path by a rule that allows it
        if hard_link_count(rule.path) > 1:
            where = home if is_within(rule.path, home) else os.path.dirname(rule.path)
            _refuse(refusals, _hard_link_refusal(rule.path, rule.describe(), where))


def _environment_policy(config, added) -> EnvironmentPolicy:
    table = config.get("shell_environment_policy") or {}

    def value(key, default):
        setting = table.get(key)
        return default if setting is None else setting.value

    return EnvironmentPolicy(
        inherit=value("inherit", "all"),
        ignore_default_excludes=value("ignore_default_excludes", False),
        exclude=tuple(value("exclude", ())),
        set=tuple(sorted(value("set", {}).items())),
        include_only=tuple(value("include_only", ())),
        added=tuple(added),
    )


def _network_policy(table: dict, selection: Selection) -> NetworkPolicy:
    enabled = table.get("enabled")
    if enabled is None or not enabled.value:
        origin = enabled.key + f" = false ({enabled.source})" if enabled is not None else \
            f"default: network off (profile {selection.name})"
        return NetworkPolicy(OFF, origin)
    mode = table.get("mode")
    domains = table.get("domains") or {}
    sockets = table.get("unix_sockets") or {}
    origin = f"{enabled.key} = true ({enabled.source})"
    if (mode is not None and mode.value == "limited") or domains or sockets:
        return NetworkPolicy(LIMITED, origin,
                             tuple((k, v.value, f"{v.key} ({v.source})") for k, v in domains.items()),
                             tuple((k, v.value, f"{v.key} ({v.source})") for k, v in sockets.items()))
    return NetworkPolicy(FULL, origin)


def _limits(config, profile_limits: dict) -> Limits:
    """[limits], with the profile's own limits table winning key by key."""
    from ..config.quantities import parse_memory
    from .limits import default_temporary_space

    table = dict(config.get("limits") or {})
    table.update(profile_limits)
    fields = {"temporary_space": default_temporary_space()}
    origins = []
    for key, setting in table.items():
        value = setting.value
        if key == "processes":
            value = None if value == "unlimited" else value
            fields["processes_explicit"] = True
        elif key in ("memory", "temporary_space"):
            value = parse_memory(value)
        fields[key] = value
        origins.append((key, f"{setting.key} ({setting.source})"))
    return Limits(origins=tuple(origins), **fields)


def _command_rules(config) -> CommandRules:
    from .rules_file import command_rules

    return command_rules(config)


def build(config, *, env=None) -> Policy:
    env = dict(os.environ if env is None else env)
    cwd = canonical(config.cwd)
    home = canonical(config.home)
    selection = select_profile(config)
    fs_table, net_table, profile_limits = _resolve_profile(selection.name, config)
    limits = _limits(config, profile_limits)
    project_roots = (canonical(config.project_root),)
    tmpdir = env.get("TMPDIR")
    tmpdir = canonical(tmpdir) if tmpdir and os.path.isabs(tmpdir) else None
    expander = Expander(cwd, home, project_roots, tmpdir, env)
    approval = config.value("approval_policy", default="on-request")
    commands = _command_rules(config)
    sources = tuple(config.sources)
    ignored = tuple(config.ignored)

    if selection.name == ":danger-full-access":
        filesystem = FilesystemPolicy([PathRule("/", WRITE, BUILTIN, ":danger-full-access (no sandbox)")])
        return Policy(False, selection.name, selection.origin, cwd, home, project_roots, filesystem,
                      NetworkPolicy(FULL, ":danger-full-access"), _environment_policy(config, ()),
                      commands, approval, config.project_trusted, sources, ignored, (), limits)

    profile_rules, glob_specs = expander.expand(fs_table, TIER_PROFILE)
    builtin_rules = [PathRule(p, WRITE, BUILTIN, f'{p}: private to the run (built-in)', kind="private",
                              tier=TIER_BUILTIN, spelled=p) for p in PRIVATE_PATHS]
    network = _network_policy(net_table, selection)
    if network.mode == FULL:
        builtin_rules += [PathRule(p, READ, BUILTIN, f"{p}: name resolution with the host's network (built-in)",
                                   kind="path", tier=TIER_BUILTIN, spelled=p) for p in RESOLVER_PATHS]
    protection = config.get("protection") or {}
    credentials_setting = protection.get("credentials")
    credentials_on = True if credentials_setting is None else credentials_setting.value
    cred_rules, cred_globs = _credential_rules(expander, credentials_on)
    base_rules = builtin_rules + cred_rules + profile_rules
    provisional = FilesystemPolicy(base_rules)
    # Before the scan: a workspace of / or $HOME would be scanned whole first.
    _refuse_home_as_workspace(project_roots, home, provisional)
    _refuse_credentials_as_workspace(project_roots, provisional)
    names_setting = protection.get("metadata")
    if names_setting is None:
        from .builtin_data import protected_names

        names = protected_names()
    else:
        names = tuple((n.rstrip("/"), "dir" if n.endswith("/") else "file") for n in names_setting.value)
    # Every protected name already anywhere in a writable tree, not only at its
    # top: a submodule's .git file redirected to a gitdir of the sandbox's
    # making would run that gitdir's config on the host's next `git status`,
    # and editors and agents open subfolders as projects (sub/.vscode,
    # sub/.claude). Every writable root, however it became writable, is scanned.
    nested = _nested_protection_specs(_outermost(_writable_before_scan(base_rules, project_roots, provisional)),
                                      names)

    refusals: list[PolicyError] = []
    snapshots: dict = {}
    scanned_directories: dict = {}
    glob_rules, glob_summaries, glob_caps = _scan_globs(glob_specs + cred_globs + nested, provisional,
                                                        cache_dir=os.path.join(state_dir(home), "cache"),
                                                        home=home, snapshots=snapshots,
                                                        identities=scanned_directories, refusals=refusals)
    rules = base_rules + glob_rules
    provisional = FilesystemPolicy(rules)
    _check_symlinks(profile_rules, provisional, refusals)
    _check_hard_links(cred_rules + profile_rules, provisional, home, refusals)

    writable_roots = sorted({r.path for r in rules if r.access == WRITE and r.kind == "path" and r.path != "/"}
                            | {p for p in project_roots if provisional.decide_canonical(p).access == WRITE
                               and not provisional.decide_canonical(p).private})
    nested_repositories = sorted({os.path.dirname(cap.path) for cap in glob_caps
                                  if os.path.basename(cap.path) == ".git"})
    protected = _protected_entries(writable_roots, names, home, env, nested_repositories, refusals)
    caps = [Cap(path, READ, PathRule(path, READ, BUILTIN, label, kind="protected", tier=TIER_PROTECTED,
                                     spelled=path)) for path, _kind, _exists, label in protected]
    caps += glob_caps
    caps += _own_files(home, writable_roots)
    filesystem = FilesystemPolicy(rules, caps, glob_summaries, tuple(protected), snapshots, scanned_directories)

    added = [("RINGFENCE_SANDBOX", "1")]
    if not (tmpdir and filesystem.decide_canonical(tmpdir).access == WRITE
            and not filesystem.decide_canonical(tmpdir).private):
        added.append(("TMPDIR", "/tmp"))
    environment = _environment_policy(config, added)
    builtins = (
        ("private /tmp, /var/tmp, /run, /dev/shm", '":slash_tmp" = "write" (or a rule for the path)'),
        ("credentials layer" + ("" if credentials_on else " (off)"), "[protection] credentials = false"),
        ("protected metadata: " + ", ".join(n for n, _ in names), "[protection] metadata = [...]"),
        ("ringfence state hidden, user config read-only", "none (always on)"),
        ("process cap: " + ", ".join(limits.describe()), '[limits] processes = "unlimited"'),
    )
    return Policy(True, selection.name, selection.origin, cwd, home, project_roots, filesystem, network,
                  environment, commands, approval, config.project_trusted, sources, ignored, builtins, limits,
                  tuple(refusals))
