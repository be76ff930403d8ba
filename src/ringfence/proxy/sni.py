"""The TLS server name a tunnel's client asks for, read from its ClientHello
before any byte of it is passed on: it must be allowed, and be the CONNECT
target when that is a name, so an allowed tunnel cannot be fronted to
another host at the TLS layer (fronting inside TLS needs interception,
which the proxy does not do).

The ClientHello is parsed by hand (RFC 8446 4.1.2, RFC 6066 3): the
standard library's ssl module only completes handshakes, it cannot read one
it does not terminate. Only the path to the server_name extension is read.
"""

from __future__ import annotations

import struct

HANDSHAKE, CLIENT_HELLO, SERVER_NAME = 0x16, 0x01, 0x0000
MAX_HELLO = 1 << 16


def _records(data: bytes) -> tuple[bytes, bool]:
    """(handshake bytes so far, whether the ClientHello is complete)."""
    body, at = b"", 0
    while at + 5 <= len(data):
        kind, _version, length = struct.unpack(">BHH", data[at:at + 5])
        if kind != HANDSHAKE:
            raise ValueError("a record other than a handshake before the ClientHello ended")
        if at + 5 + length > len(data):
            break
        body += data[at + 5:at + 5 + length]
        at += 5 + length
        if len(body) >= 4 and len(body) >= 4 + int.from_bytes(body[1:4], "big"):
            return body, True
    return body, False


def needs_more(data: bytes) -> bool:
    """True while `data` starts a TLS handshake whose ClientHello is not all there."""
    if not data or data[0] != HANDSHAKE:
        return False
    if len(data) > MAX_HELLO:
        raise ValueError("a ClientHello larger than 64 KiB")
    return not _records(data)[1]


def server_name(data: bytes) -> str | None:
    """The server name in the ClientHello that `data` starts with; None when
    `data` is not TLS or names no server; ValueError when it is TLS but
    cannot be read."""
    if not data or data[0] != HANDSHAKE:
        return None
    body, complete = _records(data)
    if not complete:
        raise ValueError("an incomplete ClientHello")
    if body[0] != CLIENT_HELLO:
        raise ValueError("a handshake that is not a ClientHello")
    try:
        at = 4 + 2 + 32
        at += 1 + body[at]                                          # session id
        at += 2 + int.from_bytes(body[at:at + 2], "big")            # cipher suites
        at += 1 + body[at]                                          # compression methods
        if at == len(body):
            return None                                             # no extensions at all
        end = at + 2 + int.from_bytes(body[at:at + 2], "big")
        at += 2
        while at + 4 <= end:
            kind, length = struct.unpack(">HH", body[at:at + 4])
            at += 4
            if kind == SERVER_NAME:
                names = body[at + 2:at + length]
                while len(names) >= 3:
                    name_type, name_length = names[0], int.from_bytes(names[1:3], "big")
                    if name_type == 0:
                        return names[3:3 + name_length].decode("ascii")
                    names = names[3 + name_length:]
                return None
            at += length
    except (IndexError, UnicodeDecodeError):
        raise ValueError("a malformed ClientHello") from None
    return None


async def checked_first_bytes(loop, sock, early: bytes, decision, policy) -> bytes:
    """What the client sent first, once its ClientHello (if it is TLS) has
    passed; raises Refused when the server name is not allowed here."""
    from ..policy.domains import parse_host
    from ..policy.network import NetworkDecision
    from .dial import Refused

    data = early
    try:
        while not data or needs_more(data):
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                return data
            data += chunk
        name = server_name(data)
    except ValueError as exc:
        raise Refused(NetworkDecision(False, policy.origin, f"blocked: {exc} in the tunnel to {decision.host}",
                                      "blocked-by-sni", decision.host)) from None
    if name is None:
        return data
    by_name = policy.decide(name)
    target = parse_host(decision.host)
    if not by_name.allowed:
        raise Refused(by_name.replace(code="blocked-by-sni",
                                      reason=f"{by_name.reason} (the TLS server name in a tunnel to {decision.host})"))
    if target.address is None and by_name.host != target.name:
        raise Refused(NetworkDecision(False, policy.origin, f"blocked: the TLS server name {by_name.host} is not "
                                      f"the tunnel's target {decision.host}", "blocked-by-sni", decision.host))
    return data
