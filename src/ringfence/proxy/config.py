"""What the launcher tells the proxy process: one JSON object, one line, on
an inherited pipe (never argv, never the environment).

    {"network": NetworkPolicy.to_config(),
     "limits": {ProxyLimits field: value},
     "upstream": {"host", "port", "authorization", "by_hostname"} or null,
     "hosts": {name: [[address, ...], ...]} or null,   (tests: replaces DNS;
              successive resolutions get successive lists, the last repeats)
     "dial_map": {address: "host:port"} or null,       (tests: where a checked
              address is really dialled, so public addresses can stand for
              servers on loopback)
     "sni_check": true|false,                          (a tunnel's TLS server
              name must be allowed and be its target when that is a name)
     "channel_fd": fd or null, "events_fd": fd, "listen": [[fd, service], ...]}
"""

from __future__ import annotations

from .._record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` loads `re`: kept off the proxy's start-up
    from typing import Literal

    Service = Literal["http", "socks", "dns"]


class ProxyLimits(Record):
    """Timeouts in seconds. `header_timeout`: a request head or SOCKS
    handshake must be complete this long after it began; `idle_timeout`: a
    kept-alive connection waiting for its next request, or a body that stops
    arriving; `tunnel_idle_timeout`: a tunnel with no byte either way."""

    __slots__ = ("max_connections", "max_header_bytes", "max_headers", "header_timeout", "idle_timeout",
                 "connect_timeout", "tunnel_idle_timeout", "dns_timeout")
    _defaults = {"max_connections": 1024, "max_header_bytes": 16384, "max_headers": 100, "header_timeout": 10.0,
                 "idle_timeout": 60.0, "connect_timeout": 10.0, "tunnel_idle_timeout": 3600.0, "dns_timeout": 5.0}
    max_connections: int
    max_header_bytes: int
    max_headers: int
    header_timeout: float
    idle_timeout: float
    connect_timeout: float
    tunnel_idle_timeout: float
    dns_timeout: float

    def to_config(self) -> dict:
        return dict(zip(self.__slots__, self._values()))


class Upstream(Record):
    """An HTTP proxy to chain through; `authorization` is the value of a
    Proxy-Authorization header (from the URL's user info), or None."""

    __slots__ = ("host", "port", "authorization", "by_hostname")
    _defaults = {"authorization": None, "by_hostname": False}
    host: str
    port: int
    authorization: str | None
    by_hostname: bool


def parse_upstream(url: str, *, by_hostname: bool = False) -> Upstream:
    """ValueError with a readable reason when `url` is no http://host:port proxy."""
    from urllib.parse import unquote, urlsplit
    import base64

    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme.lower() != "http":
        raise ValueError(f"only http:// upstream proxies can be chained, not {parts.scheme}://")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("an upstream proxy URL has no path or query")
    try:
        host, port = parts.hostname, parts.port or 80
    except ValueError as exc:
        raise ValueError(f"bad port: {exc}") from None
    if not host:
        raise ValueError("no host")
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(credentials).decode()
    return Upstream(host, port, authorization, by_hostname)
