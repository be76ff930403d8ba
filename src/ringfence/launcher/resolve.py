"""Find the program of a command as the sandbox will see it, and refuse early,
with 127 or 126 (never confused with the command's own status), when it
cannot run there: not found, not executable, hidden by a rule, or lying in
temporary space that is private to each run."""

from __future__ import annotations

import os

from ..errors import CommandNotExecutable, CommandNotFound
from ..policy.filesystem import NONE


def _private_note(path: str) -> str:
    return (f"{path} lies in {'/'.join(path.split('/')[:2]) or '/'}, which is private to each run (a fresh, "
            "empty tmpfs): the program there is not visible inside")


def _interpreter(path: str) -> str | None:
    """The absolute interpreter a script's `#!` line names, if any."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return os.fsdecode(words[0]) if words and words[0].startswith(b"/") else None


def resolve_command(command: list[str], env: dict, cwd: str, filesystem) -> str:
    """Find the program as the sandbox would, and refuse early with 127/126
    (never confused with the command's own status) when it cannot run."""
    name = command[0]
    if "/" in name:
        candidates = [name if os.path.isabs(name) else os.path.join(cwd, name)]
    else:
        candidates = [os.path.join(d or ".", name) if os.path.isabs(d or ".") else os.path.join(cwd, d, name)
                      for d in env.get("PATH", os.defpath).split(os.pathsep)]
    found_denied = found_private = None
    for candidate in candidates:
        if not os.path.exists(candidate) or os.path.isdir(candidate):
            continue
        decision = filesystem.access(candidate)
        if decision.private:
            found_private = found_private or candidate
            continue
        if decision.access == NONE:
            found_denied = found_denied or (candidate, decision)
            continue
        if not os.access(candidate, os.X_OK):
            raise CommandNotExecutable(f"{candidate}: permission denied (not executable)",
                                       hint=f"chmod +x {candidate}")
        interpreter = _interpreter(candidate)
        if interpreter and os.path.exists(interpreter) and filesystem.access(interpreter).private:
            raise CommandNotFound(f"{candidate} is run by {interpreter}, and {_private_note(interpreter)}",
                                  hint='share the host\'s /tmp with ":slash_tmp" = "write" (or a rule for the '
                                       'folder), or make the environment somewhere other than /tmp')
        return candidate
    if found_private:
        raise CommandNotFound(f"{name}: found at {found_private} on this machine, but {_private_note(found_private)}",
                              hint='share the host\'s /tmp with ":slash_tmp" = "write" (or a rule for the folder), '
                                   "or install the program somewhere other than /tmp")
    if found_denied:
        candidate, decision = found_denied
        rule = decision.rule.describe() if decision.rule else decision.note
        raise CommandNotExecutable(f"{candidate} is not visible in the sandbox: {rule}",
                                   hint="allow reading it with a rule, or run another program")
    raise CommandNotFound(f"{name}: command not found (searched {'the given path' if '/' in name else 'PATH'} "
                          "as the sandbox sees it)")
