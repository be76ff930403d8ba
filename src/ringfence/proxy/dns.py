"""DNS answers for the sandbox: single-question A, AAAA and CNAME queries
for names the policy allows, answered from the proxy's own resolution (the
addresses it checked and would dial); everything else is REFUSED, a name
that does not resolve NXDOMAIN. Nothing is forwarded to a resolver, so a
query cannot carry data out.

The wire format subset (RFC 1035 4.1) is parsed by hand: the standard
library has no DNS codec, and the subset is a header, one question and
fixed-size address records, far smaller than a general library's surface.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct

from ..policy.domains import parse_host
from ..policy.network import NetworkDecision
from .dial import Refused, UpstreamFailed

A, AAAA, CNAME = 1, 28, 5
TYPE_NAMES = {A: "A", AAAA: "AAAA", CNAME: "CNAME"}
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
MAX_ANSWERS = 16
MAX_MESSAGE = 65535


class Query:
    __slots__ = ("id", "flags", "name", "qtype", "qclass", "question")

    def __init__(self, id_, flags, name, qtype, qclass, question):
        self.id, self.flags, self.name, self.qtype, self.qclass, self.question = \
            id_, flags, name, qtype, qclass, question


def parse_query(data: bytes) -> Query:
    """ValueError for anything but a query with exactly one question."""
    if len(data) < 12:
        raise ValueError("shorter than a header")
    id_, flags, questions, answers, authority, _additional = struct.unpack(">HHHHHH", data[:12])
    if flags & 0x8000:
        raise ValueError("a response, not a query")
    if questions != 1 or answers or authority:
        raise ValueError("not exactly one question")
    at, labels = 12, []
    while True:
        if at >= len(data):
            raise ValueError("the name runs past the message")
        length = data[at]
        if length & 0xC0:
            raise ValueError("compression in the question")
        at += 1
        if length == 0:
            break
        label = data[at:at + length]
        if len(label) != length or b"." in label:
            raise ValueError("a bad label")
        labels.append(label.decode("ascii", "replace"))
        at += length
    if at + 4 > len(data) or at - 12 > 255:
        raise ValueError("a truncated or overlong question")
    qtype, qclass = struct.unpack(">HH", data[at:at + 4])
    return Query(id_, flags, ".".join(labels), qtype, qclass, data[12:at + 4])


def build_reply(query: Query, rcode: int, addresses=()) -> bytes:
    flags = 0x8000 | (query.flags & 0x7900) | 0x0080 | rcode  # QR, opcode and RD as asked, RA
    records = b""
    count = 0
    for address in addresses[:MAX_ANSWERS]:
        packed = ipaddress.ip_address(address).packed
        records += struct.pack(">HHHIH", 0xC00C, A if len(packed) == 4 else AAAA, 1, 0, len(packed)) + packed
        count += 1
    return struct.pack(">HHHHHH", query.id, flags, 1, count, 0, 0) + query.question + records


def _header_only(data: bytes, rcode: int) -> bytes | None:
    if len(data) < 12:
        return None
    (id_, flags) = struct.unpack(">HH", data[:4])
    return struct.pack(">HHHHHH", id_, 0x8000 | (flags & 0x7900) | rcode, 0, 0, 0, 0)


async def answer(proxy, data: bytes, protocol: str = "dns") -> bytes | None:
    """The reply to one query message (None: too short to answer at all)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        query = parse_query(data)
    except ValueError as exc:
        proxy.emit("network.malformed", protocol=protocol, reason=str(exc))
        return _header_only(data, FORMERR)
    if (query.flags >> 11) & 0xF:
        return build_reply(query, NOTIMP)
    decision = proxy.policy.decide(query.name)
    if decision.allowed and (query.qclass != 1 or query.qtype not in TYPE_NAMES):
        decision = NetworkDecision(False, proxy.policy.origin, "blocked: only A, AAAA and CNAME queries are answered",
                                   "blocked-by-policy", decision.host)
    elif decision.allowed and parse_host(query.name).address is not None:
        decision = NetworkDecision(False, proxy.policy.origin, "blocked: an address is not a name to look up",
                                   "blocked-by-policy", decision.host)
    qtype = TYPE_NAMES.get(query.qtype, str(query.qtype))
    if not decision.allowed:
        proxy.decision_event(protocol, decision, None, started=started, qtype=qtype)
        return build_reply(query, REFUSED)
    try:
        decision, addresses = await proxy.dialer.checked_addresses(decision, 0)
    except Refused as refused:
        proxy.decision_event(protocol, refused.decision, None, started=started, qtype=qtype)
        return build_reply(query, REFUSED)
    except UpstreamFailed as failed:
        proxy.decision_event(protocol, decision, None, started=started, qtype=qtype, error=str(failed))
        return build_reply(query, SERVFAIL if failed.kind == "timeout" else NXDOMAIN)
    version = {A: 4, AAAA: 6}.get(query.qtype)
    chosen = [address for address in addresses if ipaddress.ip_address(address).version == version]
    proxy.decision_event(protocol, decision, None, started=started, qtype=qtype, addresses=chosen)
    return build_reply(query, NOERROR, chosen)


async def serve_dns_tcp(proxy, sock) -> None:
    """DNS over TCP: two-byte length, message; as many as the client sends."""
    loop = asyncio.get_running_loop()
    buffer = b""
    while True:
        while len(buffer) < 2 or len(buffer) < 2 + struct.unpack(">H", buffer[:2])[0]:
            data = await asyncio.wait_for(loop.sock_recv(sock, MAX_MESSAGE), proxy.limits.idle_timeout)
            if not data:
                return
            buffer += data
        (length,) = struct.unpack(">H", buffer[:2])
        message, buffer = buffer[2:2 + length], buffer[2 + length:]
        reply = await answer(proxy, message, "dns")
        if reply is None:
            return
        await loop.sock_sendall(sock, struct.pack(">H", len(reply)) + reply)
