"""Host names, addresses and the domain-rule grammar of a limited network.

Split from `network` so that a run without a limited network (most runs)
never loads it: the policy build needs only the `NetworkPolicy` record,
the proxy and the decisions need all of this.
"""

from __future__ import annotations

from .._record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress

    IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- hosts ------------------------------------------------------------------------------------

class Host(Record):
    """A target in canonical form: `name` is the spelling rules match
    against (for an IP literal its compressed address), `address` the
    address for a literal, else None."""

    __slots__ = ("name", "address")
    name: str
    address: IPAddress | None


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

# Memoised by hand: functools (with collections behind it) would cost every
# run's start, and only a limited network ever asks for these.
_NETWORKS: list = []
_COMPILED: dict = {}


def _networks():
    if not _NETWORKS:
        import ipaddress

        private = tuple(ipaddress.ip_network(net)
                        for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
        _NETWORKS.append((ipaddress.IPv4Network("100.64.0.0/10"), ipaddress.IPv6Network("64:ff9b::/96"), private))
    return _NETWORKS[0]


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
    pattern: str
    action: str
    origin: str
    kind: str
    base: str
    labels: tuple[str, ...] | None

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


def compile_rules(domains: tuple) -> tuple[DomainRule, ...]:
    """Rules that cannot be read are dropped here; `pattern_problems` names
    them, and the proxy refuses to start while there are any."""
    compiled = _COMPILED.get(domains)
    if compiled is None:
        if len(_COMPILED) >= 16:
            _COMPILED.clear()
        compiled = _COMPILED[domains] = _compile_rules(domains)
    return compiled


def _compile_rules(domains: tuple) -> tuple[DomainRule, ...]:
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
