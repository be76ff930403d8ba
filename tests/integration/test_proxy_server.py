"""The egress proxy process, driven over loopback: what it lets through, what
it refuses and how, bypass attempts it must stop itself, and robustness.

Verdicts come from the upstream servers' logs (a request that reached them,
or did not), never from what a client prints. Names resolve through the
proxy's hosts mapping to public addresses, which `dial_map` sends to the
loopback server standing for them; the "victim" on 127.0.0.3 is a local
service the proxy must never reach.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from harness import must_have
from proxyworld import (PUBLIC, PUBLIC_OTHER, PUBLIC_V6, ProxyUnderTest, TlsGitServer, Upstream, curl, exchange, have,
                        node_with_proxy_variables)
from ringfence.proxy.config import ProxyLimits

DOMAINS = (("allowed.test", "allow", "rule allowed"), ("*.denied.test", "deny", "rule denied"),
           ("private.test", "allow", "rule private"), ("mixed.test", "allow", "rule mixed"),
           ("v6.test", "allow", "rule v6"), ("127.0.0.3", "allow", "rule victim literal"),
           (PUBLIC, "allow", "rule public literal"), (PUBLIC_V6, "allow", "rule public v6 literal"))
LOCAL_SPELLINGS = ["127.0.0.3", "2130706435", "0x7f000003", "0177.0.0.3", "127.3", "127.0.3", "0x7f.0.0.3",
                   "[::ffff:127.0.0.3]", "[::ffff:7f00:3]", "[::127.0.0.3]", "[64:ff9b::7f00:3]", "127.0.0.3."]


@pytest.fixture(scope="module")
def upstream():
    server = Upstream("127.0.0.2")
    yield server
    server.close()


@pytest.fixture(scope="module")
def victim():
    server = Upstream("127.0.0.3")
    yield server
    server.close()


def world_hosts(victim):
    return {"allowed.test": [PUBLIC], "other.example": [PUBLIC_OTHER], "x.denied.test": [PUBLIC],
            "private.test": [victim.host], "mixed.test": [PUBLIC, victim.host], "v6.test": [PUBLIC_V6]}


def world_dial_map(upstream):
    target = f"{upstream.host}:{upstream.port}"
    return {PUBLIC: target, PUBLIC_OTHER: target, PUBLIC_V6: target}


@pytest.fixture(scope="module")
def proxy(upstream, victim):
    under_test = ProxyUnderTest(DOMAINS, hosts=world_hosts(victim), dial_map=world_dial_map(upstream),
                                limits=ProxyLimits(idle_timeout=2.0, header_timeout=2.0))
    yield under_test
    events = under_test.stop()
    text = json.dumps(events)
    assert "secret" not in text, "an event carries a URL's path or query"
    assert not [event for event in events if event["type"] == "proxy.error"], events


def hits(server, marker):
    return [path for path in server.paths() if marker in path]


def socks_connect(port: int, host: str | bytes, target_port: int, *, kind: int | None = None) -> tuple[int, socket.socket]:
    """A SOCKS5 CONNECT; (reply code, the socket)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"\x05\x01\x00")
    assert sock.recv(2) == b"\x05\x00"
    if kind is None:
        name = host.encode() if isinstance(host, str) else host
        address = b"\x03" + bytes([len(name)]) + name
    else:
        address = bytes([kind]) + socket.inet_pton(socket.AF_INET if kind == 1 else socket.AF_INET6, host)
    sock.sendall(b"\x05\x01\x00" + address + struct.pack(">H", target_port))
    head = _recv_exactly(sock, 4)
    rest = _recv_exactly(sock, {1: 4, 4: 16}.get(head[3], 0) + 2)
    assert rest is not None
    return head[1], sock


def _recv_exactly(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return data
        data += chunk
    return data


def http_over(sock, host, path) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


# --- allowed targets, every front end ---------------------------------------------------------

def test_allowed_domain_over_plain_http_connect_and_socks_with_curl(proxy, upstream):
    base = f"allowed.test:{upstream.port}"
    plain = curl("-x", proxy.url, f"http://{base}/plain-curl?secret=1")
    assert plain.stdout == "hello /plain-curl?secret=1\n", plain.stderr
    tunnel = curl("-p", "-x", proxy.url, f"http://{base}/connect-curl")
    assert tunnel.stdout == "hello /connect-curl\n", tunnel.stderr
    socks = curl("--socks5-hostname", f"127.0.0.1:{proxy.socks_port}", f"http://{base}/socks-curl")
    assert socks.stdout == "hello /socks-curl\n", socks.stderr
    assert ("GET", "/plain-curl?secret=1", base) in upstream.requests
    assert hits(upstream, "/connect-curl") and hits(upstream, "/socks-curl")
    decisions = [event for event in proxy.decisions() if event["host"] == "allowed.test"]
    protocols = {event["protocol"] for event in decisions if event["decision"] == "allowed"}
    assert {"http", "connect", "socks5"} <= protocols
    for event in decisions:
        assert event["rule"] == "rule allowed" and event["address"] == PUBLIC and event["bytes_in"] > 0
        assert event["port"] == upstream.port and event["duration_ms"] >= 0


def test_python_clients(proxy, upstream):
    import http.client
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}))
    assert opener.open(f"http://allowed.test:{upstream.port}/urllib", timeout=10).read() == b"hello /urllib\n"
    connection = http.client.HTTPConnection("127.0.0.1", proxy.http_port, timeout=10)
    connection.set_tunnel("allowed.test", upstream.port)
    connection.request("GET", "/http-client-tunnel")
    assert connection.getresponse().read() == b"hello /http-client-tunnel\n"
    connection.close()
    code, sock = socks_connect(proxy.socks_port, "allowed.test", upstream.port)
    with sock:
        assert code == 0 and b"hello /raw-socks" in http_over(sock, "allowed.test", "/raw-socks")
    assert hits(upstream, "/urllib") and hits(upstream, "/http-client-tunnel") and hits(upstream, "/raw-socks")


def test_ip_literal_targets_pass_the_same_checks(proxy, upstream):
    code, sock = socks_connect(proxy.socks_port, PUBLIC, upstream.port, kind=1)
    with sock:
        assert code == 0 and b"hello /socks-literal" in http_over(sock, PUBLIC, "/socks-literal")
    code, sock = socks_connect(proxy.socks_port, PUBLIC_V6, upstream.port, kind=4)
    with sock:
        assert code == 0 and b"hello /socks-v6" in http_over(sock, "v6", "/socks-v6")
    code, sock = socks_connect(proxy.socks_port, PUBLIC_OTHER, upstream.port, kind=1)
    sock.close()
    assert code == 2
    assert curl("-x", proxy.url, f"http://[{PUBLIC_V6}]:{upstream.port}/http-v6").stdout == "hello /http-v6\n"
    assert curl("-x", proxy.url, f"http://v6.test:{upstream.port}/name-v6").stdout == "hello /name-v6\n"
    assert hits(upstream, "/socks-literal") and hits(upstream, "/socks-v6") and hits(upstream, "/http-v6")


def test_bodies_are_streamed_both_ways(proxy, upstream, tmp_path):
    body = tmp_path / "body"
    body.write_bytes(os.urandom(3 << 20))
    posted = curl("-x", proxy.url, "--data-binary", f"@{body}", f"http://allowed.test:{upstream.port}/post")
    assert posted.stdout == f"got {3 << 20} bytes\n", posted.stderr
    chunked = curl("-x", proxy.url, "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{body}",
                   f"http://allowed.test:{upstream.port}/chunked")
    assert chunked.stdout == f"got {3 << 20} bytes\n", chunked.stderr
    size = 40 << 20
    for extra in ((), ("-p",)):
        got = curl(*extra, "-x", proxy.url, "-o", "/dev/null", "-w", "%{size_download}",
                   f"http://allowed.test:{upstream.port}/big/{size}")
        assert got.stdout == str(size), got.stderr
    expect = curl("-x", proxy.url, "-H", "Expect: 100-continue", "--data-binary", f"@{body}",
                  f"http://allowed.test:{upstream.port}/expect")
    assert expect.stdout == f"got {3 << 20} bytes\n"


def test_an_answer_before_the_body_ended_reaches_the_client(proxy, upstream, tmp_path):
    body = tmp_path / "large"
    body.write_bytes(b"z" * (64 << 20))
    early = curl("-x", proxy.url, "-w", "%{http_code}", "--data-binary", f"@{body}",
                 f"http://allowed.test:{upstream.port}/early")
    assert early.stdout.endswith("413"), (early.stdout, early.stderr)
    assert hits(upstream, "/early")


def test_keep_alive_decides_each_request(proxy, upstream):
    before = upstream.connections
    request = (f"GET http://allowed.test:{upstream.port}/keep-1 HTTP/1.1\r\nHost: allowed.test:{upstream.port}\r\n\r\n"
               f"GET http://allowed.test:{upstream.port}/keep-2 HTTP/1.1\r\nHost: allowed.test:{upstream.port}\r\n\r\n"
               f"GET http://other.example:{upstream.port}/keep-3 HTTP/1.1\r\nHost: other.example:{upstream.port}\r\n"
               f"\r\n").encode()
    reply = exchange(proxy.http_port, request)
    assert reply.count(b"HTTP/1.1 200") == 2 and b"blocked by allowlist: other.example" in reply
    assert hits(upstream, "/keep-1") and hits(upstream, "/keep-2") and not hits(upstream, "/keep-3")
    assert upstream.connections == before + 1  # the upstream connection was reused


# --- refusals ---------------------------------------------------------------------------------

def test_unlisted_and_denied_domains_are_refused_naming_the_rule(proxy, upstream):
    refused = curl("-i", "-x", proxy.url, f"http://other.example:{upstream.port}/unlisted")
    assert "403 Forbidden" in refused.stdout and "x-proxy-error: blocked-by-allowlist" in refused.stdout
    assert refused.stdout.endswith("blocked by allowlist: other.example\n")
    denied = exchange(proxy.http_port, b"CONNECT x.denied.test:443 HTTP/1.1\r\nHost: x.denied.test:443\r\n\r\n")
    assert denied.startswith(b"HTTP/1.1 403") and b"x-proxy-error: blocked-by-denylist" in denied
    assert denied.endswith(b"blocked by denylist: *.denied.test\n")
    code, sock = socks_connect(proxy.socks_port, "other.example", upstream.port)
    sock.close()
    assert code == 2
    tunnel = curl("-p", "-x", proxy.url, f"https://other.example:{upstream.port}/unlisted-tls")
    assert tunnel.returncode != 0 and "403" in tunnel.stderr
    assert not hits(upstream, "unlisted")
    refusals = [event for event in proxy.decisions() if event["decision"] == "denied"]
    assert {"blocked-by-allowlist", "blocked-by-denylist"} <= {event["code"] for event in refusals}
    summary = proxy.handle.summary
    assert any(target.startswith("other.example") for target, _reason in summary.refused)


@pytest.mark.parametrize("spelling", LOCAL_SPELLINGS)
def test_a_local_address_in_any_spelling_is_refused(proxy, victim, spelling):
    marker = f"/local-{LOCAL_SPELLINGS.index(spelling)}"
    reply = exchange(proxy.http_port, f"GET http://{spelling}:{victim.port}{marker} HTTP/1.1\r\n"
                                      f"Host: {spelling}:{victim.port}\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 403") and b"blocked-by-local-address" in reply, reply
    reply = exchange(proxy.http_port, f"CONNECT {spelling}:{victim.port} HTTP/1.1\r\nHost: {spelling}:{victim.port}\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 403") and b"blocked-by-local-address" in reply, reply
    code, sock = socks_connect(proxy.socks_port, spelling.strip("[]"), victim.port)
    sock.close()
    assert code == 2
    assert not hits(victim, marker)


def test_local_address_controls(upstream, victim):
    """The victim is live, and a proxy allowed to reach it does: the refusals
    above are the policy's doing."""
    direct = socket.create_connection((victim.host, victim.port), timeout=5)
    with direct:
        assert b"hello /direct-control" in http_over(direct, "victim", "/direct-control")
    control = ProxyUnderTest(DOMAINS, allow_local_binding=True)
    try:
        reply = exchange(control.http_port, f"GET http://0x7f000003:{victim.port}/binding-control HTTP/1.1\r\n"
                                            f"Host: 0x7f000003:{victim.port}\r\nConnection: close\r\n\r\n".encode())
        assert reply.startswith(b"HTTP/1.1 200")
        code, sock = socks_connect(control.socks_port, "127.0.0.3", victim.port, kind=1)
        with sock:
            assert code == 0 and b"hello" in http_over(sock, "victim", "/binding-socks")
        refused = exchange(control.http_port, f"GET http://127.0.0.4:{victim.port}/unlisted-local HTTP/1.1\r\n"
                                              f"Host: 127.0.0.4:{victim.port}\r\n\r\n".encode())
        assert b"blocked-by-local-address" in refused
    finally:
        control.stop()
    assert hits(victim, "/direct-control") and hits(victim, "/binding-control") and hits(victim, "/binding-socks")


def test_names_that_resolve_to_a_local_address_are_refused(proxy, victim):
    for name, marker in (("private.test", "/name-private"), ("mixed.test", "/name-mixed")):
        reply = exchange(proxy.http_port, f"GET http://{name}:{victim.port}{marker} HTTP/1.1\r\n"
                                          f"Host: {name}:{victim.port}\r\n\r\n".encode())
        assert reply.startswith(b"HTTP/1.1 403") and b"resolves to 127.0.0.3" in reply, reply
        code, sock = socks_connect(proxy.socks_port, name, victim.port)
        sock.close()
        assert code == 2
    assert not hits(victim, "/name-")


def test_dns_rebinding_dials_the_checked_address(upstream, victim):
    """rebind.test resolves public, then to the victim: the proxy resolves once
    and dials what it checked, so the victim is never reached; the next
    request sees the new answer and is refused."""
    proxy = ProxyUnderTest((("rebind.test", "allow", "rule"),),
                           hosts={"rebind.test": [[PUBLIC], [victim.host]]}, dial_map=world_dial_map(upstream))
    try:
        first = curl("-x", proxy.url, f"http://rebind.test:{upstream.port}/rebind-1")
        assert first.stdout == "hello /rebind-1\n"
        second = curl("-i", "-x", proxy.url, f"http://rebind.test:{victim.port}/rebind-2")
        assert "blocked-by-local-address" in second.stdout
    finally:
        proxy.stop()
    assert hits(upstream, "/rebind-1") and not hits(victim, "/rebind")


def test_host_header_must_agree_with_the_target(proxy, upstream, victim):
    target = f"allowed.test:{upstream.port}"
    agreeing = exchange(proxy.http_port, f"GET http://{target}/host-agrees HTTP/1.1\r\nHost: {target}\r\n"
                                         f"Connection: close\r\n\r\n".encode())
    assert agreeing.startswith(b"HTTP/1.1 200")
    for host in (f"127.0.0.3:{victim.port}", "other.example", f"allowed.test:{upstream.port + 1}"):
        reply = exchange(proxy.http_port, f"GET http://{target}/host-mismatch HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert reply.startswith(b"HTTP/1.1 400") and b"x-proxy-error: host-mismatch" in reply
    # a CONNECT is decided on its authority whatever its Host says (Node sends the proxy's address there)
    reply = exchange(proxy.http_port, b"CONNECT other.example:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
    assert b"blocked by allowlist: other.example" in reply
    duplicate = exchange(proxy.http_port, f"GET http://{target}/dup-host HTTP/1.1\r\nHost: {target}\r\n"
                                          f"Host: {target}\r\n\r\n".encode())
    assert duplicate.startswith(b"HTTP/1.1 400") and b"duplicate-host" in duplicate
    origin = exchange(proxy.http_port, f"GET /origin-form HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    assert origin.startswith(b"HTTP/1.1 400") and b"x-proxy-error: origin-form" in origin
    userinfo = exchange(proxy.http_port, f"GET http://a@{target}/userinfo HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    assert userinfo.startswith(b"HTTP/1.1 400")
    assert hits(upstream, "/host-agrees") and not hits(upstream, "/host-mismatch") and not hits(upstream, "/dup-host")
    assert not hits(upstream, "/origin-form") and not hits(victim, "host-mismatch")


# --- upstream failures and limits ---------------------------------------------------------------

def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.2", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_upstream_failures_are_502_and_504(upstream):
    dead = closed_port()
    proxy = ProxyUnderTest(hosts={"allowed.test": [PUBLIC]}, dial_map={PUBLIC: f"127.0.0.2:{dead}"})
    slow = ProxyUnderTest(hosts={"allowed.test": [PUBLIC]}, dial_map=world_dial_map(upstream),
                          limits=ProxyLimits(idle_timeout=1.0))
    try:
        refused = exchange(proxy.http_port, b"GET http://allowed.test/x HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 502") and b"upstream-refused" in refused
        tunnel = exchange(proxy.http_port, b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
        assert tunnel.startswith(b"HTTP/1.1 502")
        code, sock = socks_connect(proxy.socks_port, "allowed.test", 443)
        sock.close()
        assert code == 5
        unresolved = exchange(proxy.http_port, b"GET http://allowed.test.unknown/ HTTP/1.1\r\nHost: allowed.test.unknown\r\n\r\n")
        assert unresolved.startswith(b"HTTP/1.1 403")
        started = time.monotonic()
        silent = exchange(slow.http_port, f"GET http://allowed.test:{upstream.port}/silent HTTP/1.1\r\n"
                                          f"Host: allowed.test:{upstream.port}\r\n\r\n".encode(), timeout=10)
        assert silent.startswith(b"HTTP/1.1 504") and time.monotonic() - started < 5
        errors = [event for event in proxy.decisions() if "error" in event]
        assert errors and all(event["decision"] == "allowed" for event in errors)
    finally:
        proxy.stop()
        slow.stop()


def test_bounded_headers_slow_clients_and_connection_cap(upstream):
    proxy = ProxyUnderTest(hosts={"allowed.test": [PUBLIC]}, dial_map=world_dial_map(upstream),
                           limits=ProxyLimits(header_timeout=1.0, idle_timeout=1.0, max_connections=4,
                                              max_header_bytes=4096, max_headers=20))
    target = f"allowed.test:{upstream.port}"
    try:
        big = exchange(proxy.http_port, f"GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n"
                                        f"X-Big: {'a' * 8000}\r\n\r\n".encode())
        assert big.startswith(b"HTTP/1.1 431")
        many = "".join(f"X-{n}: v\r\n" for n in range(30))
        assert exchange(proxy.http_port, f"GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n{many}\r\n"
                                         .encode()).startswith(b"HTTP/1.1 431")
        started = time.monotonic()
        slow = exchange(proxy.http_port, b"GET http://allowed.test/ HTTP/1.1\r\nHost: allo", timeout=10)
        assert slow.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 4
        started = time.monotonic()
        assert exchange(proxy.http_port, b"", timeout=10) == b"" and time.monotonic() - started < 4
        with socket.create_connection(("127.0.0.1", proxy.socks_port), timeout=10) as sock:
            sock.sendall(b"\x05")
            started = time.monotonic()
            assert sock.recv(100)[:2] in (b"", b"\x05\x06") and time.monotonic() - started < 4
        held = [socket.create_connection(("127.0.0.1", proxy.http_port)) for _ in range(4)]
        time.sleep(0.3)
        busy = exchange(proxy.http_port, f"GET http://{target}/busy HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        assert busy.startswith(b"HTTP/1.1 503")
        for sock in held:
            sock.close()
        time.sleep(0.3)
        assert curl("-x", proxy.url, f"http://{target}/after-limits").stdout == "hello /after-limits\n"
    finally:
        proxy.stop()
    assert not hits(upstream, "/busy")


# --- SOCKS details ----------------------------------------------------------------------------

def test_socks_refusals_have_the_right_reply_codes(proxy, upstream):
    with socket.create_connection(("127.0.0.1", proxy.socks_port), timeout=5) as sock:
        sock.sendall(b"\x05\x01\x02")  # username/password only
        assert sock.recv(2) == b"\x05\xff"
    for command, expected in ((2, 7), (3, 2), (9, 7)):  # BIND, UDP ASSOCIATE (not enabled), unknown
        with socket.create_connection(("127.0.0.1", proxy.socks_port), timeout=5) as sock:
            sock.sendall(b"\x05\x01\x00")
            assert sock.recv(2) == b"\x05\x00"
            sock.sendall(bytes([5, command, 0, 1]) + socket.inet_aton(PUBLIC) + struct.pack(">H", upstream.port))
            assert sock.recv(10)[:2] == bytes([5, expected])
    with socket.create_connection(("127.0.0.1", proxy.socks_port), timeout=5) as sock:
        sock.sendall(b"\x05\x01\x00")
        sock.recv(2)
        sock.sendall(b"\x05\x01\x00\x07abcdef")
        assert sock.recv(10)[:2] == b"\x05\x08"
    disabled = ProxyUnderTest(enable_socks5=False)
    try:
        with socket.create_connection(("127.0.0.1", disabled.socks_port), timeout=5) as sock:
            sock.sendall(b"\x05\x01\x00")
            assert sock.recv(2) == b"\x05\xff"
    finally:
        disabled.stop()


class UdpEcho:
    def __init__(self, host="127.0.0.2"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[bytes] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                return
            self.seen.append(data)
            self.sock.sendto(b"echo " + data, peer)


def test_socks_udp_associate_when_enabled():
    echo = UdpEcho()
    victim = UdpEcho("127.0.0.3")
    proxy = ProxyUnderTest(hosts={"allowed.test": [PUBLIC]}, dial_map={PUBLIC: f"127.0.0.2:{echo.port}"},
                           enable_socks5_udp=True)
    try:
        control = socket.create_connection(("127.0.0.1", proxy.socks_port), timeout=5)
        control.sendall(b"\x05\x01\x00")
        assert control.recv(2) == b"\x05\x00"
        control.sendall(b"\x05\x03\x00\x01\0\0\0\0\0\0")
        reply = _recv_exactly(control, 10)
        assert reply[:2] == b"\x05\x00"
        relay_at = (socket.inet_ntoa(reply[4:8]), struct.unpack(">H", reply[8:10])[0])
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.settimeout(5)
        name = b"allowed.test"
        client.sendto(b"\0\0\0\x03" + bytes([len(name)]) + name + struct.pack(">H", echo.port) + b"ping", relay_at)
        data, _ = client.recvfrom(65535)
        assert data == b"\0\0\0\x01" + socket.inet_aton(PUBLIC) + struct.pack(">H", echo.port) + b"echo ping"
        client.sendto(b"\0\0\0\x01" + socket.inet_aton("127.0.0.3") + struct.pack(">H", victim.port) + b"leak",
                      relay_at)
        client.sendto(b"\0\0\x01\x01" + socket.inet_aton(PUBLIC) + struct.pack(">H", echo.port) + b"frag", relay_at)
        time.sleep(0.5)
        control.close()
        client.close()
        time.sleep(0.3)
        udp = [event for event in proxy.decisions() if event["protocol"] == "socks5-udp"]
        assert any(event["decision"] == "allowed" and event["bytes_out"] == 4 for event in udp)
        assert any(event["decision"] == "denied" and event["code"] == "blocked-by-local-address" for event in udp)
    finally:
        proxy.stop()
    assert echo.seen == [b"ping"] and victim.seen == []


# --- chaining through an upstream proxy ---------------------------------------------------------

class CorporateProxy:
    """An upstream HTTP proxy that logs each CONNECT target and credentials,
    and tunnels to where the test's map says."""

    def __init__(self, routes):
        self.routes, self.seen = routes, []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.5", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        lines = head.split(b"\r\n")
        target = lines[0].split()[1].decode()
        auth = next((line.split(b":", 1)[1].strip().decode() for line in lines
                     if line.lower().startswith(b"proxy-authorization")), None)
        self.seen.append((target, auth))
        host, _, port = target.rpartition(":")
        where = self.routes.get(host.strip("[]"))
        if where is None:
            client.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            client.close()
            return
        remote = socket.create_connection((where, int(port)))
        client.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
        for a, b in ((client, remote), (remote, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    b.shutdown(socket.SHUT_WR)
                    return
                b.sendall(data)
        except OSError:
            pass


def test_chaining_connects_to_the_checked_address(upstream, victim):
    corporate = CorporateProxy({PUBLIC: upstream.host, "allowed.test": upstream.host, "127.0.0.3": victim.host})
    url = f"http://user:p%40ss@127.0.0.5:{corporate.port}"
    proxy = ProxyUnderTest(DOMAINS, hosts={"allowed.test": [PUBLIC], "private.test": [victim.host]}, upstream=url)
    try:
        assert curl("-x", proxy.url, f"http://allowed.test:{upstream.port}/chained-plain").stdout == \
            "hello /chained-plain\n"
        assert curl("-p", "-x", proxy.url, f"http://allowed.test:{upstream.port}/chained-tunnel").stdout == \
            "hello /chained-tunnel\n"
        assert b"blocked-by-local-address" in exchange(
            proxy.http_port, f"CONNECT private.test:{victim.port} HTTP/1.1\r\nHost: private.test:{victim.port}\r\n\r\n".encode())
        assert b"blocked-by-allowlist" in exchange(proxy.http_port, b"CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n")
    finally:
        proxy.stop()
    expected_auth = "Basic " + base64.b64encode(b"user:p@ss").decode()
    assert corporate.seen == [(f"{PUBLIC}:{upstream.port}", expected_auth)] * 2
    assert hits(upstream, "/chained-plain") and hits(upstream, "/chained-tunnel")
    by_name = ProxyUnderTest(DOMAINS, hosts={"allowed.test": [PUBLIC]}, upstream=url, upstream_by_hostname=True)
    try:
        assert curl("-x", by_name.url, f"http://allowed.test:{upstream.port}/by-name").stdout == "hello /by-name\n"
    finally:
        by_name.stop()
    assert corporate.seen[-1][0] == f"allowed.test:{upstream.port}"


# --- real clients over TLS --------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_repo(tmp_path_factory):
    must_have(have("openssl") and have("git"), "openssl and git are needed")
    server = TlsGitServer(tmp_path_factory.mktemp("tls"))
    yield {"port": server.port, "cert": server.cert, "log": server.log, "root": server.root, "env": server.env}
    server.close()


def test_https_with_curl_and_git_through_connect(tls_repo):
    port = tls_repo["port"]
    proxy = ProxyUnderTest(hosts={"allowed.test": [PUBLIC]}, dial_map={PUBLIC: f"127.0.0.4:{port}"})
    try:
        fetched = curl("--cacert", tls_repo["cert"], "-x", proxy.url,
                       f"https://allowed.test:{port}/repo.git/HEAD")
        assert fetched.stdout.startswith("ref: refs/heads/"), fetched.stderr
        env = dict(tls_repo["env"], https_proxy=proxy.url, GIT_SSL_CAINFO=tls_repo["cert"])
        clone = tls_repo["root"] / "clone"
        result = subprocess.run(["git", "clone", "-q", f"https://allowed.test:{port}/repo.git", str(clone)],
                                env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert (clone / "README").read_text() == "through the proxy\n"
        denied = subprocess.run(["git", "ls-remote", f"https://other.example:{port}/repo.git"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert denied.returncode != 0
    finally:
        proxy.stop()
    assert "/repo.git/info/refs?service=git-upload-pack" in tls_repo["log"]


def test_a_tunnel_cannot_be_fronted_to_another_tls_name(tls_repo):
    """The ClientHello's server name must be the CONNECT target: the same
    tunnel with the right name works (the control), with another name, or
    one not allowed, the hello never reaches the server."""
    import ssl

    port = tls_repo["port"]
    proxy = ProxyUnderTest((("allowed.test", "allow", "r"), ("other.allowed.test", "allow", "r2")),
                           hosts={"allowed.test": [PUBLIC]}, dial_map={PUBLIC: f"127.0.0.4:{port}"})
    context = ssl.create_default_context(cafile=tls_repo["cert"])
    context.check_hostname = False

    def fetch(server_hostname, path):
        sock = socket.create_connection(("127.0.0.1", proxy.http_port), timeout=10)
        sock.sendall(f"CONNECT allowed.test:{port} HTTP/1.1\r\nHost: allowed.test:{port}\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        try:
            with context.wrap_socket(sock, server_hostname=server_hostname) as tls:
                return http_over(tls, "allowed.test", path)
        except (ssl.SSLError, OSError):
            return None

    try:
        assert b"ref: refs/heads/" in fetch("allowed.test", "/repo.git/HEAD?sni=right")
        assert fetch("other.allowed.test", "/repo.git/HEAD?sni=other-allowed") is None
        assert fetch("evil.example", "/repo.git/HEAD?sni=unlisted") is None
        refused = [event for event in proxy.decisions() if event["code"] == "blocked-by-sni"]
    finally:
        proxy.stop()
    assert "/repo.git/HEAD?sni=right" in tls_repo["log"]
    assert not [path for path in tls_repo["log"] if "sni=other" in path or "sni=unlisted" in path]
    assert len(refused) == 2 and {"allowed.test"} == {event["host"] for event in refused[:1]}


def test_node_through_connect(proxy, upstream):
    node = node_with_proxy_variables() or shutil.which("node")
    must_have(node is not None, "node: pip install '.[test]'")
    script = f"""
const http = require('http');
const req = http.request({{host: '127.0.0.1', port: {proxy.http_port}, method: 'CONNECT',
                          path: 'allowed.test:{upstream.port}'}});
req.on('connect', (res, socket) => {{
  if (res.statusCode !== 200) {{ console.log('status', res.statusCode); process.exit(1); }}
  socket.write('GET /node HTTP/1.1\\r\\nHost: allowed.test\\r\\nConnection: close\\r\\n\\r\\n');
  let body = '';
  socket.on('data', d => body += d);
  socket.on('end', () => {{ console.log(body.split('\\r\\n\\r\\n')[1]); }});
}});
req.end();
"""
    result = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "hello /node", result.stderr
    assert hits(upstream, "/node")


# --- malformed input ----------------------------------------------------------------------------

_methods = st.sampled_from([b"GET", b"CONNECT", b"POST", b"G\x00T", b"", b"HEAD", b"\xff\xfe"])
_targets = st.one_of(st.binary(max_size=60), st.sampled_from([b"http://allowed.test/", b"allowed.test:443",
                                                              b"/", b"*", b"http://[::1", b"http://a:99999/"]))
_headers = st.lists(st.tuples(st.binary(max_size=20), st.binary(max_size=40)), max_size=6)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=_methods, target=_targets, headers=_headers, tail=st.binary(max_size=40))
def test_fuzzed_http_gets_an_error_reply_and_the_proxy_keeps_serving(proxy, method, target, headers, tail):
    request = method + b" " + target + b" HTTP/1.1\r\n" + b"".join(name + b": " + value + b"\r\n"
                                                                   for name, value in headers) + b"\r\n" + tail
    try:
        reply = exchange(proxy.http_port, request, timeout=8, half_close=True)
    except ConnectionResetError:
        reply = b""
    assert reply == b"" or reply.startswith(b"HTTP/1.1 "), reply[:100]
    if reply.startswith(b"HTTP/1.1 2"):
        return
    status = int(reply[9:12]) if reply else 0
    assert not reply or 400 <= status < 600


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=80))
def test_fuzzed_http_bytes(proxy, data):
    try:
        reply = exchange(proxy.http_port, data, timeout=8, half_close=True)
    except ConnectionResetError:
        reply = b""
    assert reply == b"" or reply.startswith(b"HTTP/1.1 4") or reply.startswith(b"HTTP/1.1 5"), reply[:100]


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.just(b"\x01\x00"), st.binary(max_size=40)), st.binary(max_size=40))
def test_fuzzed_socks_gets_a_reply_or_a_close(proxy, greeting, request):
    with socket.create_connection(("127.0.0.1", proxy.socks_port), timeout=8) as sock:
        data = b""
        try:
            sock.sendall(b"\x05" + greeting)
            if greeting == b"\x01\x00":
                data = sock.recv(2)
                sock.sendall(b"\x05" + request)
            sock.shutdown(socket.SHUT_WR)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
    assert data == b"" or data[:1] == b"\x05", data


def test_the_proxy_still_serves_after_the_fuzzing(proxy, upstream):
    assert curl("-x", proxy.url, f"http://allowed.test:{upstream.port}/after-fuzz").stdout == "hello /after-fuzz\n"
    assert not [event for event in proxy.read_events() if event["type"] == "proxy.error"]


# --- lifetime -----------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_the_proxy_gets_nothing_from_the_launchers_environment_or_descriptors(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "do-not-pass")
    monkeypatch.setenv("HTTP_PROXY", "http://elsewhere:1")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    (tmp_path / "h11.py").write_text("raise SystemExit('a shadowing module was imported')\n")
    leaked = os.open(tmp_path / "leaked", os.O_CREAT | os.O_RDWR)
    os.set_inheritable(leaked, True)
    proxy = ProxyUnderTest((("allowed.test", "allow", "r"), ("very-private-name.test", "allow", "r")))
    try:
        pid = proxy.handle.pid
        with open(f"/proc/{pid}/environ", "rb") as handle:
            assert handle.read() == b""
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            assert b"very-private-name" not in handle.read()
        targets = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        assert not [target for target in targets.values() if str(tmp_path) in target]
        assert targets[0] == targets[1] == targets[2] == "/dev/null"
        assert targets[3].startswith("pipe:") and targets[4].startswith("pipe:")
        assert targets[6].startswith("socket:") and targets[7].startswith("socket:")
        assert curl("-x", proxy.url, "http://other.example/").stdout.startswith("blocked by allowlist")
    finally:
        proxy.stop()
        os.close(leaked)


def test_the_channel_carries_no_authority(upstream, tmp_path):
    """Whatever writes to the channel (the relay, or a command that got hold
    of it) only brings clients that are decided like any other: a file or a
    Unix socket is dropped, a TCP client is still refused what the policy
    refuses, and a forged answer changes nothing."""
    proxy = ProxyUnderTest(hosts={"allowed.test": [PUBLIC]}, dial_map=world_dial_map(upstream), relay=True)
    channel = proxy.handle.sandbox_end
    try:
        with open(tmp_path / "file", "w+") as handle:
            socket.send_fds(channel, [b"Chttp"], [handle.fileno()])
        unix_a, unix_b = socket.socketpair()
        socket.send_fds(channel, [b"Chttp"], [unix_a.fileno()])
        channel.send(b"u\0\0\0\1")
        channel.send(b"Xjunk")
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        socket.send_fds(channel, [b"Chttp"], [accepted.fileno()])
        accepted.close()
        client.sendall(b"GET http://other.example/ HTTP/1.1\r\nHost: other.example\r\n\r\n")
        client.settimeout(5)
        assert client.recv(4096).startswith(b"HTTP/1.1 403")
        client.close()
        unix_b.close()
        assert not [event for event in proxy.read_events() if event["type"] == "proxy.error"]
    finally:
        proxy.stop()
    assert not (tmp_path / "file").read_text()


def test_the_proxy_dies_with_a_sigkilled_launcher():
    script = (f"import sys, time; sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r});"
              "import proxyworld; p = proxyworld.ProxyUnderTest(relay=True); print(p.handle.pid, flush=True);"
              "time.sleep(60)")
    launcher = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pid = int(launcher.stdout.readline())
    assert _alive(pid)
    launcher.kill()
    launcher.wait()
    assert _wait_gone(pid)


def test_the_proxy_ends_when_the_sandbox_end_of_the_channel_closes():
    proxy = ProxyUnderTest(relay=True)
    pid = proxy.handle.pid
    assert _alive(pid)
    proxy.handle.close_sandbox_end()
    deadline = time.monotonic() + 5
    while not proxy.handle._eof and time.monotonic() < deadline:
        proxy.read_events(0.2)
    assert proxy.handle._eof
    proxy.stop()
    assert not _alive(pid)


def test_stopping_logs_the_tunnels_still_open(upstream):
    proxy = ProxyUnderTest(hosts={"allowed.test": [PUBLIC]}, dial_map=world_dial_map(upstream))
    code, sock = socks_connect(proxy.socks_port, "allowed.test", upstream.port)
    assert code == 0
    sock.sendall(b"GET /open-at-stop HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
    assert sock.recv(4096).startswith(b"HTTP/1.")
    events = proxy.stop()
    sock.close()
    ended = [event for event in events if event.get("error") == "ended when the proxy stopped"]
    assert len(ended) == 1 and ended[0]["bytes_out"] > 0 and ended[0]["bytes_in"] > 0


def test_start_without_waiting_then_wait_ready(upstream):
    from ringfence.policy.network import NetworkPolicy
    from ringfence.proxy.launch import start_proxy
    from proxyworld import listener

    http = listener()
    handle = start_proxy(NetworkPolicy("limited", "p", (("allowed.test", "allow", "r"),)), wait=False,
                         hosts={"allowed.test": [PUBLIC]}, dial_map=world_dial_map(upstream),
                         listeners={"http": http}, relay=False)
    handle.wait_ready()
    reply = curl("-x", f"http://127.0.0.1:{http.getsockname()[1]}", f"http://allowed.test:{upstream.port}/no-wait")
    assert reply.stdout == "hello /no-wait\n"
    handle.stop()
    assert handle.stop() == [] and handle.pid is None
    http.close()


def test_a_proxy_that_cannot_start_says_why(monkeypatch, tmp_path):
    from ringfence.errors import RingfenceError
    from ringfence.policy.network import NetworkPolicy
    from ringfence.proxy import launch

    (tmp_path / "ringfence").mkdir()
    (tmp_path / "ringfence" / "__init__.py").write_text("raise ImportError('a broken installation')\n")
    monkeypatch.setattr(launch, "_search_paths", lambda: [str(tmp_path)])
    with pytest.raises(RingfenceError, match="did not start: ImportError: a broken installation"):
        launch.start_proxy(NetworkPolicy("limited", "p"), timeout=20)


def test_a_bad_pattern_refuses_to_start():
    from ringfence.errors import PolicyError

    with pytest.raises(PolicyError, match=r"cannot be enforced.*'\*'"):
        ProxyUnderTest((("*", "allow", "everything"),))
    with pytest.raises(PolicyError, match="only http:// upstream"):
        ProxyUnderTest(upstream="socks5://127.0.0.1:1080")
    from ringfence.policy.network import NetworkPolicy
    from ringfence.proxy.launch import start_proxy

    for mode in ("full", "off"):
        with pytest.raises(PolicyError, match="only a limited network"):
            start_proxy(NetworkPolicy(mode, "test"))


def test_summary_lines(proxy, upstream):
    curl("-x", proxy.url, f"http://allowed.test:{upstream.port}/summary")
    curl("-x", proxy.url, "http://other.example/summary")
    proxy.read_events()
    lines = proxy.handle.summary.lines()
    assert f"network: reached allowed.test:{upstream.port}" in lines
    assert "network: refused other.example:80: blocked by allowlist: other.example" in lines
