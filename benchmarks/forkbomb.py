"""A fork bomb under ringfence's default process cap: how fast it is stopped,
how the host fares meanwhile, and what load it leaves.

    python benchmarks/forkbomb.py [--timeout 10] [--cap DEFAULT]

Runs `f() { for i in 1 2; do f & done; sleep 60; }; f` in a default sandbox
with a wall-clock timeout, and reports:

- how long the sandbox's process count took to stop growing (the cap biting),
  and its peak;
- the latency of starting a small command on the host while the bomb runs,
  against the same measured before it;
- how long after the timeout the whole tree was gone;
- the host's load average right after and ten seconds later.

Run it as an ordinary user (RLIMIT_NPROC) and as root (a pids cgroup). It
uses only the standard library and procfs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BOMB = "f() { for i in 1 2; do f & done; sleep 60; }; f"


def count(marker: bytes) -> int:
    total = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if marker in handle.read():
                        total += 1
            except OSError:
                pass
    return total


def spawn_latency() -> float:
    start = time.perf_counter()
    subprocess.run(["true"])
    return time.perf_counter() - start


def load() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--cap", type=int, default=None, help="[limits] processes (default: ringfence's)")
    options = parser.parse_args()
    cli = shutil.which("ringfence", path=os.path.dirname(sys.executable)) or shutil.which("ringfence")
    base = tempfile.mkdtemp(prefix="ringfence-bomb-",
                           dir="/var/lib" if os.getuid() == 0 else os.path.expanduser("~/.cache"))
    home, ws = os.path.join(base, "home"), os.path.join(base, "ws")
    os.makedirs(ws)
    os.makedirs(os.path.join(home, ".ringfence"))
    if options.cap:
        with open(os.path.join(home, ".ringfence", "config.toml"), "w") as handle:
            handle.write(f"[limits]\nprocesses = {options.cap}\n")
    env = dict(os.environ, HOME=home)
    marker = f"rf-bomb-{os.getpid()}"
    try:
        before = [spawn_latency() for _ in range(20)]
        load_before = load()
        started = time.monotonic()
        process = subprocess.Popen([cli, "run", "--no-tty", "--timeout", str(options.timeout), "--",
                                    "bash", "-c", BOMB, marker], cwd=ws, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples, during = [], []
        while process.poll() is None:
            samples.append((time.monotonic() - started, count(marker.encode())))
            during.append(spawn_latency())
            time.sleep(0.1)
        ended = time.monotonic() - started
        gone = None
        while gone is None:
            if count(marker.encode()) == 0:
                gone = time.monotonic() - started
            elif time.monotonic() - started > ended + 30:
                gone = float("inf")
            else:
                time.sleep(0.05)
        load_after = load()
        time.sleep(10)
        load_later = load()
        peak = max(n for _, n in samples)
        plateau = next(t for t, n in samples if n >= 0.95 * peak)
        print(f"fork bomb under ringfence (user {os.getuid()}, cap "
              f"{options.cap or 'default'}, timeout {options.timeout:g} s)")
        print(f"  peak processes in the sandbox     {peak}")
        print(f"  time to reach 95% of the peak     {plateau:.2f} s (the cap stops it there)")
        print(f"  exit status {process.returncode}; run ended after {ended:.2f} s, "
              f"every process gone after {gone:.2f} s")
        print(f"  host: start `true`, before        median {statistics.median(before) * 1000:.1f} ms")
        print(f"  host: start `true`, during bomb   median {statistics.median(during) * 1000:.1f} ms, "
              f"max {max(during) * 1000:.1f} ms")
        print(f"  load average before {load_before}; just after {load_after}; 10 s later {load_later}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
