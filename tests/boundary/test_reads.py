"""Reading what the policy denies: a `none` path and a glob-denied file."""

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
