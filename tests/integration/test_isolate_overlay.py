"""Both ways of mounting the overlay, for real, as each test user.

- the in-sandbox mount script with `--retire`: the layers' binds are gone
  before the command runs, so a write aimed at the upper layer directly
  lands nowhere (control: without --retire it lands in the upper layer);
- bubblewrap's `--overlay` from `bwrap_overlay_args`: writes land in the
  upper layer, the workspace is untouched.
Verdicts are read on the host, from the layers and the workspace.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from harness import SYSTEM_PATH, must_have
from isolate_scene import base, overlay_ready, own_tree, user_kwargs, write_tree  # noqa: F401


def _layers(base: str, user):
    workspace = os.path.join(base, "ws")
    write_tree(workspace, {"a": b"a\n", "keep": b"k\n"})
    upper, work, points = (os.path.join(base, name) for name in ("layers/upper", "layers/work", "points"))
    for path in (upper, work, points):
        os.makedirs(path)
    own_tree(user, base)
    return workspace, upper, work, points


@pytest.mark.parametrize("retire", [True, False], ids=["retired", "control-kept"])
def test_mount_script_retires_the_layer_binds(base, user, retire):
    from ringfence.isolate.overlay import MOUNT_SCRIPT

    workspace, upper, _work, points = _layers(base, user)
    bound = os.path.join(points, "layers")
    flag = f"--retire {bound} " if retire else ""
    command = (f"echo new > {workspace}/new; rm {workspace}/a; echo direct > {bound}/upper/direct 2>/dev/null; "
               "true")
    script = (f"mkdir {bound} && mount --bind {os.path.dirname(upper)} {bound} && "
              f"exec {sys.executable} -I -S {MOUNT_SCRIPT} {flag}"
              f"{workspace} {bound}/upper {bound}/work {workspace} -- sh -c '{command}'")
    done = subprocess.run(["unshare", "-Urm", "sh", "-c", script], capture_output=True, text=True,
                          env={"PATH": SYSTEM_PATH}, **user_kwargs(user))
    assert done.returncode == 0, done.stderr
    with open(os.path.join(upper, "new")) as handle:
        assert handle.read() == "new\n"
    whiteout = os.lstat(os.path.join(upper, "a"))
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    assert sorted(os.listdir(workspace)) == ["a", "keep"]
    if retire:
        assert not os.path.exists(os.path.join(upper, "direct"))
        assert os.listdir(points) == []
    else:
        assert os.path.exists(os.path.join(upper, "direct"))   # the hole --retire closes


def test_a_failed_mount_says_what_failed(base, user):
    from ringfence.isolate.overlay import MOUNT_SCRIPT

    workspace, _upper, work, _points = _layers(base, user)
    done = subprocess.run(["unshare", "-Urm", sys.executable, "-I", "-S", MOUNT_SCRIPT, workspace,
                           os.path.join(base, "missing"), work, workspace, "--", "true"],
                          capture_output=True, text=True, env={"PATH": SYSTEM_PATH}, **user_kwargs(user))
    assert done.returncode == 125
    assert "mount overlay on" in done.stderr and "missing" in done.stderr


def test_bwrap_overlay_arguments_mount_it(base, user, sandbox_available):
    from ringfence.isolate.overlay import bwrap_overlay_args, probe_overlay
    from ringfence.backends.bwrap.locate import locate_bwrap

    bwrap = locate_bwrap().path
    support = probe_overlay(base, bwrap=bwrap)
    must_have(support.bwrap_overlay, f"{bwrap} has no --overlay (version {support.bwrap_version})")
    workspace, upper, work, _points = _layers(base, user)
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            *bwrap_overlay_args(workspace, upper, work), "sh", "-c", f"echo new > {workspace}/new; rm {workspace}/a"]
    done = subprocess.run(argv, capture_output=True, text=True, env={"PATH": SYSTEM_PATH}, **user_kwargs(user))
    assert done.returncode == 0, done.stderr
    assert os.path.exists(os.path.join(upper, "new")) and stat.S_ISCHR(os.lstat(os.path.join(upper, "a")).st_mode)
    assert sorted(os.listdir(workspace)) == ["a", "keep"]
