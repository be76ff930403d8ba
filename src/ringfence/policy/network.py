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

from functools import lru_cache

from .._record import Record

# `typing` (which loads `re`) and `ipaddress` cost more than a policy build;
# this module is on the `run` path, so both are kept off it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from typing import Literal

    Mode = Literal["off", "full", "limited"]
    ProxyMode = Literal["limited", "full"]
    DecisionCode = Literal["allowed", "blocked-by-allowlist", "blocked-by-denylist", "blocked-by-local-address",
                           "blocked-by-invalid-host", "blocked-by-policy", "blocked-by-sni"]
    IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

OFF, FULL, LIMITED = "off", "full", "limited"
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


class NetworkPolicy(Record):
    __slots__ = ("mode", "origin", "domains", "unix_sockets", "proxy_mode", "enable_socks5", "enable_socks5_udp",
                 "allow_upstream_proxy", "allow_local_binding", "allow_all_unix_sockets")
    _defaults = {"domains": (), "unix_sockets": (), "proxy_mode": LIMITED, "enable_socks5": False,
                 "enable_socks5_udp": False, "allow_upstream_proxy": False, "allow_local_binding": False,
                 "allow_all_unix_sockets": False}

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


# --- hosts ------------------------------------------------------------------------------------

class Host(Record):
    """A target in canonical form: `name` is the spelling rules match
    against (for an IP literal its compressed address), `address` the
    address for a literal, else None."""

    __slots__ = ("name", "address")


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def parse_host(host: str) -> Host:
    """`host` (a name or IP literal, perhaps with a port, brackets or a zone
    id) in canonical form; ValueError when it is neither a valid name nor a
    valid address."""
    if not isinstance(host, str) or not host:
        raise ValueError("empty")
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7f for ch in host):
        raise ValueError("contains spaces or control characters")
    text = host
    if text.startswith("["):
        inner, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            raise ValueError("unbalanced brackets")
        return Host(*_literal(_parse_ipv6(inner)))
    if text.count(":") == 1:
        text, _, port = text.partition(":")
        if not port.isdigit():
            raise ValueError("bad port")
    if ":" in text:
        return Host(*_literal(_parse_ipv6(text)))
    text = text.lower()
    if text.endswith("."):
        text = text[:-1]
    ipv4 = _parse_ipv4(text)
    if ipv4 is not None:
        return Host(*_literal(ipv4))
    return Host(_ascii_name(text), None)


def _literal(address: IPAddress) -> tuple[str, IPAddress]:
    address = embedded_ipv4(address)
    return str(address), address


def _parse_ipv6(text: str) -> ipaddress.IPv6Address:
    import ipaddress

    text = text.replace("%25", "%")
    address, _, zone = text.partition("%")
    if "%" in text and not zone:
        raise ValueError("empty zone id")
    try:
        return ipaddress.IPv6Address(address)
    except ValueError:
        raise ValueError("not an IPv6 address") from None


def _parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """The WHATWG URL reading of a dotted host: None for a name, else the
    address; a host that ends in a number but is no valid address is an error
    (it is neither a name nor an address, so it is refused, not guessed)."""
    parts = text.split(".")
    if not _is_number(parts[-1]):
        return None
    import ipaddress

    if len(parts) > 4:
        raise ValueError("too many parts for an IPv4 address")
    numbers = [_ipv4_part(part) for part in parts]
    value = 0
    for number in numbers[:-1]:
        if number > 255:
            raise ValueError("an IPv4 part is above 255")
        value = value * 256 + number
    last_bits = 8 * (5 - len(numbers))
    if numbers[-1] >= 1 << last_bits:
        raise ValueError("the last IPv4 part is too large")
    return ipaddress.IPv4Address((value << last_bits) | numbers[-1])


def _is_number(part: str) -> bool:
    if part.isdigit() and part.isascii():
        return True
    if part[:2] in ("0x", "0X"):
        return all(ch in "0123456789abcdefABCDEF" for ch in part[2:])
    return False


def _ipv4_part(part: str) -> int:
    if not part or not part.isascii():
        raise ValueError("empty or non-ASCII IPv4 part")
    try:
        if part[:2] in ("0x", "0X"):
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part[0] == "0":
            return int(part[1:], 8)
        if not part.isdigit():
            raise ValueError
        return int(part)
    except ValueError:
        raise ValueError(f"{part!r} is not a number") from None


def _ascii_name(text: str) -> str:
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("not a valid international domain name") from None
    if len(text) > 253:
        raise ValueError("longer than 253 characters")
    for label in text.split("."):
        if not label or len(label) > 63:
            raise ValueError("an empty or overlong label")
        if not _NAME_CHARS.issuperset(label):
            raise ValueError(f"label {label!r} has characters a host name cannot have")
    return text


# --- addresses --------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _networks():
    import ipaddress

    private = tuple(ipaddress.ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
    return (ipaddress.IPv4Network("100.64.0.0/10"), ipaddress.IPv6Network("64:ff9b::/96"), private)


def embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64,
    6to4), else the address itself."""
    if address.version == 4:
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    import ipaddress

    packed = int(address)
    if packed >> 32 == 0 and packed > 1:
        return ipaddress.IPv4Address(packed)
    if address in _networks()[1]:
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return address


def address_scope(address) -> str | None:
    """What kind of non-public address this is ("loopback", "private", ...),
    or None for a public one. Accepts an address object or its text."""
    if isinstance(address, str):
        import ipaddress

        address = ipaddress.ip_address(address.partition("%")[0])
    cgnat, _nat64, private = _networks()
    address = embedded_ipv4(address)
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if any(address in net for net in private if net.version == address.version):
        return "private"
    if address.version == 4 and address in cgnat:
        return "shared (CGNAT)"
    if address.is_reserved or not address.is_global:
        return "reserved"
    return None


# --- rules ------------------------------------------------------------------------------------

class DomainRule(Record):
    """`kind`: exact | subdomains (`*.`) | apex-and-subdomains (`**.`);
    `base` is the canonical name or address, `labels` the base's labels when
    some contain `*`."""

    __slots__ = ("pattern", "action", "origin", "kind", "base", "labels")

    def matches(self, host: Host) -> bool:
        if host.address is not None:
            return self.kind == "exact" and self.labels is None and self.base == host.name
        name = host.name
        if self.kind == "exact":
            return self._same(name)
        if self.kind == "subdomains" or not self._same(name):
            head, dot, tail = name.partition(".")
            while dot:
                if self._same(tail):
                    return True
                head, dot, tail = tail.partition(".")
            return False
        return True

    def _same(self, name: str) -> bool:
        if self.labels is None:
            return name == self.base
        labels = name.split(".")
        return len(labels) == len(self.labels) and all(map(_label_matches, self.labels, labels))


def _label_matches(pattern: str, label: str) -> bool:
    if "*" not in pattern:
        return pattern == label
    pieces = pattern.split("*")
    if not label.startswith(pieces[0]):
        return False
    at = len(pieces[0])
    for piece in pieces[1:-1]:
        at = label.find(piece, at)
        if at < 0:
            return False
        at += len(piece)
    return len(label) - at >= len(pieces[-1]) and label.endswith(pieces[-1])


@lru_cache(maxsize=16)
def compile_rules(domains: tuple) -> tuple[DomainRule, ...]:
    """Rules that cannot be read are dropped here; `pattern_problems` names
    them, and the proxy refuses to start while there are any."""
    rules = []
    for pattern, action, origin in domains:
        try:
            rules.append(_compile_rule(pattern, action, origin))
        except ValueError:
            continue
    return tuple(rules)


def _compile_rule(pattern: str, action: str, origin: str) -> DomainRule:
    if action not in ("allow", "deny"):
        raise ValueError(f"the action must be allow or deny, not {action!r}")
    text = pattern.strip().lower()
    kind = "exact"
    if text.startswith("**."):
        kind, text = "apex-and-subdomains", text[3:]
    elif text.startswith("*."):
        kind, text = "subdomains", text[2:]
    if text in ("", "*", "**") or text.rstrip(".") in ("", "*", "**"):
        raise ValueError('a pattern that matches every host; use mode = "full" to allow all but denied hosts')
    if "*" not in text:
        host = parse_host(text)
        if host.address is not None and kind != "exact":
            raise ValueError("an IP address cannot take a wildcard")
        return DomainRule(pattern, action, origin, kind, host.name, None)
    text = text[:-1] if text.endswith(".") else text
    labels = text.split(".")
    for label in labels:
        if "**" in label or label == "*":
            raise ValueError("'*' may stand for part of a label, and '*.' or '**.' only at the start")
    plain = _ascii_name(".".join(label.replace("*", "x") for label in labels))
    if len(plain.split(".")) != len(labels):
        raise ValueError("a label with '*' must be ASCII")
    return DomainRule(pattern, action, origin, kind, text, tuple(labels))
