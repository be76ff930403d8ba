"""Remembering an "always" answer: one `prefix_rule` appended to the user's rules file.

Many ringfence processes may answer at once, so the file is appended to
under an exclusive flock, re-read under the lock, and the rule is skipped
when the file already allows the command. The rule is written with one
`write` on an O_APPEND descriptor, after a newline if the file lacks one.
"""

from __future__ import annotations

import os


def append_allow_rule(path: str, words, *, env: dict | None = None, cwd: str | None = None,
                      home: str | None = None) -> bool:
    """Append `prefix_rule(pattern=words, decision="allow")` to `path`; False
    when a rule in the file already allows `words`."""
    import fcntl

    from ..policy.commands import CommandRules
    from ..policy.rules_file import RulesError, parse_rules, rule_text

    words = tuple(words)
    if not words:
        raise ValueError("an empty command cannot be remembered")
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise RulesError(path, None, f"cannot open to add a rule: {exc.strerror}",
                         hint="the rules file must be a regular file you own") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0) if size else b""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise RulesError(path, None, "not UTF-8; nothing was added",
                             hint="fix the file, then answer again") from None
        existing = parse_rules(text, path, home=home)
        if CommandRules(existing.rules, existing.host_executables).covers(words, env=env, cwd=cwd):
            return False
        line = rule_text(words) + "\n"
        if text and not text.endswith("\n"):
            line = "\n" + line
        encoded = line.encode("utf-8")
        written = os.write(fd, encoded)
        while written < len(encoded):
            written += os.write(fd, encoded[written:])
        os.fsync(fd)
        return True
    finally:
        os.close(fd)  # also releases the lock
