"""The descriptors a bwrap run hands to the sandbox, in one table.

The mask helper is told its own numbers on its command line; nothing else
inside the sandbox keeps any of them (bwrap closes --args and the status
pipe, the helper closes its three before it executes the command, the relay
its script, and its channel in the process that becomes the command)."""

SECCOMP = 3        # the compiled seccomp program
STATUS = 4         # bwrap's JSON status: the sandbox's first process, the command's exit code
HELPER_LIST = 5    # the mask helper's work (masks, placeholders, the command's environment)
HELPER_REPORT = 6  # the mask helper's answer: "R" before it executes the command, or "E" and why
HELPER_SCRIPT = 7  # the mask helper's own source, read as /dev/fd/7
BLOCK = 8          # bwrap waits on it until the run's limits are in place
RELAY_SCRIPT = 9   # the egress relay's source, read as /dev/fd/9 (a limited network only)
RELAY_CHANNEL = 10  # the relay's end of its channel to the egress proxy
RELAY_GO = 11      # one byte once the proxy is ready; EOF (ringfence gone) ends the run
# The first number a caller's pass_fds may use; bwrap's --args file takes the
# lowest number at or above it that nothing else holds.
FIRST_FREE = 12
