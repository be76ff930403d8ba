"""Mask many files in linear time, inside the sandbox, then become the command.

bwrap re-reads the whole mount table after every bind it makes, so N masks
cost O(N^2) there: 2,000 take seconds. With more than a few dozen masks and
placeholders, bwrap instead builds the small view (root, workspace, /tmp,
/dev, /proc, and in its private /dev an empty read-only file and an empty
read-only folder) and runs this helper as the sandboxed program, keeping
only CAP_SYS_ADMIN for it. The helper binds the empty file over every denied
file and the empty folder over every placeholder (one mount each: the
read-only flag comes with the source), removes both sources from /dev and
makes /dev read-only, then moves into an inner user namespace mapped back
to the real user, drops every capability, loads the seccomp program and
executes the command. The command cannot undo the masks: their mount
namespace belongs to the outer user namespace, where it has no capability,
and seccomp refuses mount calls.

Standard library only, run as `python -I -S /dev/fd/7` with an empty
environment: it must start fast, must not import anything a workspace could
shadow, and nothing a policy sets (LD_PRELOAD) may load into it while it
holds the capability to mount. The command's environment comes in the payload.

Command line: `/dev/fd/SCRIPT LIST REPORT SECCOMP`, the numbers of its
descriptors: this script; the work, as NUL-separated fields (the real uid,
the real gid, the file source or "-", the folder source or "-", then for
each mount its kind ("f" a file mask, "d" a placeholder), its directory,
that directory's identity as the scan saw it ("dev:ino:ctime", in an
overlay "*:ino:ctime", or "-") and its name, an empty field, the number of
environment entries and each NAME=VALUE, the command's argv); the report
pipe ("R" just before executing the command, or "E" and a message when
something failed); the seccomp program (BPF).
"""

import ctypes
import errno
import os

CLONE_NEWUSER = 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND = 1, 2, 4, 32, 4096
MNT_DETACH = 2
PR_CAPBSET_DROP, PR_SET_SECCOMP, PR_CAP_AMBIENT = 24, 22, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522
REPORT_FD = 6  # replaced by main() with the number the command line gives, before anything can fail
# Numbered alike on every architecture (they came after the syscall tables were unified).
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429
OPEN_TREE_CLONE, MOVE_MOUNT_F_EMPTY_PATH, AT_FDCWD = 1, 4, -100


def fail(message):
    try:
        os.write(REPORT_FD, b"E" + message.encode(errors="replace"))
    finally:
        os._exit(125)


def read_all(fd):
    data = b""
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            os.close(fd)
            return data
        data += chunk


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def mask_all(libc, sources, entries, classic=False):
    """Bind `sources[kind]` over every (kind, directory, identity, name) entry.

    Each directory is opened once without following a final symlink and, if
    the scan recorded it, must still be that directory (device and inode)
    with nothing renamed in or out since (ctime), both before and after its
    masks are placed: a concurrent run that swapped a folder or a file
    between the scan and now would otherwise have the mask land on its
    decoy while the secret stays visible under another name. Masks go on
    names relative to the opened directory; outside a recorded folder,
    never through a symlink either."""
    use_trees = not classic
    libc.syscall.restype = ctypes.c_long
    libc.syscall.argtypes = None
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    mount = libc.mount
    start = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)  # the command's directory, given back below
    for directory, identity, names in _by_directory(entries):  # names: [(kind, name)]
        shown = directory.decode(errors="replace")
        try:
            folder = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENOENT and identity != b"-":
                _changed(shown)  # the scan saw it: renamed or removed since
            fail(f"cannot open {shown} to mask files in it: {exc.strerror}")
        _check_unchanged(folder, identity, shown)
        # In a folder the scan recorded, a file mask is one mount(2) on the
        # name relative to the folder: a third of the cost of a detached
        # tree, with tens of thousands of masks a seventh of a start. mount(2)
        # would follow a symlink at the name, but none can be there unnoticed:
        # putting one there changes the folder, whose identity is checked
        # again once its masks are placed. Only where ctime counts finer than
        # seconds: on a filesystem that keeps whole seconds, a change in the
        # second of the scan leaves it as it was.
        relative = not classic and fine_grained(identity)
        if relative:
            os.fchdir(folder)
        for kind, name in names:
            source = sources[kind]
            if relative and kind == b"f":
                if mount(source, name, None, MS_BIND, None) == 0:
                    continue
                error = ctypes.get_errno()
                if error == errno.ENOENT:
                    _changed(shown)  # a name the scan saw is gone: its folder changed since
                fail(f"mask {shown}/{name.decode(errors='replace')}: {os.strerror(error)}")
            if use_trees:
                use_trees = _mask_with_detached_tree(libc, source, folder, name, shown)
                if use_trees:
                    continue
            _mask_through_proc(libc, source, folder, name, shown)
        _check_unchanged(folder, identity, shown)
        os.close(folder)
    os.fchdir(start)
    os.close(start)


def _by_directory(entries):
    """[(directory, identity, [(kind, name)])] from consecutive entries."""
    groups = []
    for kind, directory, identity, name in entries:
        if groups and groups[-1][0] == directory:
            groups[-1][2].append((kind, name))
        else:
            groups.append((directory, identity, [(kind, name)]))
    return groups


def fine_grained(identity):
    """Whether a recorded identity's ctime has a part below the second: a
    filesystem with whole-second timestamps shows none (one in a billion
    fine-grained ones does too, and just takes the slower way)."""
    return identity != b"-" and not identity.endswith(b"000000000")


def _check_unchanged(folder, identity, shown):
    if identity == b"-":
        return
    info = os.fstat(folder)
    if identity.startswith(b"*:"):  # in an overlay, whose device no scan could know
        seen = b"*:%d:%d" % (info.st_ino, info.st_ctime_ns)
    else:
        seen = b"%d:%d:%d" % (info.st_dev, info.st_ino, info.st_ctime_ns)
    if seen != identity:
        _changed(shown)


def _changed(shown):
    fail(f"{shown} changed while the sandbox was being built (a file renamed or replaced there); "
         "nothing was run: run the command again")


def _mask_through_proc(libc, source, folder, name, shown):
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    except OSError as exc:
        fail(f"cannot open {shown}/{name.decode(errors='replace')} to mask it: {exc.strerror}")
    if libc.mount(source, f"/proc/self/fd/{fd}".encode(), None, MS_BIND, None) != 0:
        fail(f"mask {shown}/{name.decode(errors='replace')}: {os.strerror(ctypes.get_errno())}")
    os.close(fd)


def _mask_with_detached_tree(libc, source, folder, name, shown):
    """open_tree + move_mount (Linux 5.2): fewer system calls than an O_PATH
    open and a bind through /proc/self/fd, and no procfs lookup. False when
    the kernel or a container's filter refuses them (then nothing was mounted)."""
    syscall = libc.syscall  # its restype is set once, by mask_all
    tree = syscall(SYS_OPEN_TREE, AT_FDCWD, source, OPEN_TREE_CLONE | os.O_CLOEXEC)
    if tree < 0:
        error = ctypes.get_errno()
        if error in (errno.ENOSYS, errno.EPERM):
            return False
        fail(f"mask {shown}/{name.decode(errors='replace')}: {os.strerror(error)}")
    # Without MOVE_MOUNT_T_SYMLINKS the name itself is not followed.
    result = syscall(SYS_MOVE_MOUNT, tree, b"", folder, name, MOVE_MOUNT_F_EMPTY_PATH)
    error = ctypes.get_errno()
    os.close(tree)
    if result != 0:
        if error in (errno.ENOSYS, errno.EPERM):
            return False
        if error == errno.ENOENT:
            _changed(shown)  # a name the scan saw is gone: its folder changed since
        fail(f"mask {shown}/{name.decode(errors='replace')}: {os.strerror(error)}")
    return True


def _retire_sources(libc, sources):
    """The sources of empty files and folders served their purpose: out of the
    sandbox's /dev, which then goes read-only (bwrap leaves that to the helper
    when one runs)."""
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    for kind, source in sources.items():
        if libc.umount2(source, MNT_DETACH) != 0:
            fail(f"unmount {source.decode(errors='replace')}: {os.strerror(ctypes.get_errno())}")
        try:
            (os.rmdir if kind == b"d" else os.unlink)(source)
        except OSError as exc:
            fail(f"remove {source.decode(errors='replace')}: {exc.strerror}")
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
    if libc.mount(None, b"/dev", None, flags, None) != 0:
        fail(f"make /dev read-only: {os.strerror(ctypes.get_errno())}")


def main(argv: list[str]):
    global REPORT_FD
    script, list_fd, REPORT_FD, seccomp_fd = (int(os.path.basename(argv[0])), *map(int, argv[1:4]))
    os.close(script)  # this script, handed in as /dev/fd/N; the command must not inherit it
    fields = read_all(list_fd).split(b"\0")
    separator = fields.index(b"", 4)
    uid, gid = int(fields[0]), int(fields[1])
    sources = {kind: source for kind, source in ((b"f", fields[2]), (b"d", fields[3])) if source != b"-"}
    listed = fields[4:separator]
    count = int(fields[separator + 1])
    env_fields = fields[separator + 2:separator + 2 + count]
    command = fields[separator + 2 + count:]  # empty arguments are arguments too
    env = dict(field.split(b"=", 1) for field in env_fields)
    if len(listed) % 4:
        fail("the list of masks is cut short")
    fields_of = iter(listed)
    entries = list(zip(fields_of, fields_of, fields_of, fields_of))  # a slice per entry costs far more
    program = read_all(seccomp_fd)

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

    def check(result, what):
        if result != 0:
            fail(f"{what}: {os.strerror(ctypes.get_errno())}")

    mask_all(libc, sources, entries)
    _retire_sources(libc, sources)

    check(libc.unshare(CLONE_NEWUSER), "create the inner user namespace")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} 0 1"), ("gid_map", f"{gid} 0 1")):
        with open(f"/proc/self/{name}", "w") as handle:
            handle.write(text)
    with open("/proc/sys/kernel/cap_last_cap") as handle:
        last_cap = int(handle.read())
    for cap in range(last_cap + 1):
        check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "drop the capability bounding set")
    check(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient capabilities")
    header, data = CapHeader(LINUX_CAPABILITY_VERSION_3, 0), (CapData * 2)()
    check(libc.capset(ctypes.byref(header), data), "drop capabilities")

    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0), "load seccomp")

    os.write(REPORT_FD, b"R")
    os.close(REPORT_FD)
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        os.write(2, f"ringfence: cannot execute {command[0].decode(errors='replace')}: {exc.strerror}\n".encode())
        os._exit(127 if exc.errno == 2 else 126)


if __name__ == "__main__":
    import sys

    main(sys.argv)
