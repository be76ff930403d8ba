"""Mount the isolated run's overlay on the workspace, inside the sandbox.

For bubblewrap older than 0.11 (no `--overlay`): bwrap runs this with
CAP_SYS_ADMIN in the sandbox's user namespace, before any mask is placed
(overlayfs sees only the lower mount's own tree, not the mounts on top of
it, so masks must go on the merged view afterwards).

The upper and work directories live in ringfence's state directory, which
the sandbox never sees. overlayfs takes a private clone of the upper mount,
which the kernel allows only for a mount of the caller's own mount
namespace: a descriptor opened on the host does not do ("failed to clone
upperpath", EINVAL); and upper and work must be on one mount, not two binds
of one filesystem (EINVAL too). So bwrap binds the folder holding both at a
private place of the sandbox's own (its /dev, as for the mask helper's
source), and with `--retire POINT` this script unmounts and removes that
bind once the overlay holds its clone: the command then has no way to the
upper layer but through the overlay.

Standard library only and no ringfence import: it runs as
`python3 -I -S /dev/fd/N` (or is loaded into the mask helper), where nothing
a workspace could shadow may be imported.

As a program: `overlaymount.py [--retire POINT] LOWER UPPER WORK TARGET [-- COMMAND...]`
mounts, then executes COMMAND if one is given (exit 125 with a message on
stderr when a step fails).
"""

import ctypes
import os
import sys

MNT_DETACH = 2
_ESCAPED = ("\\", ",", ":")


def escape_option(path):
    """A path as an overlayfs option value: its parser splits options on ','
    and layers on ':', and takes a backslash as an escape for both."""
    for char in _ESCAPED:
        path = path.replace(char, "\\" + char)
    return path


def overlay_options(lower, upper, work):
    """The mount data: `userxattr` makes an unprivileged mount possible (Linux
    5.11) and keeps overlay's own xattrs in the `user.` namespace, which
    rules out redirect_dir and metacopy, so every copy-up is a full copy."""
    return (f"lowerdir={escape_option(lower)},upperdir={escape_option(upper)},"
            f"workdir={escape_option(work)},userxattr")


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return libc


def mount_overlay(lower, upper, work, target):
    """Mount overlayfs (lower, upper and work directories) on `target`;
    raise OSError naming what failed."""
    data = overlay_options(lower, upper, work)
    if _libc().mount(b"overlay", os.fsencode(target), b"overlay", 0, os.fsencode(data)) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount overlay on {target} (lower {lower}, upper {upper}): {os.strerror(error)}")


def retire(*points):
    """Unmount and remove the places the layers were bound at for the mount."""
    libc = _libc()
    for point in points:
        if libc.umount2(os.fsencode(point), MNT_DETACH) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"unmount {point}: {os.strerror(error)}")
        try:
            os.rmdir(point)
        except OSError as exc:
            raise OSError(exc.errno, f"remove {point}: {exc.strerror}") from None


def main(argv):
    retiring = []
    if len(argv) >= 2 and argv[0] == "--retire":
        retiring, argv = [argv[1]], argv[2:]
    if len(argv) < 4:
        sys.stderr.write("usage: overlaymount.py [--retire POINT] LOWER UPPER WORK TARGET [-- COMMAND...]\n")
        os._exit(2)
    lower, upper, work, target = argv[:4]
    command = argv[4:]
    if command and command[0] == "--":
        command = command[1:]
    try:
        mount_overlay(lower, upper, work, target)
        retire(*retiring)
    except OSError as exc:
        sys.stderr.write(f"ringfence: {exc.strerror}\n")
        os._exit(125)
    if command:
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            sys.stderr.write(f"ringfence: cannot execute {command[0]}: {exc.strerror}\n")
            os._exit(127 if exc.errno == 2 else 126)


if __name__ == "__main__":
    main(sys.argv[1:])
