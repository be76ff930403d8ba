"""A limited network for a bwrap run: the egress proxy on the host, the
relay inside, and nothing else leading out.

The sandbox keeps its own network namespace (loopback only). Its first
process is the relay (`proxy/relay.py`, run from a descriptor): it listens
on 127.0.0.1, hands every accepted connection to the host-side proxy over
an inherited SOCK_SEQPACKET pair, and executes the command with the proxy
variables pointing at it. The proxy decides every target; the relay
decides nothing. New unix sockets are refused by seccomp unless the policy
allows some (see `NetworkPolicy.unix_sockets_refused`).

Names are resolved at the proxy. The relay could also answer DNS on
127.0.0.1:53, but binding there takes a capability the command would
inherit; without it a program that resolves names itself gets no answer,
which leaks nothing.
"""

from __future__ import annotations

import os

from ..._record import Record
from ...errors import RingfenceError
from . import fds

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading

    from ...policy.network import NetworkPolicy
    from ...proxy.config import Service

# Set by the test suite, and read only from ringfence's own environment: a
# JSON file of {"hosts": {name: [address, ...]}, "dial_map": {address:
# "host:port"}} that stands in for DNS and redirects dialling, so that tests
# reach servers on 127.0.0.x under public names and addresses. It changes
# what the proxy dials, never what it allows.
TEST_ROUTES_VARIABLE = "RINGFENCE_TEST_NETWORK_ROUTES"
UPSTREAM_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


class EgressPlan(Record):
    """`network` is the policy the proxy enforces; `services` what the relay
    offers (http, and socks with enable_socks5); `upstream` the host's own
    proxy to chain through when allow_upstream_proxy is on; `routes` the
    test suite's stand-in for DNS (None in real use)."""

    __slots__ = ("network", "services", "upstream", "routes")
    _defaults = {"upstream": None, "routes": None}
    network: NetworkPolicy
    services: tuple[Service, ...]
    upstream: str | None
    routes: tuple | None


def egress_plan(network, host_env=None) -> EgressPlan:
    host_env = os.environ if host_env is None else host_env
    services = ("http", "socks") if network.enable_socks5 else ("http",)
    upstream = None
    if network.allow_upstream_proxy:
        upstream = next((host_env[name] for name in UPSTREAM_VARIABLES if host_env.get(name)), None)
    return EgressPlan(network=network, services=services, upstream=upstream, routes=_test_routes(host_env))


def _test_routes(host_env) -> tuple | None:
    path = host_env.get(TEST_ROUTES_VARIABLE)
    if not path:
        return None
    import json  # only with the test suite's routes

    try:
        with open(path, encoding="utf-8") as handle:
            routes = json.load(handle)
        hosts, dial_map = routes.get("hosts") or {}, routes.get("dial_map") or {}
    except (OSError, ValueError, AttributeError) as exc:
        raise RingfenceError(f"{TEST_ROUTES_VARIABLE} names {path!r}, which is not a routes file: {exc}",
                             hint=f"unset {TEST_ROUTES_VARIABLE}; it is for ringfence's own tests") from None
    return (tuple((name, tuple(addresses)) for name, addresses in hosts.items()),
            tuple(dial_map.items()))


def relay_command(python: str, services, command: list[str]) -> list[str]:
    from ...proxy.inside import relay_argv

    return relay_argv(python, fds.RELAY_SCRIPT, fds.RELAY_CHANNEL, None, services, command, go_fd=fds.RELAY_GO)


class RunningEgress:
    """The proxy of one run, from before bwrap starts until after it ended.
    Its events are read on a thread of their own while the run lasts: the
    proxy stalls when its events pipe is full, and the supervisor's loop
    knows nothing of proxies."""

    def __init__(self, plan: EgressPlan, events):
        from ...proxy.launch import start_proxy

        hosts = dial_map = None
        if plan.routes is not None:
            hosts = {name: list(addresses) for name, addresses in plan.routes[0]}
            dial_map = dict(plan.routes[1])
        self._events = events
        self._handle = start_proxy(plan.network, upstream=plan.upstream, hosts=hosts, dial_map=dial_map,
                                   wait=False)
        self._reader: threading.Thread | None = None
        self._go = -1

    def sandbox_fds(self) -> dict[int, int]:
        """Descriptors for the sandbox (the caller closes its copies once
        bwrap has them): the relay's script, the channel's far end, and
        the read end of the go pipe."""
        from ...proxy.inside import relay_script_fd

        assert self._handle.sandbox_end is not None, "handed to the sandbox once"
        channel = os.dup(self._handle.sandbox_end.fileno())
        self._handle.close_sandbox_end()
        go_read, self._go = os.pipe()
        return {fds.RELAY_SCRIPT: relay_script_fd(), fds.RELAY_CHANNEL: channel, fds.RELAY_GO: go_read}

    def release(self) -> None:
        """Once the sandbox runs under its limits: wait for the proxy, then
        let the relay execute the command.

        bwrap arms die-with-parent in the sandbox only after its block
        descriptor let it go, and takes that descriptor's EOF for a go; a
        ringfence killed while the sandbox waits would leave it running on
        with neither limits nor parent. Waiting for the proxy here, behind
        the relay's own go (EOF: exit), keeps that window as short as the
        limits' handshake."""
        # This module is on every run's path, threads only on a limited network's.
        import threading

        try:
            self._handle.wait_ready()
            try:
                os.write(self._go, b"g")
            except BrokenPipeError:
                pass  # the relay ended before it was let go: its exit status says why
        finally:
            os.close(self._go)
            self._go = -1
        self._reader = threading.Thread(target=self._read, name="ringfence-egress-events", daemon=True)
        self._reader.start()

    def _read(self):
        # Until the proxy closes its events pipe, which `stop` asks it to do.
        while not self._handle.ended:
            for event in self._handle.read_events(timeout=5.0):
                self._emit(event)

    def _emit(self, event: dict):
        event = dict(event)
        kind = event.pop("type", "network.event")
        for reserved in ("schema", "time", "run"):
            event.pop(reserved, None)
        self._events.emit(kind, **event)

    def stop(self) -> None:
        """End the proxy, log its last events and a summary of the hosts
        reached and refused."""
        if self._go >= 0:
            os.close(self._go)
            self._go = -1
        self._handle.ask_to_stop()
        if self._reader is not None:
            self._reader.join(timeout=5.0)
        for event in self._handle.stop():
            self._emit(event)
        summary = self._handle.summary
        self._events.emit("network.summary", reached=list(summary.reached),
                          refused=[{"target": target, "reason": reason} for target, reason in summary.refused])
