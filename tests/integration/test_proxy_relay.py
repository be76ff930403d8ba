"""The relay for real: inside a network namespace of its own (`unshare -Urn`,
loopback only), with a socket pair to a real proxy process on the host.

A client inside reaches an allowed upstream on the host through the relay,
while the same client's direct connection from the same namespace gets
nothing; the control is that client reaching the upstream directly from
the host's namespace. Verdicts are the upstream's log and the proxy's
events, both read on the host.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from harness import must_have
from proxyworld import PUBLIC, ProxyUnderTest, Upstream
from ringfence.proxy import inside

CLIENT = r'''
import json, os, socket, struct, sys, urllib.request
port, echo_port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
result = {"env": {name: os.environ.get(name) for name in ("HTTP_PROXY", "ALL_PROXY", "NO_PROXY")}}

def attempt(name, action):
    try:
        result[name] = action()
    except Exception as exc:
        result[name] = "failed: " + type(exc).__name__

attempt("direct", lambda: socket.create_connection(("127.0.0.2", port), timeout=3).sendall(
    f"GET /relay-direct HTTP/1.1\r\nHost: x\r\n\r\n".encode()) or "connected")
if len(sys.argv) > 4:  # the control: the direct attempt only
    with open(out, "w") as handle:
        json.dump(result, handle)
    sys.exit(0)
attempt("http", lambda: urllib.request.urlopen(f"http://allowed.test:{port}/relay-http", timeout=10).read().decode())
attempt("denied", lambda: urllib.request.urlopen(f"http://other.example:{port}/relay-denied", timeout=10).read())

def dns(name, qtype, tcp=False):
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split(".")) + b"\0"
    message = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + labels + struct.pack(">HH", qtype, 1)
    if tcp:
        sock = socket.create_connection(("127.0.0.1", 53), timeout=5)
        sock.sendall(struct.pack(">H", len(message)) + message)
        reply = sock.recv(4096)[2:]
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(5)
        sock.sendto(message, ("127.0.0.1", 53))
        reply = sock.recv(4096)
    rcode, answers = reply[3] & 0xF, struct.unpack(">H", reply[6:8])[0]
    return [rcode, answers, socket.inet_ntoa(reply[-4:]) if answers else None]

attempt("dns_allowed", lambda: dns("allowed.test", 1))
attempt("dns_other", lambda: dns("secret-in-a-label.exfil.test", 1))
attempt("dns_tcp", lambda: dns("allowed.test", 1, tcp=True))

def udp():
    host, socks_port = os.environ["ALL_PROXY"].rsplit("/", 1)[1].rsplit(":", 1)
    control = socket.create_connection((host, int(socks_port)), timeout=5)
    control.sendall(b"\x05\x01\x00")
    assert control.recv(2) == b"\x05\x00"
    control.sendall(b"\x05\x03\x00\x01\0\0\0\0\0\0")
    reply = control.recv(10)
    where = (socket.inet_ntoa(reply[4:8]), struct.unpack(">H", reply[8:10])[0])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    name = b"allowed.test"
    sock.sendto(b"\0\0\0\x03" + bytes([len(name)]) + name + struct.pack(">H", echo_port) + b"ping", where)
    data = sock.recv(65535)
    control.close()
    return data[10:].decode()

attempt("udp", udp)
with open(out, "w") as handle:
    json.dump(result, handle)
'''


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-Urn", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def namespaces():
    must_have(_unshare_works(), "unshare -Urn (a user and network namespace) is needed to run the relay")


def _relay_processes(mark: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                if f"RELAY_TEST_MARK={mark}".encode() in handle.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue
    return found


def test_a_client_inside_gets_out_only_through_the_relay(namespaces, tmp_path):
    from test_proxy_server import UdpEcho

    upstream, echo = Upstream("127.0.0.2"), UdpEcho()
    proxy = ProxyUnderTest(hosts={"allowed.test": [PUBLIC]}, dial_map={PUBLIC: "127.0.0.2:*"},
                           relay=True, enable_socks5_udp=True)
    script, out = tmp_path / "client.py", tmp_path / "result.json"
    script.write_text(CLIENT)
    mark = uuid.uuid4().hex
    channel = proxy.handle.sandbox_end.fileno()
    relay_script = inside.relay_script_fd()
    ready_read, ready_write = os.pipe()
    argv = ["unshare", "-Urn"] + inside.relay_argv(
        sys.executable, relay_script, channel, ready_write, ("http", "socks", "dns"),
        [sys.executable, str(script), str(upstream.port), str(echo.port), str(out)])
    env = {"PATH": os.environ["PATH"], "RELAY_TEST_MARK": mark}
    try:
        client = subprocess.Popen(argv, pass_fds=(relay_script, channel, ready_write), env=env)
        os.close(ready_write)
        os.close(relay_script)
        ports = inside.read_ready(ready_read)
        proxy.handle.close_sandbox_end()
        assert client.wait(timeout=60) == 0
        assert ports.http and ports.socks and ports.dns == 53
        result = json.loads(out.read_text())
        assert _relay_processes(mark), "the relay ends only with the proxy"
        decisions = proxy.decisions()
    finally:
        proxy.stop()
        upstream.close()
    # host-side verdicts: the upstream saw the request through the relay and none direct
    assert upstream.paths() == ["/relay-http"]
    assert echo.seen == [b"ping"]
    assert result["http"] == "hello /relay-http\n"
    assert result["direct"].startswith("failed")
    assert result["env"]["HTTP_PROXY"] == f"http://127.0.0.1:{ports.http}"
    assert result["env"]["ALL_PROXY"] == f"socks5h://127.0.0.1:{ports.socks}"
    assert result["denied"].startswith("failed")
    assert result["dns_allowed"] == [0, 1, PUBLIC] and result["dns_tcp"] == [0, 1, PUBLIC]
    assert result["dns_other"][:2] == [5, 0]
    assert result["udp"] == "echo ping"
    refused = {event["host"] for event in decisions if event["decision"] == "denied"}
    assert {"other.example", "secret-in-a-label.exfil.test"} <= refused
    deadline = time.monotonic() + 5
    while _relay_processes(mark) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _relay_processes(mark), "the relay outlived the proxy"


def test_control_the_same_client_reaches_the_upstream_directly_outside(tmp_path):
    upstream = Upstream("127.0.0.2")
    script, out = tmp_path / "client.py", tmp_path / "result.json"
    script.write_text(CLIENT)
    try:
        env = {"PATH": os.environ["PATH"], "ALL_PROXY": "socks5h://127.0.0.1:9"}
        subprocess.run([sys.executable, str(script), str(upstream.port), "9", str(out), "direct"], env=env,
                       timeout=120)
        result = json.loads(out.read_text())
        time.sleep(0.2)
    finally:
        upstream.close()
    assert result["direct"] == "connected"
    assert "/relay-direct" in upstream.paths()


@pytest.mark.parametrize("services, channel_kind, message", [
    (("http", "gopher"), socket.SOCK_SEQPACKET, "unknown service 'gopher'"),
    (("http",), socket.SOCK_STREAM, "not a SOCK_SEQPACKET socket"),
])
def test_relay_reports_what_kept_it_from_starting(services, channel_kind, message):
    from ringfence.errors import RingfenceError

    ours, theirs = socket.socketpair(socket.AF_UNIX, channel_kind)
    relay_script = inside.relay_script_fd()
    ready_read, ready_write = os.pipe()
    argv = inside.relay_argv(sys.executable, relay_script, theirs.fileno(), ready_write, services)
    process = subprocess.Popen(argv, pass_fds=(relay_script, ready_write, theirs.fileno()),
                               stdin=subprocess.DEVNULL)
    for fd in (ready_write, relay_script):
        os.close(fd)
    theirs.close()
    with pytest.raises(RingfenceError, match=message):
        inside.read_ready(ready_read)
    assert process.wait(timeout=10) == 125  # ringfence's own failure, not the command's
    ours.close()


def test_start_relay_here_and_its_end_with_the_channel():
    """`start_relay` outside a namespace: ports come back, the relay is not
    our child, and it goes when the proxy's end of the channel closes."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ports = inside.start_relay(theirs.fileno(), ("http",))
    theirs.close()
    with socket.create_connection(("127.0.0.1", ports.http), timeout=5):
        data, fds, _flags, _addr = socket.recv_fds(ours, 100, 1)
    assert data == b"Chttp" and len(fds) == 1
    os.close(fds[0])
    ours.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", ports.http), timeout=1).close()
        except ConnectionRefusedError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the relay kept listening after the channel closed")
