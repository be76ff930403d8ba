"""Which environment variables reach the command.

Order, as in Codex: inherit (all, core or none), then the default excludes
unless `ignore_default_excludes`, then `exclude`, then `set`, then
`include_only`. Unlike Codex, the default excludes are on by default, and
they look at values as well as names: a secret under an innocent name
(`DATABASE_URL=postgres://u:pw@db/x`, a GitHub token in `MY_VAR`) is dropped
by its shape.
"""

from __future__ import annotations

from .._record import Record

CORE_NAMES = ("HOME", "LANG", "LOGNAME", "PATH", "SHELL", "TEMP", "TMP", "TMPDIR", "USER")
CORE_PREFIXES = ("LC_",)
# Codex's three; passwords; and the other names credentials go by in CI
# systems and tools (GH_PAT, MYSQL_PWD, CI_JOB_JWT, AWS_CREDENTIALS,
# NPM_CONFIG__AUTH, DOCKER_AUTH_CONFIG, SENTRY_DSN, session cookies). Names
# only: `*_PWD` leaves PWD and OLDPWD, `*_AUTH` leaves GIT_AUTHOR_NAME and SSH_AUTH_SOCK.
DEFAULT_EXCLUDES = ("*KEY*", "*SECRET*", "*TOKEN*", "*PASSWORD*", "*PASSWD*", "*PASSPHRASE*", "*CREDENTIAL*",
                    "*JWT*", "*COOKIE*", "*SESSION*", "*DSN*", "*_PAT", "*_PWD", "*_PW", "*_AUTH", "*_AUTH_CONFIG")
# Prefixes of tokens whose issuers made them recognisable, with the least
# length a real one has (so that "sk-" alone, or a locale, is no match).
TOKEN_PREFIXES = (
    ("ghp_", 36, "a GitHub token"), ("gho_", 36, "a GitHub token"), ("ghu_", 36, "a GitHub token"),
    ("ghs_", 36, "a GitHub token"), ("ghr_", 36, "a GitHub token"), ("github_pat_", 40, "a GitHub token"),
    ("glpat-", 20, "a GitLab token"), ("glrt-", 20, "a GitLab token"), ("gldt-", 20, "a GitLab token"),
    ("xoxb-", 20, "a Slack token"), ("xoxp-", 20, "a Slack token"), ("xoxa-", 20, "a Slack token"),
    ("xoxr-", 20, "a Slack token"), ("xoxs-", 20, "a Slack token"),
    ("sk-", 20, "an API secret key (sk-)"), ("sk_live_", 20, "a Stripe key"), ("rk_live_", 20, "a Stripe key"),
    ("npm_", 36, "an npm token"), ("pypi-", 50, "a PyPI token"), ("hf_", 30, "a Hugging Face token"),
    ("AIza", 35, "a Google API key"), ("ya29.", 30, "a Google OAuth token"),
)
_TOKEN_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")
_UPPER_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def secret_shape(value: str) -> str | None:
    """What kind of credential `value` looks like, or None. Written with string
    methods rather than regular expressions: it runs on every variable of
    every run, and the regex engine costs more to import than it saves."""
    scheme = value.find("://")
    if scheme > 0:
        authority = value[scheme + 3:].split("/", 1)[0]
        if "@" in authority and ":" in authority.rpartition("@")[0]:
            return "a URL with a password"
    if len(value) < 20:
        return None  # shorter than any token recognised here
    text = value.strip()
    if "-----BEGIN " in text and "PRIVATE KEY" in text:
        return "a private key"
    for prefix, length, what in TOKEN_PREFIXES:
        if text.startswith(prefix) and len(text) >= length and set(text) <= _TOKEN_CHARACTERS:
            return what
    if len(text) == 20 and text[:4] in ("AKIA", "ASIA") and set(text) <= _UPPER_ALNUM:
        return "an AWS access key id"
    if text.startswith("eyJ") and text.count(".") == 2 and len(text) > 40 and set(text) <= _TOKEN_CHARACTERS:
        return "a JSON web token"
    return None


def wildcard_match(pattern: str, name: str) -> bool:
    """Case-insensitive `*`/`?` match; `*X*`, `*X` and `X*` skip the regex engine."""
    pattern_u, name_u = pattern.upper(), name.upper()
    inner = pattern_u[1:-1]
    if len(pattern_u) > 2 and pattern_u[0] == "*" and pattern_u[-1] == "*" and not any(
            c in inner for c in "*?["):
        return inner in name_u
    if not any(c in pattern_u for c in "*?["):
        return pattern_u == name_u
    if pattern_u[0] == "*" and not any(c in pattern_u[1:] for c in "*?["):
        return name_u.endswith(pattern_u[1:])
    if pattern_u[-1] == "*" and not any(c in pattern_u[:-1] for c in "*?["):
        return name_u.startswith(pattern_u[:-1])
    import fnmatch

    return fnmatch.fnmatchcase(name_u, pattern_u)


# The default excludes, sorted by shape once: every variable of every run
# meets them, and a wildcard match per pair costs more than the rest of this.
_EXCLUDE_INSIDE = tuple((p[1:-1], p) for p in DEFAULT_EXCLUDES if p.startswith("*") and p.endswith("*"))
_EXCLUDE_ENDING = tuple((p[1:], p) for p in DEFAULT_EXCLUDES if p.startswith("*") and not p.endswith("*"))


def _default_exclude(name: str) -> str | None:
    upper = name.upper()
    for word, pattern in _EXCLUDE_INSIDE:
        if word in upper:
            return pattern
    for ending, pattern in _EXCLUDE_ENDING:
        if upper.endswith(ending):
            return pattern
    return None


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
                pattern = _default_exclude(name)
                if pattern:
                    del env[name]
                    dropped.append((name, f"default exclude {pattern}"))
                else:
                    shape = secret_shape(env[name])
                    if shape:
                        del env[name]
                        dropped.append((name, f"default exclude: the value looks like {shape}"))
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
