"""Which environment variables reach the command.

Order, as in Codex: inherit (all, core or none), then the default excludes
unless `ignore_default_excludes`, then `exclude`, then `set`, then
`include_only`. Unlike Codex, the default excludes are on by default, and
they look at values as well as names: a secret under an innocent name
(`DATABASE_URL=postgres://u:pw@db/x`, a GitHub token in `MY_VAR`) is dropped
by its shape. A few names the patterns catch are the desktop's or a tool's
switches, not secrets (`DBUS_SESSION_BUS_ADDRESS`, `TOKENIZERS_PARALLELISM`):
those are kept, and their values still looked at.
"""

from __future__ import annotations

from .._record import Record

CORE_NAMES = ("HOME", "LANG", "LOGNAME", "PATH", "SHELL", "TEMP", "TMP", "TMPDIR", "USER")
CORE_PREFIXES = ("LC_",)
# Codex's three; passwords; and the other names credentials go by in CI
# systems and tools (GH_PAT, MYSQL_PWD, SMTP_PASS, PGPASS, CI_JOB_JWT,
# AWS_CREDENTIALS, NPM_CONFIG__AUTH, DOCKER_AUTH_CONFIG, SENTRY_DSN, session
# cookies). Names only: `*_PWD` leaves PWD and OLDPWD, `*_PASS` leaves
# GIT_ASKPASS and PGPASSFILE (paths), `*_AUTH` leaves GIT_AUTHOR_NAME and SSH_AUTH_SOCK.
DEFAULT_EXCLUDES = ("*KEY*", "*SECRET*", "*TOKEN*", "*PASSWORD*", "*PASSWD*", "*PASSPHRASE*", "*CREDENTIAL*",
                    "*JWT*", "*COOKIE*", "*SESSION*", "*DSN*", "*_PAT", "*_PWD", "*_PW", "*_PASS", "PGPASS",
                    "*_AUTH", "*_AUTH_CONFIG")
# Names the patterns catch that hold no secret and that programs read: the
# desktop session's plumbing (*SESSION*), keyring's choice of backend (*KEY*),
# a tokenizer switch (*TOKEN*). Spelled exactly, case and all, as the
# programs that set them spell them. Their values are still looked at.
HARMLESS_NAMES = frozenset({
    "PYTHON_KEYRING_BACKEND", "TOKENIZERS_PARALLELISM", "DBUS_SESSION_BUS_ADDRESS", "DESKTOP_SESSION",
    "SESSION_MANAGER", "KDE_SESSION_VERSION", "KDE_SESSION_UID", "GNOME_DESKTOP_SESSION_ID",
})
# XDG_SESSION_ID, _TYPE, _CLASS, _DESKTOP; the rest of the name is judged
# alone, so that ConsoleKit's XDG_SESSION_COOKIE still goes.
HARMLESS_PREFIXES = ("XDG_SESSION_",)
# Prefixes of tokens whose issuers made them recognisable, with the least
# length a real one has (so that "sk-" alone, or a locale, is no match).
# The first that matches names the token: sk-ant- before sk-.
TOKEN_PREFIXES = (
    ("ghp_", 36, "a GitHub token"), ("gho_", 36, "a GitHub token"), ("ghu_", 36, "a GitHub token"),
    ("ghs_", 36, "a GitHub token"), ("ghr_", 36, "a GitHub token"), ("github_pat_", 40, "a GitHub token"),
    ("glpat-", 20, "a GitLab token"), ("glrt-", 20, "a GitLab token"), ("gldt-", 20, "a GitLab token"),
    ("xoxb-", 20, "a Slack token"), ("xoxp-", 20, "a Slack token"), ("xoxa-", 20, "a Slack token"),
    ("xoxr-", 20, "a Slack token"), ("xoxs-", 20, "a Slack token"), ("sk-ant-", 40, "an Anthropic API key"),
    ("sk-", 20, "an API secret key (sk-)"), ("sk_live_", 20, "a Stripe key"), ("rk_live_", 20, "a Stripe key"),
    ("npm_", 36, "an npm token"), ("pypi-", 50, "a PyPI token"), ("hf_", 30, "a Hugging Face token"),
    ("AIza", 35, "a Google API key"), ("ya29.", 30, "a Google OAuth token"),
)
# Webhook URLs carry their own secret: whoever holds one can post as its owner.
WEBHOOK_URLS = (
    ("hooks.slack.com/services/", "a Slack webhook URL"), ("hooks.slack.com/workflows/", "a Slack webhook URL"),
    ("discord.com/api/webhooks/", "a Discord webhook URL"), ("discordapp.com/api/webhooks/", "a Discord webhook URL"),
    (".webhook.office.com/webhookb2/", "a Microsoft Teams webhook URL"),
    ("outlook.office.com/webhook/", "a Microsoft Teams webhook URL"),
    ("chat.googleapis.com/v1/spaces/", "a Google Chat webhook URL"),
    ("hooks.zapier.com/hooks/catch/", "a Zapier webhook URL"),
)
# Keys of ADO.NET, ODBC and Azure connection strings whose value is the
# secret (AccountName and SharedAccessKeyName are not), lower-cased.
CONNECTION_STRING_SECRETS = frozenset({"password", "pwd", "accountkey", "sharedaccesskey",
                                       "sharedaccesssignature"})
_CONNECTION_STRING_HINTS = ("pw", "pass", "key", "signature")  # one is in each of those keys
# Go's MySQL driver writes user:password@protocol(address)/dbname.
DSN_PROTOCOLS = ("@tcp(", "@tcp6(", "@unix(")
_TOKEN_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_DIGITS = frozenset("0123456789")
_UPPER_ALNUM = _UPPER | _DIGITS
_AUTHORITY_ENDS = "/?# \t\n"
_TOKEN_STARTS = tuple(prefix for prefix, _, _ in TOKEN_PREFIXES) + ("AKIA", "ASIA", "eyJ")


class _Separators(dict):
    """A str.translate table that turns every character but the token
    characters into a space, non-ASCII ones included."""

    def __missing__(self, code):
        return " "


_SEPARATORS = _Separators({code: code if chr(code) in _TOKEN_CHARACTERS else " " for code in range(128)})


def secret_shape(value: str) -> str | None:
    """What kind of credential `value` looks like, or None. Written with string
    methods rather than regular expressions: it runs on every variable of
    every run, and the regex engine costs more to import than it saves."""
    return (_url_with_password(value) or _connection_string_secret(value) or _dsn_with_password(value)
            or _webhook_url(value) or _token_shape(value))


def _url_with_password(value: str) -> str | None:
    """A URL with user:password@ anywhere in the value: pip and others take
    several URLs in one variable, and the first is often the public one."""
    scheme = value.find("://")
    while scheme >= 0:
        if scheme > 0:
            rest = value[scheme + 3:]
            end = min((i for i in map(rest.find, _AUTHORITY_ENDS) if i >= 0), default=len(rest))
            userinfo, at, _ = rest[:end].rpartition("@")
            if at and ":" in userinfo:
                return "a URL with a password"
        scheme = value.find("://", scheme + 3)
    return None


def _connection_string_secret(value: str) -> str | None:
    """`Server=db;User Id=app;Password=...`: keys are case-insensitive and may
    have spaces around them; an empty password gives nothing away."""
    if "=" not in value:
        return None
    lower = value.lower()
    if not any(map(lower.__contains__, _CONNECTION_STRING_HINTS)):
        return None
    for part in lower.split(";"):
        key, equals, secret = part.partition("=")
        if equals and secret.strip() and key.strip() in CONNECTION_STRING_SECRETS:
            return "a connection string with a secret"
    return None


def _dsn_with_password(value: str) -> str | None:
    for protocol in DSN_PROTOCOLS:
        at = value.find(protocol)
        if at > 0:
            words = value[:at].split()
            _, colon, password = (words[-1] if words else "").partition(":")
            if colon and password:
                return "a database address with a password"
    return None


def _webhook_url(value: str) -> str | None:
    if "://" not in value:
        return None
    lower = value.lower()
    for marker, what in WEBHOOK_URLS:
        found = lower.find(marker)
        if found >= 0:
            rest = lower[found + len(marker):]
            path = rest.split(None, 1)[0] if rest[:1].strip() else ""
            if len(path) >= 8:  # the bare prefix is documentation; the secret is what follows it
                return what
    return None


def _token_shape(value: str) -> str | None:
    if len(value) < 20:
        return None  # shorter than any token recognised here
    text = value.strip()
    if "-----BEGIN " in text and "PRIVATE KEY" in text:
        return "a private key"
    if not any(map(text.__contains__, _TOKEN_STARTS)):
        return None  # most values: a few scans in C, no cutting into tokens
    # Whole tokens only: `task-...` holds no `sk-` token.
    for token in text.translate(_SEPARATORS).split():
        if token.startswith(_TOKEN_STARTS):
            what = _token_kind(token, alone=token == text)
            if what:
                return what
    return None


def _token_kind(token: str, alone: bool) -> str | None:
    for prefix, length, what in TOKEN_PREFIXES:
        if token.startswith(prefix) and len(token) >= length and (
                alone or _looks_issued(token[len(prefix):], prefix)):
            return what
    if len(token) == 20 and token[:4] in ("AKIA", "ASIA") and set(token) <= _UPPER_ALNUM:
        return "an AWS access key id"
    if token.startswith("eyJ") and token.count(".") == 2 and len(token) > 40:
        return "a JSON web token"
    return None


def _looks_issued(body: str, prefix: str) -> bool:
    """Whether a token inside a longer value is random enough to be an issued
    one rather than a name that starts the same way (a folder "sk-learn-docs",
    a host "npm_cache.internal"). Issued tokens mix two of upper case, lower
    case and digits, and hold no dot (Google's ya29. tokens aside). A value
    that is the token alone needs no such proof."""
    if "." in body and not prefix.endswith("."):
        return False
    characters = set(body)
    return sum(bool(characters & kind) for kind in (_UPPER, _LOWER, _DIGITS)) >= 2


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
_EXCLUDE_EXACT = {p: p for p in DEFAULT_EXCLUDES if "*" not in p}


def _default_exclude(name: str) -> str | None:
    if name in HARMLESS_NAMES:
        return None
    for prefix in HARMLESS_PREFIXES:
        if name.startswith(prefix):
            return _default_exclude(name[len(prefix):])
    upper = name.upper()
    if upper in _EXCLUDE_EXACT:
        return _EXCLUDE_EXACT[upper]
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
