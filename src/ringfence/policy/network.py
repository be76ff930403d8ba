"""Network decisions.

`off`: the sandbox has its own network namespace with only loopback.
`full`: the host's network. `limited`: the sandbox keeps its own namespace
and reaches out only through the egress proxy, which asks `decide` about
every target and `check_addresses` about every address it resolved.

Domain patterns follow Codex: `example.com` exactly, `*.example.com` its
subdomains only, `**.example.com` the apex and its subdomains, and `*`
inside a label (`region*.example.com`) any run of characters but a dot. Deny
wins; a target that is, or resolves to, a loopback, private, link-local,
shared (CGNAT), multicast, reserved or unspecified address is refused unless
it is an IP literal allowed by an exact rule and `allow_local_binding` is
on; then the allowlist decides (`proxy_mode = "full"`: everything not
denied). Hosts are compared in one canonical spelling: lower case, no
trailing dot, no port or brackets, IDNA (2003, the standard library's codec)
for Unicode names, and IP literals in every spelling a resolver or browser
accepts (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`, `::ffff:127.0.0.1`,
`[::1]`, `fe80::1%25eth0`) reduced to one address, with IPv6 forms that
embed an IPv4 address (mapped, compatible, NAT64, 6to4) judged as that
IPv4 address.
"""

from __future__ import annotations


from .._record import Record

# `typing` (which loads `re`) and `ipaddress` cost more than a policy build;
# this module is on the `run` path, so both are kept off it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from typing import Final, Literal

    from ..config.vocabulary import NetworkMode as Mode, ProxyMode, SocketAccess

    DecisionCode = Literal["allowed", "blocked-by-allowlist", "blocked-by-denylist", "blocked-by-local-address",
                           "blocked-by-invalid-host", "blocked-by-policy", "blocked-by-sni"]
    IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

OFF: Final = "off"
FULL: Final = "full"
LIMITED: Final = "limited"
ALLOWED = "allowed"
BY_ALLOWLIST, BY_DENYLIST, BY_LOCAL = "blocked-by-allowlist", "blocked-by-denylist", "blocked-by-local-address"
BY_INVALID, BY_POLICY = "blocked-by-invalid-host", "blocked-by-policy"


class NetworkDecision(Record):
    """`rule` is where the deciding rule came from; `reason` is one readable
    sentence ("blocked by allowlist: other.example"); `code` is the
    machine-readable verdict the proxy puts in `x-proxy-error`; `host` the
    canonical spelling of the target (None when it was not a host)."""

    __slots__ = ("allowed", "rule", "reason", "code", "host")
    _defaults = {"code": None, "host": None}
    allowed: bool
    rule: str
    reason: str
    code: DecisionCode | None
    host: str | None


class NetworkPolicy(Record):
    __slots__ = ("mode", "origin", "domains", "unix_sockets", "proxy_mode", "enable_socks5", "enable_socks5_udp",
                 "allow_upstream_proxy", "allow_local_binding", "allow_all_unix_sockets")
    _defaults = {"domains": (), "unix_sockets": (), "proxy_mode": LIMITED, "enable_socks5": False,
                 "enable_socks5_udp": False, "allow_upstream_proxy": False, "allow_local_binding": False,
                 "allow_all_unix_sockets": False}
    mode: Mode
    origin: str
    domains: tuple[tuple[str, str, str], ...]
    unix_sockets: tuple[tuple[str, SocketAccess, str], ...]
    proxy_mode: ProxyMode
    enable_socks5: bool
    enable_socks5_udp: bool
    allow_upstream_proxy: bool
    allow_local_binding: bool
    allow_all_unix_sockets: bool

    @property
    def unix_sockets_refused(self) -> bool:
        """A limited network leads out only through the proxy: new unix
        sockets are refused, since a host socket in a visible folder could
        lead anywhere. Allowed sockets (which need socket(2) to be reached)
        and the explicit opt-out lift it."""
        if self.mode != LIMITED or self.allow_all_unix_sockets:
            return False
        return not any(access == "allow" for _path, access, _origin in self.unix_sockets)

    @property
    def isolated(self) -> bool:
        """True when the sandbox gets its own network namespace."""
        return self.mode != FULL

    def decide(self, host: str, port: int | None = None) -> NetworkDecision:
        """May the sandbox reach `host` (any spelling, with or without a port)?

        Names are judged here by name; the addresses they resolve to must then
        pass `check_addresses` before one of them is dialled."""
        if self.mode == FULL:
            return NetworkDecision(True, self.origin, "network mode full", ALLOWED, host)
        if self.mode == OFF:
            return NetworkDecision(False, self.origin, "network is off", BY_POLICY, host)
        from .domains import address_scope, compile_rules, parse_host

        try:
            target = parse_host(host)
        except ValueError as exc:
            return NetworkDecision(False, self.origin, f"blocked: {host!r} is not a host name ({exc})", BY_INVALID)
        allowed_by = None
        for rule in compile_rules(self.domains):
            if rule.matches(target):
                if rule.action != "allow":
                    return NetworkDecision(False, rule.origin, f"blocked by denylist: {rule.pattern}", BY_DENYLIST,
                                           target.name)
                allowed_by = allowed_by or rule
        if target.address is not None:
            scope = address_scope(target.address)
            if scope is not None:
                if self.allow_local_binding and allowed_by is not None and allowed_by.kind == "exact":
                    return NetworkDecision(True, allowed_by.origin,
                                           f"allowed by {allowed_by.pattern} (a {scope} address, allow_local_binding)",
                                           ALLOWED, target.name)
                return NetworkDecision(False, self.origin, f"blocked by local address: {target.name} is {scope}",
                                       BY_LOCAL, target.name)
        if allowed_by is not None:
            return NetworkDecision(True, allowed_by.origin, f"allowed by {allowed_by.pattern}", ALLOWED, target.name)
        if self.proxy_mode == FULL:
            return NetworkDecision(True, self.origin, "allowed: network mode full, not denied", ALLOWED, target.name)
        return NetworkDecision(False, self.origin, f"blocked by allowlist: {target.name}", BY_ALLOWLIST, target.name)

    def check_addresses(self, decision: NetworkDecision, addresses) -> NetworkDecision:
        """The decision for a name once resolved: every address must be public
        (an IP literal was judged by `decide` already)."""
        if not decision.allowed or self.mode == FULL:
            return decision
        from .domains import address_scope, parse_host

        assert decision.host is not None, "an allowed decision names its host"
        if parse_host(decision.host).address is not None:
            return decision
        if not addresses:
            return NetworkDecision(False, self.origin, f"blocked: {decision.host} resolved to no address", BY_POLICY,
                                   decision.host)
        for address in addresses:
            scope = address_scope(address)
            if scope is not None:
                return NetworkDecision(False, self.origin,
                                       f"blocked by local address: {decision.host} resolves to {address} ({scope})",
                                       BY_LOCAL, decision.host)
        return decision

    def to_config(self) -> dict:
        """The policy as JSON-ready data, for the proxy process."""
        return {name: list(map(list, value)) if name in ("domains", "unix_sockets") else value
                for name, value in zip(self.__slots__, self._values())}

    @classmethod
    def from_config(cls, data: dict) -> NetworkPolicy:
        values = dict(data)
        for name in ("domains", "unix_sockets"):
            values[name] = tuple(tuple(item) for item in values.get(name, ()))
        return cls(**values)


def network_options(table: dict) -> dict:
    """The proxy's settings from a resolved `[permissions.NAME.network]` table
    (key -> Setting), as keyword arguments for `NetworkPolicy`."""
    def flag(key: str) -> bool:
        setting = table.get(key)
        return bool(setting.value) if setting is not None else False

    mode = table.get("mode")
    return {"proxy_mode": FULL if mode is not None and mode.value == FULL else LIMITED,
            "enable_socks5": flag("enable_socks5"), "enable_socks5_udp": flag("enable_socks5_udp"),
            "allow_upstream_proxy": flag("allow_upstream_proxy"), "allow_local_binding": flag("allow_local_binding"),
            "allow_all_unix_sockets": flag("dangerously_allow_all_unix_sockets")}


def pattern_problems(domains) -> list[str]:
    """Domain rules that cannot be enforced as written, as sentences."""
    from .domains import _compile_rule

    problems = []
    for pattern, action, origin in domains:
        try:
            _compile_rule(pattern, action, origin)
        except ValueError as exc:
            problems.append(f"{origin}: domain pattern {pattern!r}: {exc}")
    return problems


_RANK = {OFF: 0, LIMITED: 1, FULL: 2}
_FLAGS = ("enable_socks5", "enable_socks5_udp", "allow_upstream_proxy", "allow_local_binding",
          "allow_all_unix_sockets")


def network_widenings(base: NetworkPolicy, candidate: NetworkPolicy) -> list[str]:
    """Every way `candidate` reaches further than `base`, as sentences."""
    if _RANK[candidate.mode] > _RANK[base.mode]:
        return [f"network: {base.mode} -> {candidate.mode} by {candidate.origin}"]
    if not (candidate.mode == base.mode == LIMITED):
        return []
    found = []
    if candidate.proxy_mode == FULL and base.proxy_mode != FULL:
        found.append(f"network: mode limited -> full by {candidate.origin}")
    found.extend(f"network: {flag} = true" for flag in _FLAGS
                 if getattr(candidate, flag) and not getattr(base, flag))
    found.extend(_allowlist_widenings("domain", base.domains, candidate.domains))
    found.extend(_allowlist_widenings("unix socket", base.unix_sockets, candidate.unix_sockets))
    return found


def _allowlist_widenings(what, base_rules, candidate_rules) -> list[str]:
    """An allow the base lacks, or a deny the base had and the candidate drops."""
    base = {pattern: action for pattern, action, _origin in base_rules}
    found = []
    for pattern, action, origin in candidate_rules:
        if action == "allow" and base.get(pattern) != "allow":
            found.append(f"network: allows {what} {pattern} by {origin}")
    candidate = {pattern: action for pattern, action, _origin in candidate_rules}
    for pattern, action in base.items():
        if action != "allow" and candidate.get(pattern) != action:
            found.append(f"network: no longer denies {what} {pattern}")
    return found
