"""Denied by the sandbox, or an ordinary failure?

A pure function (apart from reading which ports the host listens on) over
what a failed run left behind: the policy, the argv, what the command
printed and the run's events. It attributes to the sandbox only what it
can tie to a rule:

- a path named next to an error that the policy does deny (a write where
  the policy gives read, a read where it gives none, a file hidden by a
  private mount), in the output or on the command line itself;
- a network error while the network is off, and a refused connection to a
  port the host listens on (the sandbox's loopback is its own);
- a system call the sandbox refuses;
- a connection the egress proxy refused (events whose type starts with
  `net` or `proxy.` and that say denied or refused).

Each finding names the rule and how to change it, so a person or an agent
sees the boundary, not just "Read-only file system". Anything else is an
ordinary failure and is not reported.
"""

from __future__ import annotations

import os
import re

from .._record import Record
from ..printable import printable

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` loads `re`: checkers only
    from typing import Literal

    DenialKind = Literal["write", "read", "private", "network", "syscall"]

_WRITE_CLUES = ("Read-only file system", "EROFS")
_ACCESS_CLUES = ("Permission denied", "EACCES", "Operation not permitted", "EPERM")
_MISSING_CLUES = ("No such file or directory", "Directory nonexistent", "ENOENT")
_NETWORK_CLUES = ("Network is unreachable", "ENETUNREACH", "Could not resolve host",
                  "Temporary failure in name resolution", "Name or service not known",
                  "No address associated with hostname", "getaddrinfo failed", "Could not resolve proxy")
_REFUSED_CLUES = ("Connection refused", "ECONNREFUSED", "Errno 111", "Couldn't connect to server")
_SYSCALL_CLUES = ("Operation not permitted", "EPERM", "Function not implemented", "ENOSYS")
_SYSCALL_WORDS = ("unshare", "mount", "chroot", "ptrace", "bpf", "perf_event_open", "keyctl", "add_key",
                  "io_uring", "userfaultfd", "kexec", "init_module", "setns", "pivot_root", "process_vm")
_REFUSAL_WORDS = ("denied", "deny", "refused", "blocked", "forbidden")
_SEPARATORS = " \t'\"`‘’“”:,;()[]{}<>="
# A loopback address followed closely by a port: "127.0.0.1:8080", "('127.0.0.1', 8080)", "localhost port 80".
_LOOPBACK_PORT = re.compile(r"(?:\b127(?:\.\d{1,3}){3}|\blocalhost|::1|\b0\.0\.0\.0)\]?(?:[:\s,'\"]|port){1,6}"
                            r"(\d{1,5})\b")
_NETWORK_FIX = ("give the profile network access ([sandbox_workspace_write] network_access = true, or "
                "[permissions.NAME.network] enabled = true)")


class Denial(Record):
    """One thing the sandbox refused: `kind`, `target` (a path, a host, a
    system call), the `rule` and its `origin`, the `evidence` (the line or
    event it was read from), `message`, ready to show, and `fix`, how to
    allow it (None when nothing in the configuration can)."""

    __slots__ = ("kind", "target", "rule", "origin", "evidence", "message", "fix")
    _defaults = {"fix": None}
    kind: DenialKind
    target: str
    rule: str
    origin: str
    evidence: str
    message: str
    fix: str | None


class DenialReport(Record):
    __slots__ = ("denials",)
    denials: tuple[Denial, ...]

    @property
    def sandbox_caused(self) -> bool:
        return bool(self.denials)

    def lines(self) -> list[str]:
        # Targets come from the command's stderr and the proxy's events.
        return [printable(denial.message) for denial in self.denials]


def denial_report(policy, argv, stderr: str, events=(), *, cwd: str | None = None) -> DenialReport:
    """What of a failure of `argv` can be attributed to the sandbox under
    `policy`, from `stderr` (what the command printed; may be empty when
    its output was not seen) and the run's `events`."""
    cwd = cwd or policy.cwd
    found: dict = {}

    def add(denial):
        found.setdefault((denial.kind, denial.target), denial)

    if policy.sandboxed:
        listening = _Listening()
        for line in (stderr or "").splitlines():
            for denial in _from_line(policy, line.strip(), cwd, argv, listening):
                add(denial)
        for denial in _named_in_command(policy, argv, cwd):
            add(denial)
    for event in events or ():
        denial = _from_event(policy, event)
        if denial is not None:
            add(denial)
    return DenialReport(tuple(found.values()))


def _from_event(policy, event):
    if not isinstance(event, dict):
        return None
    kind = str(event.get("type") or "")
    if not (kind.startswith("net") or kind.startswith("proxy.")):
        return None
    said = " ".join(str(event.get(key) or "") for key in ("decision", "verdict", "action")).lower()
    if not any(word in kind.rsplit(".", 1)[-1] or word in said.split() for word in _REFUSAL_WORDS):
        return None
    host = event.get("host") or event.get("target") or "?"
    port = event.get("port")
    target = f"{host}:{port}" if port else str(host)
    rule = event.get("rule") or policy.network.origin
    return Denial("network", target, rule, event.get("origin") or "egress proxy", kind,
                  f"denied by the sandbox: connection to {target}, rule `{rule}`",
                  "allow the host in the profile's network domains")


def _from_line(policy, line: str, cwd: str, argv, listening):
    write_clue = any(clue in line for clue in _WRITE_CLUES)
    access_clue = any(clue in line for clue in _ACCESS_CLUES)
    missing_clue = any(clue in line for clue in _MISSING_CLUES)
    if write_clue or access_clue or missing_clue:
        paths = list(_paths_in(line, cwd))
        for path in paths:
            denial = _path_denial(policy, path, line, write_clue, missing_clue and not (write_clue or access_clue))
            if denial is not None:
                yield denial
        if not paths and any(clue in line for clue in _SYSCALL_CLUES):
            yield from _syscall_denial(line)
    elif any(clue in line for clue in _SYSCALL_CLUES):
        yield from _syscall_denial(line)
    if policy.network.mode != "off":
        return
    rule = policy.network.origin
    if any(clue in line for clue in _NETWORK_CLUES):
        yield Denial("network", "network", rule, "policy", line,
                     f"denied by the sandbox: network access (network is off), rule `{rule}`", _NETWORK_FIX)
    elif any(clue in line for clue in _REFUSED_CLUES):
        # Refused by the sandbox's own loopback; the sandbox's doing only when
        # the host has a server on that port (the command meant the host's).
        for port in _ports(line, argv):
            if listening.has(port):
                yield Denial("network", f"127.0.0.1:{port}", rule, "policy", line,
                             f"denied by the sandbox: connection to 127.0.0.1:{port} (network is off: the sandbox's "
                             f"loopback is its own, and the server on the host's port {port} is out of reach), "
                             f"rule `{rule}`", _NETWORK_FIX)
                return


def _path_denial(policy, path: str, line: str, write_clue: bool, missing: bool):
    try:
        decision = policy.filesystem.access(path)
    except (OSError, ValueError):
        return None
    rule = decision.rule
    label = rule.label if rule is not None else (decision.note or "no rule")
    origin = rule.origin if rule is not None else "policy"
    if missing:  # missing inside, present on the host: hidden by a private mount
        if decision.private and os.path.lexists(path):
            return Denial("private", path, label, origin, line,
                          f"denied by the sandbox: {path} is private to the run (the host's is not visible "
                          f"inside), rule `{label}`",
                          '":slash_tmp" = "write" (or a rule for the path) shares the host\'s')
        return None
    if decision.access == "write":
        return None
    if write_clue:  # a read-only mount answers a write with EROFS
        return Denial("write", path, label, origin, line, f"denied by the sandbox: write to {path}, rule `{label}`",
                      _fix(policy, path, rule, "write"))
    if decision.access == "none":  # a masked path answers with EACCES
        return _read_denial(policy, path, rule, label, origin, line)
    return None  # EACCES on a path the policy lets through is the host's own permission


def _read_denial(policy, path, rule, label, origin, evidence):
    return Denial("read", path, label, origin, evidence, f"denied by the sandbox: read of {path}, rule `{label}`",
                  _fix(policy, path, rule, "read"))


def _fix(policy, path: str, rule, access: str) -> str | None:
    kind = rule.kind if rule is not None else None
    if kind == "protected":
        return ("protected metadata stays read-only inside the sandbox (`ringfence status` lists each protection "
                "and its opt-out)")
    home = policy.home.rstrip("/") + "/"
    key = "~/" + path[len(home):] if path.startswith(home) else path
    fix = f'add "{key}" = "{access}" to the profile\'s filesystem table'
    if kind == "credentials":
        fix += ", or turn the layer off with [protection] credentials = false"
    return fix


def _named_in_command(policy, argv, cwd: str):
    """Files the command line names that the policy denies entirely: the
    evidence when the output was not seen, and often when it was."""
    import shlex

    words: list[str] = []
    for arg in argv:
        try:
            words += shlex.split(arg) if " " in arg else [arg]
        except ValueError:
            words += arg.split()
    seen = set()
    for word in words:
        for candidate in (word, word.split("=", 1)[-1]):
            if "/" not in candidate and not candidate.startswith("."):
                continue
            path = os.path.normpath(os.path.join(cwd, os.path.expanduser(candidate)))
            if path in seen or not os.path.lexists(path):
                continue
            seen.add(path)
            try:
                decision = policy.filesystem.access(path)
            except (OSError, ValueError):
                continue  # a path ringfence itself may not resolve (/proc/1/...)
            if decision.access != "none" or decision.private:
                continue
            rule = decision.rule
            yield _read_denial(policy, path, rule, rule.label if rule else (decision.note or "no rule"),
                               rule.origin if rule else "policy", "named in the command")


def _syscall_denial(line: str):
    lowered = line.lower()
    for word in _SYSCALL_WORDS:
        if word in lowered:
            yield Denial("syscall", word, "seccomp and namespaces (built-in)", "built-in", line,
                         f"denied by the sandbox: {word} is refused inside it, rule `seccomp and namespaces "
                         "(built-in)`")
            return


def _paths_in(line: str, cwd: str):
    """Words of `line` that look like paths, made absolute against `cwd`;
    not the program that prefixes its own messages (`/bin/sh: 1: ...`)."""
    word: list[str] = []
    first, colon, _ = line.partition(": ")
    seen = {first} if colon and " " not in first else set()
    for char in line + " ":
        if char in _SEPARATORS:
            if word:
                text = "".join(word).rstrip(".")
                word = []
                if ("/" in text or text.startswith(".")) and "://" not in text and text not in seen:
                    seen.add(text)
                    yield os.path.normpath(os.path.join(cwd, os.path.expanduser(text)))
        else:
            word.append(char)


def _ports(line: str, argv):
    """Loopback ports named in the failing line, then on the command line."""
    found = []
    for text in [line, *argv]:
        for match in _LOOPBACK_PORT.finditer(text):
            port = int(match.group(1))
            if 0 < port < 65536 and port not in found:
                found.append(port)
    return found


class _Listening:
    """The TCP ports the host listens on (ringfence's own network namespace
    is the host's), read once from /proc/net/tcp and tcp6: reading them
    sends nothing to the servers."""

    def __init__(self):
        self.ports = None

    def has(self, port: int) -> bool:
        if self.ports is None:
            self.ports = set()
            for name in ("/proc/net/tcp", "/proc/net/tcp6"):
                try:
                    with open(name) as table:
                        next(table, None)
                        for row in table:
                            fields = row.split()
                            if len(fields) > 3 and fields[3] == "0A":  # LISTEN
                                self.ports.add(int(fields[1].rsplit(":", 1)[1], 16))
                except (OSError, ValueError, IndexError):
                    continue
        return port in self.ports
