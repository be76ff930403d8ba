"""Which environment variables reach the command.

Order, as in Codex: inherit (all, core or none), then the default excludes
(`*KEY*`, `*SECRET*`, `*TOKEN*`, and ringfence's `*PASSWORD*`, `*PASSWD*`,
case-insensitive) unless `ignore_default_excludes`, then `exclude`, then
`set`, then `include_only`. Unlike Codex, the default excludes are on by default.
"""

from __future__ import annotations

from .._record import Record

CORE_NAMES = ("HOME", "LANG", "LOGNAME", "PATH", "SHELL", "TEMP", "TMP", "TMPDIR", "USER")
CORE_PREFIXES = ("LC_",)
# Codex's three, and passwords, which are as common in environments.
DEFAULT_EXCLUDES = ("*KEY*", "*SECRET*", "*TOKEN*", "*PASSWORD*", "*PASSWD*")


def wildcard_match(pattern: str, name: str) -> bool:
    """Case-insensitive `*`/`?` match; `*X*` patterns skip the regex engine."""
    pattern_u, name_u = pattern.upper(), name.upper()
    inner = pattern_u[1:-1]
    if len(pattern_u) > 2 and pattern_u[0] == "*" and pattern_u[-1] == "*" and not any(
            c in inner for c in "*?["):
        return inner in name_u
    if not any(c in pattern_u for c in "*?["):
        return pattern_u == name_u
    import fnmatch

    return fnmatch.fnmatchcase(name_u, pattern_u)


class EnvironmentResult(Record):
    """The environment for the command and what was left out (names only)."""

    __slots__ = ("env", "dropped")


class EnvironmentPolicy(Record):
    __slots__ = ("inherit", "ignore_default_excludes", "exclude", "set", "include_only", "added")
    _defaults = {"inherit": "all", "ignore_default_excludes": False, "exclude": (), "set": (),
                 "include_only": (), "added": ()}

    def apply(self, source_env) -> EnvironmentResult:
        dropped: list[tuple[str, str]] = []
        if self.inherit == "all":
            env = dict(source_env)
        elif self.inherit == "core":
            env = {}
            for name, value in source_env.items():
                if name in CORE_NAMES or name.startswith(CORE_PREFIXES):
                    env[name] = value
                else:
                    dropped.append((name, "inherit = core"))
        else:
            env = {}
            dropped.extend((name, "inherit = none") for name in source_env)
        if not self.ignore_default_excludes:
            for name in list(env):
                upper = name.upper()
                for pattern in DEFAULT_EXCLUDES:
                    if pattern[1:-1] in upper:  # each default is *WORD*
                        del env[name]
                        dropped.append((name, f"default exclude {pattern}"))
                        break
        for pattern in self.exclude:
            for name in list(env):
                if wildcard_match(pattern, name):
                    del env[name]
                    dropped.append((name, f"exclude {pattern}"))
        for name, value in self.set:
            env[name] = value
        if self.include_only:
            for name in list(env):
                if not any(wildcard_match(pattern, name) for pattern in self.include_only):
                    del env[name]
                    dropped.append((name, "not in include_only"))
        for name, value in self.added:
            env[name] = value
        return EnvironmentResult(env, tuple(sorted(dropped)))
