"""Start the host-side egress proxy for one run and hold it while it lasts.

The proxy runs as `python -I -S -c BOOTSTRAP` with an empty environment and
exactly these descriptors: 0 and 1 /dev/null, 2 a pipe kept for a start-up
failure's message, 3 its configuration (JSON, then held open: its close
ends the proxy), 4 the events pipe, 5 its end of the channel to the relay
(when there is one), 6 and up listening sockets handed in (tests,
benchmarks). It dies with this process: PR_SET_PDEATHSIG, a parent check
right after it, the configuration pipe's close, and the channel's close
(the sandbox is gone) each end it, so a SIGKILLed ringfence leaves no
proxy behind, and there is no socket file to clean up.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time

from .._record import Record
from ..errors import PolicyError, RingfenceError
from ..policy.network import LIMITED, NetworkPolicy, pattern_problems
from ..printable import printable
from .config import ProxyLimits, parse_upstream

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# PR_SET_PDEATHSIG is 1; the parent check closes the window in which the
# parent could die before prctl ran.
_BOOTSTRAP = """import ctypes, os, sys
if ctypes.CDLL(None).prctl(1, 9, 0, 0, 0) != 0 or os.getppid() != {parent}:
    os._exit(70)
sys.path[:0] = {paths!r}
from ringfence.proxy.server import main
sys.exit(main(3))
"""
CONFIG_FD, EVENTS_FD, CHANNEL_FD, FIRST_LISTEN_FD = 3, 4, 5, 6


class ProxySummary(Record):
    """`reached`: "host:port" the run connected to; `refused`: ("host:port"
    or a DNS name, reason) for each target refused; each sorted, once."""

    __slots__ = ("reached", "refused")
    reached: tuple[str, ...]
    refused: tuple[tuple[str, str], ...]

    def lines(self) -> list[str]:
        # The names are the sandbox's own: shown escaped.
        lines = [f"network: reached {printable(target)}" for target in self.reached]
        return lines + [f"network: refused {printable(target)}: {printable(reason)}" for target, reason in self.refused]


class ProxyHandle:
    """A running proxy. `sandbox_end` is the channel socket to hand into the
    sandbox (fd for the relay's CHANNEL_FD); close it here once the sandbox
    holds it, so that the sandbox's end of life closes the channel."""

    def __init__(self, pid: int, lifeline: int, events_fd: int, sandbox_end: socket.socket | None,
                 error_fd: int):
        self.pid: int | None = pid
        self._lifeline, self.events_fd, self.sandbox_end = lifeline, events_fd, sandbox_end
        self._error_fd = error_fd
        self._startup_error: str | None = None
        self._partial = b""
        self._reached: set[str] = set()
        self._refused: dict[str, str] = {}
        self._eof = False

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Return once the proxy is serving; RingfenceError (and the proxy
        stopped) when it did not start."""
        if self._error_fd < 0:
            return
        first = [] if self._startup_error else self.read_events(timeout=timeout)
        error_fd, self._error_fd = self._error_fd, -1
        if first and first[0].get("type") == "proxy.ready":
            os.close(error_fd)
            return
        self.stop(timeout=1.0)
        ready, _, _ = select.select([error_fd], [], [], 0)
        text = os.read(error_fd, 1 << 16).decode(errors="replace").strip() if ready else ""
        os.close(error_fd)
        why = self._startup_error or (first[0].get("error") if first else None) or \
            (text.splitlines()[-1] if text else "no reply in time")
        raise RingfenceError(f"the egress proxy did not start: {why}",
                             hint="run `python3 -c 'import h11'` to check the installation, then retry")

    @property
    def ended(self) -> bool:
        """Whether the proxy has closed its events pipe (it has stopped)."""
        return self._eof

    def ask_to_stop(self) -> None:
        """Tell the proxy to end (it closes its connections, logs them, and
        closes its events pipe), without waiting: `stop` then reaps it."""
        if self._lifeline >= 0:
            os.close(self._lifeline)
            self._lifeline = -1

    def close_sandbox_end(self) -> None:
        if self.sandbox_end is not None:
            self.sandbox_end.close()
            self.sandbox_end = None

    def read_events(self, timeout: float = 0.0) -> list[dict]:
        """The events that have arrived (waiting up to `timeout` for the first)."""
        events: list[dict] = []
        deadline = time.monotonic() + timeout
        while not self._eof:
            left = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.events_fd], [], [], left if not events else 0)
            if not ready:
                break
            chunk = os.read(self.events_fd, 1 << 16)
            if not chunk:
                self._eof = True
                break
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            for line in lines:
                events.append(self._note(json.loads(line)))
        return events

    def _note(self, event: dict) -> dict:
        if event.get("type") == "network.decision":
            target = event["host"] if event.get("port") is None else f"{event['host']}:{event['port']}"
            if event["decision"] == "denied":
                self._refused.setdefault(target or "(no host)", event["reason"])
            elif "error" not in event and event.get("protocol") != "dns":
                self._reached.add(target)
        return event

    @property
    def summary(self) -> ProxySummary:
        return ProxySummary(tuple(sorted(self._reached)), tuple(sorted(self._refused.items())))

    def stop(self, timeout: float = 5.0) -> list[dict]:
        """End the proxy (its open connections are closed and logged) and
        return the events not read yet. Stopping twice is stopping once."""
        if self.pid is None:
            return []
        self.close_sandbox_end()
        if self._error_fd >= 0:
            os.close(self._error_fd)
            self._error_fd = -1
        self.ask_to_stop()
        events = []
        deadline = time.monotonic() + timeout
        while not self._eof and time.monotonic() < deadline:
            events += self.read_events(timeout=max(0.0, deadline - time.monotonic()))
        _reap(self.pid, max(0.0, deadline - time.monotonic()))
        self.pid = None
        if self.events_fd >= 0:
            os.close(self.events_fd)
            self.events_fd = -1
        return events

    def __enter__(self) -> ProxyHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _reap(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return
        time.sleep(0.005)


def _search_paths() -> list[str]:
    """Where ringfence and h11 are, ringfence's own copy first."""
    import importlib.util

    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.find_spec("h11")
    if spec is None or not spec.origin:
        raise RingfenceError("the egress proxy needs the h11 package, which is not installed",
                             hint="pip install 'h11>=0.16' (it is a dependency of ringfence)")
    paths = [package_parent, os.path.dirname(os.path.dirname(spec.origin))]
    return list(dict.fromkeys(paths))


def start_proxy(policy: NetworkPolicy, *, upstream: str | None = None, upstream_by_hostname: bool = False,
                hosts: dict | None = None, dial_map: dict | None = None,
                listeners: dict[str, socket.socket] | None = None, relay: bool = True,
                limits: ProxyLimits | None = None, sni_check: bool = True, wait: bool = True,
                timeout: float = 10.0) -> ProxyHandle:
    """Start the proxy for `policy` and wait until it is ready.

    `upstream`: an http:// proxy URL to chain through (the launcher passes
    the host's when the policy allows it; the proxy reads no environment).
    `hosts` (name -> addresses, or -> successive lists of addresses) replaces
    DNS and `dial_map` (address -> "host:port", port "*" for the same)
    redirects dialling: both for tests. `listeners`: service -> listening
    socket served directly; `relay=False` for no channel at all.
    `sni_check`: a tunnel whose TLS ClientHello names a server other than
    its target (or one not allowed) is cut before the hello goes out.
    `wait=False` returns at once, so that the proxy starts while the sandbox
    is built; `handle.wait_ready()` then before the command runs."""
    if policy.mode != LIMITED:
        raise PolicyError(f"the egress proxy serves only a limited network, not mode {policy.mode!r}",
                          hint="start it for a policy whose network is limited to listed domains")
    problems = pattern_problems(policy.domains)
    if problems:
        raise PolicyError("the network policy has domain patterns that cannot be enforced: " + "; ".join(problems),
                          hint="fix or remove those patterns")
    config: dict[str, Any] = {"network": policy.to_config(), "limits": (limits or ProxyLimits()).to_config(),
              "upstream": None, "events_fd": EVENTS_FD, "channel_fd": CHANNEL_FD if relay else None,
              "hosts": _answers(hosts), "dial_map": dial_map or None, "sni_check": sni_check}
    if upstream:
        try:
            chosen = parse_upstream(upstream, by_hostname=upstream_by_hostname)
        except ValueError as exc:
            raise PolicyError(f"cannot chain through the upstream proxy {upstream!r}: {exc}",
                              hint="give an http://host:port proxy, or turn allow_upstream_proxy off") from None
        config["upstream"] = dict(zip(chosen.__slots__, chosen._values()))
    paths = _search_paths()
    from ..launcher.spawn import spawn

    config_read, config_write = os.pipe()
    events_read, events_write = os.pipe()
    error_read, error_write = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR)
    ours = theirs = None
    if relay:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fds = {0: devnull, 1: devnull, 2: error_write, CONFIG_FD: config_read, EVENTS_FD: events_write}
    if ours is not None:
        fds[CHANNEL_FD] = ours.fileno()
    config["listen"] = []
    for offset, (service, listener) in enumerate((listeners or {}).items()):
        fds[FIRST_LISTEN_FD + offset] = listener.fileno()
        config["listen"].append([FIRST_LISTEN_FD + offset, service])
    bootstrap = _BOOTSTRAP.format(parent=os.getpid(), paths=paths)
    try:
        pid = spawn(sys.executable, [sys.executable, "-I", "-S", "-c", bootstrap], {}, fds)
    finally:
        for fd in (config_read, events_write, error_write, devnull):
            os.close(fd)
        if ours is not None:
            ours.close()
    handle = ProxyHandle(pid, config_write, events_read, theirs, error_read)
    try:
        os.write(config_write, (json.dumps(config) + "\n").encode())
    except OSError as exc:
        handle._startup_error = str(exc)
    if wait:
        handle.wait_ready(timeout)
    return handle


def _answers(hosts: dict | None) -> dict | None:
    if not hosts:
        return None
    return {name: [list(value)] if value and isinstance(value[0], str) else [list(step) for step in value]
            for name, value in hosts.items()}
