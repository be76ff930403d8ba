"""The egress proxy: the sandbox's only way out when the network is limited.

Nothing here is imported on the `run` path unless a run needs the proxy.

How a run uses it:

1. `launch.start_proxy(policy.network, upstream=..., wait=False)` on the
   host, before the sandbox is built, and `handle.wait_ready()` before the
   command may run (a `PolicyError` for a policy it cannot enforce, a
   `RingfenceError` when it did not start). `upstream` is the host's proxy URL when the policy allows
   chaining; the proxy itself reads no environment.
2. Into the sandbox go `handle.sandbox_end` (the channel) and the relay
   (`inside.relay_script_fd()`), and the in-sandbox stage runs
   `inside.relay_argv(python, script_fd, channel_fd, ready_fd, services,
   command)`: the relay listens on loopback, reports its ports on `ready_fd`
   (`inside.read_ready`), detaches, and (with `command`) execs the command
   with `inside.proxy_environment`'s variables. The sandbox's resolv.conf
   should name 127.0.0.1 for the relay's DNS. Then
   `handle.close_sandbox_end()`, so that the sandbox's end closes the channel.
3. While the run lasts, `handle.events_fd` is readable when events came;
   `handle.read_events()` returns them (JSON objects, `type` first).
4. After it, `handle.stop()` returns the last events and `handle.summary`
   the hosts reached and refused (`ProxySummary.lines()` for stderr).
"""
