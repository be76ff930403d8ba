"""Two installations of ringfence, side by side in one hyperfine run.

    python benchmarks/compare.py BEFORE_CLI AFTER_CLI [--runs N] [--files 100000] [--masked 2000]

BEFORE_CLI and AFTER_CLI are `ringfence` executables of two installations
(each in its own virtualenv, installed with `pip install .`, not editable).
Every scenario times both in the same hyperfine invocation, alternating, so
that the machine's drift falls on both alike, and prints AFTER / BEFORE:

1. `run -- true`, workspace-write, no configuration, an empty project, and
   `python -c pass` as the floor any Python CLI pays.
2. 2,000 glob-denied files in a 100,000-file workspace, warm scan cache.
3. The same, cold: every run is the first in its workspace (scan cache gone).
4. The default profile over a 100,000-file workspace with no masks (the
   built-in credential and protected-name scans), warm.

hyperfine is the Debian package `hyperfine`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from startup import World, build_tree, hyperfine_rows as hyperfine  # noqa: E402


def report(title: str, results: dict, before: str = "before", after: str = "after", floor: str | None = None):
    print(title)
    for name, row in results.items():
        print(f"   {name:<22} median {row['median'] * 1000:7.1f} ms   mean {row['mean'] * 1000:7.1f} ms   "
              f"sd {row['stddev'] * 1000:5.1f}")
    ratio = results[after]["median"] / results[before]["median"]
    line = f"   after / before: {ratio:.3f}"
    if floor:
        line += (f"   (before {results[before]['median'] / results[floor]['median']:.2f}x and after "
                 f"{results[after]['median'] / results[floor]['median']:.2f}x python -c pass)")
    print(line + "\n")
    return ratio


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--masked", type=int, default=2_000)
    parser.add_argument("--dir", default=None, help="where to build the worlds (not /tmp: it is private)")
    options = parser.parse_args()
    if not shutil.which("hyperfine"):
        raise SystemExit("needs hyperfine (apt install hyperfine)")
    before, after = (shlex.quote(os.path.abspath(path)) for path in (options.before, options.after))
    python = shlex.quote(os.path.join(os.path.dirname(os.path.abspath(options.after)), "python3"))
    base_root = options.dir or ("/var/lib" if os.getuid() == 0 else os.path.expanduser("~/.cache"))
    base = tempfile.mkdtemp(prefix="ringfence-compare-", dir=base_root)
    try:
        print(f"ringfence before/after ({options.runs} runs each, hyperfine, one invocation per scenario)\n")
        plain = World(os.path.join(base, "plain"), config=None)
        for cli in (before, after):  # first runs compile seccomp and probe bwrap: not what is measured
            subprocess.run(f"{cli} run -- true", shell=True, cwd=plain.ws, env=plain.env, check=True)
        results = hyperfine({"python -c pass": f"{python} -c pass", "before": f"{before} run -- true",
                             "after": f"{after} run -- true"}, options.runs, plain.env, plain.ws)
        report("1. run -- true, workspace-write, empty project", results, floor="python -c pass")

        masked = World(os.path.join(base, "masked"),
                       'default_permissions = "bench"\n[permissions.bench.filesystem]\n":root" = "read"\n'
                       '":project_roots" = { "." = "write", "**/*.secret" = "none" }\n')
        build_tree(masked.ws, options.files, options.masked)
        for cli in (before, after):
            subprocess.run(f"{cli} run -- true", shell=True, cwd=masked.ws, env=masked.env, check=True)
        import time

        time.sleep(2.5)  # past the scan cache's racy window
        results = hyperfine({"before": f"{before} run -- true", "after": f"{after} run -- true"},
                            max(10, options.runs // 2), masked.env, masked.ws)
        report(f"2. {options.masked} glob-denied files in a {options.files}-file workspace, warm", results)
        cache = os.path.join(masked.home, ".local", "state", "ringfence", "cache")
        results = hyperfine({"before": f"{before} run -- true", "after": f"{after} run -- true"},
                            max(10, options.runs // 2), masked.env, masked.ws,
                            prepare=f"rm -f {shlex.quote(cache)}/scan-*.bin")
        report("3. the same, cold (no scan cached for this workspace)", results)

        default = World(os.path.join(base, "default"), config=None)
        build_tree(default.ws, options.files, 0)
        for cli in (before, after):
            subprocess.run(f"{cli} run -- true", shell=True, cwd=default.ws, env=default.env, check=True)
        time.sleep(2.5)
        results = hyperfine({"before": f"{before} run -- true", "after": f"{after} run -- true"},
                            options.runs, default.env, default.ws)
        report(f"4. default profile over a {options.files}-file workspace, warm", results)
        cache = os.path.join(default.home, ".local", "state", "ringfence", "cache")
        results = hyperfine({"before": f"{before} run -- true", "after": f"{after} run -- true"},
                            max(10, options.runs // 2), default.env, default.ws,
                            prepare=f"rm -f {shlex.quote(cache)}/scan-*.bin")
        report("5. the same, cold", results)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
