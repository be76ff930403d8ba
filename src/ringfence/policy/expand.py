"""Filesystem keys (tokens, `~`, scoped tables, globs) turned into rules."""

from __future__ import annotations

import os

from ..config.vocabulary import MINIMAL, PROJECT_ROOTS, ROOT, SLASH_TMP, TMPDIR, WORKSPACE_ROOTS
from ..errors import ConfigError
from ..paths import canonical, expand_home
from .filesystem import WRITE, GlobSpec, PathRule
from .globs import is_glob, static_prefix


MINIMAL_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


class Expander:
    """Turns filesystem keys (tokens, ~, scoped tables, globs) into rules."""

    def __init__(self, cwd, home, project_roots, tmpdir, env=None):
        self.cwd = cwd
        self.home = home
        self.project_roots = project_roots
        self.tmpdir = tmpdir
        self.env = env or {}

    def bases(self, key: str) -> list[str]:
        if key == ROOT:
            return ["/"]
        if key == MINIMAL:
            return [p for p in MINIMAL_PATHS if os.path.lexists(p)]
        if key in (PROJECT_ROOTS, WORKSPACE_ROOTS):
            return list(self.project_roots)
        if key == TMPDIR:
            return [self.tmpdir] if self.tmpdir else []
        if key == SLASH_TMP:
            return ["/tmp"]
        return [os.path.normpath(expand_home(key, self.home))]

    def expand(self, fs_table: dict, tier: int):
        rules: list[PathRule] = []
        globs: list[GlobSpec] = []
        default_depth = fs_table.get("glob_scan_max_depth")
        max_depth = default_depth.value if default_depth is not None else None
        for key, setting in fs_table.items():
            if key == "glob_scan_max_depth":
                continue
            token = key if key.startswith(":") else None
            for base in self.bases(key):
                if isinstance(setting.value, dict):
                    for rel, access_setting in setting.value.items():
                        target = base if rel == "." else os.path.join(base, rel)
                        label = f'{setting.key}."{rel}" = "{access_setting.value}"'
                        self._add(target, access_setting, label, tier, rules, globs, max_depth, token)
                else:
                    label = f'{setting.key} = "{setting.value}"'
                    self._add(base, setting, label, tier, rules, globs, max_depth, token)
        return rules, globs

    def _add(self, target, setting, label, tier, rules, globs, max_depth, token):
        if is_glob(target):
            root = static_prefix(target)
            if root == "/":
                raise ConfigError(setting.source, setting.key,
                                  f'the glob "{target}" is rooted at "/": it would scan the whole system',
                                  hint="root the glob in a directory, such as :project_roots or ~/")
            if setting.value == WRITE:
                # Writable roots are where protections are placed and new
                # repositories looked for after the run; a root that only a
                # glob match names would get neither.
                raise ConfigError(setting.source, setting.key,
                                  f'the glob "{target}" grants write: globs may only deny ("none") or narrow to '
                                  '"read"',
                                  hint="name each folder to write as a path, or grant write to the folder "
                                       "above them and make the rest read-only")
            pattern = target[len(root):].lstrip("/")
            globs.append(GlobSpec(root=canonical(root), pattern=pattern, access=setting.value, origin=setting.source,
                                  label=label, tier=tier, max_depth=max_depth))
        else:
            rules.append(PathRule(canonical(target), setting.value, setting.source, label, token=token,
                                  kind="path", tier=tier, spelled=target))
