"""On the host: take an isolated run's commits into the real repository.

What comes back is the commits, never the overlay repository's config,
hooks, index or submodule settings: the run hands over a git bundle
(inrun_bundle.py, `INRUN_SCRIPT`), whose header ringfence reads itself, and
its objects are fetched into the real repository as
`refs/ringfence/<run>/<branch>` by git with a fixed environment: no system
or global configuration, no hooks, every object checked (fsck), no tags,
no submodules, no automatic gc or maintenance, nothing from the caller's
environment. The real repository's own config is the user's (the sandbox
cannot write it), and the overlay's copy of it is never read.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from .._record import Record
from .errors import BundleRefused
from .tree import write_all

INRUN_SCRIPT = os.path.join(os.path.dirname(__file__), "inrun_bundle.py")
GIT_PATH = "/usr/bin:/bin:/usr/local/bin"
REF_PREFIX = "refs/ringfence"
_HEX = frozenset("0123456789abcdef")
_BAD_REF_CHARS = frozenset(" ~^:?*[\\\x7f")
_GIT_SETTINGS = (
    "core.hooksPath=/dev/null", "fetch.fsckObjects=true", "transfer.fsckObjects=true", "receive.fsckObjects=true",
    "core.fsmonitor=false", "gc.auto=0", "maintenance.auto=false", "fetch.writeCommitGraph=false",
    "fetch.recurseSubmodules=false", "submodule.recurse=false", "core.askPass=", "credential.helper=",
    # Only the file transport (a bundle is read through it) may be used.
    "protocol.allow=never", "protocol.file.allow=always",
)


class BundleHeader(Record):
    """`version` 2 or 3; `prerequisites` the commits it builds on; `refs`
    ((refname, commit), ...) in the bundle's order."""

    __slots__ = ("version", "prerequisites", "refs")
    version: int
    prerequisites: tuple[str, ...]
    refs: tuple[tuple[str, str], ...]


class FetchedRef(Record):
    __slots__ = ("source", "ref", "commit")
    source: str
    ref: str
    commit: str


def start_refs_text(refs: dict[str, str]) -> bytes:
    """The refs at start as the in-run script reads them."""
    return "".join(f"{commit} {name}\n" for name, commit in sorted(refs.items())).encode("utf-8", "surrogateescape")


def _is_object_id(text: str) -> bool:
    return len(text) in (40, 64) and set(text) <= _HEX


def safe_branch(name: str) -> bool:
    """A branch name under refs/heads/ that git would accept and that maps
    to one ref of ours (stricter than git: no control characters at all)."""
    if not name or name.endswith((".lock", "/", ".")) or ".." in name or "@{" in name or "//" in name:
        return False
    if any(char in _BAD_REF_CHARS or ord(char) < 0x20 for char in name):
        return False
    return all(part and not part.startswith(".") for part in name.split("/"))


def read_header(path: str) -> BundleHeader:
    """Parse a bundle's header (v2 or v3 with SHA-1 or SHA-256 ids)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        head = os.read(fd, 1 << 20)
    finally:
        os.close(fd)
    end = head.find(b"\n\n")
    if end < 0:
        raise BundleRefused(f"{path} is not a git bundle (no end of header in its first MiB)")
    lines = head[:end].decode("utf-8", "surrogateescape").split("\n")
    versions = {"# v2 git bundle": 2, "# v3 git bundle": 3}
    if lines[0] not in versions:
        raise BundleRefused(f"{path} is not a git bundle this ringfence reads (header {lines[0][:40]!r})")
    prerequisites, refs = [], []
    for line in lines[1:]:
        if line.startswith("@"):
            if versions[lines[0]] == 3 and line in ("@object-format=sha1", "@object-format=sha256"):
                continue
            raise BundleRefused(f"{path}: unsupported bundle capability {line[:60]!r}")
        if line.startswith("-"):
            object_id = line[1:].split(" ", 1)[0]
            if not _is_object_id(object_id):
                raise BundleRefused(f"{path}: malformed prerequisite line {line[:60]!r}")
            prerequisites.append(object_id)
            continue
        object_id, _, name = line.partition(" ")
        if not _is_object_id(object_id) or not name:
            raise BundleRefused(f"{path}: malformed ref line {line[:60]!r}")
        refs.append((name, object_id))
    return BundleHeader(versions[lines[0]], tuple(prerequisites), tuple(refs))


def _target(run_id: str, name: str) -> str | None:
    if name == "HEAD":
        return f"{REF_PREFIX}/{run_id}/HEAD"
    if name.startswith("refs/heads/") and safe_branch(name[len("refs/heads/"):]):
        return f"{REF_PREFIX}/{run_id}/{name[len('refs/heads/'):]}"
    return None


def git_environment(git_dir: str) -> dict[str, str]:
    """The whole environment of the host-side git: nothing of the caller's."""
    return {"PATH": GIT_PATH, "HOME": "/nonexistent", "LC_ALL": "C", "GIT_DIR": git_dir,
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0",
            "GIT_NO_REPLACE_OBJECTS": "1", "GIT_ATTR_NOSYSTEM": "1", "GIT_NO_LAZY_FETCH": "1"}


def fetch_bundle(workspace: str, bundle: str, run_id: str, *, scratch: str) -> tuple[FetchedRef, ...]:
    """Fetch the commits of `bundle` (a file the run wrote, e.g. in its upper
    layer) into the workspace's repository as refs/ringfence/<run>/<branch>.

    The bundle is first copied into `scratch` (a private directory of
    ringfence's) without following a symlink, so git reads a file the run can
    no longer change. Refs other than branches and a detached HEAD are left
    out; a branch name git would refuse is refused."""
    from .gitrefs import git_dirs, read_refs

    workspace, scratch = os.path.abspath(workspace), os.path.abspath(scratch)
    dirs = git_dirs(workspace)
    if dirs is None:
        raise BundleRefused(f"{workspace} is not a git repository: there is nowhere to fetch the run's commits to")
    if not safe_branch(run_id):
        raise BundleRefused(f"{run_id!r} cannot name a ref")
    git = shutil.which("git", path=GIT_PATH)
    if git is None:
        raise BundleRefused("git is not installed (looked in /usr/bin, /bin, /usr/local/bin)",
                            hint="install git to take an isolated run's commits")
    copy = os.path.join(scratch, f"{run_id}.bundle")
    _copy_regular(bundle, copy)
    try:
        header = read_header(copy)
        wanted = []
        for name, commit in header.refs:
            target = _target(run_id, name)
            if target is None:
                if name.startswith("refs/heads/"):
                    raise BundleRefused(f"the run's branch {name!r} has a name ringfence does not take")
                continue
            wanted.append((name, target, commit))
        if not wanted:
            return ()
        argv = [git]
        for setting in _GIT_SETTINGS:
            argv += ["-c", setting]
        argv += ["fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--no-write-fetch-head",
                 "--no-auto-maintenance", "--no-auto-gc", "--no-show-forced-updates", copy]
        argv += [f"+{name}:{target}" for name, target, _ in wanted]
        done = subprocess.run(argv, cwd=dirs[1], env=git_environment(dirs[0]), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace", timeout=600)
        if done.returncode != 0:
            raise BundleRefused(f"git could not take the run's commits: {done.stderr.strip()[-2000:]}",
                                hint="the bundle is kept in the run's directory; discard the run to drop it")
    finally:
        os.unlink(copy)
    refs = read_refs(workspace)
    fetched = []
    for name, target, commit in wanted:
        if refs.get(target) != commit:
            raise BundleRefused(f"after the fetch, {target} is {refs.get(target)!r}, not the bundle's {commit}")
        fetched.append(FetchedRef(name, target, commit))
    return tuple(fetched)


def _copy_regular(source: str, target: str):
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise BundleRefused(f"cannot open the run's bundle {source}: {exc.strerror}") from None
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BundleRefused(f"the run's bundle {source} is not a regular file")
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                write_all(out, chunk)
        finally:
            os.close(out)
    finally:
        os.close(fd)
