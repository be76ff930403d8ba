"""The host-side egress proxy: one asyncio process per run.

Started by `ringfence.proxy.launch` with an empty environment; fd 3 carries
its configuration (see `config`) and stays open for the run: its close (or
the death of the parent, or of the channel's peer) ends the proxy.
Connections arrive as descriptors over the channel from the relay in the
sandbox, or (tests, benchmarks) from listening sockets handed in.

Events go to the events pipe as JSON lines: first {"type": "proxy.ready"},
then one `network.decision` per decision (decision allowed|denied,
protocol, host, port, address, rule, reason, code, bytes_out, bytes_in,
duration_ms; an `error` when an allowed target could not be reached; never
a URL's path or query), `network.malformed` for input that was refused
before any target was known, and `proxy.error` when the proxy failed.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import struct

from ..policy.network import NetworkPolicy
from .config import ProxyLimits, Upstream
from .dial import Dialer

MAX_RECORD = 65536
MAX_DNS_IN_FLIGHT = 256  # UDP queries beyond this are dropped, as a busy resolver would


class Proxy:
    def __init__(self, config: dict, events):
        self.policy = NetworkPolicy.from_config(config["network"])
        self.limits = ProxyLimits(**config.get("limits", {}))
        upstream = config.get("upstream")
        self.dialer = Dialer(self.policy, self.limits, Upstream(**upstream) if upstream else None,
                             config.get("hosts"), config.get("dial_map"))
        self.events = events
        self.sni_check = config.get("sni_check", True)
        self.channel: socket.socket | None = None
        self.active = 0
        self.tasks: set[asyncio.Future] = set()
        self.udp_requests: dict[bytes, asyncio.Future] = {}
        self.next_request = 0
        self.dns_in_flight = 0
        self.stopped = asyncio.Event()

    async def serve_tunnel(self, protocol: str, client: socket.socket, dialled, port: int, started: float,
                           early: bytes = b"", **extra) -> None:
        """Splice `client` and the dialled target, then log the one decision
        event for it, however it ended. Closes the target's socket."""
        from .dial import Refused
        from .tunnel import Interrupted, tunnel

        where = {"address": dialled.address, "started": started, **extra}
        try:
            sent, received = await tunnel(client, dialled.sock, to_b=early, to_a=dialled.early,
                                          idle_timeout=self.limits.tunnel_idle_timeout,
                                          gate=self.tls_gate(client, dialled))
        except Refused as refused:
            self.decision_event(protocol, refused.decision, port, **where)
        except Interrupted as ended:
            self.decision_event(protocol, dialled.decision, port, bytes_out=ended.sent, bytes_in=ended.received,
                                error="ended when the proxy stopped", **where)
        except OSError as exc:
            self.decision_event(protocol, dialled.decision, port, error=f"tunnel ended: {exc.strerror or exc}",
                                **where)
        else:
            self.decision_event(protocol, dialled.decision, port, bytes_out=sent, bytes_in=received, **where)
        finally:
            dialled.sock.close()

    def tls_gate(self, client: socket.socket, dialled):
        """The check on a tunnel's first bytes (its TLS server name), or None."""
        if not self.sni_check:
            return None
        from .sni import checked_first_bytes

        loop = asyncio.get_running_loop()
        return lambda first: checked_first_bytes(loop, client, first, dialled.decision, self.policy)

    def emit(self, type_: str, **fields) -> None:
        fields = {"type": type_, **fields}
        self.events.write((json.dumps(fields) + "\n").encode())

    def decision_event(self, protocol: str, decision, port, *, address=None, started: float, bytes_out=0,
                       bytes_in=0, error=None, **extra) -> None:
        loop = asyncio.get_running_loop()
        fields = {"decision": "allowed" if decision.allowed else "denied", "protocol": protocol,
                  "host": decision.host, "port": port, "address": address, "rule": decision.rule,
                  "reason": decision.reason, "code": decision.code, "bytes_out": bytes_out, "bytes_in": bytes_in,
                  "duration_ms": round((loop.time() - started) * 1000, 3)}
        if error is not None:
            fields["error"] = error
        fields.update(extra)
        self.emit("network.decision", **fields)

    # --- connections --------------------------------------------------------------------------

    def take(self, sock: socket.socket, service: str) -> None:
        sock.setblocking(False)
        if self.active >= self.limits.max_connections:
            self.emit("network.malformed", protocol=service, reason="too many connections")
            self._track(asyncio.ensure_future(_refuse_busy(sock, service)))
            return
        self.active += 1
        self._track(asyncio.ensure_future(self._serve(sock, service)))

    def _track(self, task: asyncio.Future) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, sock: socket.socket, service: str) -> None:
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if service == "http":
                from .http import serve_http

                await serve_http(self, sock)
            elif service == "socks":
                from .socks import serve_socks

                await serve_socks(self, sock)
            elif service == "dns":
                from .dns import serve_dns_tcp

                await serve_dns_tcp(self, sock)
        except (ConnectionError, TimeoutError, asyncio.TimeoutError):
            pass
        except Exception as exc:  # one connection's failure must not end the others
            self.emit("proxy.error", where=service, error=f"{type(exc).__name__}: {exc}")
        finally:
            self.active -= 1
            sock.close()

    async def accept_loop(self, listener: socket.socket, service: str) -> None:
        loop = asyncio.get_running_loop()
        listener.setblocking(False)
        while True:
            client, _ = await loop.sock_accept(listener)
            self.take(client, service)

    # --- the channel from the relay -------------------------------------------------------------

    def on_channel(self) -> None:
        channel = self.channel
        assert channel is not None, "read only once the channel is open"
        try:
            data, fds, _flags, _addr = socket.recv_fds(channel, MAX_RECORD, 4)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data and not fds:
            asyncio.get_running_loop().remove_reader(channel.fileno())
            self.stopped.set()
            return
        kind, body = data[:1], data[1:]
        if kind == b"C" and len(fds) == 1 and body in (b"http", b"socks", b"dns"):
            # The channel carries no authority: whatever arrives is a client
            # like any other, but it must be a TCP connection.
            client = _tcp_socket(fds.pop())
            if client is not None:
                self.take(client, body.decode())
        elif kind == b"Q" and len(body) >= 4 and self.dns_in_flight < MAX_DNS_IN_FLIGHT:
            self.dns_in_flight += 1
            self._track(asyncio.ensure_future(self._answer_udp(body[:4], body[4:])))
        elif kind == b"u" and len(body) == 4:
            future = self.udp_requests.pop(body, None)
            if future is not None and not future.done():
                future.set_result(_udp_socket(fds.pop()) if fds else None)
        for fd in fds:
            os.close(fd)

    async def _answer_udp(self, tag: bytes, query: bytes) -> None:
        from .dns import answer

        try:
            reply = await answer(self, query, "dns")
        finally:
            self.dns_in_flight -= 1
        if reply is not None and self.channel is not None:
            try:
                self.channel.send(b"A" + tag + reply)
            except OSError:
                pass

    async def sandbox_udp_socket(self) -> socket.socket | None:
        """A UDP socket bound to 127.0.0.1 where the client is: made by the
        relay inside the sandbox, or here when clients come from a listener."""
        if self.channel is None:
            made = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            made.bind(("127.0.0.1", 0))
            return made
        self.next_request = (self.next_request + 1) & 0xFFFFFFFF
        tag = struct.pack(">I", self.next_request)
        future = asyncio.get_running_loop().create_future()
        self.udp_requests[tag] = future
        try:
            self.channel.send(b"U" + tag)
            return await asyncio.wait_for(future, self.limits.connect_timeout)
        except (OSError, asyncio.TimeoutError):
            return None
        finally:
            self.udp_requests.pop(tag, None)


def _adopt(fd: int, kind: int) -> socket.socket | None:
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        return None
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != kind:
        sock.close()
        return None
    return sock


def _tcp_socket(fd: int) -> socket.socket | None:
    return _adopt(fd, socket.SOCK_STREAM)


def _udp_socket(fd: int) -> socket.socket | None:
    return _adopt(fd, socket.SOCK_DGRAM)


async def _refuse_busy(sock: socket.socket, service: str) -> None:
    """Refusals past the cap are short: a reply where the protocol has one
    before the request (HTTP), then the close."""
    try:
        if service == "http":
            from .http import reply_and_close

            await reply_and_close(sock, 503, "too-many-connections", "too many connections")
    finally:
        sock.close()


class _EventPipe:
    """Writes never block the proxy: lines wait in the transport's buffer
    when the reader is slow."""

    def __init__(self, transport):
        self.transport = transport

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)


async def _serve(config: dict, config_pipe: int) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(config["events_fd"], "wb", 0))
    proxy = Proxy(config, _EventPipe(transport))
    def on_config_pipe():
        if not os.read(config_pipe, 4096):
            loop.remove_reader(config_pipe)
            proxy.stopped.set()

    loop.add_reader(config_pipe, on_config_pipe)
    if config.get("channel_fd") is not None:
        proxy.channel = socket.socket(fileno=config["channel_fd"])
        proxy.channel.setblocking(False)
        loop.add_reader(proxy.channel.fileno(), proxy.on_channel)
    listeners = [asyncio.ensure_future(proxy.accept_loop(socket.socket(fileno=fd), service))
                 for fd, service in config.get("listen", ())]
    # stderr was for a start-up failure; the launcher stops reading it once ready
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    proxy.emit("proxy.ready", pid=os.getpid())
    await proxy.stopped.wait()
    for task in listeners + list(proxy.tasks):
        task.cancel()
    await asyncio.gather(*listeners, *proxy.tasks, return_exceptions=True)
    while transport.get_write_buffer_size():
        await asyncio.sleep(0.01)
    transport.close()


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 16
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, 1 << 20), hard))


def _read_config(fd: int) -> dict:
    chunks = b""
    while not chunks.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            raise SystemExit(0)  # the launcher went away before the configuration was complete
        chunks += chunk
    return json.loads(chunks)


def main(config_fd: int = 3) -> int:
    config = _read_config(config_fd)
    _raise_fd_limit()
    try:
        asyncio.run(_serve(config, config_fd))
    except Exception as exc:
        line = json.dumps({"type": "proxy.error", "where": "main", "error": f"{type(exc).__name__}: {exc}"})
        try:
            os.write(config["events_fd"], (line + "\n").encode())
        except OSError:
            pass
        return 1
    return 0
