"""SOCKS5 UDP ASSOCIATE: datagrams between the client and the targets the
policy allows, each destination decided (and resolved) once per
association, replies accepted only from destinations the client wrote to.

The client-side socket lives where the client is: the relay makes it inside
the sandbox's network namespace and hands it over, so the address in the
reply is one the client can reach.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct

from .dial import Refused, UpstreamFailed
from .socks_wire import DOMAIN, GENERAL_FAILURE, IPV4, IPV6, SUCCEEDED, Malformed, reply

MAX_DATAGRAM = 65535


class _Destination:
    __slots__ = ("decision", "port", "address", "where", "sent", "received", "started", "error")

    def __init__(self, decision, port, started):
        self.decision, self.port, self.started = decision, port, started
        self.address = self.where = self.error = None
        self.sent = self.received = 0


def _parse(data: bytes) -> tuple[str, int, bytes]:
    """(host, port, payload) of a client datagram (RFC 1928 section 7)."""
    if len(data) < 5 or data[:3] != b"\0\0\0":
        raise Malformed("fragmented or malformed datagram")
    kind, body = data[3], data[4:]
    if kind == IPV4:
        size, host = 4, str(ipaddress.IPv4Address(body[:4])) if len(body) >= 4 else ""
    elif kind == IPV6:
        size, host = 16, str(ipaddress.IPv6Address(body[:16])) if len(body) >= 16 else ""
    elif kind == DOMAIN:
        size = 1 + body[0]
        host = body[1:size].decode("utf-8", "replace")
    else:
        raise Malformed(f"address type {kind}")
    if len(body) < size + 2:
        raise Malformed("short datagram")
    (port,) = struct.unpack(">H", body[size:size + 2])
    return host, port, body[size + 2:]


def _header(address: str, port: int) -> bytes:
    packed = ipaddress.ip_address(address).packed
    return b"\0\0\0" + bytes([IPV4 if len(packed) == 4 else IPV6]) + packed + struct.pack(">H", port)


async def associate(proxy, loop, control) -> None:
    inside = await proxy.sandbox_udp_socket()
    if inside is None:
        await loop.sock_sendall(control, reply(GENERAL_FAILURE))
        return
    inside.setblocking(False)
    outside = {}
    destinations: dict[tuple, _Destination] = {}
    peers: dict[tuple, _Destination] = {}
    client: list[tuple] = []  # the one address datagrams may come from, once known

    def outbound(family) -> socket.socket:
        if family not in outside:
            made = socket.socket(family, socket.SOCK_DGRAM)
            made.setblocking(False)
            outside[family] = made
            tasks.append(asyncio.ensure_future(from_targets(made)))
        return outside[family]

    async def destination(host: str, port: int) -> _Destination:
        entry = destinations.get((host, port))
        if entry is not None:
            return entry
        started = loop.time()
        decision = proxy.policy.decide(host, port)
        entry = destinations[(host, port)] = _Destination(decision, port, started)
        try:
            if decision.allowed:
                entry.decision, addresses = await proxy.dialer.checked_addresses(decision, port)
                entry.address = addresses[0]
                entry.where = proxy.dialer.dial_address(entry.address, port)
                peers[entry.where] = entry
        except Refused as refused:
            entry.decision = refused.decision
        except UpstreamFailed as failed:
            entry.error = str(failed)
        if entry.where is None:
            proxy.decision_event("socks5-udp", entry.decision, port, started=started, error=entry.error)
        return entry

    async def from_client() -> None:
        while True:
            data, sender = await loop.sock_recvfrom(inside, MAX_DATAGRAM)
            if not client:
                client.append(sender)
            elif sender != client[0]:
                continue
            try:
                host, port, payload = _parse(data)
            except (Malformed, ValueError):
                continue
            entry = await destination(host, port)
            if entry.where is None:
                continue
            family = socket.AF_INET6 if ":" in entry.where[0] else socket.AF_INET
            await loop.sock_sendto(outbound(family), payload, entry.where)
            entry.sent += len(payload)

    async def from_targets(sock) -> None:
        while True:
            data, sender = await loop.sock_recvfrom(sock, MAX_DATAGRAM)
            entry = peers.get(sender[:2])
            if entry is None or not client:
                continue
            entry.received += len(data)
            await loop.sock_sendto(inside, _header(entry.address, entry.port) + data, client[0])

    tasks = [asyncio.ensure_future(from_client())]
    try:
        await loop.sock_sendall(control, reply(SUCCEEDED, inside.getsockname()))
        while await loop.sock_recv(control, 4096):
            pass  # the association lasts as long as its TCP connection
    except OSError:
        pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        inside.close()
        for sock in outside.values():
            sock.close()
        for entry in destinations.values():
            if entry.where is not None:
                proxy.decision_event("socks5-udp", entry.decision, entry.port, address=entry.address,
                                     started=entry.started, bytes_out=entry.sent, bytes_in=entry.received)
