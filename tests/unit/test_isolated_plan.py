"""Isolated runs as data: the mount view they get, and the index reader of
the in-place git check (fed indexes that git itself wrote)."""

import os
import shutil
import subprocess

import pytest

from ringfence.backends.bwrap.argv import mount_args
from ringfence.backends.bwrap.mounts import BIND, MASK_DIR, MASK_FILE, OVERLAY, PLACEHOLDER, RO_BIND, TMPFS, build_mount_plan
from ringfence.backends.isolated import View, isolated_view
from ringfence.launcher.gitguard import IndexUnreadable, gitlinks
from ringfence.sandbox import load_policy


@pytest.fixture
def policy(tmp_path, monkeypatch):
    home, ws = tmp_path / "home", tmp_path / "home" / "proj"
    (ws / ".git").mkdir(parents=True)
    (ws / ".env").write_text("SECRET=1\n")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_rsa").write_text("key")
    (home / ".netrc").write_text("machine x password y")
    monkeypatch.setenv("RINGFENCE_STATE_DIR", str(tmp_path / "state"))
    return load_policy(str(ws), home=str(home), env={"HOME": str(home), "PATH": "/usr/bin:/bin"})


def _view(policy, **changes):
    fields = dict(workspace=policy.project_roots[0], layers=("/s/upper", "/s/work"), home=policy.home,
                  home_size=1 << 20, rootfs=None, mounts=(), protected=frozenset(e.path for e in policy.filesystem.protected),
                  protected_names=frozenset({".git", ".vscode"}))
    fields.update(changes)
    return View(**fields)


def test_the_workspace_is_an_overlay_under_its_masks_and_the_home_is_empty(policy):
    ws, home = policy.project_roots[0], policy.home
    plan = isolated_view(build_mount_plan(policy.filesystem), _view(policy))
    steps = [(step.kind, step.dest) for step in plan.steps]
    assert steps[0] == (RO_BIND, "/")
    assert steps.index((TMPFS, home)) < steps.index((OVERLAY, ws)) < steps.index((MASK_FILE, f"{ws}/.env"))
    assert not any(kind in (BIND, PLACEHOLDER) for kind, _dest in steps)   # nothing of the host is writable
    assert not any(dest.startswith(home + "/.ssh") for _kind, dest in steps)   # hidden with the home
    assert not any(dest == f"{ws}/.git" for _kind, dest in steps)   # the overlay's .git: the run may commit
    assert plan.placeholders == ()
    args = mount_args(plan, "/mask")
    at = args.index("--overlay-src")
    assert args[at:at + 6] == ["--overlay-src", ws, "--overlay", "/s/upper", "/s/work", ws]


def test_a_clean_base_is_a_read_only_overlay_of_it(policy, tmp_path):
    plan = isolated_view(build_mount_plan(policy.filesystem), _view(policy, rootfs=str(tmp_path)))
    args = mount_args(plan, "/mask")
    assert args[:4] == ["--overlay-src", str(tmp_path), "--tmp-overlay", "/"]
    assert args[-2:] == ["--remount-ro", "/"]


def test_masks_hold_below_an_additional_mount(policy):
    from ringfence.policy.cloud import AdditionalMount

    mount = AdditionalMount(policy.home, "/opt/home", True, "test")
    plan = isolated_view(build_mount_plan(policy.filesystem), _view(policy, mounts=(mount,)))
    steps = [(step.kind, step.dest) for step in plan.steps]
    assert steps.index((RO_BIND, "/opt/home")) < steps.index((MASK_FILE, "/opt/home/.netrc"))
    assert steps.index((RO_BIND, "/opt/home")) < steps.index((MASK_DIR, "/opt/home/.ssh"))


@pytest.fixture
def repo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}

    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True, capture_output=True)

    git("init", "-q")
    for name in ("a", "dir/b", "dir/c d"):
        os.makedirs(os.path.dirname(tmp_path / name), exist_ok=True)
        (tmp_path / name).write_text(name)
        git("add", name)
    git("update-index", "--add", "--cacheinfo", "160000," + "1" * 40 + ",dir/sub")
    git("update-index", "--add", "--cacheinfo", "160000," + "2" * 40 + ",z")
    return tmp_path, git


@pytest.mark.parametrize("version", ["2", "3", "4"])
def test_gitlinks_are_read_from_every_index_version(repo, version):
    path, git = repo
    if version == "3":
        (path / "new").write_text("n")
        git("add", "-N", "new")   # intent-to-add: an extended flag, version 3
    git("update-index", "--index-version", version)
    data = (path / ".git" / "index").read_bytes()
    assert int.from_bytes(data[4:8], "big") == int(version)
    assert gitlinks(data) == {"dir/sub", "z"}


def test_an_index_that_is_not_one_is_refused(repo):
    path, _git = repo
    data = (path / ".git" / "index").read_bytes()
    assert gitlinks(b"") == set()
    cut = data.rindex(b"\x00\x00\xe0\x00") + 8   # inside the last gitlink's entry
    for bad in (b"XXXX" + data[4:], data[:cut], data[:12] + b"\xff" * 70 + b"\x00\x00\xe0\x00"):
        with pytest.raises(IndexUnreadable):
            gitlinks(bad)


def test_a_limited_network_is_refused_where_the_relays_python_would_be_hidden(tmp_path, monkeypatch):
    import ringfence.backends.bwrap.interpreter as interpreter
    from ringfence.backends.isolated import IsolatedBackend

    home, ws = tmp_path / "home", tmp_path / "home" / "proj"
    ws.mkdir(parents=True)
    monkeypatch.setenv("RINGFENCE_STATE_DIR", str(tmp_path / "state"))
    limited = load_policy(str(ws), home=str(home), env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
                          overrides=['default_permissions="dev"', 'permissions.dev.extends=":workspace"',
                                     'permissions.dev.network.enabled=true', 'permissions.dev.network.mode="limited"',
                                     'permissions.dev.network.domains={"pypi.org"="allow"}'])
    backend = IsolatedBackend(None)

    def pythons(*candidates):  # the first the policy and the view both show, as inside_python picks
        return lambda filesystem, sees=None: next((path for path in candidates if sees is None or sees(path)), None)

    own = str(home / ".pyenv" / "bin" / "python3")
    monkeypatch.setattr(interpreter, "inside_python", pythons("/usr/bin/python3"))
    assert backend.check(limited) == ()  # control: a system Python stays visible
    monkeypatch.setattr(interpreter, "inside_python", pythons(own, "/usr/bin/python3"))
    assert backend.check(limited) == ()  # ringfence's own is hidden, the system's runs the relay
    monkeypatch.setattr(interpreter, "inside_python", pythons(own))
    (refusal,) = backend.check(limited)
    assert "hides" in refusal.reason and str(home) in refusal.reason
    monkeypatch.setattr(interpreter, "inside_python", pythons("/usr/bin/python3"))
    assert IsolatedBackend(None, rootfs=str(tmp_path)).check(limited)  # a clean base without it
