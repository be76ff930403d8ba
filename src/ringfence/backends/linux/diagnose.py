"""Why a sandbox could not start, in words a user can act on.

Used after bwrap failed before executing the command. The checks read
kernel settings and a short probe; `findings()` returns data so that a
future `doctor` command can render the same facts.
"""

from __future__ import annotations

import os


def _read(root: str, path: str) -> str | None:
    try:
        with open(root.rstrip("/") + path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def in_container(root: str = "/") -> str | None:
    base = root.rstrip("/")
    if os.path.exists(base + "/.dockerenv"):
        return "docker"
    if os.path.exists(base + "/run/.containerenv"):
        return "podman"
    cgroup = _read(root, "/proc/1/cgroup") or ""
    for marker in ("docker", "kubepods", "containerd", "lxc", "libpod"):
        if marker in cgroup:
            return marker
    return None


def findings(root: str = "/") -> list[tuple[str, str, str]]:
    """(problem, explanation, fix) for every known reason namespaces are refused.

    `root` lets tests (and a future `doctor`) read a simulated host's /proc.
    """
    found = []
    version = _read(root, "/proc/version") or ""
    if "Microsoft" in version and "microsoft-standard" not in version.lower():
        found.append(("wsl1", "WSL1 has no Linux namespaces", "run under WSL2: wsl --set-version <distro> 2"))
    if _read(root, "/proc/sys/kernel/unprivileged_userns_clone") == "0":
        found.append(("sysctl", "kernel.unprivileged_userns_clone = 0 forbids user namespaces",
                      "sudo sysctl -w kernel.unprivileged_userns_clone=1"))
    if _read(root, "/proc/sys/user/max_user_namespaces") == "0":
        found.append(("sysctl", "user.max_user_namespaces = 0 forbids user namespaces",
                      "sudo sysctl -w user.max_user_namespaces=15000"))
    if _read(root, "/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        found.append(("apparmor",
                      "AppArmor restricts unprivileged user namespaces (Ubuntu 23.10 and later)",
                      "install the distribution's bubblewrap, which has an AppArmor profile "
                      "(sudo apt install bubblewrap), or: sudo sysctl -w "
                      "kernel.apparmor_restrict_unprivileged_userns=0"))
    container = in_container(root)
    if container:
        found.append(("container", f"running inside a {container} container, which usually refuses "
                                   "nested namespaces",
                      "start the container with --security-opt seccomp=unconfined "
                      "--security-opt apparmor=unconfined (or --privileged)"))
    if "Seccomp:" not in (_read(root, "/proc/self/status") or "Seccomp:"):
        found.append(("seccomp", "the kernel has no seccomp", "use a kernel built with CONFIG_SECCOMP"))
    return found


def probe_bwrap(bwrap_path: str) -> str:
    """bwrap's own complaint for the smallest sandbox, or "" when it works."""
    from ..._process import capture

    status, complaint = capture([bwrap_path, "--unshare-user", "--unshare-pid", "--unshare-net",
                                 "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "/bin/true"],
                                stream=2)
    if status == 0:
        return ""
    return complaint or f"bwrap exited with {status}"


def explain_start_failure(bwrap_path: str) -> tuple[str, str | None]:
    """Why bwrap ended before the command ran: refused namespaces (probed
    with the smallest sandbox), or else the view it was asked to build."""
    complaint = probe_bwrap(bwrap_path)
    if complaint:
        reasons = findings()
        message = f"the sandbox could not start: user namespaces are refused ({complaint})"
        if reasons:
            message += "; " + "; ".join(explanation for _, explanation, _ in reasons)
            return message, " or ".join(fix for _, _, fix in reasons)
        return message, "check that unprivileged user namespaces are enabled on this machine"
    return ("the sandbox could not start: bwrap failed while building the filesystem view "
            "(its message is above)",
            "run `ringfence status` to see the mounts; a path may have changed while starting")
