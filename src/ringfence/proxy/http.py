"""The HTTP proxy front end: CONNECT tunnels and absolute-form forwarding,
parsed with h11 on both sides.

The target is the request line's authority (RFC 9112 3.2.2), never a
header: origin-form requests, more than one Host header and a forwarded
request whose Host disagrees with its URI are refused, so what is decided
is what is dialled and what the server is asked for.
Each request on a kept-alive connection is decided on its own.
"""

from __future__ import annotations

import asyncio
import socket

import h11

from ..policy.domains import parse_host
from .dial import Refused, UpstreamFailed

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization",
                        b"proxy-authenticate", b"te", b"trailer", b"upgrade", b"expect"})
REASONS = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout", 431: "Request Header Fields Too Large",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout", 501: "Not Implemented"}


class BadRequest(Exception):
    def __init__(self, code: str, text: str, status: int = 400):
        super().__init__(text)
        self.code, self.status = code, status


def error_response(status: int, code: str, text: str) -> bytes:
    body = (text + "\n").encode()
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nx-proxy-error: {code}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


async def reply_and_close(sock, status: int, code: str, text: str) -> None:
    """Send an error and end the connection without losing the reply: what
    the client sent meanwhile is read and dropped rather than answered by a
    reset."""
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(sock, error_response(status, code, text))
    except OSError:
        return
    await _close_unread(loop, sock)


async def _close_unread(loop, sock) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(_drain(loop, sock), 1.0)
    except (OSError, asyncio.TimeoutError):
        pass


async def _drain(loop, sock) -> None:
    left = 1 << 20
    while left > 0:
        data = await loop.sock_recv(sock, 65536)
        if not data:
            return
        left -= len(data)


def split_authority(authority: str, default_port: int | None) -> tuple[str, int | None]:
    """(host, port) of `host:port`, `[v6]:port` or a bare host."""
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else (None if not rest else "x")
        host = "[" + host + "]"
    elif authority.count(":") == 1:
        host, _, port = authority.partition(":")
    else:
        host, port = authority, None
    if port is None:
        return host, default_port
    if not port.isdigit() or not port.isascii() or not 0 < int(port) < 65536:
        raise BadRequest("bad-request", f"bad port in {authority!r}")
    return host, int(port)


def request_target(request: h11.Request, limits) -> tuple[str, str, int, bytes, bytes]:
    """(protocol, host, port, origin-form path, authority) a request is for."""
    if len(request.headers) > limits.max_headers:
        raise BadRequest("too-many-headers", "too many header fields", 431)
    # h11 bounds only a head that arrives in pieces; one that came whole is measured here
    if len(request.target) + sum(len(name) + len(value) + 4 for name, value in request.headers) > \
            limits.max_header_bytes:
        raise BadRequest("headers-too-large", "the request head is too large", 431)
    hosts = [value for name, value in request.headers if name == b"host"]
    if len(hosts) > 1:
        raise BadRequest("duplicate-host", "more than one Host header")
    target = request.target.decode("ascii", "replace")
    if request.method == b"CONNECT":
        protocol, authority, path = "connect", target, ""
        host, port = split_authority(target, None)
        if port is None:
            raise BadRequest("bad-request", "CONNECT needs host:port")
    else:
        scheme, sep, rest = target.partition("://")
        if not sep:
            if target.startswith("/"):
                raise BadRequest("origin-form", "a proxy request must name its target: "
                                 "absolute-form (http://host/path) or CONNECT")
            raise BadRequest("bad-request", "unsupported request target")
        if scheme.lower() != "http":
            raise BadRequest("bad-request", f"{scheme}:// is not proxied as plain HTTP; use CONNECT")
        end = min([at for at in map(rest.find, "/?#") if at >= 0] or [len(rest)])
        authority, path = rest[:end], rest[end:].partition("#")[0]
        if "@" in authority:
            raise BadRequest("bad-request", "user information in the URI is refused")
        path = path if path.startswith("/") else "/" + path
        protocol, (host, port) = "http", split_authority(authority, 80)
    assert port is not None, "CONNECT's port was checked, a forwarded request's defaults to 80"
    try:
        name = parse_host(host).name
        # A CONNECT's Host is not what gets dialled (Node sends the proxy's own
        # address there); for forwarded requests it is what the server reads.
        if hosts and protocol == "http":
            header_host, header_port = split_authority(hosts[0].decode("ascii", "replace"), port)
            if parse_host(header_host).name != name or header_port != port:
                raise BadRequest("host-mismatch", "the Host header does not agree with the request's target")
    except ValueError as exc:
        raise BadRequest("bad-request", f"bad host: {exc}") from None
    return protocol, host, port, path.encode("ascii", "replace"), authority.encode("ascii", "replace")


async def _next_event(loop, conn: h11.Connection, sock, first: float, rest: float):
    """The next h11 event: `first` seconds for its first bytes, `rest` for
    the remainder (a slow client is cut off, not waited for)."""
    deadline = None
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        timeout = first if deadline is None else deadline - loop.time()
        if timeout <= 0:
            raise asyncio.TimeoutError
        data = await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout)
        if deadline is None:
            deadline = loop.time() + rest
        conn.receive_data(data)


class _Upstream:
    __slots__ = ("key", "dialled", "conn")

    def __init__(self, key, dialled):
        self.key, self.dialled, self.conn = key, dialled, h11.Connection(h11.CLIENT)

    def close(self):
        self.dialled.sock.close()


async def serve_http(proxy, sock) -> None:
    loop = asyncio.get_running_loop()
    limits = proxy.limits
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
    held: list[_Upstream] = []
    wait = limits.header_timeout
    try:
        while True:
            try:
                event = await _next_event(loop, conn, sock, wait, limits.header_timeout)
            except asyncio.TimeoutError:
                if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                    return
                await reply_and_close(sock, 408, "request-timeout", "the request head did not arrive in time")
                return
            except h11.RemoteProtocolError as exc:
                code = "duplicate-host" if "multiple Host" in str(exc) else "bad-request"
                proxy.emit("network.malformed", protocol="http", reason=str(exc)[:200], code=code)
                await reply_and_close(sock, exc.error_status_hint, code, f"bad request: {exc}")
                return
            if not isinstance(event, h11.Request):
                return
            started = loop.time()
            try:
                protocol, host, port, path, authority = request_target(event, limits)
            except BadRequest as exc:
                proxy.emit("network.malformed", protocol="http", reason=str(exc), code=exc.code)
                await reply_and_close(sock, exc.status, exc.code, str(exc))
                return
            decision = proxy.policy.decide(host, port)
            if not decision.allowed:
                proxy.decision_event(protocol, decision, port, started=started, method=event.method.decode())
                await reply_and_close(sock, 403, decision.code, decision.reason)
                return
            if protocol == "connect":
                await _connect(proxy, loop, conn, sock, decision, port, started)
                return
            if not await _forward(proxy, loop, conn, sock, event, decision, port, (path, authority), held, started):
                return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                await _close_unread(loop, sock)  # answered before the body ended: no reset over the reply
                return
            conn.start_next_cycle()
            wait = limits.idle_timeout
    finally:
        for upstream in held:
            upstream.close()


async def _dial(proxy, protocol, decision, port, started, sock, method):
    """The dialled target, or None once the client has had its refusal."""
    try:
        return await proxy.dialer.open(decision, port)
    except Refused as refused:
        proxy.decision_event(protocol, refused.decision, port, started=started, method=method)
        await reply_and_close(sock, 403, refused.decision.code, refused.decision.reason)
    except UpstreamFailed as failed:
        proxy.decision_event(protocol, decision, port, started=started, error=str(failed), method=method)
        status = 504 if failed.kind == "timeout" else 502
        await reply_and_close(sock, status, f"upstream-{failed.kind}", str(failed))
    return None


async def _connect(proxy, loop, conn, sock, decision, port, started) -> None:
    dialled = await _dial(proxy, "connect", decision, port, started, sock, "CONNECT")
    if dialled is None:
        return
    try:
        while conn.next_event() is not h11.PAUSED:
            pass
        early = bytes(conn.trailing_data[0])
        await loop.sock_sendall(sock, b"HTTP/1.1 200 Connection Established\r\n\r\n")
    except OSError:
        dialled.sock.close()
        raise
    await proxy.serve_tunnel("connect", sock, dialled, port, started, early, method="CONNECT")


async def _request_body(loop, conn, sock, send_up, idle_timeout: float) -> None:
    while True:
        event = await _next_event(loop, conn, sock, idle_timeout, idle_timeout)
        if not isinstance(event, (h11.Data, h11.EndOfMessage)):
            raise ConnectionError("the client went away before its request body ended")
        await send_up(event)
        if isinstance(event, h11.EndOfMessage):
            return


async def _relay_response(loop, conn, sock, up, up_sock, counts, idle_timeout: float, started_flag) -> None:
    while True:
        event = await _next_event(loop, up, up_sock, idle_timeout, idle_timeout)
        if isinstance(event, h11.InformationalResponse):
            if event.status_code != 101:
                await loop.sock_sendall(sock, conn.send(event))
            continue
        if isinstance(event, h11.Response):
            started_flag[0] = True
            event = h11.Response(status_code=event.status_code, reason=event.reason,
                                 headers=_forwarded_headers(event.headers))
        elif isinstance(event, h11.Data):
            counts[1] += len(event.data)
        elif not isinstance(event, h11.EndOfMessage):
            raise UpstreamFailed("the upstream server closed the connection", "closed")
        await loop.sock_sendall(sock, conn.send(event))
        if isinstance(event, h11.EndOfMessage):
            return


def _forwarded_headers(headers, extra_drop=()) -> list[tuple[bytes, bytes]]:
    named = set(extra_drop)
    for name, value in headers:
        if name == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    return [(name, value) for name, value in headers if name not in HOP_BY_HOP and name not in named]


async def _forward(proxy, loop, conn, sock, request, decision, port, target, held, started) -> bool:
    """One request forwarded and its response relayed; False when the client
    connection must end."""
    path, authority = target
    method = request.method.decode()
    key = (decision.host, port)
    upstream = held[0] if held else None
    if upstream is not None and (upstream.key != key or upstream.conn.our_state is not h11.IDLE):
        upstream.close()
        held.clear()
        upstream = None
    if upstream is None:
        dialled = await _dial(proxy, "http", decision, port, started, sock, method)
        if dialled is None:
            return False
        upstream = _Upstream(key, dialled)
        held.append(upstream)
    up, up_sock = upstream.conn, upstream.dialled.sock
    counts = [0, 0]
    headers = _forwarded_headers(request.headers)
    if not any(name == b"host" for name, _ in headers):
        headers.insert(0, (b"host", authority))

    async def send_up(event) -> None:
        data = up.send(event)
        counts[0] += len(data)
        await loop.sock_sendall(up_sock, data)

    response_started = False
    started_flag = [False]
    try:
        if upstream.dialled.early:
            up.receive_data(upstream.dialled.early)
            upstream.dialled.early = b""
        await send_up(h11.Request(method=request.method, target=path, headers=headers))
        if conn.client_is_waiting_for_100_continue:
            await loop.sock_sendall(sock, conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        body = asyncio.ensure_future(_request_body(loop, conn, sock, send_up, proxy.limits.idle_timeout))
        response = asyncio.ensure_future(_relay_response(loop, conn, sock, up, up_sock, counts,
                                                         proxy.limits.idle_timeout, started_flag))
        try:
            await asyncio.wait({body, response}, return_when=asyncio.FIRST_EXCEPTION)
            failure = body.exception() if body.done() else None
            if failure is not None:
                raise failure
            await response  # the server may answer before the body is all sent (a 413, say)
        finally:
            for task in (body, response):
                task.cancel()
            await asyncio.gather(body, response, return_exceptions=True)
        response_started = started_flag[0]
    except (asyncio.TimeoutError, UpstreamFailed, h11.ProtocolError, OSError) as exc:
        response_started = started_flag[0]
        upstream.close()
        held.clear()
        timed_out = isinstance(exc, asyncio.TimeoutError)
        error = "the upstream server did not answer in time" if timed_out else f"upstream failed: {exc}"
        proxy.decision_event("http", upstream.dialled.decision, port, address=upstream.dialled.address,
                             started=started, bytes_out=counts[0], bytes_in=counts[1], error=error, method=method)
        if not response_started and conn.our_state is h11.SEND_RESPONSE:
            await reply_and_close(sock, 504 if timed_out else 502,
                                  "upstream-timeout" if timed_out else "upstream-failed", error)
        return False
    proxy.decision_event("http", upstream.dialled.decision, port, address=upstream.dialled.address,
                         started=started, bytes_out=counts[0], bytes_in=counts[1], method=method)
    if up.our_state is h11.DONE and up.their_state is h11.DONE:
        up.start_next_cycle()
    else:
        upstream.close()
        held.clear()
    return True
