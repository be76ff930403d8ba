"""The bwrap command line as data: what the mount plan turns a policy into.

Nothing is run. The order of mounts matters as much as their presence: a
bind placed before the mount of a parent directory is hidden by it.
"""

import os

import pytest

from ringfence.config import load_config
from ringfence.backends.bwrap import fds
from ringfence.backends.bwrap.argv import bwrap_argv, mount_args, namespace_args
from ringfence.backends.bwrap.mounts import MASK_DIR, PLACEHOLDER, RO_BIND, build_mount_plan
from ringfence.backends.bwrap.plan import HelperJob
from ringfence.policy import build_policy

MASK = "/MASK"
HOME = "/srv/ringfence-unit-tests/home"


class Scene:
    def __init__(self, root, monkeypatch):
        monkeypatch.setenv("RINGFENCE_CONFIG_DIR", str(root / "userconf"))
        monkeypatch.setenv("RINGFENCE_STATE_DIR", str(root / "state"))
        self.root = root
        self.ws = os.path.realpath(root / "ws")
        os.makedirs(os.path.join(self.ws, ".git"))
        # A repository, not the empty placeholder a kept Sandbox leaves: git in place needs its HEAD.
        with open(os.path.join(self.ws, ".git", "HEAD"), "w") as head:
            head.write("ref: refs/heads/main\n")

    def path(self, relative):
        return os.path.join(self.ws, relative)

    def file(self, relative):
        path = self.path(relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write("x")
        return path

    def dir(self, relative):
        path = self.path(relative)
        os.makedirs(path, exist_ok=True)
        return path

    def plan(self, text=None, env=None):
        files = []
        if text is not None:
            given = self.root / "given.toml"
            given.write_text(text)
            files.append(str(given))
        config = load_config(cwd=self.ws, home=HOME, config_files=files)
        policy = build_policy(config, env=env or {})
        plan = build_mount_plan(policy.filesystem)
        return policy, plan, mount_args(plan, MASK)


@pytest.fixture
def scene(tmp_path, monkeypatch):
    return Scene(tmp_path, monkeypatch)


def find(args, *sequence):
    """Index of `sequence` as consecutive items of `args`, or -1."""
    sequence = list(sequence)
    for index in range(len(args) - len(sequence) + 1):
        if args[index:index + len(sequence)] == sequence:
            return index
    return -1


PROFILE = (
    'default_permissions = "p"\n'
    '[permissions.p.filesystem]\n'
    '":root" = "read"\n'
    '"/usr" = "read"\n'
    '":project_roots" = { "." = "write", "secret.txt" = "none", "closed" = "none", "private" = "none", '
    '"private/pub" = "read" }\n'
)


@pytest.fixture
def planned(scene):
    secret = scene.file("secret.txt")
    closed = scene.dir("closed")
    scene.file("closed/inside")
    private = scene.dir("private")
    pub = scene.dir("private/pub")
    policy, plan, args = scene.plan(PROFILE)
    return dict(scene=scene, policy=policy, plan=plan, args=args, secret=secret, closed=closed, private=private,
                pub=pub)


def test_read_only_root_comes_first(planned):
    assert planned["args"][:3] == ["--ro-bind", "/", "/"]
    assert planned["plan"].tmpfs_root is False


def test_dev_and_proc_are_fresh(planned):
    args = planned["args"]
    assert find(args, "--dev", "/dev") > 0
    assert find(args, "--proc", "/proc") > 0


def test_workspace_is_bound_writable(planned):
    ws = planned["scene"].ws
    assert find(planned["args"], "--bind", ws, ws) >= 0


def test_denied_file_gets_the_mask_bound_over_it(planned):
    secret = planned["secret"]
    assert find(planned["args"], "--ro-bind", MASK, secret) >= 0
    assert find(planned["args"], "--ro-bind", secret, secret) == -1


def test_denied_directory_becomes_an_empty_mode_000_tmpfs_remounted_read_only(planned):
    args, closed = planned["args"], planned["closed"]
    mounted = find(args, "--perms", "0000", "--tmpfs", closed)
    remounted = find(args, "--remount-ro", closed)
    assert mounted >= 0
    assert remounted > mounted
    # The file inside is hidden by the tmpfs, not masked one by one.
    assert planned["scene"].path("closed/inside") not in args


def test_denied_directory_with_a_reopened_child_is_traversable(planned):
    args, private, pub = planned["args"], planned["private"], planned["pub"]
    mounted = find(args, "--perms", "0111", "--tmpfs", private)
    assert mounted >= 0
    reopened = find(args, "--ro-bind", pub, pub)
    assert reopened > mounted
    assert find(args, "--remount-ro", private) > reopened


def test_private_tmp_is_a_sticky_tmpfs(planned):
    args = planned["args"]
    assert find(args, "--perms", "1777", "--tmpfs", "/tmp") >= 0
    if os.path.isdir("/var/tmp"):
        assert find(args, "--perms", "1777", "--tmpfs", "/var/tmp") >= 0


def test_redundant_read_rule_costs_no_mount(planned):
    assert "/usr" in planned["policy"].filesystem.index
    assert "/usr" not in planned["args"]
    assert all(step.dest != "/usr" for step in planned["plan"].steps)


def test_the_projects_git_is_committable_but_not_its_config_and_hooks(planned):
    scene, plan, args = planned["scene"], planned["plan"], planned["args"]
    git = scene.path(".git")
    # Writable for a commit, and a mount point, so it cannot be renamed away.
    assert find(args, "--bind", git, git) > find(args, "--bind", scene.ws, scene.ws)
    assert find(args, "--ro-bind", git, git) < 0
    for name in ("config", "hooks", "info", "modules", "worktrees"):
        path = os.path.join(git, name)
        steps = [step.kind for step in plan.steps if step.dest == path]
        assert steps in ([RO_BIND], [PLACEHOLDER]), (name, steps)
        assert find(args, "--bind", git, git) < find(args, "--ro-bind", path, path)


def test_missing_metadata_gets_placeholders(planned):
    scene, plan, args = planned["scene"], planned["plan"], planned["args"]
    git = scene.path(".git")
    for name in (".codex", ".agents", ".ringfence"):
        path = scene.path(name)
        assert (path, "dir") in plan.placeholders
        steps = [step for step in plan.steps if step.dest == path]
        assert [(step.kind, step.source) for step in steps] == [(PLACEHOLDER, "dir")]
        assert find(args, "--ro-bind", path, path) >= 0
    assert (git, "dir") not in plan.placeholders


def test_no_placeholder_where_the_parent_is_not_writable(scene):
    policy, plan, args = scene.plan('sandbox_mode = "read-only"\n')
    assert plan.placeholders == ()
    assert PLACEHOLDER not in {step.kind for step in plan.steps}


def test_mounts_come_after_the_mounts_of_their_parents(planned):
    # A tmpfs or bind of a directory hides whatever was mounted inside it before.
    steps = [step for step in planned["plan"].steps if step.kind not in ("remount-ro", "dev", "proc")]
    for index, parent in enumerate(steps):
        for before in steps[:index]:
            inside = before.dest != parent.dest and before.dest.startswith(parent.dest.rstrip("/") + "/")
            assert not inside, f"{before.dest} is mounted before its parent {parent.dest}"


def test_remounts_come_last(planned):
    kinds = [step.kind for step in planned["plan"].steps]
    first_remount = kinds.index("remount-ro")
    assert set(kinds[first_remount:]) == {"remount-ro"}


def test_profile_without_root_starts_from_an_empty_tmpfs(scene):
    policy, plan, args = scene.plan('default_permissions = "p"\n[permissions.p.filesystem]\n'
                                    '":minimal" = "read"\n":project_roots" = { "." = "write" }\n')
    assert plan.tmpfs_root is True
    assert find(args, "--ro-bind", "/", "/") == -1
    assert find(args, "--bind", "/", "/") == -1
    assert args[-2:] == ["--remount-ro", "/"]
    assert find(args, "--ro-bind", "/usr", "/usr") >= 0
    assert find(args, "--ro-bind", "/etc", "/etc") >= 0
    assert find(args, "--bind", scene.ws, scene.ws) >= 0
    # /tmp sits in nothing now, so the private tmpfs is needed even without a host /tmp view.
    assert find(args, "--perms", "1777", "--tmpfs", "/tmp") >= 0
    if os.path.islink("/bin") and os.path.realpath("/bin") != "/bin":
        # A merged-/usr system: /bin must exist as the same link inside.
        assert find(args, "--symlink", os.readlink("/bin"), "/bin") >= 0


def test_existing_state_directory_is_hidden(scene):
    state = os.environ["RINGFENCE_STATE_DIR"]
    os.makedirs(os.path.join(state, "cache"))
    _, _, args = scene.plan()
    mounted = find(args, "--perms", "0000", "--tmpfs", state)
    assert mounted >= 0
    assert find(args, "--remount-ro", state) > mounted


def test_slash_tmp_rule_shares_the_host_tmp(scene):
    _, _, args = scene.plan('default_permissions = "p"\n[permissions.p.filesystem]\n":root" = "read"\n'
                            '":slash_tmp" = "write"\n":project_roots" = { "." = "write" }\n')
    assert find(args, "--bind", "/tmp", "/tmp") >= 0
    assert find(args, "--tmpfs", "/tmp") == -1


def test_danger_full_access_binds_root_writable(scene):
    policy, plan, args = scene.plan('sandbox_mode = "danger-full-access"\n')
    assert args[:3] == ["--bind", "/", "/"]


def test_denied_path_that_does_not_exist_needs_no_mount(scene):
    policy, plan, args = scene.plan(PROFILE.replace('"secret.txt" = "none"', '"ghost.txt" = "none"'))
    assert scene.path("ghost.txt") not in args


def test_many_masked_files_each_get_a_mask(scene):
    names = [scene.file(f"keys/k{i}.pem") for i in range(5)]
    _, plan, args = scene.plan()
    for path in names:
        assert find(args, "--ro-bind", MASK, path) >= 0
    assert plan.count("mask-file") >= 5


def test_mask_dir_step_modes(planned):
    ws = planned["scene"].ws
    modes = {step.dest: step.mode for step in planned["plan"].steps
             if step.kind == MASK_DIR and step.dest.startswith(ws + "/")}
    assert modes == {planned["closed"]: 0o000, planned["private"]: 0o111}


# -- namespaces and the whole argv ---------------------------------------------------------------

ALWAYS = ("--unshare-user", "--unshare-pid", "--disable-userns", "--die-with-parent", "--new-session")


@pytest.mark.parametrize("isolated", [True, False])
def test_namespace_args(isolated):
    args = namespace_args(isolated)
    for flag in ALWAYS:
        assert flag in args
    assert find(args, "--cap-drop", "ALL") >= 0
    assert ("--unshare-net" in args) is isolated
    assert "--share-net" not in args


def test_bwrap_argv_puts_the_command_after_everything(planned):
    argv = bwrap_argv("/usr/bin/bwrap", planned["plan"], network_isolated=True, cwd=planned["scene"].ws,
                      command=["sh", "-c", "--bind / /"], mask_file=MASK)
    assert argv[0] == "/usr/bin/bwrap"
    separator = argv.index("--")
    assert argv[separator + 1:] == ["sh", "-c", "--bind / /"]
    head = argv[:separator]
    assert head[1:1 + len(namespace_args(True))] == namespace_args(True)
    assert find(head, "--chdir", planned["scene"].ws) >= 0
    assert find(head, "--seccomp", str(fds.SECCOMP)) >= 0
    assert find(head, "--json-status-fd", str(fds.STATUS)) >= 0
    assert head[1 + len(namespace_args(True))] == "--clearenv"
    assert find(head, *planned["args"]) == 2 + len(namespace_args(True))


def test_the_command_environment_travels_as_bwrap_options(planned):
    env = {"LD_PRELOAD": "/ws/evil.so", "PATH": "/usr/bin"}
    argv = bwrap_argv("/usr/bin/bwrap", planned["plan"], network_isolated=True, cwd=planned["scene"].ws,
                      command=["true"], mask_file=MASK, env=env)
    head = argv[:argv.index("--")]
    assert find(head, "--setenv", "LD_PRELOAD", "/ws/evil.so") > head.index("--clearenv")
    assert find(head, "--setenv", "PATH", "/usr/bin") > 0
    # With the mask helper, which runs with the capability to mount, none of it.
    job = HelperJob(masks=("/ws/a",), placeholders=(), identities={}, empty_folder="/E",
                    command=["/usr/bin/python3", "-I", "-S", "/dev/fd/7", "5", "6", "3"])
    helper = bwrap_argv("/usr/bin/bwrap", planned["plan"], network_isolated=True, cwd=planned["scene"].ws,
                        command=["true"], mask_file=MASK, env=env, helper=job)
    assert "--setenv" not in helper and "--clearenv" in helper


def test_bwrap_is_started_with_ringfence_own_environment():
    from ringfence.launcher.spawn import HOST_ENVIRONMENT

    assert HOST_ENVIRONMENT == {}
