"""Writing outside the workspace, each way a program could try.

Every test runs the attack without the sandbox first (the control must
succeed, or the test proves nothing) and then inside it, and judges both
from the host's files.
"""

import pytest

pytestmark = pytest.mark.boundary

ORIGINAL = "original\n"


def outside_target(scene):
    return scene.write("outside/target.txt", ORIGINAL)


def attack(scene, script):
    """Control first, then the sandboxed attempt; return the sandboxed result."""
    control = scene.sh(script, sandbox=False)
    assert scene.read("outside/target.txt") != ORIGINAL, f"control did not reach the target: {control.stderr}"
    scene.write("outside/target.txt", ORIGINAL)
    return scene.sh(script)


def test_write_outside_by_absolute_path(scene):
    target = outside_target(scene)
    result = attack(scene, f"echo pwned > {target}")
    assert scene.read("outside/target.txt") == ORIGINAL
    assert result.returncode != 0


def test_write_outside_by_dotdot(scene):
    outside_target(scene)
    attack(scene, "echo pwned > ../outside/target.txt")
    assert scene.read("outside/target.txt") == ORIGINAL


def test_write_through_symlink_created_inside(scene):
    target = outside_target(scene)
    attack(scene, f"ln -sf {target} link && echo pwned > link")
    assert scene.read("outside/target.txt") == ORIGINAL


def test_write_through_symlink_planted_before_the_run(scene):
    import os

    target = outside_target(scene)
    os.symlink(target, os.path.join(scene.ws, "planted"))
    attack(scene, "echo pwned > planted")
    assert scene.read("outside/target.txt") == ORIGINAL


def test_write_through_hardlink_created_inside(scene):
    target = outside_target(scene)
    attack(scene, f"rm -f hl; ln {target} hl && echo pwned > hl")
    assert scene.read("outside/target.txt") == ORIGINAL


def test_rename_out_of_the_workspace(scene):
    scene.write("ws/payload.txt", "pwned\n")
    control = scene.sh("cp payload.txt keep.txt && mv payload.txt ../outside/target.txt", sandbox=False)
    assert scene.read("outside/target.txt") == "pwned\n", control.stderr
    scene.write("outside/target.txt", ORIGINAL)
    scene.write("ws/payload.txt", "pwned\n")
    scene.sh("mv payload.txt ../outside/target.txt")
    assert scene.read("outside/target.txt") == ORIGINAL


def test_rename_into_the_workspace(scene):
    outside_target(scene)
    control = scene.sh("mv ../outside/target.txt stolen.txt", sandbox=False)
    assert not scene.exists("outside/target.txt"), control.stderr
    outside_target(scene)
    scene.sh("mv ../outside/target.txt stolen2.txt")
    # mv may fall back to copying (reading outside is allowed); the original must stay.
    assert scene.read("outside/target.txt") == ORIGINAL


def test_the_workspace_itself_stays_writable(scene):
    result = scene.sh("echo ok > out.txt && mkdir -p d/e && echo deep > d/e/f")
    assert result.returncode == 0, result.stderr
    assert scene.read("ws/out.txt") == "ok\n"
    assert scene.read("ws/d/e/f") == "deep\n"
