"""Past a few dozen denied files the masks are placed by the mask helper
inside the sandbox. The same attacks must fail there, for root and for an
ordinary user, and the helper must leave nothing of its privilege behind."""

import pytest

pytestmark = pytest.mark.boundary

SECRET = "many-masks-secret-7c1"
COUNT = 120  # well above the helper threshold


@pytest.fixture
def masked(scene):
    for index in range(COUNT):
        scene.write(f"ws/pkg{index % 7}/f{index}.secret", SECRET)
    scene.config('default_permissions = "dev"\n[permissions.dev.filesystem]\n":root" = "read"\n'
                 '":project_roots" = { "." = "write", "**/*.secret" = "none" }\n')
    return scene


def test_many_masked_files_stay_unreadable(masked):
    script = "cat pkg*/*.secret > leak.txt 2>/dev/null; for f in pkg*/*.secret; do cp $f x; cat x >> leak.txt; done"
    masked.sh(script, sandbox=False)
    assert SECRET in (masked.read("ws/leak.txt") or ""), "control could not read the files"
    masked.write("ws/leak.txt", "")
    masked.write("ws/x", "")  # the control's copy holds the secret
    result = masked.sh(script)
    assert SECRET not in (masked.read("ws/leak.txt") or "") + result.stdout + result.stderr


def test_masks_cannot_be_removed_or_written(masked):
    masked.sh("umount pkg0/f0.secret; umount -l pkg0/f0.secret; rm -f pkg0/f0.secret; "
              "mv pkg1/f1.secret moved; echo overwritten > pkg2/f2.secret; "
              "unshare -Urm sh -c 'umount pkg0/f0.secret; cat pkg0/f0.secret > leak2.txt'")
    assert masked.read("ws/pkg0/f0.secret") == SECRET
    assert masked.read("ws/pkg1/f1.secret") == SECRET
    assert masked.read("ws/pkg2/f2.secret") == SECRET
    assert SECRET not in (masked.read("ws/leak2.txt") or "")


def test_helper_leaves_no_privilege_behind(masked):
    masked.sh("grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status > status.txt; "
              "id -u > uid.txt; unshare -U true && echo userns-created > userns.txt")
    status = dict(line.split(":\t") for line in masked.read("ws/status.txt").strip().splitlines())
    assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
    assert masked.read("ws/uid.txt").strip() == str(masked.user.uid)
    assert not masked.exists("ws/userns.txt")


def test_other_files_stay_writable(masked):
    masked.write("ws/pkg0/plain.txt", "before\n")
    result = masked.sh("echo after > pkg0/plain.txt && echo new > pkg3/new.txt")
    assert result.returncode == 0, result.stderr
    assert masked.read("ws/pkg0/plain.txt") == "after\n"
    assert masked.read("ws/pkg3/new.txt") == "new\n"
