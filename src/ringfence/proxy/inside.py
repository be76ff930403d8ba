"""The sandbox's side of the egress proxy: start the relay, wait for its
ports, and give the command the variables that point at them.

The relay itself (`relay.py`) imports nothing but the standard library and
is run from a descriptor, so this module can start it wherever an
interpreter is visible, including inside the sandbox.
"""

from __future__ import annotations

import os
import select
import sys

from .._record import Record
from ..errors import RingfenceError
from .relay import proxy_environment as _environment

SERVICES = ("http", "socks", "dns")


class RelayPorts(Record):
    """Loopback ports of the relay; None for a service it does not offer."""

    __slots__ = ("http", "socks", "dns")
    _defaults = {"socks": None, "dns": None}
    http: int
    socks: int | None
    dns: int | None


def relay_script() -> bytes:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "relay.py"), "rb") as handle:
        return handle.read()


def relay_script_fd() -> int:
    """A sealed-in-memory copy of the relay, for `python -I -S /dev/fd/N`."""
    fd = os.memfd_create("ringfence-relay", 0)
    os.write(fd, relay_script())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def relay_argv(python: str, script_fd: int, channel_fd: int, ready_fd: int | None, services=SERVICES,
               command: list[str] | None = None, go_fd: int | None = None) -> list[str]:
    argv = [python, "-I", "-S", f"/dev/fd/{script_fd}", str(channel_fd),
            "-" if ready_fd is None else str(ready_fd), ",".join(services)]
    if go_fd is not None:
        argv += ["--go", str(go_fd)]
    return argv + ["--", *command] if command else argv


def read_ready(fd: int, timeout: float = 10.0) -> RelayPorts:
    """The relay's readiness line from `fd` (which this closes)."""
    import json

    data = b""
    try:
        while not data.endswith(b"\n"):
            ready, _, _ = select.select([fd], [], [], timeout)
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    try:
        report = json.loads(data)
    except ValueError:
        report = {"error": "it ended without reporting ready" if data == b"" else "its report was unreadable"}
    if "error" in report:
        raise RingfenceError(f"the egress relay did not start: {report['error']}",
                             hint="check that the sandbox has a loopback interface and a Python interpreter")
    return RelayPorts(report.get("http"), report.get("socks"), report.get("dns"))


def start_relay(channel_fd: int, services=SERVICES, *, python: str = sys.executable,
                timeout: float = 10.0) -> RelayPorts:
    """Start the relay here (it detaches itself) and return its ports."""
    from ..launcher.spawn import spawn

    script = relay_script_fd()
    ready_read, ready_write = os.pipe()
    try:
        pid = spawn(python, relay_argv(python, 3, 4, 5, services), {}, {3: script, 4: channel_fd, 5: ready_write},
                    new_session=False)
    finally:
        os.close(script)
        os.close(ready_write)
    ports = read_ready(ready_read, timeout)
    os.waitpid(pid, 0)
    return ports


def proxy_environment(ports: RelayPorts, env: dict | None = None) -> dict[str, str]:
    """`env` (or nothing) with the variables that send HTTP(S), SOCKS, npm,
    yarn, pip, git, cargo and Node clients to the relay."""
    return _environment(ports.http, ports.socks, env)
