"""The egress proxy's decisions, as tables: domain grammar, host spellings,
local addresses, resolved addresses, and what a project may not widen."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, settings, strategies as st

from ringfence.policy.domains import address_scope, parse_host
from ringfence.policy.network import NetworkPolicy, network_options, network_widenings, pattern_problems
from ringfence.proxy.inside import RelayPorts, proxy_environment

DOMAINS = (
    ("pypi.org", "allow", "rule pypi"),
    ("**.pythonhosted.org", "allow", "rule pythonhosted"),
    ("*.example.com", "allow", "rule example"),
    ("*.internal.example.com", "deny", "rule internal"),
    ("region*.v2.tunnel.test", "allow", "rule region"),
    ("93.184.216.34", "allow", "rule literal"),
    ("127.0.0.1", "allow", "rule loopback literal"),
    ("bücher.test", "allow", "rule idna"),
)
POLICY = NetworkPolicy("limited", "profile dev", DOMAINS)


@pytest.mark.parametrize("host, allowed, code, rule", [
    ("pypi.org", True, "allowed", "rule pypi"),
    ("PyPI.ORG.", True, "allowed", "rule pypi"),
    ("pypi.org:443", True, "allowed", "rule pypi"),
    ("www.pypi.org", False, "blocked-by-allowlist", "profile dev"),
    ("pythonhosted.org", True, "allowed", "rule pythonhosted"),
    ("files.pythonhosted.org", True, "allowed", "rule pythonhosted"),
    ("a.b.pythonhosted.org", True, "allowed", "rule pythonhosted"),
    ("evilpythonhosted.org", False, "blocked-by-allowlist", "profile dev"),
    ("example.com", False, "blocked-by-allowlist", "profile dev"),
    ("api.example.com", True, "allowed", "rule example"),
    ("db.internal.example.com", False, "blocked-by-denylist", "rule internal"),
    ("DB.Internal.Example.Com.", False, "blocked-by-denylist", "rule internal"),
    ("region7.v2.tunnel.test", True, "allowed", "rule region"),
    ("region.v2.tunnel.test", True, "allowed", "rule region"),
    ("xregion7.v2.tunnel.test", False, "blocked-by-allowlist", "profile dev"),
    ("a.region7.v2.tunnel.test", False, "blocked-by-allowlist", "profile dev"),
    ("bücher.test", True, "allowed", "rule idna"),
    ("xn--bcher-kva.test", True, "allowed", "rule idna"),
    ("BÜCHER.test", True, "allowed", "rule idna"),
    ("other.example", False, "blocked-by-allowlist", "profile dev"),
    ("93.184.216.34", True, "allowed", "rule literal"),
    ("1572395042", True, "allowed", "rule literal"),
    ("[::ffff:93.184.216.34]:443", True, "allowed", "rule literal"),
    ("93.184.216.35", False, "blocked-by-allowlist", "profile dev"),
    ("127.0.0.1", False, "blocked-by-local-address", "profile dev"),
    ("ex ample.com", False, "blocked-by-invalid-host", "profile dev"),
    ("1.2.3.4.5", False, "blocked-by-invalid-host", "profile dev"),
    ("example.08", False, "blocked-by-invalid-host", "profile dev"),
    ("a.0x", False, "blocked-by-invalid-host", "profile dev"),  # ends in a number (hex 0): an address that is not one
    ("", False, "blocked-by-invalid-host", "profile dev"),
    ("a..b", False, "blocked-by-invalid-host", "profile dev"),
    ("[::1", False, "blocked-by-invalid-host", "profile dev"),
])
def test_decision_table(host, allowed, code, rule):
    decision = POLICY.decide(host, 443)
    assert (decision.allowed, decision.code, decision.rule) == (allowed, code, rule), decision


def test_reasons_name_the_rule():
    assert POLICY.decide("other.example").reason == "blocked by allowlist: other.example"
    assert POLICY.decide("x.internal.example.com").reason == "blocked by denylist: *.internal.example.com"
    assert POLICY.decide("0x7f.1").reason == "blocked by local address: 127.0.0.1 is loopback"
    assert POLICY.decide("pypi.org").reason == "allowed by pypi.org"


def test_deny_wins_over_any_allow():
    policy = NetworkPolicy("limited", "p", (("**.corp.test", "allow", "a"), ("secret.corp.test", "deny", "d")))
    assert not policy.decide("secret.corp.test").allowed
    assert policy.decide("open.corp.test").allowed
    assert not policy.replace(proxy_mode="full").decide("secret.corp.test").allowed


def test_empty_allowlist_refuses_all_and_full_mode_allows_all_but_denied():
    empty = NetworkPolicy("limited", "p")
    assert empty.decide("pypi.org").code == "blocked-by-allowlist"
    full = NetworkPolicy("limited", "p", (("*.bad.test", "deny", "d"),), proxy_mode="full")
    assert full.decide("pypi.org").allowed
    assert full.decide("x.bad.test").code == "blocked-by-denylist"
    assert full.decide("10.0.0.1").code == "blocked-by-local-address"


def test_off_refuses_and_host_network_allows():
    assert not NetworkPolicy("off", "p").decide("pypi.org").allowed
    assert NetworkPolicy("full", "p").decide("pypi.org").allowed


@pytest.mark.parametrize("spelling", [
    "127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0x7F.1", "0177.0.0.1", "0177.1", "017700000001",
    "127.000.000.001", "127.0.0.1.", "::1", "[::1]", "[::1]:80", "::ffff:127.0.0.1", "[::ffff:7f00:1]",
    "::127.0.0.1", "0:0:0:0:0:ffff:127.0.0.1", "64:ff9b::127.0.0.1", "2002:7f00:1::", "127.0.0.1:8080",
])
def test_loopback_in_every_spelling_is_refused(spelling):
    decision = NetworkPolicy("limited", "p", proxy_mode="full").decide(spelling, 80)
    assert decision.code == "blocked-by-local-address", (spelling, decision)


@pytest.mark.parametrize("address, scope", [
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("10.1.2.3", "private"), ("172.16.0.1", "private"),
    ("192.168.1.1", "private"), ("fd00::1", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"), ("100.64.0.1", "shared (CGNAT)"), ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"), ("ff0e::1", "multicast"), ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
    ("192.0.2.1", "reserved"), ("198.18.0.1", "reserved"), ("2001:db8::1", "reserved"),
    ("::ffff:10.0.0.1", "private"), ("::ffff:169.254.169.254", "link-local"), ("8.8.8.8", None),
    ("93.184.216.34", None), ("2606:4700::1111", None), ("::ffff:8.8.8.8", None),
])
def test_address_scopes(address, scope):
    assert address_scope(address) == scope


def test_local_literal_allowed_only_with_allow_local_binding_and_an_exact_rule():
    assert POLICY.decide("127.0.0.1").code == "blocked-by-local-address"
    binding = POLICY.replace(allow_local_binding=True)
    assert binding.decide("127.0.0.1").allowed
    assert binding.decide("2130706433").allowed  # the same address, another spelling
    assert binding.decide("127.0.0.2").code == "blocked-by-local-address"
    full = NetworkPolicy("limited", "p", proxy_mode="full", allow_local_binding=True)
    assert full.decide("127.0.0.1").code == "blocked-by-local-address"  # full mode names no literal


def test_resolved_addresses_are_each_checked():
    decision = POLICY.decide("pypi.org")
    assert POLICY.check_addresses(decision, ["151.101.0.223"]).allowed
    mixed = POLICY.check_addresses(decision, ["151.101.0.223", "10.0.0.7"])
    assert mixed.code == "blocked-by-local-address"
    assert mixed.reason == "blocked by local address: pypi.org resolves to 10.0.0.7 (private)"
    assert POLICY.check_addresses(decision, ["::ffff:127.0.0.1"]).code == "blocked-by-local-address"
    assert not POLICY.check_addresses(decision, []).allowed
    # a name never reaches a local address, even with allow_local_binding
    binding = POLICY.replace(allow_local_binding=True)
    assert not binding.check_addresses(binding.decide("pypi.org"), ["127.0.0.1"]).allowed


@pytest.mark.parametrize("pattern, problem", [
    ("*", "matches every host"), ("**", "matches every host"), ("*.", "matches every host"),
    ("**.", "matches every host"), ("*.10.0.0.1", "IP address cannot take a wildcard"),
    ("a.*.test", "only at the start"), ("**.*.test", "only at the start"), ("a**b.test", "only at the start"),
    ("bad host.test", "spaces"), ("x.test", None), ("**.x.test", None),
    ("a*b.test", None), ("fe80::1", None),
])
def test_pattern_problems(pattern, problem):
    problems = pattern_problems([(pattern, "allow", "origin")])
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0] and "origin" in problems[0], problems


def test_config_round_trip_and_options():
    policy = POLICY.replace(enable_socks5=True, allow_upstream_proxy=True)
    assert NetworkPolicy.from_config(policy.to_config()) == policy
    assert NetworkPolicy("limited", "o", (), ()) == NetworkPolicy("limited", "o")

    class Setting:
        def __init__(self, value):
            self.value = value

    options = network_options({"mode": Setting("full"), "enable_socks5": Setting(True),
                               "dangerously_allow_all_unix_sockets": Setting(True)})
    assert options == {"proxy_mode": "full", "enable_socks5": True, "enable_socks5_udp": False,
                       "allow_upstream_proxy": False, "allow_local_binding": False, "allow_all_unix_sockets": True}


def test_new_unix_sockets_are_refused_only_where_nothing_needs_them():
    limited = NetworkPolicy("limited", "o", (("pypi.org", "allow", "o"),))
    assert limited.unix_sockets_refused
    assert not limited.replace(unix_sockets=(("/run/a.sock", "allow", "o"),)).unix_sockets_refused
    assert limited.replace(unix_sockets=(("/run/a.sock", "none", "o"),)).unix_sockets_refused
    assert not limited.replace(allow_all_unix_sockets=True).unix_sockets_refused
    assert not NetworkPolicy("off", "o").unix_sockets_refused


def test_widenings_of_the_proxy_settings():
    base = NetworkPolicy("limited", "user", (("pypi.org", "allow", "u"), ("bad.test", "deny", "u")))
    assert network_widenings(base, base) == []
    wider = base.replace(proxy_mode="full", allow_local_binding=True,
                         domains=(("pypi.org", "allow", "p"), ("evil.test", "allow", "p")))
    found = network_widenings(base, wider)
    assert any("limited -> full" in line for line in found)
    assert any("allow_local_binding" in line for line in found)
    assert any("allows domain evil.test" in line for line in found)
    assert any("no longer denies domain bad.test" in line for line in found)
    assert network_widenings(NetworkPolicy("off", "u"), base) == ["network: off -> limited by user"]
    assert network_widenings(base, NetworkPolicy("off", "p")) == []


# --- spellings, generated -----------------------------------------------------------------

def _spellings(address: ipaddress.IPv4Address):
    value = int(address)
    parts = list(address.packed)
    yield str(address)
    yield str(value)
    yield hex(value)
    yield ".".join("0%o" % part for part in parts)
    yield ".".join(hex(part) for part in parts)
    yield f"{parts[0]}.{parts[1]}.{(parts[2] << 8) | parts[3]}"
    yield f"{parts[0]}.{(parts[1] << 16) | (parts[2] << 8) | parts[3]}"
    yield f"0x{parts[0]:x}.0{(parts[1] << 16) | (parts[2] << 8) | parts[3]:o}"
    yield f"::ffff:{address}"
    yield f"[::ffff:{address}]:443"
    yield f"[{ipaddress.IPv6Address((0xFFFF << 32) | value)}]"
    yield f"{address}."


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2 ** 32 - 1))
def test_every_ipv4_spelling_means_one_address(value):
    address = ipaddress.IPv4Address(value)
    for spelling in _spellings(address):
        assert parse_host(spelling).address == address, spelling


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2 ** 32 - 1))
def test_spellings_agree_with_the_c_library(value):
    """What glibc's inet_aton (and so curl, ping, a resolver) reads as an
    address, the policy reads as the same address."""
    address = ipaddress.IPv4Address(value)
    for spelling in list(_spellings(address))[:8]:
        assert ipaddress.IPv4Address(socket.inet_aton(spelling)) == parse_host(spelling).address


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
                        "100.64.0.0/10", "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4"]),
       st.integers(min_value=0, max_value=2 ** 32 - 1))
def test_no_spelling_of_a_local_address_gets_through(network, offset):
    net = ipaddress.IPv4Network(network)
    address = net.network_address + offset % net.num_addresses
    policy = NetworkPolicy("limited", "p", proxy_mode="full")
    for spelling in _spellings(address):
        assert policy.decide(spelling).code == "blocked-by-local-address", spelling


# A name whose last label is a number (decimal, or 0x and hex digits) is read
# as an IPv4 address, as browsers read it, so labels here are never numbers.
_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12).filter(
    lambda label: not label.isdigit() and not (label[:2] == "0x" and all(c in "0123456789abcdef" for c in label[2:])))


@settings(max_examples=300, deadline=None)
@given(st.lists(_label, min_size=2, max_size=5), st.booleans(), st.booleans(),
       st.integers(min_value=1, max_value=65535))
def test_host_normalisation(labels, upper, trailing_dot, port):
    name = ".".join(labels)
    spelled = name.upper() if upper else name
    spelled += "." if trailing_dot else ""
    assert parse_host(spelled).name == name
    assert parse_host(f"{spelled}:{port}").name == name
    policy = NetworkPolicy("limited", "p", ((f"**.{labels[-2]}.{labels[-1]}", "allow", "r"),))
    assert policy.decide(spelled).allowed
    assert not policy.decide(f"{labels[-2]}x.{labels[-1]}").allowed


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_gets_a_decision_not_an_exception(text):
    decision = POLICY.decide(text, 443)
    assert decision.code in ("allowed", "blocked-by-allowlist", "blocked-by-denylist", "blocked-by-local-address",
                             "blocked-by-invalid-host")


# --- the command's environment --------------------------------------------------------------

def test_proxy_environment():
    env = proxy_environment(RelayPorts(3128, 1080), {"PATH": "/bin", "https_proxy": "http://elsewhere:1",
                                                     "NPM_CONFIG_HTTPS_PROXY": "http://elsewhere:1",
                                                     "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "a.b",
                                                     "GIT_CONFIG_VALUE_0": "c"})
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "npm_config_proxy",
                 "npm_config_https_proxy", "YARN_HTTP_PROXY", "YARN_HTTPS_PROXY", "PIP_PROXY", "CARGO_HTTP_PROXY"):
        assert env[name] == "http://127.0.0.1:3128", name
    assert env["ALL_PROXY"] == env["all_proxy"] == "socks5h://127.0.0.1:1080"
    assert env["NO_PROXY"] == env["no_proxy"] == "localhost,127.0.0.1,::1"
    assert env["NODE_USE_ENV_PROXY"] == "1"
    assert "NPM_CONFIG_HTTPS_PROXY" not in env and env["PATH"] == "/bin"
    assert (env["GIT_CONFIG_COUNT"], env["GIT_CONFIG_KEY_0"], env["GIT_CONFIG_KEY_1"],
            env["GIT_CONFIG_VALUE_1"]) == ("2", "a.b", "http.proxy", "http://127.0.0.1:3128")
    assert proxy_environment(RelayPorts(3128))["ALL_PROXY"] == "http://127.0.0.1:3128"
