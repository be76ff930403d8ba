"""The egress proxy's figures, each against direct loopback measured in the same run.

    python benchmarks/proxy.py [--size-mib 256] [--connections 500] [--samples 400]

1. Throughput: one download of SIZE MiB through CONNECT, the client's
   connection handed to the proxy by the relay (as inside a sandbox), against
   the same download direct, with two clients: curl (a real client: 0.8x
   direct is the target) and a bare `recv_into` loop with a 1 MiB buffer (the
   fastest reader there is, so the hop's own cost shows in full), and as a
   reference, the same hop made by the simplest relay there is (blocking
   splice(2), one process, nothing else).
2. Added latency per new connection: connect, one request byte and one reply
   byte, through relay + CONNECT against direct; p50 and p99 of each and of
   the difference. Target: p50 added <= 1 ms.
3. CONNECTIONS tunnels held open at once, then each used: errors counted.
4. The proxy's peak RSS (VmHWM) after all of the above.
5. The proxy's start-up time, spawn to ready (median of 10).

The servers run in a child process, the clients here, the proxy in its own
process: three processes, as in a real run.
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from ringfence.policy.network import NetworkPolicy  # noqa: E402
from ringfence.proxy import inside  # noqa: E402
from ringfence.proxy.launch import start_proxy  # noqa: E402

PUBLIC = "93.184.216.34"
CHUNK = 1 << 20


def serve(download: socket.socket, echo: socket.socket, size: int) -> None:
    """The child: `download` sends `size` bytes to each connection; `echo`
    answers every byte it gets with one byte, many connections at once."""
    selector = selectors.DefaultSelector()
    selector.register(download, selectors.EVENT_READ, "download")
    selector.register(echo, selectors.EVENT_READ, "echo")
    block = memoryview(b"x" * CHUNK)
    while True:
        for key, _ in selector.select():
            if key.data == "download":
                client, _ = download.accept()
                client.recv(65536)  # the request: one segment on loopback
                client.sendall(_head(size))
                left = size
                while left:
                    left -= client.send(block[:min(left, CHUNK)])
                client.close()
            elif key.data == "echo":
                client, _ = echo.accept()
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                selector.register(client, selectors.EVENT_READ, "peer")
            else:
                data = key.fileobj.recv(4096)
                if data:
                    key.fileobj.send(b"y" * len(data))
                else:
                    selector.unregister(key.fileobj)
                    key.fileobj.close()


def _head(size: int) -> bytes:
    return f"HTTP/1.1 200 OK\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n".encode()


def start_servers(size: int) -> tuple[int, int, int]:
    download, echo = socket.socket(), socket.socket()
    for sock in (download, echo):
        sock.bind(("127.0.0.2", 0))
        sock.listen(1024)
    pid = os.fork()
    if pid == 0:
        try:
            serve(download, echo, size)
        finally:
            os._exit(0)
    ports = download.getsockname()[1], echo.getsockname()[1]
    download.close()
    echo.close()
    return pid, *ports


def tunnel(relay_port: int, port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", relay_port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(f"CONNECT bench.test:{port} HTTP/1.1\r\nHost: bench.test:{port}\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise OSError("the proxy closed the tunnel")
        head += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(head.decode(errors="replace").splitlines()[0])
    return sock


def direct(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.2", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def download_rate(sock: socket.socket, size: int) -> float:
    buffer = bytearray(CHUNK)
    got = 0
    started = time.perf_counter()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: bench.test\r\n\r\n")
    while True:
        count = sock.recv_into(buffer)
        if not count:
            break
        got += count
    elapsed = time.perf_counter() - started
    sock.close()
    assert got == size + len(_head(size)), (got, size)
    return size / elapsed


def curl_rate(url: str, proxy: str | None = None) -> float:
    import subprocess

    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}", url]
    if proxy:
        argv[1:1] = ["-p", "-x", proxy]
    return float(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)


def simplest_relay(port: int) -> tuple[int, int]:
    """(pid, port) of a blocking splice relay to 127.0.0.2:`port`: the floor
    any relay hop costs on this machine."""
    import fcntl

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    pid = os.fork()
    if pid:
        relay_port = listener.getsockname()[1]
        listener.close()
        return pid, relay_port
    try:
        while True:
            client, _ = listener.accept()
            upstream = socket.create_connection(("127.0.0.2", port))
            upstream.sendall(client.recv(65536))  # the request, whole in one segment here
            read_end, write_end = os.pipe()
            fcntl.fcntl(write_end, 1031, CHUNK)
            while True:
                moved = os.splice(upstream.fileno(), write_end, CHUNK, flags=os.SPLICE_F_MOVE)
                if not moved:
                    break
                while moved:
                    moved -= os.splice(read_end, client.fileno(), moved, flags=os.SPLICE_F_MOVE)
            for fd in (read_end, write_end):
                os.close(fd)
            client.close()
            upstream.close()
    finally:
        os._exit(0)


def round_trip(open_connection) -> float:
    started = time.perf_counter()
    sock = open_connection()
    sock.sendall(b"x")
    if sock.recv(1) != b"y":
        raise OSError("no echo")
    elapsed = time.perf_counter() - started
    sock.close()
    return elapsed


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def hold_many(relay_port: int, port: int, count: int) -> tuple[int, int]:
    """(tunnels that worked, errors) with `count` tunnels open at once."""
    opened, errors = [], 0
    for _ in range(count):
        try:
            opened.append(tunnel(relay_port, port))
        except OSError:
            errors += 1
    worked = 0
    for sock in opened:
        try:
            sock.sendall(b"x")
            worked += sock.recv(1) == b"y"
        except OSError:
            errors += 1
    for sock in opened:
        sock.close()
    return worked, errors + (len(opened) - worked)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--samples", type=int, default=400)
    args = parser.parse_args()
    size = args.size_mib << 20
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    server, download_port, echo_port = start_servers(size)
    policy = NetworkPolicy("limited", "benchmark", (("bench.test", "allow", "benchmark"),))
    handle = start_proxy(policy, hosts={"bench.test": [PUBLIC]}, dial_map={PUBLIC: "127.0.0.2:*"})
    try:
        relay = inside.start_relay(handle.sandbox_end.fileno(), ("http",)).http
        handle.close_sandbox_end()

        print(f"1. {args.size_mib} MiB download (best of 3)")
        url = f"http://bench.test:{download_port}/"
        rates = {
            "curl direct": max(curl_rate(f"http://127.0.0.2:{download_port}/") for _ in range(3)),
            "curl proxied": max(curl_rate(url, f"http://127.0.0.1:{relay}") for _ in range(3)),
            "recv direct": max(download_rate(direct(download_port), size) for _ in range(3)),
            "recv proxied": max(download_rate(tunnel(relay, download_port), size) for _ in range(3)),
        }
        floor_pid, floor_port = simplest_relay(download_port)
        try:
            rates["recv simplest relay"] = max(
                download_rate(socket.create_connection(("127.0.0.1", floor_port)), size) for _ in range(3))
        finally:
            os.kill(floor_pid, 9)
            os.waitpid(floor_pid, 0)
        for name, rate in rates.items():
            base = rates["curl direct"] if name.startswith("curl") else rates["recv direct"]
            note = "   (target >= 0.80)" if name == "curl proxied" else ""
            print(f"   {name:20} {rate / 1e6:8.0f} MB/s   {rate / base:.2f}x direct{note}")

        print(f"2. new connection + one round trip, {args.samples} samples each")
        for _ in range(20):
            round_trip(lambda: direct(echo_port))
            round_trip(lambda: tunnel(relay, echo_port))
        plain, proxied = [], []
        for _ in range(args.samples):
            plain.append(round_trip(lambda: direct(echo_port)))
            proxied.append(round_trip(lambda: tunnel(relay, echo_port)))
        for name, values in (("direct", plain), ("proxied", proxied)):
            print(f"   {name:8} p50 {percentile(values, 0.5) * 1e3:6.3f} ms   p99 {percentile(values, 0.99) * 1e3:6.3f} ms")
        added50 = percentile(proxied, 0.5) - percentile(plain, 0.5)
        added99 = percentile(proxied, 0.99) - percentile(plain, 0.99)
        print(f"   added    p50 {added50 * 1e3:6.3f} ms   p99 {added99 * 1e3:6.3f} ms   (target p50 <= 1 ms)")

        print(f"3. {args.connections} tunnels open at once")
        worked, errors = hold_many(relay, echo_port, args.connections)
        print(f"   {worked} worked, {errors} errors")

        with open(f"/proc/{handle.pid}/status") as status:
            peak = next(line.split()[1] for line in status if line.startswith("VmHWM"))
        print(f"4. proxy peak RSS {int(peak) / 1024:.1f} MiB")
    finally:
        handle.stop()
        os.kill(server, 9)
        os.waitpid(server, 0)

    times = []
    for _ in range(10):
        started = time.perf_counter()
        ready = start_proxy(policy)
        times.append(time.perf_counter() - started)
        ready.stop()
    print(f"5. proxy start-up (spawn to ready) median {statistics.median(times) * 1e3:.1f} ms, "
          f"min {min(times) * 1e3:.1f} ms")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
