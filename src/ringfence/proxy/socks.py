"""The SOCKS5 front end: the subset of RFC 1928 a sandbox needs.

Written by hand because no maintained Python library implements the server
side (socksio and python-socks are clients; the servers on PyPI are large
multi-protocol proxies or need Python 3.12): no authentication, CONNECT
with domain names resolved here (socks5h) and IP literals through the same
checks, UDP ASSOCIATE only when the policy enables it, BIND refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct

from .dial import Refused, UpstreamFailed
from .socks_wire import (ADDRESS_TYPE_NOT_SUPPORTED, COMMAND_NOT_SUPPORTED, CONNECT, DOMAIN, FAILURE_REPLY,
                         GENERAL_FAILURE, IPV4, IPV6, NO_ACCEPTABLE, NO_AUTH, NOT_ALLOWED, SUCCEEDED, TTL_EXPIRED,
                         UDP_ASSOCIATE, VERSION, Malformed, reply)
from .udp import associate

class _Reader:
    """Exact reads with one deadline for the whole handshake; what arrives
    beyond the handshake is kept for the target."""

    def __init__(self, loop, sock, timeout: float):
        self.loop, self.sock, self.buffer = loop, sock, b""
        self.deadline = loop.time() + timeout

    async def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            left = self.deadline - self.loop.time()
            if left <= 0:
                raise asyncio.TimeoutError
            data = await asyncio.wait_for(self.loop.sock_recv(self.sock, 4096), left)
            if not data:
                raise Malformed("the client closed the connection during the handshake")
            self.buffer += data
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data


async def read_address(reader: _Reader, kind: int) -> str:
    if kind == IPV4:
        return str(ipaddress.IPv4Address(await reader.exactly(4)))
    if kind == IPV6:
        return str(ipaddress.IPv6Address(await reader.exactly(16)))
    if kind == DOMAIN:
        length = (await reader.exactly(1))[0]
        raw = await reader.exactly(length)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed("the domain name is not UTF-8") from None
    raise Malformed(f"address type {kind}")


async def serve_socks(proxy, sock) -> None:
    loop = asyncio.get_running_loop()
    reader = _Reader(loop, sock, proxy.limits.header_timeout)
    try:
        version, count = await reader.exactly(2)
        methods = await reader.exactly(count)
        if version != VERSION or NO_AUTH not in methods or not proxy.policy.enable_socks5:
            await loop.sock_sendall(sock, bytes([VERSION, NO_ACCEPTABLE]))
            proxy.emit("network.malformed", protocol="socks5",
                       reason="SOCKS5 is not enabled" if version == VERSION and NO_AUTH in methods
                       else "not a SOCKS5 greeting without authentication")
            return
        await loop.sock_sendall(sock, bytes([VERSION, NO_AUTH]))
        version, command, _reserved, kind = await reader.exactly(4)
        if version != VERSION:
            raise Malformed(f"version {version} in the request")
        if kind not in (IPV4, DOMAIN, IPV6):
            await loop.sock_sendall(sock, reply(ADDRESS_TYPE_NOT_SUPPORTED))
            raise Malformed(f"address type {kind}")
        host = await read_address(reader, kind)
        (port,) = struct.unpack(">H", await reader.exactly(2))
    except Malformed as exc:
        proxy.emit("network.malformed", protocol="socks5", reason=str(exc))
        await _send_quietly(loop, sock, reply(GENERAL_FAILURE))
        return
    except asyncio.TimeoutError:
        proxy.emit("network.malformed", protocol="socks5", reason="the handshake did not complete in time")
        await _send_quietly(loop, sock, reply(TTL_EXPIRED))
        return
    if command == CONNECT:
        await _connect(proxy, loop, sock, host, port, reader.buffer)
    elif command == UDP_ASSOCIATE:
        if not proxy.policy.enable_socks5_udp or proxy.dialer.upstream is not None:
            why = "is not enabled" if not proxy.policy.enable_socks5_udp else "cannot go through an upstream proxy"
            proxy.emit("network.malformed", protocol="socks5", reason=f"UDP ASSOCIATE {why}")
            await loop.sock_sendall(sock, reply(NOT_ALLOWED))
            return
        await associate(proxy, loop, sock)
    else:
        proxy.emit("network.malformed", protocol="socks5", reason=f"command {command} is not supported")
        await loop.sock_sendall(sock, reply(COMMAND_NOT_SUPPORTED))


async def _send_quietly(loop, sock, data: bytes) -> None:
    try:
        await loop.sock_sendall(sock, data)
    except OSError:
        pass


async def _connect(proxy, loop, sock, host: str, port: int, early: bytes) -> None:
    started = loop.time()
    decision = proxy.policy.decide(host, port)
    if decision.allowed and port == 0:
        decision = decision.replace(allowed=False, reason="blocked: port 0", code="blocked-by-policy")
    if not decision.allowed:
        proxy.decision_event("socks5", decision, port, started=started)
        await loop.sock_sendall(sock, reply(NOT_ALLOWED))
        return
    try:
        dialled = await proxy.dialer.open(decision, port)
    except Refused as refused:
        proxy.decision_event("socks5", refused.decision, port, started=started)
        await loop.sock_sendall(sock, reply(NOT_ALLOWED))
        return
    except UpstreamFailed as failed:
        proxy.decision_event("socks5", decision, port, started=started, error=str(failed))
        await loop.sock_sendall(sock, reply(FAILURE_REPLY.get(failed.kind, GENERAL_FAILURE)))
        return
    try:
        bound = dialled.sock.getsockname() if proxy.dialer.upstream is None else None
        await loop.sock_sendall(sock, reply(SUCCEEDED, bound))
    except OSError:
        dialled.sock.close()
        raise
    await proxy.serve_tunnel("socks5", sock, dialled, port, started, early)
