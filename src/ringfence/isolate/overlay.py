"""The overlay of an isolated run: can this machine mount one, how, and clean-up.

Two ways to mount it, both with `userxattr` (overlay's own attributes in the
`user.` namespace, the only form an unprivileged user namespace may write):

- bubblewrap >= 0.11 (not setuid): `bwrap_overlay_args` is the argv data;
  bwrap resolves the directories from the host's view, so the state
  directory need not be mounted in the sandbox.
- an older bubblewrap: `overlaymount.py` (`MOUNT_SCRIPT`) runs inside the
  sandbox with CAP_SYS_ADMIN, mounts it from a bind of the run's layers in
  the sandbox's /dev (`helper_binds`, `helper_args`), then removes the bind.

Either way Linux >= 5.11 (userxattr) and `user.*` xattrs on the upper
directory's filesystem are needed; `probe_overlay` says which of this holds,
as data.
"""

from __future__ import annotations

import os
import stat

from .._record import Record

MOUNT_SCRIPT = os.path.join(os.path.dirname(__file__), "overlaymount.py")
MINIMUM_KERNEL = (5, 11)
MINIMUM_BWRAP = (0, 11)
# Network filesystems: no reliable user xattrs and no valid d_type guarantees
# for an upper layer, and another host may change them under the mount.
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "afs", "9p", "ncpfs", "ceph", "glusterfs",
                                 "fuse.sshfs"})
_PROBE_XATTR = "user.ringfence.probe"


class OverlaySupport(Record):
    """What this machine can do for an isolated run.

    `kernel` the running release and whether it is new enough;
    `filesystem` the state directory's filesystem type and whether it takes
    user xattrs; `bwrap_overlay` whether the given bubblewrap has
    `--overlay`; `problems` one sentence with its fix per obstacle."""

    __slots__ = ("kernel", "kernel_ok", "filesystem", "network_filesystem", "user_xattrs", "bwrap_version",
                 "bwrap_overlay", "problems")
    kernel: str
    kernel_ok: bool
    filesystem: str
    network_filesystem: bool
    user_xattrs: bool
    bwrap_version: tuple[int, ...] | None
    bwrap_overlay: bool
    problems: tuple[str, ...]

    @property
    def mount_helper(self) -> bool:
        """The in-sandbox mount (any bubblewrap) can work."""
        return self.kernel_ok and self.user_xattrs and not self.network_filesystem

    @property
    def usable(self) -> bool:
        return self.mount_helper or (self.bwrap_overlay and self.user_xattrs and not self.network_filesystem)

    @property
    def method(self) -> str | None:
        """"bwrap" when bubblewrap can mount it itself, "helper" otherwise, None if neither."""
        if not self.usable:
            return None
        return "bwrap" if self.bwrap_overlay else "helper"


def kernel_release() -> tuple[str, tuple[int, int]]:
    """("6.1.0-13-amd64", (6, 1)): the release and its major and minor numbers."""
    release = os.uname().release
    numbers = [0, 0]
    for index, part in enumerate(release.split(".")[:2]):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        numbers[index] = int(digits or 0)
    return release, (numbers[0], numbers[1])


def filesystem_type(path: str) -> str:
    """The type of the filesystem `path` lives on, from /proc/self/mountinfo
    (the mount whose device and mount point hold it); "" when unknown."""
    try:
        device = os.stat(path).st_dev
        real = os.path.realpath(path)
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return ""
    wanted = f"{os.major(device)}:{os.minor(device)}"
    best, best_length = "", -1
    for line in lines:
        fields = line.split(" ")
        try:
            separator = fields.index("-")
        except ValueError:
            continue
        if fields[2] != wanted:
            continue
        point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best_length:
            best, best_length = fields[separator + 1], len(point)
    return best


def takes_user_xattrs(directory: str) -> bool:
    """Whether a `user.*` attribute can be set on `directory` (which we own)."""
    try:
        os.setxattr(directory, _PROBE_XATTR, b"1")
        os.removexattr(directory, _PROBE_XATTR)
        return True
    except OSError:
        return False


def bwrap_version(bwrap: str) -> tuple[int, int, int] | None:
    from .._process import capture

    try:
        status, text = capture([bwrap, "--version"])
    except OSError:
        return None
    if status != 0:
        return None
    numbers = text.split()[-1].split(".") if text else []
    try:
        parts = [int(number) for number in numbers[:3]]
    except ValueError:
        return None
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def probe_overlay(upper_parent: str, *, bwrap: str | None = None) -> OverlaySupport:
    """What can mount an overlay whose upper layer lives in `upper_parent`
    (an existing directory of ours). Makes no mount and raises nothing."""
    release, numbers = kernel_release()
    kernel_ok = numbers >= MINIMUM_KERNEL
    fstype = filesystem_type(upper_parent)
    network = fstype in NETWORK_FILESYSTEMS or fstype.startswith("nfs")
    xattrs = takes_user_xattrs(upper_parent)
    version = bwrap_version(bwrap) if bwrap else None
    setuid = False
    if bwrap:
        try:
            setuid = bool(os.stat(bwrap).st_mode & stat.S_ISUID)
        except OSError:
            pass
    bwrap_ok = bool(version and version[:2] >= MINIMUM_BWRAP and not setuid)
    problems = []
    if not kernel_ok and not bwrap_ok:
        problems.append(f"Linux {release} is older than 5.11, which an unprivileged overlay (userxattr) needs: "
                        "upgrade the kernel")
    elif not kernel_ok:
        problems.append(f"Linux {release} is older than 5.11: bwrap's overlay needs userxattr too; upgrade the kernel")
    if network:
        problems.append(f"{upper_parent} is on {fstype}, a network filesystem, which cannot hold an overlay's upper "
                        "layer: set XDG_STATE_HOME (or RINGFENCE_STATE_DIR) to a local directory (ext4, xfs, btrfs)")
    elif not xattrs:
        problems.append(f"{upper_parent} ({fstype or 'unknown filesystem'}) does not take user.* extended attributes, "
                        "which an overlay's upper layer needs: set XDG_STATE_HOME (or RINGFENCE_STATE_DIR) to a "
                        "directory on ext4, xfs, btrfs, or tmpfs on Linux >= 6.6")
    if bwrap and setuid:
        problems.append(f"{bwrap} is setuid, and a setuid bubblewrap refuses --overlay (the in-sandbox mount is used "
                        "instead)")
    return OverlaySupport(release, kernel_ok, fstype, network, xattrs, version, bwrap_ok, tuple(problems))


def bwrap_overlay_args(workspace: str, upper: str, work: str) -> list[str]:
    """bwrap (>= 0.11) arguments mounting the overlay on the workspace path.

    They replace the workspace's own bind, and must come before every mask
    and protected-path bind inside the workspace: the lower layer is the
    host's directory as it is, and masks placed on it before would not show
    through the merged view."""
    return ["--overlay-src", workspace, "--overlay", upper, work, workspace]


# Where bwrap binds the run's layers folder (upper and work, one mount) for
# the in-sandbox mount: the sandbox's own /dev (a tmpfs bwrap makes), from
# which the mount script removes it again.
HELPER_LAYERS = "/dev/.ringfence-layers"


def helper_binds(layers: str) -> list[str]:
    """bwrap arguments that make the run's layers folder (Run.layers)
    reachable by the mount script (bubblewrap < 0.11); after `--dev /dev`."""
    return ["--bind", layers, HELPER_LAYERS]


def helper_args(interpreter: str, script_fd: int, workspace: str) -> list[str]:
    """The command that mounts the overlay inside the sandbox (bubblewrap
    < 0.11), run with `--cap-add CAP_SYS_ADMIN` and the script handed in on
    `script_fd`; it unmounts the layers' bind once mounted. The mask
    helper's command line, or the command itself, follows."""
    return [interpreter, "-I", "-S", f"/dev/fd/{script_fd}", "--retire", HELPER_LAYERS, workspace,
            f"{HELPER_LAYERS}/upper", f"{HELPER_LAYERS}/work", workspace, "--"]


def clean_workdir(work: str) -> None:
    """Empty the overlay's work directory after unmount: the kernel leaves
    `work/work` at mode 000, holding cached whiteouts."""
    if not os.path.isdir(work):
        return
    from .tree import remove_tree

    for name in os.listdir(work):
        remove_tree(os.path.join(work, name))
