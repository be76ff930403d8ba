"""SOCKS5 on the wire (RFC 1928): the numbers, and the reply a server sends.
Shared by the TCP front end and UDP ASSOCIATE."""

from __future__ import annotations

import ipaddress
import struct

VERSION = 5
NO_AUTH, NO_ACCEPTABLE = 0x00, 0xFF
CONNECT, BIND, UDP_ASSOCIATE = 1, 2, 3
IPV4, DOMAIN, IPV6 = 1, 3, 4
SUCCEEDED, GENERAL_FAILURE, NOT_ALLOWED, NETWORK_UNREACHABLE, HOST_UNREACHABLE = 0, 1, 2, 3, 4
CONNECTION_REFUSED, TTL_EXPIRED, COMMAND_NOT_SUPPORTED, ADDRESS_TYPE_NOT_SUPPORTED = 5, 6, 7, 8
FAILURE_REPLY = {"resolve": HOST_UNREACHABLE, "refused": CONNECTION_REFUSED, "unreachable": NETWORK_UNREACHABLE,
                  "timeout": TTL_EXPIRED}


class Malformed(Exception):
    pass


def reply(code: int, address: tuple | None = None) -> bytes:
    host, port = address[:2] if address else ("0.0.0.0", 0)
    packed = ipaddress.ip_address(host).packed
    return struct.pack(">BBBB", VERSION, code, 0, IPV4 if len(packed) == 4 else IPV6) + packed + struct.pack(">H", port)
