"""The DNS answers the proxy gives the sandbox: only A/AAAA/CNAME for allowed
names, from its own checked resolution; everything else refused."""

from __future__ import annotations

import asyncio
import struct

from hypothesis import given, settings, strategies as st

from ringfence.policy.network import NetworkPolicy
from ringfence.proxy import dns
from ringfence.proxy.config import ProxyLimits
from ringfence.proxy.dial import Dialer


def query(name: str, qtype: int = dns.A, *, qid: int = 0x1234, flags: int = 0x0100, questions: int = 1,
          extra: bytes = b"") -> bytes:
    labels = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label) + b"\0"
    return struct.pack(">HHHHHH", qid, flags, questions, 0, 0, 0) + labels + struct.pack(">HH", qtype, 1) + extra


def parse_reply(data: bytes):
    qid, flags, qd, an, _ns, _ar = struct.unpack(">HHHHHH", data[:12])
    at = 12
    for _ in range(qd):
        while data[at]:
            at += data[at] + 1
        at += 5
    addresses = []
    for _ in range(an):
        _name, rtype, _cls, ttl, length = struct.unpack(">HHHIH", data[at:at + 12])
        rdata = data[at + 12:at + 12 + length]
        import ipaddress

        addresses.append(str(ipaddress.ip_address(rdata)))
        at += 12 + length
    return qid, flags & 0xF, addresses


class FakeProxy:
    def __init__(self, hosts):
        self.policy = NetworkPolicy("limited", "p", (("allowed.test", "allow", "r"), ("rebind.test", "allow", "r"),
                                                     ("*.bad.test", "deny", "d"), ("**.wild.test", "allow", "w")))
        self.dialer = Dialer(self.policy, ProxyLimits(), hosts=hosts)
        self.events = []

    def emit(self, type_, **fields):
        self.events.append({"type": type_, **fields})

    def decision_event(self, protocol, decision, port, **fields):
        self.events.append({"decision": decision.allowed, "host": decision.host, **fields})


HOSTS = {"allowed.test": [["93.184.216.34", "2606:2800:220:1::1"]], "rebind.test": [["93.184.216.34", "10.0.0.1"]],
         "x.wild.test": [["93.184.216.35"]]}


def ask(data: bytes, hosts=HOSTS):
    proxy = FakeProxy({name: [list(step) for step in steps] for name, steps in hosts.items()})
    return asyncio.run(dns.answer(proxy, data)), proxy


def test_allowed_name_gets_the_checked_addresses():
    reply, proxy = ask(query("allowed.test"))
    assert parse_reply(reply) == (0x1234, dns.NOERROR, ["93.184.216.34"])
    reply, _ = ask(query("Allowed.Test", dns.AAAA))
    assert parse_reply(reply) == (0x1234, dns.NOERROR, ["2606:2800:220:1::1"])
    reply, _ = ask(query("x.wild.test"))
    assert parse_reply(reply)[2] == ["93.184.216.35"]
    assert proxy.events[0]["decision"] is True


def test_cname_query_is_answered_without_records():
    reply, _ = ask(query("allowed.test", dns.CNAME))
    assert parse_reply(reply) == (0x1234, dns.NOERROR, [])


def test_everything_else_is_refused():
    for data in (query("other.example"), query("secret-data.exfil.test"), query("a.bad.test"),
                 query("allowed.test", 16), query("allowed.test", 255), query("rebind.test"),
                 query("127.0.0.1"), query("2130706433")):
        reply, proxy = ask(data)
        assert parse_reply(reply)[1] == dns.REFUSED, data
        assert proxy.events and proxy.events[-1].get("decision") is False


def test_unresolvable_name_is_nxdomain_and_other_opcodes_not_implemented():
    reply, _ = ask(query("allowed.test"), hosts={})
    assert parse_reply(reply)[1] == dns.NXDOMAIN
    reply, _ = ask(query("allowed.test", flags=0x2100))  # opcode 4 (NOTIFY)
    assert parse_reply(reply)[1] == dns.NOTIMP


def test_malformed_queries_get_formerr_or_nothing():
    assert ask(b"\x01\x02")[0] is None
    for data in (query("allowed.test", questions=2), query("allowed.test", flags=0x8100),
                 query("allowed.test")[:-3], struct.pack(">HHHHHH", 7, 0x100, 1, 0, 0, 0) + b"\xc0\x0c\0\1\0\1"):
        reply, proxy = ask(data)
        assert reply[:2] == data[:2] and reply[3] & 0xF == dns.FORMERR
        assert proxy.events[0]["type"] == "network.malformed"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_parser_only_raises_valueerror(data):
    try:
        dns.parse_query(data)
    except ValueError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=12, max_size=120))
def test_any_message_gets_a_reply_with_its_id(data):
    reply, _ = ask(data)
    assert reply is not None and reply[:2] == data[:2] and reply[2] & 0x80
