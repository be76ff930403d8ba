"""Inside an isolated run: bundle the commits made since the run started.

The run may commit in its overlay's repository; what goes back to the host
is this bundle (objects and branch tips), never the repository's config,
hooks or index. Runs inside the sandbox, so it imports nothing of
ringfence: `python3 -I -S inrun_bundle.py REPOSITORY START_REFS OUT`.

START_REFS holds the refs at start as written by the host ("<commit>
<refname>" lines, HEAD included). OUT ("-" for standard output) receives a bundle of every branch
whose tip moved or appeared (and HEAD, when detached and moved), excluding
everything reachable from the refs at start. Exit 0 with OUT written, 3
when there is nothing new (OUT not written), 1 when git failed.
"""

import os
import subprocess
import sys

NOTHING_NEW = 3


def _git(repository, *args, to_stdout=False):
    env = {"PATH": os.environ.get("PATH") or "/usr/bin:/bin", "HOME": os.environ.get("HOME") or "/",
           "LC_ALL": "C", "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    # The bundle itself may go to this process's standard output, untouched.
    return subprocess.run(["git", "-C", repository, "-c", "core.hooksPath=/dev/null", *args], env=env,
                          stdin=subprocess.DEVNULL, stdout=None if to_stdout else subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def refs_now(repository):
    listed = _git(repository, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads")
    if listed.returncode != 0:
        raise RuntimeError(listed.stderr.strip())
    refs = {}
    for line in listed.stdout.splitlines():
        object_id, _, name = line.partition(" ")
        refs[name] = object_id
    head = _git(repository, "rev-parse", "--verify", "-q", "HEAD")
    symbolic = _git(repository, "symbolic-ref", "-q", "HEAD")
    if head.returncode == 0 and symbolic.returncode != 0:
        refs["HEAD"] = head.stdout.strip()
    return refs


def read_start(path):
    start = {}
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            object_id, _, name = line.strip().partition(" ")
            if object_id:
                start[name] = object_id
    return start


def bundle_since(repository, start, out):
    """Write the bundle; True if one was written, False if nothing is new."""
    moved = sorted(name for name, object_id in refs_now(repository).items() if start.get(name) != object_id)
    if not moved:
        return False
    exclude = sorted(set(start.values()))
    made = _git(repository, "bundle", "create", "--quiet", out, *moved, "--not", *exclude, to_stdout=out == "-")
    if made.returncode != 0:
        if "empty bundle" in made.stderr:
            return False
        raise RuntimeError(made.stderr.strip())
    return True


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: inrun_bundle.py REPOSITORY START_REFS OUT\n")
        return 2
    try:
        out = argv[2] if argv[2] == "-" else os.path.abspath(argv[2])
        written = bundle_since(argv[0], read_start(argv[1]), out)
    except (OSError, RuntimeError) as exc:
        sys.stderr.write(f"ringfence: cannot bundle the run's commits: {exc}\n")
        return 1
    return 0 if written else NOTHING_NEW


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
