"""With network off the sandbox reaches nothing on the host, not even over
loopback or a Unix socket; and secrets in the environment do not get in."""

import os
import socket
import tempfile
import threading

import pytest

pytestmark = pytest.mark.boundary

CONNECT = """
import socket
s = socket.socket({family}, {kind})
s.settimeout(3)
s.connect({address!r})
s.sendall(b"hello")
"""


def python(scene, code):
    """A shell command running `code` with the system python3, from a file in the workspace."""
    scene.write("ws/attack.py", code)
    return "python3 attack.py"


class Server:
    """Accepts connections in a thread and records every one of them."""

    def __init__(self, family, address, kind=socket.SOCK_STREAM):
        self.sock = socket.socket(family, kind)
        self.sock.bind(address)
        self.kind = kind
        if kind == socket.SOCK_STREAM:
            self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.seen = []
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopped:
            try:
                if self.kind == socket.SOCK_STREAM:
                    connection, _ = self.sock.accept()
                    connection.settimeout(1)
                    try:
                        self.seen.append(connection.recv(100))
                    except OSError:
                        self.seen.append(b"")
                    connection.close()
                else:
                    self.seen.append(self.sock.recv(100))
            except (socket.timeout, OSError):
                continue

    def settle(self):
        import time

        time.sleep(0.3)
        return list(self.seen)

    def close(self):
        self.stopped = True
        self.thread.join()
        self.sock.close()


def test_loopback_tcp_server_on_the_host(scene):
    server = Server(socket.AF_INET, ("127.0.0.1", 0))
    try:
        script = python(scene, CONNECT.format(family="socket.AF_INET", kind="socket.SOCK_STREAM",
                                              address=server.sock.getsockname()))
        scene.sh(script, sandbox=False)
        assert server.settle(), "control could not connect"
        server.seen.clear()
        scene.sh(script)
        assert server.settle() == []
    finally:
        server.close()


def test_loopback_udp_on_the_host(scene):
    server = Server(socket.AF_INET, ("127.0.0.1", 0), kind=socket.SOCK_DGRAM)
    try:
        port = server.sock.getsockname()[1]
        script = python(scene, "import socket\n"
                                f"socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', {port}))\n")
        scene.sh(script, sandbox=False)
        assert server.settle(), "control could not send"
        server.seen.clear()
        scene.sh(script)
        assert server.settle() == []
    finally:
        server.close()


def test_host_unix_socket_in_tmp(scene):
    directory = tempfile.mkdtemp(prefix="rf-sock-")
    os.chmod(directory, 0o777)
    path = os.path.join(directory, "agent.sock")
    server = Server(socket.AF_UNIX, path)
    os.chmod(path, 0o777)
    try:
        script = python(scene, CONNECT.format(family="socket.AF_UNIX", kind="socket.SOCK_STREAM", address=path))
        scene.sh(script, sandbox=False)
        assert server.settle(), "control could not connect"
        server.seen.clear()
        scene.sh(script)
        assert server.settle() == []
    finally:
        server.close()
        os.unlink(path)
        os.rmdir(directory)


def test_host_abstract_unix_socket(scene):
    name = "\0ringfence-test-" + os.urandom(4).hex()
    server = Server(socket.AF_UNIX, name)
    try:
        script = python(scene, CONNECT.format(family="socket.AF_UNIX", kind="socket.SOCK_STREAM", address=name))
        scene.sh(script, sandbox=False)
        assert server.settle(), "control could not connect"
        server.seen.clear()
        scene.sh(script)
        assert server.settle() == []
    finally:
        server.close()


@pytest.mark.parametrize("family,kind", [("AF_VSOCK", "SOCK_STREAM"), ("AF_PACKET", "SOCK_DGRAM"),
                                         ("AF_ALG", "SOCK_SEQPACKET"), ("AF_INET", "SOCK_RAW")])
def test_sockets_a_network_namespace_does_not_confine(scene, family, kind):
    """Refused inside whatever the kernel offers. AF_VSOCK carries the control:
    it needs no privilege and talks to the hypervisor host, past any network namespace."""
    script = python(scene, "import socket\n"
                           "try:\n"
                           f"    socket.socket(socket.{family}, socket.{kind})\n"
                           "except OSError as e:\n"
                           "    open('verdict', 'w').write(str(e.errno))\n"
                           "else:\n"
                           "    open('verdict', 'w').write('created')\n")
    scene.sh(script)
    assert scene.read("ws/verdict") not in (None, "created")
    if family == "AF_VSOCK":
        scene.sh(script, sandbox=False)
        assert scene.read("ws/verdict") == "created", "control: the kernel refused this family anyway"


def test_environment_secret_is_not_visible(scene):
    secret = "sk-test-" + os.urandom(6).hex()
    scene.extra_env.update({"OPENAI_API_KEY": secret, "GITHUB_TOKEN": secret, "DB_SECRET": secret})
    scene.sh("env > leak.txt", sandbox=False)
    assert secret in scene.read("ws/leak.txt"), "control: the secret was not in the environment"
    scene.write("ws/leak.txt", "")
    result = scene.sh("env > leak.txt; cat /proc/self/environ >> leak.txt")
    assert secret not in (scene.read("ws/leak.txt") or "") + result.stdout + result.stderr


def test_secrets_under_other_names_and_in_urls_are_not_visible(scene):
    password = "pw" + os.urandom(6).hex()
    token = "ghp_" + os.urandom(18).hex()
    scene.extra_env.update({"DATABASE_URL": f"postgres://app:{password}@db/prod", "MY_HELPER_VALUE": token,
                            "MYSQL_PWD": password, "GH_PAT": token, "CI_JOB_JWT": token})
    scene.sh("env > leak.txt", sandbox=False)
    assert password in scene.read("ws/leak.txt") and token in scene.read("ws/leak.txt"), "control"
    scene.write("ws/leak.txt", "")
    result = scene.sh("env > leak.txt")
    leaked = (scene.read("ws/leak.txt") or "") + result.stdout + result.stderr
    assert password not in leaked and token not in leaked
    status = scene.ringfence("status", "--json")
    import json

    dropped = {row["name"]: row["reason"] for row in json.loads(status.stdout)["environment"]["dropped"]}
    assert "URL with a password" in dropped["DATABASE_URL"] and "GitHub token" in dropped["MY_HELPER_VALUE"]


def test_loopback_inside_the_sandbox_works(scene):
    script = python(scene, "import socket, threading\n"
                           "srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1)\n"
                           "port = srv.getsockname()[1]\n"
                           "threading.Thread(target=lambda: srv.accept()[0].sendall(b'pong'), daemon=True).start()\n"
                           "c = socket.create_connection(('127.0.0.1', port), timeout=5)\n"
                           "open('verdict', 'w').write(c.recv(4).decode())\n")
    result = scene.sh(script)
    assert scene.read("ws/verdict") == "pong", result.stderr
