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


def test_a_workspace_secret_that_is_a_link_to_outside_is_denied_where_it_leads(scene):
    """`.env` in the workspace links to a shared deploy folder outside the
    workspace and the home: the deny rule on the name follows the link."""
    target = scene.write("outside/deploy/.env", f"TOKEN={SECRET}\n")
    scene.git("init", "-q")
    os.symlink(target, os.path.join(scene.ws, ".env"))
    control = scene.sh("cat .env > leak.txt", sandbox=False)
    assert leaked(scene, control)
    scene.write("ws/leak.txt", "")
    result = scene.sh(f"cat .env > leak.txt; cat {target} >> leak.txt")
    assert not leaked(scene, result), result.stderr
    explained = scene.ringfence("explain", ".env")
    assert ": none" in explained.stdout, explained.stdout


def test_a_workspace_secret_linking_to_a_folder_outside_refuses_to_run(scene):
    scene.write("outside/deploy/keys/prod", SECRET)
    scene.git("init", "-q")
    os.symlink(os.path.join(scene.outside, "deploy", "keys"), os.path.join(scene.ws, "id_rsa"))
    control = scene.sh("cat id_rsa/prod > leak.txt", sandbox=False)
    assert leaked(scene, control)
    scene.write("ws/leak.txt", "")
    result = scene.sh("cat id_rsa/prod > leak.txt")
    assert result.returncode == 125 and not leaked(scene, result)
    assert "id_rsa" in result.stderr and "deploy/keys" in result.stderr and "fix:" in result.stderr


def test_a_hard_link_to_a_denied_credential_refuses_to_run(scene):
    """~/netrc.bak made earlier as a hard link to ~/.netrc reads the secret
    under a name no rule denies; the rule's target is checked like a glob's."""
    netrc = scene.write("home/.netrc", f"machine x login u password {SECRET}\n")
    os.link(netrc, os.path.join(scene.home, "netrc.bak"))
    scene.git("init", "-q")
    control = scene.sh("cat ~/netrc.bak > leak.txt", sandbox=False, env={"HOME": scene.home})
    assert leaked(scene, control)
    scene.write("ws/leak.txt", "")
    result = scene.sh("cat ~/netrc.bak > leak.txt")
    assert result.returncode == 125 and not leaked(scene, result)
    assert ".netrc" in result.stderr and "hard link" in result.stderr and "netrc.bak" in result.stderr


@pytest.mark.parametrize("name", [".ENV", "Deploy.Key", "prod.PEM", ".git-credentials", "terraform.tfstate",
                                  "putty.ppk", "vault.kdbx"])
def test_workspace_secrets_are_denied_whatever_their_case(scene, name):
    scene.git("init", "-q")
    scene.write(f"ws/app/{name}", SECRET)
    control = scene.sh(f"cat 'app/{name}' > leak.txt", sandbox=False)
    assert leaked(scene, control)
    scene.write("ws/leak.txt", "")
    result = scene.sh(f"cat 'app/{name}' > leak.txt")
    assert not leaked(scene, result)


def test_an_npmrc_is_denied_only_when_it_holds_a_token(scene):
    scene.git("init", "-q")
    scene.write("ws/.npmrc", f"//registry.npmjs.org/:_authToken={SECRET}\n")
    scene.write("ws/web/.npmrc", "registry=https://registry.example\n")
    scene.write("ws/.yarnrc.yml", f'npmAuthToken: "{SECRET}"\n')
    control = scene.sh("cat .npmrc .yarnrc.yml > leak.txt", sandbox=False)
    assert leaked(scene, control)
    scene.write("ws/leak.txt", "")
    result = scene.sh("cat .npmrc > leak.txt; cat .yarnrc.yml >> leak.txt; cat web/.npmrc")
    assert not leaked(scene, result)
    assert "registry=https://registry.example" in result.stdout


def test_a_password_manager_agent_socket_in_home_is_unreachable(scene):
    import socket
    import threading

    directory = scene.mkdir("home/.1password")
    path = os.path.join(directory, "agent.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o777)
    server.listen(4)
    server.settimeout(0.2)
    seen = []

    def serve():
        for _ in range(40):
            try:
                connection, _ = server.accept()
                seen.append(connection.recv(10))
                connection.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        scene.git("init", "-q")
        attack = ("python3 -c \"import socket,os; s=socket.socket(socket.AF_UNIX); "
                  f"s.connect('{path}'); s.sendall(b'sign')\"")
        scene.sh(attack, sandbox=False)
        import time
        time.sleep(0.5)
        assert seen, "control: the agent answers on its socket"
        seen.clear()
        scene.sh(attack)
        time.sleep(0.5)
        assert seen == []
    finally:
        thread.join()
        server.close()
