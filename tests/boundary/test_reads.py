"""Reading what the policy denies: a `none` path and a glob-denied file."""

import os

import pytest

pytestmark = pytest.mark.boundary

SECRET = "s3cr3t-value-8f41"


def leaked(scene, result):
    """Did the secret come out anywhere the sandboxed process could write?"""
    written = scene.read("ws/leak.txt") or ""
    return SECRET in written or SECRET in result.stdout or SECRET in result.stderr


def test_read_a_none_file(scene):
    secret = scene.write("outside/secret.txt", SECRET)
    scene.config(f'default_permissions = "dev"\n'
                 f'[permissions.dev.filesystem]\n":root" = "read"\n'
                 f'":project_roots" = {{ "." = "write" }}\n"{secret}" = "none"\n')
    control = scene.sh(f"cat {secret} > leak.txt", sandbox=False)
    assert leaked(scene, control)
    scene.write("ws/leak.txt", "")
    result = scene.sh(f"cat {secret} > leak.txt; cp {secret} copy.txt; cat copy.txt >> leak.txt")
    assert not leaked(scene, result)


def test_read_a_none_directory(scene):
    scene.write("outside/vault/key", SECRET)
    scene.config(f'default_permissions = "dev"\n'
                 f'[permissions.dev.filesystem]\n":root" = "read"\n'
                 f'":project_roots" = {{ "." = "write" }}\n"{scene.outside}/vault" = "none"\n')
    control = scene.sh(f"cat {scene.outside}/vault/key > leak.txt", sandbox=False)
    assert leaked(scene, control)
    scene.write("ws/leak.txt", "")
    result = scene.sh(f"cat {scene.outside}/vault/key > leak.txt; ls -la {scene.outside}/vault >> leak.txt")
    assert not leaked(scene, result)
    assert "key" not in (scene.read("ws/leak.txt") or "")


def test_read_a_glob_denied_file(scene):
    scene.write("ws/config/prod.secret", SECRET)
    scene.config('default_permissions = "dev"\n'
                 '[permissions.dev.filesystem]\n":root" = "read"\n'
                 '":project_roots" = { "." = "write", "**/*.secret" = "none" }\n')
    control = scene.sh("cat config/prod.secret > leak.txt", sandbox=False)
    assert leaked(scene, control)
    scene.write("ws/leak.txt", "")
    result = scene.sh("cat config/prod.secret > leak.txt; cp config/prod.secret c; cat c >> leak.txt; "
                      "mv config/prod.secret moved; cat moved >> leak.txt")
    assert not leaked(scene, result)
    assert scene.read("ws/config/prod.secret") == SECRET


def test_a_subtree_nobody_here_can_enter_does_not_stop_the_scan(ordinary_scene):
    # A directory of another user's, mode 700 (a database volume, say): no
    # process of this user reaches into it, so the secret scan passes it by
    # instead of refusing to run. One that can be entered (711) still stops it.
    from harness import must_have

    must_have(os.getuid() == 0, "needs root to make a directory owned by another user")  # CI runs as root
    scene = ordinary_scene
    for name, mode in (("closed", 0o700), ("enterable", 0o711)):
        os.mkdir(os.path.join(scene.ws, name), 0o755)
        with open(os.path.join(scene.ws, name, ".env"), "w") as handle:
            handle.write("TOKEN=volume-secret\n")
        os.chmod(os.path.join(scene.ws, name), mode)
    os.chmod(os.path.join(scene.ws, "enterable"), 0o700)
    control = scene.sh("cat closed/.env", sandbox=False)
    assert control.returncode != 0
    result = scene.sh("cat closed/.env; echo ran")
    assert "ran" in result.stdout and "volume-secret" not in result.stdout, result.stderr
    os.chmod(os.path.join(scene.ws, "enterable"), 0o711)
    control = scene.sh("cat enterable/.env", sandbox=False)
    assert "volume-secret" in control.stdout, "control: the file opens by name"
    result = scene.sh("cat enterable/.env")
    assert result.returncode == 125 and "glob scan failed" in result.stderr
    assert "volume-secret" not in result.stdout
