"""The egress proxy: the sandbox's only way out when the network is limited.

`launch.start_proxy` starts the host-side proxy process (`server`) for a
run; `inside` starts the relay (`relay`, a standalone script) inside the
sandbox and builds the command's proxy variables. Nothing here is imported
on the `run` path unless a run needs the proxy.
"""
