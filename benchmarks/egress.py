"""The egress proxy as a run uses it, each figure against its baseline in the same run.

    python benchmarks/egress.py [--size-mib 256] [--runs 30]

1. `ringfence run -- true` with a limited network (proxy and relay started,
   made ready, stopped) against `ringfence run -- true` with the network
   off, in one hyperfine invocation.
2. SIZE MiB downloaded by curl inside the sandbox through CONNECT (relay,
   proxy, a loopback server standing for an allowed public name), against
   the same curl download direct on the host's loopback (best of 3 each).

`benchmarks/proxy.py` measures the proxy on its own (latency per connection,
500 concurrent tunnels, its RSS). hyperfine is the Debian package.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from compare import hyperfine  # noqa: E402
from startup import World  # noqa: E402

from ringfence.backends.bwrap.egress import TEST_ROUTES_VARIABLE  # noqa: E402

PUBLIC = "93.184.216.34"
LIMITED = """default_permissions = "net"
[permissions.net]
extends = ":workspace"
[permissions.net.network]
enabled = true
mode = "limited"
[permissions.net.network.domains]
"download.test" = "allow"
"""


def serve_downloads(size: int) -> int:
    """A server on 127.0.0.2 sending `size` bytes to every request."""
    listener = socket.socket()
    listener.bind(("127.0.0.2", 0))
    listener.listen(64)
    block = memoryview(b"x" * (1 << 20))
    head = f"HTTP/1.1 200 OK\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n".encode()

    def answer(client):
        with client:
            client.recv(65536)
            client.sendall(head)
            left = size
            while left:
                left -= client.send(block[:min(left, len(block))])

    def loop():
        while True:
            client, _ = listener.accept()
            threading.Thread(target=answer, args=(client,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return listener.getsockname()[1]


def best_rate(argv: list[str], env: dict, cwd: str, tries: int = 3) -> float:
    """Bytes per second as curl itself measured the transfer (so that a
    run's start-up is not counted), the best of `tries`."""
    best = 0.0
    for _ in range(tries):
        result = subprocess.run(argv, check=True, env=env, cwd=cwd, capture_output=True, text=True)
        best = max(best, float(result.stdout.strip().splitlines()[-1]))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=30)
    options = parser.parse_args()
    for program in ("hyperfine", "curl"):
        if not shutil.which(program):
            raise SystemExit(f"needs {program}")
    base = tempfile.mkdtemp(prefix="ringfence-egress-", dir="/var/lib" if os.getuid() == 0 else
                            os.path.expanduser("~/.cache"))
    try:
        size = options.size_mib << 20
        port = serve_downloads(size)
        routes = os.path.join(base, "routes.json")
        with open(routes, "w") as handle:
            json.dump({"hosts": {"download.test": [PUBLIC]}, "dial_map": {PUBLIC: f"127.0.0.2:{port}"}}, handle)
        off, limited = World(os.path.join(base, "off"), config=""), World(os.path.join(base, "limited"), LIMITED)
        limited.env[TEST_ROUTES_VARIABLE] = routes
        cli = shlex.quote(sys.executable) + " -m ringfence run --no-tty --"
        for world in (off, limited):  # the first run compiles seccomp and probes bwrap
            subprocess.run(f"{cli} true", shell=True, check=True, env=world.env, cwd=world.ws)
        print(f"ringfence egress ({options.runs} runs, hyperfine)\n")
        env = dict(limited.env, OFF_HOME=off.home)
        results = hyperfine({"network off": f"cd {shlex.quote(off.ws)} && HOME=$OFF_HOME {cli} true",
                             "network limited": f"{cli} true"}, options.runs, env, limited.ws)
        for name, row in results.items():
            print(f"   run -- true, {name:<16} median {row['median'] * 1000:7.1f} ms   sd {row['stddev'] * 1000:5.1f}")
        ratio = results["network limited"]["median"] / results["network off"]["median"]
        print(f"   limited / off: {ratio:.2f}x\n")

        # -p: CONNECT even for http://, so that the bytes go through a tunnel.
        curl = ["curl", "-s", "-p", "-o", "/dev/null", "--max-time", "120", "-w", "%{speed_download}\\n"]
        direct = best_rate(curl[:2] + curl[3:] + [f"http://127.0.0.2:{port}/"], dict(os.environ), base)
        inside = best_rate([sys.executable, "-m", "ringfence", "run", "--no-tty", "--"] + curl
                           + ["http://download.test/"], limited.env, limited.ws)
        print(f"{options.size_mib} MiB by curl (best of 3, as curl measured the transfer)")
        print(f"   direct on loopback          {direct / 1e6:7.0f} MB/s")
        print(f"   inside, CONNECT via the proxy {inside / 1e6:5.0f} MB/s   {inside / direct:.2f}x direct"
              "   (target >= 0.80)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
