"""Denied by the sandbox, or an ordinary failure?

A pure function over what a failed run left behind: the policy, the argv,
the captured stderr and the run's events. It attributes to the sandbox only
what it can tie to a rule: a path named next to an error that the policy
does deny (a write where the policy gives read, a read where it gives
none), a network error while the network is off, a system call the sandbox
refuses, a connection the egress proxy refused. Each finding names the
rule, so a person or an agent sees the boundary, not just "Read-only file
system". Anything else is an ordinary failure and is not reported.
"""

from __future__ import annotations

import os
from typing import Literal

from .._record import Record
from ..printable import printable

DenialKind = Literal["write", "read", "private", "network", "syscall"]

_WRITE_CLUES = ("Read-only file system", "EROFS")
_ACCESS_CLUES = ("Permission denied", "EACCES", "Operation not permitted", "EPERM")
_MISSING_CLUES = ("No such file or directory", "Directory nonexistent", "ENOENT")
_NETWORK_CLUES = ("Network is unreachable", "ENETUNREACH", "Could not resolve host",
                  "Temporary failure in name resolution", "Name or service not known",
                  "No address associated with hostname", "getaddrinfo failed", "Could not resolve proxy")
_SYSCALL_CLUES = ("Operation not permitted", "EPERM", "Function not implemented", "ENOSYS")
_SYSCALL_WORDS = ("unshare", "mount", "chroot", "ptrace", "bpf", "perf_event_open", "keyctl", "add_key",
                  "io_uring", "userfaultfd", "kexec", "init_module", "setns", "pivot_root", "process_vm")
_PROXY_EVENTS = ("proxy.refused", "proxy.denied", "network.refused", "network.denied")
_SEPARATORS = " \t'\"`‘’“”:,;()[]{}<>="


class Denial(Record):
    """One thing the sandbox refused: `kind`, `target` (a path, a host, a
    system call), the `rule` and its `origin`, the `evidence` (the stderr
    line or event it was read from), and `message`, ready to show."""

    __slots__ = ("kind", "target", "rule", "origin", "evidence", "message")


class DenialReport(Record):
    __slots__ = ("denials",)

    @property
    def sandbox_caused(self) -> bool:
        return bool(self.denials)

    def lines(self) -> list[str]:
        # Targets come from the command's stderr and the proxy's events.
        return [printable(denial.message) for denial in self.denials]


def denial_report(policy, argv, stderr: str, events=(), *, cwd: str | None = None) -> DenialReport:
    """What of a failure can be attributed to the sandbox under `policy`."""
    cwd = cwd or policy.cwd
    found: dict = {}
    if policy.sandboxed:
        for line in (stderr or "").splitlines():
            for denial in _from_line(policy, line.strip(), cwd):
                found.setdefault((denial.kind, denial.target), denial)
    for event in events or ():
        if isinstance(event, dict) and event.get("type") in _PROXY_EVENTS:
            host = event.get("host") or event.get("target") or "?"
            port = event.get("port")
            target = f"{host}:{port}" if port else str(host)
            rule = event.get("rule") or policy.network.origin
            found.setdefault(("network", target), Denial(
                "network", target, rule, event.get("origin") or "egress proxy", event.get("type"),
                f"denied by the sandbox: connection to {target}, rule `{rule}`"))
    return DenialReport(tuple(found.values()))


def _from_line(policy, line: str, cwd: str):
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
    if policy.network.mode == "off" and any(clue in line for clue in _NETWORK_CLUES):
        yield Denial("network", "network", policy.network.origin, "policy", line,
                     f"denied by the sandbox: network access (network is off), rule `{policy.network.origin}`")


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
                          f"inside), rule `{label}`")
        return None
    if decision.access == "write":
        return None
    if write_clue:  # a read-only mount answers a write with EROFS
        return Denial("write", path, label, origin, line, f"denied by the sandbox: write to {path}, rule `{label}`")
    if decision.access == "none":  # a masked path answers with EACCES
        return Denial("read", path, label, origin, line, f"denied by the sandbox: read of {path}, rule `{label}`")
    return None  # EACCES on a path the policy lets through is the host's own permission


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
    word = []
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
