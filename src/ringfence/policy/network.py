"""Network decisions.

`off`: the sandbox has its own network namespace with only loopback.
`full`: the host's network. `limited`: only allowlisted domains, through the
egress proxy; the proxy is not part of this release, so a policy that needs
it is refused rather than run with a weaker boundary.
"""

from __future__ import annotations

from .._record import Record

OFF, FULL, LIMITED = "off", "full", "limited"


class NetworkDecision(Record):
    __slots__ = ("allowed", "rule", "reason")


class NetworkPolicy(Record):
    __slots__ = ("mode", "origin", "domains", "unix_sockets")
    _defaults = {"domains": (), "unix_sockets": ()}

    @property
    def isolated(self) -> bool:
        """True when the sandbox gets its own network namespace."""
        return self.mode != FULL

    def decide(self, host: str, port: int) -> NetworkDecision:
        if self.mode == FULL:
            return NetworkDecision(True, self.origin, "network mode full")
        if self.mode == OFF:
            return NetworkDecision(False, self.origin, "network is off")
        host = host.rstrip(".").lower()
        verdict = None
        for pattern, action, origin in self.domains:
            if _domain_matches(pattern, host):
                if action == "deny":
                    return NetworkDecision(False, origin, f"denied by {pattern}")
                verdict = verdict or NetworkDecision(True, origin, f"allowed by {pattern}")
        return verdict or NetworkDecision(False, self.origin, f"not in the allowlist: {host}")


def _domain_matches(pattern: str, host: str) -> bool:
    pattern = pattern.rstrip(".").lower()
    if pattern.startswith("**."):
        base = pattern[3:]
        return host == base or host.endswith("." + base)
    if pattern.startswith("*."):
        return host.endswith("." + pattern[2:])
    return host == pattern
