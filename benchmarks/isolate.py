"""Isolated-run figures, each against a baseline measured in the same run.

1. Changeset capture for 10 changed files in a 100,000-file workspace, over
   the same in a 1,000-file one (target: ratio <= 1.5; the cost follows the
   change, not the workspace).
2. Apply of 1,000 changed files: time, fsync count, and the time of writing
   the same 1,000 files atomically (temporary file, fsync, rename) without
   a journal, as the baseline.
3. `ringfence run --isolated -- true` over `ringfence run -- true`, in a
   git repository (target: ratio <= 1.3), best of --repeat each.
4. A third-party test suite (more-itertools' own, from its sdist, fetched
   with pip) under `ringfence run --isolated` over `ringfence run`.

For 1 and 2 the edits are made through a real overlay (ringfence's own mount
script in `unshare -Urm`), so the upper layers are what a run leaves.

    python3 benchmarks/isolate.py [--big 100000] [--small 1000] [--apply 1000] [--repeat 15] [--no-suite]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from ringfence.isolate.apply import apply_run  # noqa: E402
from ringfence.isolate.changeset import read_changes  # noqa: E402
from ringfence.isolate.overlay import MOUNT_SCRIPT  # noqa: E402
from ringfence.isolate.store import create_run, finish_run  # noqa: E402

EDIT = r'''
import os, sys
root, paths = sys.argv[1], sys.argv[2:]
for path in paths:
    with open(os.path.join(root, path), "ab") as handle:
        handle.write(b"changed in the run\n")
'''


def make_workspace(root: str, files: int) -> list[str]:
    """`files` small files, 100 to a folder, two levels deep."""
    paths = []
    for index in range(files):
        relative = f"d{index // 10000:02d}/e{index // 100 % 100:02d}/f{index % 100:02d}.txt"
        path = os.path.join(root, relative)
        if index % 100 == 0:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(b"line %d\n" % index)
        paths.append(relative)
    return paths


def edit_in_overlay(workspace: str, upper: str, work: str, paths: list[str]):
    script = os.path.join(os.path.dirname(upper), "edit.py")
    with open(script, "w") as handle:
        handle.write(EDIT)
    subprocess.run(["unshare", "-Urm", sys.executable, "-I", "-S", MOUNT_SCRIPT, workspace, upper, work, workspace,
                    "--", sys.executable, "-I", "-S", script, workspace, *paths], check=True)


def best_of(function, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def capture_time(base: str, files: int, changed: int) -> float:
    workspace = os.path.join(base, f"ws{files}")
    paths = make_workspace(workspace, files)
    run, lock = create_run(os.path.join(base, f"state{files}"), workspace)
    # The same paths in both workspaces (one file in each of the first
    # folders), so that only the size of the workspace differs.
    edit_in_overlay(workspace, run.upper, run.work, paths[::100][:changed])
    run = finish_run(run, 0)
    lock.release()
    changes = read_changes(run.workspace, run.upper, run.stamp)
    assert len(changes.changes) == changed, len(changes.changes)
    return best_of(lambda: read_changes(run.workspace, run.upper, run.stamp), 30)


def apply_figures(base: str, files: int) -> tuple[float, int, float]:
    workspace = os.path.join(base, "apply-ws")
    paths = make_workspace(workspace, files)
    run, lock = create_run(os.path.join(base, "apply-state"), workspace)
    edit_in_overlay(workspace, run.upper, run.work, paths)
    run = finish_run(run, 0)
    lock.release()
    from ringfence.isolate.changeset import capture

    capture(run)
    os.sync()
    started = time.perf_counter()
    report = apply_run(run)
    applied = time.perf_counter() - started
    # Baseline: the same files written atomically one by one, no journal, no checks.
    target = os.path.join(base, "baseline")
    shutil.copytree(workspace, target)
    os.sync()
    started = time.perf_counter()
    for relative in paths:
        path = os.path.join(target, relative)
        temporary = path + ".tmp"
        with open(os.path.join(run.workspace, relative), "rb") as source:
            data = source.read()
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.replace(temporary, path)
    for folder in {os.path.dirname(relative) for relative in paths}:
        fd = os.open(os.path.join(target, folder), os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd)
        os.close(fd)
    baseline = time.perf_counter() - started
    return applied, report.fsyncs, baseline


SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def ringfence_env(home: str) -> dict:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "PYTHONPATH": SRC, "LANG": "C.UTF-8"}


def timed_run(workspace: str, home: str, args: list[str], command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-P", "-m", "ringfence", "run", "--no-tty", *args, "--", *command],
                          cwd=workspace, env=ringfence_env(home), stdin=subprocess.DEVNULL, capture_output=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"ringfence run {' '.join(args)} failed ({done.returncode}): "
                         f"{done.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


def startup_figures(base: str, repeat: int) -> tuple[float, float]:
    """Best of `repeat` for `run -- true` plain and isolated, interleaved."""
    workspace, home = os.path.join(base, "start-ws"), os.path.join(base, "start-home")
    os.makedirs(home)
    make_workspace(workspace, 200)
    subprocess.run(["git", "init", "-q", workspace], check=True, env=ringfence_env(home))
    timed_run(workspace, home, [], ["true"])   # caches: the seccomp program, the glob scan
    timed_run(workspace, home, ["--isolated"], ["true"])
    plain, isolated = [], []
    for _ in range(repeat):
        plain.append(timed_run(workspace, home, [], ["true"]))
        isolated.append(timed_run(workspace, home, ["--isolated"], ["true"]))
    return min(plain), min(isolated)


def suite_figures(base: str) -> tuple[str, float, float] | str:
    """more-itertools' test suite, plain and isolated; or why it could not run."""
    downloads = os.path.join(base, "sdist")
    fetched = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                              "more-itertools", "-d", downloads], capture_output=True, text=True, timeout=300)
    archives = os.listdir(downloads) if os.path.isdir(downloads) else []
    if fetched.returncode != 0 or not archives:
        return f"more-itertools could not be fetched: {fetched.stderr.strip()[-300:]}"
    import tarfile

    with tarfile.open(os.path.join(downloads, archives[0])) as archive:
        archive.extractall(base, filter="data")
    workspace = os.path.join(base, archives[0].replace(".tar.gz", ""))
    home = os.path.join(base, "suite-home")
    os.makedirs(home)
    os.makedirs(os.path.join(workspace, ".git"))   # the project marker; a test run commits nothing
    # The base system's interpreter: the isolated run does not see the home
    # directory, where an interpreter may live (pyenv).
    command = ["/usr/bin/python3", "-B", "-m", "unittest", "-q"]
    plain = timed_run(workspace, home, [], command)
    isolated = timed_run(workspace, home, ["--isolated"], command)
    return os.path.basename(workspace), plain, isolated


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--changed", type=int, default=10)
    parser.add_argument("--apply", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--no-suite", action="store_true", help="skip the third-party test suite")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="ringfence-isolate-bench-", dir="/var/tmp")
    try:
        small = capture_time(base, args.small, args.changed)
        big = capture_time(base, args.big, args.changed)
        ratio = big / small
        print(f"capture, {args.changed} changed files: {args.small:,} files {small * 1000:.2f} ms, "
              f"{args.big:,} files {big * 1000:.2f} ms, ratio {ratio:.2f} (target <= 1.5: "
              f"{'ok' if ratio <= 1.5 else 'MISSED'})")
        applied, fsyncs, baseline = apply_figures(base, args.apply)
        print(f"apply of {args.apply:,} changed files: {applied * 1000:.0f} ms, {fsyncs} fsync calls; "
              f"atomic writes alone (baseline) {baseline * 1000:.0f} ms, ratio {applied / baseline:.2f}")
        plain, isolated = startup_figures(base, args.repeat)
        ratio = isolated / plain
        print(f"run -- true, best of {args.repeat}: plain {plain * 1000:.0f} ms, isolated {isolated * 1000:.0f} ms, "
              f"ratio {ratio:.2f} (target <= 1.3: {'ok' if ratio <= 1.3 else 'MISSED'})")
        if not args.no_suite:
            suite = suite_figures(base)
            if isinstance(suite, str):
                print(f"third-party suite: not measured: {suite}")
            else:
                name, plain, isolated = suite
                print(f"third-party suite ({name}, python -m unittest): plain {plain:.1f} s, isolated "
                      f"{isolated:.1f} s, ratio {isolated / plain:.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
