"""The seccomp program every sandboxed process runs under.

The filter is described here as data and compiled to BPF by libseccomp
(through ctypes, so that no compiler is needed at install time). bwrap
installs it with no_new_privs right before it executes the command.

Compiled programs are cached in ringfence's state directory, which no
sandbox can see: the filter depends only on this module's rules, the
variant and the machine, and compiling costs more than the rest of start-up.
"""

from __future__ import annotations

import errno
import os

from ...errors import BackendUnavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    # (syscall, action, ((argument, operator, a, b), ...)); "?" before a name: skipped where unknown.
    Rule = tuple[str, int, tuple[tuple[int, int, int, int], ...]]

FILTER_VERSION = 5  # bump when the rules below change: it invalidates cached programs

# Families a network namespace confines, or that never leave the machine.
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
ALLOWED_FAMILIES = (AF_UNIX, AF_INET, AF_INET6, AF_NETLINK)
AF_MAX = 46
SOCK_TYPE_MASK = 0xF
SOCK_STREAM, SOCK_RAW, SOCK_PACKET = 1, 3, 10
CLONE_NEWUSER = 0x10000000
TIOCSTI, TIOCLINUX = 0x5412, 0x541C

DENIED_EPERM = (
    # read or steer other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    # change the filesystem view or escape it
    "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr",
    # kernel keyrings, BPF, perf, userfaultfd, kexec and modules
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
)
# These already need capabilities the sandbox does not have; refusing them
# too is defence in depth, and a libseccomp that does not know one of them
# on this architecture is not a reason to refuse to run.
DENIED_EPERM_OPTIONAL = ("acct", "swapon", "swapoff", "reboot", "settimeofday", "clock_settime",
                         "adjtimex", "clock_adjtime", "quotactl", "vhangup")
# io_uring submits work that seccomp never sees; ENOSYS makes programs fall back.
DENIED_ENOSYS = ("io_uring_setup", "io_uring_enter", "io_uring_register",
                 # clone3 passes its flags in memory, where a filter cannot read them;
                 # ENOSYS makes libc fall back to clone, whose flags it can.
                 "clone3")

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_FLTATR_ACT_BADARCH = 2
CMP_NE, CMP_EQ, CMP_GE, CMP_MASKED_EQ = 1, 4, 5, 7


def _errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


def rules(deny_unix_sockets: bool = False, deny_memory_files: bool = False) -> list[Rule]:
    """The filter as data: (syscall, action, [(arg, op, a, b), ...]) tuples.

    `deny_memory_files`: a memory limit with no memory cgroup behind it is
    only RLIMIT_AS, and a memfd's pages, written and unmapped, count against
    no address space and no mount: refusing memfd_create (ENOSYS, so that
    programs fall back to files in the bounded /dev/shm) keeps the limit."""
    out: list[Rule] = []
    if deny_memory_files:
        out.append(("memfd_create", _errno(errno.ENOSYS), ()))
    for name in DENIED_EPERM:
        out.append((name, _errno(errno.EPERM), ()))
    for name in DENIED_EPERM_OPTIONAL:
        out.append(("?" + name, _errno(errno.EPERM), ()))
    for name in DENIED_ENOSYS:
        out.append((name, _errno(errno.ENOSYS), ()))
    # Allow-listing by elimination: libseccomp allows one comparison per
    # argument in a rule, so every family outside the allowed set gets its own
    # rule, and values beyond the last family (or with high bits set, which
    # the kernel would truncate) are caught by one GE rule.
    for family in range(AF_MAX):
        if family not in ALLOWED_FAMILIES or (deny_unix_sockets and family == AF_UNIX):
            out.append(("socket", _errno(errno.EAFNOSUPPORT), ((0, CMP_EQ, family, 0),)))
    out.append(("socket", _errno(errno.EAFNOSUPPORT), ((0, CMP_GE, AF_MAX, 0),)))
    out.append(("socketpair", _errno(errno.EAFNOSUPPORT), ((0, CMP_NE, AF_UNIX, 0),)))
    if deny_unix_sockets:
        # A datagram pair's ends can still connect(2) to any pathname socket;
        # a connected stream pair cannot, so it alone stays (pipes to
        # children, multiprocessing).
        for sock_type in range(SOCK_TYPE_MASK + 1):
            if sock_type != SOCK_STREAM:
                out.append(("socketpair", _errno(errno.EAFNOSUPPORT),
                            ((1, CMP_MASKED_EQ, SOCK_TYPE_MASK, sock_type),)))
    for family in (AF_INET, AF_INET6):
        for sock_type in (SOCK_RAW, SOCK_PACKET):
            out.append(("socket", _errno(errno.EPERM),
                        ((0, CMP_EQ, family, 0), (1, CMP_MASKED_EQ, SOCK_TYPE_MASK, sock_type))))
    # Terminal injection: the kernel reads the ioctl number as 32 bits.
    for request in (TIOCSTI, TIOCLINUX):
        out.append(("ioctl", _errno(errno.EPERM), ((1, CMP_MASKED_EQ, 0xFFFFFFFF, request),)))
    for name in ("clone", "unshare"):
        out.append((name, _errno(errno.EPERM), ((0, CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER),)))
    return out


def _library():
    import ctypes

    for name in ("libseccomp.so.2", "libseccomp.so"):
        try:
            lib = ctypes.CDLL(name, use_errno=True)
            break
        except OSError:
            continue
    else:
        raise BackendUnavailable(
            "libseccomp is not installed; without it the sandbox cannot refuse ptrace, io_uring "
            "and non-local sockets",
            hint="install it: apt install libseccomp2 (Debian/Ubuntu), dnf install libseccomp (Fedora)")

    class ArgCmp(ctypes.Structure):
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                    ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]

    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib, ArgCmp


def compile_program(deny_unix_sockets: bool = False, deny_memory_files: bool = False) -> bytes:
    """Compile the filter to a BPF program (an array of `struct sock_filter`)."""
    lib, ArgCmp = _library()
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise BackendUnavailable("seccomp_init failed")
    try:
        if lib.seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) != 0:
            raise BackendUnavailable("libseccomp refused to set the bad-architecture action")
        for name, action, comparisons in rules(deny_unix_sockets, deny_memory_files):
            optional = name.startswith("?")
            name = name.lstrip("?")
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0 and optional:
                continue
            if number < 0:
                raise BackendUnavailable(
                    f"libseccomp does not know the system call {name}; the filter cannot be built",
                    hint="upgrade libseccomp to 2.5 or later")
            array = (ArgCmp * max(1, len(comparisons)))(*[ArgCmp(*c) for c in comparisons])
            rc = lib.seccomp_rule_add_array(ctx, action, number, len(comparisons), array)
            if rc != 0:
                raise BackendUnavailable(f"libseccomp refused the rule for {name}: {os.strerror(-rc)}")
        read_end, write_end = os.pipe()
        try:
            rc = lib.seccomp_export_bpf(ctx, write_end)
            os.close(write_end)
            write_end = -1
            if rc != 0:
                raise BackendUnavailable(f"libseccomp could not export the filter: {os.strerror(-rc)}")
            chunks = []
            while True:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
    finally:
        lib.seccomp_release(ctx)


def program(cache_dir: str | None, deny_unix_sockets: bool = False, deny_memory_files: bool = False) -> bytes:
    """The compiled program, from the cache when it holds this exact variant."""
    from ... import __version__

    variant = "-".join(name for name, on in (("nounix", deny_unix_sockets), ("nomemfd", deny_memory_files)) if on) \
        or "base"
    name = f"seccomp-{__version__}-v{FILTER_VERSION}-{variant}-{os.uname().machine}.bpf"
    path = os.path.join(cache_dir, name) if cache_dir else None
    if path:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
            if data and len(data) % 8 == 0:
                return data
        except OSError:
            pass
    data = compile_program(deny_unix_sockets, deny_memory_files)
    if path:
        from ...state import write_cache

        write_cache(path, data)
    return data
