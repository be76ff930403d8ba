"""Past a few dozen denied files the masks are placed by the mask helper
inside the sandbox. The same attacks must fail there, for root and for an
ordinary user, and the helper must leave nothing of its privilege behind."""

import os

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


HELPER_PROBE = r"""
import ctypes, os, sys
sys.path.insert(0, sys.argv[1])
import maskhelper
work, classic = sys.argv[2], sys.argv[3] == "classic"
libc = ctypes.CDLL(None, use_errno=True)
uid, gid = os.getuid(), os.getgid()
flags = 0x00020000 | (0 if uid == 0 else 0x10000000)  # a mount namespace; a user one too if needed
if libc.unshare(flags) != 0:
    sys.exit("unshare: " + os.strerror(ctypes.get_errno()))
if uid != 0:
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as handle:
            handle.write(text)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
assert libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) == 0  # MS_REC | MS_PRIVATE
source = os.path.join(work, "empty").encode()
assert libc.mount(source, source, None, 4096, None) == 0
assert libc.mount(None, source, None, 4096 | 32 | 1, None) == 0  # MS_BIND | MS_REMOUNT | MS_RDONLY
names, identity = (b"link", b"secret"), b"-"
if sys.argv[3].startswith("recorded-folder"):
    # As the scan records a folder where a glob matched; the swap after it is
    # what a concurrent run could do before the masks are placed.
    names, info = (b"secret",), os.stat(work)
    identity = b"%d:%d:%d" % (info.st_dev, info.st_ino, info.st_ctime_ns)
    if "overlay" in sys.argv[3]:  # as an isolated run's view gives it: the overlay's device is unknown
        identity = b"*:%d:%d" % (info.st_ino, info.st_ctime_ns)
    if sys.argv[3].endswith("swapped"):
        os.rename(os.path.join(work, "secret"), os.path.join(work, "moved"))
        os.symlink(os.path.join(work, "target"), os.path.join(work, "secret"))
maskhelper.REPORT_FD = 1
before = os.getcwd()
maskhelper.mask_all(libc, {b"f": source}, [(b"f", work.encode(), identity, n) for n in names], classic)
assert os.getcwd() == before, "the command's directory is given back"
seen = [open(os.path.join(work, n)).read() for n in ("secret", "link", "target")]
try:
    open(os.path.join(work, "secret"), "w").write("overwritten")
    seen.append("writable")
except OSError:
    seen.append("read-only")
print(repr(seen))
"""


@pytest.mark.parametrize("method", ["detached-tree", "classic"])
def test_helper_mount_methods_mask_the_name_itself(tmp_path, method):
    # The helper prefers open_tree/move_mount and falls back to a bind through
    # /proc/self/fd; both must cover the name even when it is a symlink (one
    # swapped in by a host process), leaving the link's target alone.
    import ast

    result = _run_probe(tmp_path, method)
    assert result.returncode == 0, result.stderr
    assert ast.literal_eval(result.stdout.strip()) == ["", "", "elsewhere", "read-only"]
    assert (tmp_path / "secret").read_text() == "s3cret"  # host side: the file itself is untouched
    assert (tmp_path / "link").is_symlink()


def test_the_relative_mount_is_kept_to_folders_with_fine_timestamps():
    # On a filesystem with whole-second timestamps a symlink swapped in within
    # the second of the scan leaves the folder's ctime as it was: there the
    # helper keeps to the detached tree, which never follows the name.
    from ringfence.backends.bwrap.maskhelper import fine_grained

    assert fine_grained(b"2049:1234:1796185427120638697")
    assert fine_grained(b"*:1234:1796185427120638697")
    assert not fine_grained(b"2049:1234:1796185427000000000")
    assert not fine_grained(b"*:1234:1796185427000000000")
    assert not fine_grained(b"-")


def _run_probe(tmp_path, method):
    import subprocess
    import sys

    import ringfence.backends.bwrap.maskhelper as helper

    (tmp_path / "secret").write_text("s3cret")
    (tmp_path / "target").write_text("elsewhere")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    (tmp_path / "empty").write_text("")
    assert (tmp_path / "secret").read_text() == "s3cret"  # control: readable without the masks
    return subprocess.run([sys.executable, "-c", HELPER_PROBE, os.path.dirname(helper.__file__), str(tmp_path),
                           method], capture_output=True, text=True)


@pytest.mark.parametrize("method", ["recorded-folder", "recorded-folder-overlay"])
def test_masks_in_a_recorded_folder_are_placed_relative_to_it(tmp_path, method):
    # A folder the scan recorded takes one mount(2) per mask, on the name
    # relative to the folder; the command's directory is the same afterwards.
    import ast

    result = _run_probe(tmp_path, method)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ast.literal_eval(result.stdout.strip()) == ["", "elsewhere", "elsewhere", "read-only"]
    assert (tmp_path / "secret").read_text() == "s3cret"


@pytest.mark.parametrize("method", ["recorded-folder-swapped", "recorded-folder-overlay-swapped"])
def test_a_symlink_swapped_into_a_recorded_folder_stops_the_masks(tmp_path, method):
    # mount(2) follows a symlink at the name: the mask would land on the
    # link's target and the secret, renamed, stay readable. The folder changed,
    # so the helper refuses before anything runs (in an isolated run's
    # overlay too, where only its inode and ctime are known).
    result = _run_probe(tmp_path, method)
    assert result.returncode == 125, result.stdout + result.stderr
    assert "changed while the sandbox was being built" in result.stdout
    assert (tmp_path / "moved").read_text() == "s3cret"  # control: the secret is there, under another name


def test_many_placeholders_are_placed_by_the_helper_and_hold(scene):
    """Past a few dozen masks and placeholders the mask helper places them:
    a protected name it stands in for still cannot be created, written into
    or renamed away, and is gone after the run."""
    names = [f".tool{index}/" for index in range(40)] + [f".conf{index}" for index in range(20)]
    scene.git("init", "-q")
    for index in range(10):
        scene.write(f"ws/keys/k{index}.secret", "s3cret\n")
    scene.config('default_permissions = "p"\n[permissions.p.filesystem]\n":root" = "read"\n'
                 '":project_roots" = { "." = "write", "**/*.secret" = "none" }\n'
                 "[protection]\nmetadata = [" + ", ".join(f'"{name}"' for name in names) + "]\n")
    attack = ("mkdir -p .tool7 && echo evil > .tool7/run.sh; echo evil > .conf3/x; rmdir .tool9; mv .tool11 moved; "
              "cat keys/k1.secret; ls -d .tool* | wc -l")
    control = scene.sh(attack, sandbox=False)
    assert scene.exists("ws/.tool7/run.sh"), control.stderr
    import shutil

    for leftover in (".tool7", ".conf3", "moved"):
        shutil.rmtree(os.path.join(scene.ws, leftover), ignore_errors=True)
    result = scene.sh(attack)
    assert "s3cret" not in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "40", result.stdout + result.stderr  # all there, inside
    assert not scene.exists("ws/.tool7/run.sh") and not scene.exists("ws/moved")
    assert not [name for name in os.listdir(scene.ws) if name.startswith((".tool", ".conf"))], \
        "the placeholders are gone after the run"


def test_a_hard_link_among_a_thousand_denied_files_refuses_the_run(masked):
    # Past a thousand denied files their link counts are read by a forked
    # child beside the start: a second name for one still refuses the run.
    from ringfence.policy.linkcheck import FORK_AT

    for index in range(COUNT, FORK_AT + 10):
        masked.write(f"ws/pkg{index % 7}/f{index}.secret", SECRET)
    readable = os.path.join(masked.outside, "second-name")
    os.link(os.path.join(masked.ws, "pkg3/f500.secret"), readable)
    control = masked.run(["cat", readable], sandbox=False)
    assert SECRET in control.stdout, control.stderr
    result = masked.run(["cat", readable])
    assert result.returncode == 125 and SECRET not in result.stdout, result.stdout + result.stderr
    assert "f500.secret" in result.stderr and "hard links" in result.stderr
    os.unlink(readable)
    assert masked.run(["true"]).returncode == 0  # the same tree without the link runs
