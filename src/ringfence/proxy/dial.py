"""From an allowed decision to a connected socket: resolve once, check every
address, dial only a checked one, directly or through an upstream proxy
(CONNECT to the checked address, so chaining keeps the DNS-rebinding guard
unless `by_hostname` asks for the name).
"""

from __future__ import annotations

import asyncio
import socket

from ..policy.domains import parse_host
from ..policy.network import NetworkDecision, NetworkPolicy
from .config import ProxyLimits, Upstream


class Refused(Exception):
    def __init__(self, decision: NetworkDecision):
        super().__init__(decision.reason)
        self.decision = decision


class UpstreamFailed(Exception):
    """`kind`: resolve | refused | unreachable | timeout | upstream-proxy."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


class Dialled:
    __slots__ = ("sock", "address", "early", "decision")

    def __init__(self, sock: socket.socket, address: str, early: bytes, decision: NetworkDecision):
        self.sock, self.address, self.early, self.decision = sock, address, early, decision


class Dialer:
    def __init__(self, policy: NetworkPolicy, limits: ProxyLimits, upstream: Upstream | None = None,
                 hosts: dict | None = None, dial_map: dict | None = None):
        self.policy, self.limits, self.upstream = policy, limits, upstream
        self.hosts = {name.lower().rstrip("."): list(answers) for name, answers in (hosts or {}).items()}
        self.dial_map = dict(dial_map or {})

    async def resolve(self, name: str, port: int) -> list[str]:
        """Every address of `name`, in the resolver's order, once."""
        if self.hosts:
            answers = self.hosts.get(name)
            if not answers:
                raise UpstreamFailed(f"{name} does not resolve", "resolve")
            return list(answers.pop(0) if len(answers) > 1 else answers[0])
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(name, port, type=socket.SOCK_STREAM),
                                           self.limits.dns_timeout)
        except (OSError, UnicodeError) as exc:
            raise UpstreamFailed(f"{name} does not resolve ({exc})", "resolve") from None
        except asyncio.TimeoutError:
            raise UpstreamFailed(f"resolving {name} timed out", "timeout") from None
        seen: list[str] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            address = str(sockaddr[0])  # a text address: AF_INET or AF_INET6
            if address not in seen:
                seen.append(address)
        return seen

    async def checked_addresses(self, decision: NetworkDecision, port: int) -> tuple[NetworkDecision, list[str]]:
        assert decision.host is not None, "an allowed decision names its host"
        literal = parse_host(decision.host).address
        if literal is not None:
            return decision, [str(literal)]
        addresses = await self.resolve(decision.host, port)
        checked = self.policy.check_addresses(decision, addresses)
        if not checked.allowed:
            raise Refused(checked)
        return checked, addresses

    async def open(self, decision: NetworkDecision, port: int) -> Dialled:
        decision, addresses = await self.checked_addresses(decision, port)
        if self.upstream is not None:
            return await self._through_upstream(decision, addresses[0], port)
        failure = None
        for address in addresses:
            try:
                sock = await self._connect(*self.dial_address(address, port))
            except UpstreamFailed as exc:
                failure = exc
                continue
            return Dialled(sock, address, b"", decision)
        assert failure is not None, "a checked decision has at least one address"
        raise failure

    def dial_address(self, address: str, port: int) -> tuple[str, int]:
        """Where a checked address is dialled: itself, unless a test's
        `dial_map` sends it to a loopback server."""
        mapped = self.dial_map.get(address)
        if mapped is None:
            return address, port
        host, _, mapped_port = mapped.rpartition(":")
        return host.strip("[]"), int(mapped_port) if mapped_port != "*" else port

    async def _connect(self, host: str, port: int) -> socket.socket:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), self.limits.connect_timeout)
        except asyncio.TimeoutError:
            sock.close()
            raise UpstreamFailed(f"connecting to {host} port {port} timed out", "timeout") from None
        except ConnectionRefusedError:
            sock.close()
            raise UpstreamFailed(f"{host} port {port} refused the connection", "refused") from None
        except OSError as exc:
            sock.close()
            raise UpstreamFailed(f"{host} port {port} is unreachable ({exc.strerror})", "unreachable") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    async def _through_upstream(self, decision: NetworkDecision, address: str, port: int) -> Dialled:
        import h11

        upstream = self.upstream
        assert upstream is not None and decision.host is not None, "called for an allowed target with an upstream"
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(upstream.host, upstream.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise UpstreamFailed(f"the upstream proxy {upstream.host} does not resolve ({exc})",
                                 "upstream-proxy") from None
        sock = await self._connect(str(infos[0][4][0]), upstream.port)
        target_host = decision.host if upstream.by_hostname else address
        authority = f"[{target_host}]:{port}" if ":" in target_host else f"{target_host}:{port}"
        headers = [("Host", authority)]
        if upstream.authorization:
            headers.append(("Proxy-Authorization", upstream.authorization))
        client = h11.Connection(h11.CLIENT)
        try:
            await loop.sock_sendall(sock, client.send(h11.Request(method="CONNECT", target=authority,
                                                                  headers=headers)))
            await loop.sock_sendall(sock, client.send(h11.EndOfMessage()))
            response = await asyncio.wait_for(_response_head(loop, client, sock), self.limits.connect_timeout)
        except asyncio.TimeoutError:
            sock.close()
            raise UpstreamFailed("the upstream proxy did not answer CONNECT in time", "timeout") from None
        except (OSError, h11.ProtocolError) as exc:
            sock.close()
            raise UpstreamFailed(f"the upstream proxy failed: {exc}", "upstream-proxy") from None
        if not 200 <= response.status_code < 300:
            sock.close()
            raise UpstreamFailed(f"the upstream proxy answered CONNECT with {response.status_code}",
                                 "upstream-proxy")
        early = client.trailing_data[0]
        return Dialled(sock, address, bytes(early), decision)


async def _response_head(loop, client, sock: socket.socket):
    import h11

    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(await loop.sock_recv(sock, 65536))
            continue
        if isinstance(event, h11.Response):
            return event
        if not isinstance(event, h11.InformationalResponse):
            raise h11.RemoteProtocolError("no response to CONNECT")
