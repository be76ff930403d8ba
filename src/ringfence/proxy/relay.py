"""The relay inside the sandbox: listens on loopback, hands every connection
to the host-side egress proxy, and relays nothing itself.

Standard library only, run as `python -I -S /dev/fd/N ...`: it runs inside
the sandbox, so it imports nothing a workspace could shadow (the host may
also import it as `ringfence.proxy.relay`, for `proxy_environment`).

    relay.py CHANNEL_FD READY_FD SERVICES [--go GO_FD] [-- COMMAND ARG...]

CHANNEL_FD  an AF_UNIX SOCK_SEQPACKET socket whose peer is the proxy.
READY_FD    a pipe: one JSON line {"http": port, "socks": port, "dns": 53 or
            null} (null for a service not asked for) once every listener is
            bound and the relay runs, or
            {"error": text} (exit status 1); "-" for none.
SERVICES    comma-separated: http, socks, dns. http and socks listen on
            127.0.0.1 with ports the kernel picks; dns on 127.0.0.1:53 (UDP
            and TCP) when the process may bind there, else "dns" is null.
GO_FD       a pipe: the command is executed only once one byte arrives on
            it. Its writer holds on until it has done what must come first
            (limits, the proxy ready); its end before that (EOF) means the
            run is abandoned, and the relay exits instead.
COMMAND     when given, the process execs it once the relay is ready, with
            the proxy variables of `proxy_environment` set.

The relay double-forks, so the process that started it (which may become
the command) has no child of ours to wait for: the relay is reparented to
the sandbox's init and dies with the sandbox. It also exits when the
channel closes (the proxy is gone).

Channel messages (one per SEQPACKET record):
  relay -> proxy  b"C" + service         one accepted TCP connection, its fd
                                         attached (service: http, socks, dns)
  relay -> proxy  b"Q" + id(4) + query   one DNS query received over UDP
  proxy -> relay  b"A" + id(4) + answer  its answer, sent back to the asker
  proxy -> relay  b"U" + id(4)           a request for a UDP socket bound to
                                         127.0.0.1:0 inside the sandbox
  relay -> proxy  b"u" + id(4)           the reply, its fd attached (none
                                         when it could not be made)
"""

import json
import os
import selectors
import socket
import struct
import sys

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
NO_PROXY = "localhost,127.0.0.1,::1"
MAX_RECORD = 65536
MAX_PENDING_QUERIES = 512


def proxy_environment(http_port, socks_port=None, env=None):
    """The variables that point every common client at the relay. With `env`,
    a copy of it with them set (git's own config entries are appended to any
    the environment already has)."""
    http = f"http://127.0.0.1:{http_port}"
    every = f"socks5h://127.0.0.1:{socks_port}" if socks_port else http
    values = {"NO_PROXY": NO_PROXY, "no_proxy": NO_PROXY, "NODE_USE_ENV_PROXY": "1",
              "npm_config_noproxy": NO_PROXY, "ALL_PROXY": every, "all_proxy": every}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "npm_config_proxy",
                 "npm_config_https_proxy", "YARN_PROXY", "YARN_HTTP_PROXY", "YARN_HTTPS_PROXY", "PIP_PROXY",
                 "CARGO_HTTP_PROXY"):
        values[name] = http
    result = dict(env or {})
    # npm reads its variables whatever their case; one spelling each, so that
    # an inherited upper-case one cannot win.
    for name in [name for name in result if name.lower().startswith("npm_config_") and "proxy" in name.lower()]:
        del result[name]
    result.update(values)
    try:
        count = int(result.get("GIT_CONFIG_COUNT", "0"))
    except ValueError:
        count = 0
    result[f"GIT_CONFIG_KEY_{count}"] = "http.proxy"
    result[f"GIT_CONFIG_VALUE_{count}"] = http
    result["GIT_CONFIG_COUNT"] = str(count + 1)
    return result


def loopback_up():
    """Bring `lo` up where nobody did (an `unshare -n` namespace); bwrap does
    it itself. Failures are left to the bind that follows."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        import fcntl

        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(probe, SIOCGIFFLAGS, request))[1]
        if not flags & IFF_UP:
            fcntl.ioctl(probe, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    except OSError:
        pass
    finally:
        probe.close()


def bind_listeners(services):
    tcp, udp, ports = {}, None, {"http": None, "socks": None, "dns": None}
    for service in services:
        if service in ("http", "socks"):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind(("127.0.0.1", 0))
            listener.listen(1024)
            tcp[listener] = service.encode()
            ports[service] = listener.getsockname()[1]
        elif service == "dns":
            try:
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                udp.bind(("127.0.0.1", 53))
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.bind(("127.0.0.1", 53))
                listener.listen(128)
            except PermissionError:
                udp = None
                continue
            tcp[listener] = b"dns"
            ports["dns"] = 53
        else:
            raise ValueError(f"unknown service {service!r}")
    return tcp, udp, ports


def serve(channel, tcp, udp):
    selector = selectors.DefaultSelector()
    for listener in tcp:
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ)
    if udp is not None:
        selector.register(udp, selectors.EVENT_READ)
    selector.register(channel, selectors.EVENT_READ)
    askers, next_id = {}, 0
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            if sock is channel:
                data, fds, _flags, _addr = socket.recv_fds(channel, MAX_RECORD, 1)
                for fd in fds:
                    os.close(fd)
                if not data:
                    return
                if data[:1] == b"A" and len(data) >= 5 and udp is not None:
                    asker = askers.pop(data[1:5], None)
                    if asker is not None:
                        try:
                            udp.sendto(data[5:], asker)
                        except OSError:
                            pass
                elif data[:1] == b"U" and len(data) == 5:
                    reply_udp_socket(channel, data[1:5])
            elif sock is udp:
                try:
                    query, asker = udp.recvfrom(MAX_RECORD)
                except OSError:
                    continue
                next_id = (next_id + 1) & 0xFFFFFFFF
                tag = struct.pack(">I", next_id)
                askers[tag] = asker
                if len(askers) > MAX_PENDING_QUERIES:
                    askers.pop(next(iter(askers)))
                channel.send(b"Q" + tag + query)
            else:
                try:
                    client, _ = sock.accept()
                except OSError:
                    continue
                try:
                    socket.send_fds(channel, [b"C" + tcp[sock]], [client.fileno()])
                finally:
                    client.close()


def reply_udp_socket(channel, tag):
    try:
        made = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        made.bind(("127.0.0.1", 0))
    except OSError:
        channel.send(b"u" + tag)
        return
    try:
        socket.send_fds(channel, [b"u" + tag], [made.fileno()])
    finally:
        made.close()


def close_all_but(keep):
    start = 0
    for fd in sorted(keep):
        if start < fd:  # closerange(n, n) would close every descriptor (close_range's bound is inclusive)
            os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, 1 << 20)


def report(ready_fd, message):
    if ready_fd is None:
        if "error" in message:
            sys.stderr.write(f"ringfence: the egress relay did not start: {message['error']}\n")
        return
    os.write(ready_fd, (json.dumps(message) + "\n").encode())
    os.close(ready_fd)


def main(argv):
    go_fd = None
    if len(argv) > 4 and argv[3] == "--go" and argv[4].isdigit():
        go_fd = int(argv[4])
        argv = argv[:3] + argv[5:]
    if len(argv) < 3 or (len(argv) > 3 and argv[3] != "--"):
        sys.stderr.write("usage: relay.py CHANNEL_FD READY_FD SERVICES [--go GO_FD] [-- COMMAND ARG...]\n")
        return 2
    script = sys.argv[0]
    if script.startswith("/dev/fd/") and script[8:].isdigit():
        os.close(int(script[8:]))  # this script, handed in as a descriptor: the command must not inherit it
    ready_fd = None if argv[1] == "-" else int(argv[1])
    command = argv[4:]
    try:
        channel = socket.socket(fileno=int(argv[0]))
        if channel.type != socket.SOCK_SEQPACKET:
            raise ValueError("the channel is not a SOCK_SEQPACKET socket")
        loopback_up()
        tcp, udp, ports = bind_listeners([name for name in argv[2].split(",") if name])
    except (OSError, ValueError) as exc:
        report(ready_fd, {"error": f"the relay could not listen: {exc}"})
        return 125
    owned = [channel.fileno(), *(listener.fileno() for listener in tcp)] + ([udp.fileno()] if udp else [])
    child = os.fork()
    if child == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                close_all_but(set(owned) | {0, 1, 2})
                serve(channel, tcp, udp)
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    for sock in [channel, *tcp] + ([udp] if udp else []):
        sock.close()
    report(ready_fd, ports)
    if go_fd is not None:
        try:
            go = os.read(go_fd, 1)
        except OSError:
            go = b""
        os.close(go_fd)
        if not go:
            return 125
    if command:
        environment = proxy_environment(ports["http"], ports["socks"], dict(os.environ))
        try:
            os.execvpe(command[0], command, environment)
        except OSError as exc:
            sys.stderr.write(f"ringfence relay: cannot run {command[0]}: {exc.strerror}\n")
            return 127
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
