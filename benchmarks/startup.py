"""Start-up cost of ringfence over raw bubblewrap, measured in one run.

    python benchmarks/startup.py [--runs N] [--files 100000] [--masked 2000]

Scenarios (each printed as times and ratios against a baseline measured in
the same run):

1. `run -- true` in a workspace-write sandbox with network off: the
   `ringfence` CLI and the API's `Sandbox.run` against raw bwrap given the
   exact argv, mounts and seccomp program ringfence would use.
2. `run -- true` with 2,000 glob-denied files in a 100,000-file workspace:
   cold (the first run in this workspace: no scan of it cached), warm, and
   the first run ever (no caches at all).
3. `run -- true` with the default profile and no configuration (credential
   layer, workspace secret globs scanned over a 100,000-file tree, protected
   metadata placeholders), against raw bwrap with the same mounts.
4. `python -X importtime` of the `run` path: the most expensive imports.

The CLI comparisons use hyperfine (Debian package `hyperfine`); without it
they fall back to a Python timing loop. Run from an installed ringfence
(`pip install .`): an editable install or a source tree without compiled
bytecode measures the import system instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def build_tree(root: str, files: int, masked: int, per_dir: int = 100):
    """`files` files, `per_dir` to a directory, `masked` of them named *.secret."""
    masked_every = max(1, files // masked) if masked else 0
    count = 0
    directory = 0
    while count < files:
        sub = os.path.join(root, f"pkg{directory // 100}", f"mod{directory}")
        os.makedirs(sub, exist_ok=True)
        for index in range(per_dir):
            if count >= files:
                break
            secret = masked_every and count % masked_every == 0 and count // masked_every < masked
            name = f"f{index}.secret" if secret else f"f{index}.py"
            with open(os.path.join(sub, name), "w"):
                pass
            count += 1
        directory += 1
    # Writing back 100,000 new inodes would otherwise compete with the runs
    # measured next: the figure is ringfence's start-up, not the disk's.
    os.sync()
    time.sleep(1)


class World:
    """A home and a workspace for the benchmark, with its own config."""

    def __init__(self, base: str, config: str | None = ""):
        self.base = base
        self.home = os.path.join(base, "home")
        self.ws = os.path.join(base, "ws")
        os.makedirs(self.home, exist_ok=True)
        os.makedirs(self.ws, exist_ok=True)
        subprocess.run(["git", "init", "-q", self.ws], check=True)
        if config is not None:
            os.makedirs(os.path.join(self.home, ".ringfence"), exist_ok=True)
            with open(os.path.join(self.home, ".ringfence", "config.toml"), "w") as handle:
                handle.write(config)
        self.env = dict(os.environ, HOME=self.home)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)

    def plan(self):
        from ringfence.backends.bwrap.plan import make_plan
        from ringfence.sandbox import load_policy

        policy = load_policy(self.ws, home=self.home, env=self.env)
        return policy, make_plan(policy, ["true"], cwd=self.ws, env_result=policy.environment.apply(self.env))

    def raw_argv(self, naive_masks: bool = False) -> tuple[list[str], str, list[str]]:
        """bwrap's argv exactly as ringfence would run `true` here, the file
        holding its seccomp program (bwrap reads it on descriptor 3), and the
        placeholders it needs to exist (ringfence creates them per run). With
        `naive_masks`, every mask is a bwrap --ro-bind, as stock bwrap would do it."""
        _, plan = self.plan()
        if naive_masks and plan.helper is not None:
            from ringfence.backends.bwrap.argv import bwrap_argv

            plan = plan.replace(argv=bwrap_argv(plan.bwrap.path, plan.mounts, network_isolated=plan.network_isolated,
                                                cwd=self.ws, command=["true"], mask_file=plan.mask_file))
        program = os.path.join(self.base, "seccomp.bpf")
        with open(program, "wb") as handle:
            handle.write(plan.seccomp_program)
        from ringfence.backends.bwrap.run import ensure_mask_file

        ensure_mask_file(plan.mask_file)
        argv = list(plan.argv)
        if "--block-fd" in argv:  # ringfence's own hand-shake for resource limits: not bwrap's work
            index = argv.index("--block-fd")
            del argv[index:index + 2]
        return argv, program, [path for path, _ in plan.placeholders]

    def raw_prefix(self) -> tuple[str, list[str]]:
        """A shell prefix running the command after it in raw bwrap, as
        ringfence would (argv up to its "--", descriptors 3 and 4 given), and
        the placeholders it needs."""
        argv, program, placeholders = self.raw_argv()
        separator = argv.index("--")
        return f"3<{shlex.quote(program)} 4>/dev/null {shlex.join(argv[:separator + 1])}", placeholders

    def raw_command(self, naive_masks: bool = False) -> tuple[str, list[str]]:
        """A shell command running `true` in bwrap exactly as ringfence would,
        and the placeholders it needs (see raw_argv)."""
        argv, program, placeholders = self.raw_argv(naive_masks)
        # A script file, since thousands of masks make a command line too long to pass.
        script = os.path.join(self.base, "raw-bwrap.sh")
        with open(script, "w") as handle:
            handle.write(f"exec {shlex.join(argv)} 3<{shlex.quote(program)} 4>/dev/null\n")
        return f"sh {shlex.quote(script)}", placeholders


@contextlib.contextmanager
def placeholders_made(paths):
    """The placeholders raw bwrap mounts on (ringfence makes them per run),
    removed afterwards, what lies inside a folder before the folder."""
    for path in paths:
        os.makedirs(path, exist_ok=True)
    try:
        yield
    finally:
        for path in sorted(paths, reverse=True):
            if os.path.isdir(path):
                os.rmdir(path)


def hyperfine_rows(commands: dict, runs: int, env: dict, cwd: str, prepare: str | None = None, warmup: int = 3,
              shell: bool = True) -> dict:
    """hyperfine's result row per named command, one invocation; without
    `shell`, commands run without a shell in between (-N)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as export:
        args = ["hyperfine", "--warmup", str(warmup), "--runs", str(runs), "--export-json", export.name,
                "--style", "none"] + ([] if shell else ["-N"])
        if prepare:
            args += ["--prepare", prepare]
        for name, command in commands.items():
            args += ["--command-name", name, command]
        subprocess.run(args, check=True, env=env, cwd=cwd, stdout=subprocess.DEVNULL)
        data = json.load(open(export.name))
    return {r["command"]: r for r in data["results"]}


def hyperfine(commands: dict, runs: int, env: dict, cwd: str, prepare: str | None = None) -> dict:
    """(mean, stddev, median) seconds per command, measured by hyperfine when
    present. `prepare` runs before every timed run, outside the timing."""
    if shutil.which("hyperfine"):
        rows = hyperfine_rows(commands, runs, env, cwd, prepare=prepare, warmup=5)
        return {name: (row["mean"], row["stddev"] or 0.0, row["median"]) for name, row in rows.items()}
    results = {}
    for name, command in commands.items():
        samples = []
        for index in range(runs + 5):
            if prepare:
                subprocess.run(prepare, shell=True, env=env, cwd=cwd, check=True)
            start = time.perf_counter()
            subprocess.run(command, shell=True, env=env, cwd=cwd, check=True)
            if index >= 5:
                samples.append(time.perf_counter() - start)
        results[name] = (statistics.mean(samples), statistics.stdev(samples), statistics.median(samples))
    return results


def api_versus_raw(world: World, runs: int) -> tuple[float, float]:
    """Median seconds of `Sandbox.run(["true"])` and of spawning the same bwrap argv."""
    from ringfence import Sandbox
    from ringfence.launcher.spawn import spawn
    from ringfence.sandbox import load_policy

    policy = load_policy(world.ws, home=world.home, env=world.env)
    sandbox = Sandbox(policy)
    command, placeholders = world.raw_command()
    _, plan = world.plan()

    def raw_once():
        seccomp_read, seccomp_write = os.pipe()
        os.write(seccomp_write, plan.seccomp_program)
        os.close(seccomp_write)
        status_read, status_write = os.pipe()
        argv = list(plan.argv)
        if "--block-fd" in argv:
            index = argv.index("--block-fd")
            del argv[index:index + 2]
        pid = spawn(argv[0], argv, plan.env, {3: seccomp_read, 4: status_write})
        os.close(seccomp_read)
        os.close(status_write)
        os.waitpid(pid, 0)
        os.close(status_read)

    def api_once():
        sandbox.run(["true"], env=world.env)

    raw, api = [], []
    # A Sandbox keeps its placeholders between runs, so the raw side makes them once too.
    with placeholders_made(placeholders):
        for index in range(runs + 5):
            for samples, function in ((raw, raw_once), (api, api_once)):
                start = time.perf_counter()
                function()
                if index >= 5:
                    samples.append(time.perf_counter() - start)
        sandbox.close()
    return statistics.median(api), statistics.median(raw)


def import_report(world: World, cli: str, top: int = 12):
    """Total import time of `ringfence run -- true` and the largest imports."""
    result = subprocess.run([sys.executable, "-X", "importtime", cli, "run", "--", "true"],
                            cwd=world.ws, env=world.env, capture_output=True, text=True)
    total, rows = 0, []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        own, cumulative, name = line[len("import time:"):].split("|")
        if not own.strip().isdigit():
            continue  # the header line
        total += int(own)
        rows.append((int(cumulative), name.strip()))
    rows.sort(reverse=True)
    return total, rows[:top]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--masked", type=int, default=2_000)
    parser.add_argument("--dir", default=None, help="where to build the worlds (not /tmp: it is private)")
    options = parser.parse_args()
    cli = shutil.which("ringfence", path=os.path.dirname(sys.executable)) or shutil.which("ringfence")
    base_root = options.dir or ("/var/lib" if os.getuid() == 0 else os.path.expanduser("~/.cache"))
    base = tempfile.mkdtemp(prefix="ringfence-bench-", dir=base_root)
    try:
        print(f"ringfence start-up benchmark ({options.runs} runs each; medians unless noted)\n")
        world = World(os.path.join(base, "plain"), config=None)
        raw, placeholders = world.raw_command()
        with placeholders_made(placeholders):
            times = hyperfine({"raw bwrap": raw, "ringfence CLI": f"{shlex.quote(cli)} run -- true"},
                              options.runs, world.env, world.ws)
        raw_median = times["raw bwrap"][2]
        cli_median = times["ringfence CLI"][2]
        print("1. run -- true, workspace-write, network off (hyperfine medians)")
        print(f"   raw bwrap, same argv       {raw_median * 1000:7.1f} ms  (sd {times['raw bwrap'][1] * 1000:.1f})")
        print(f"   ringfence run (CLI)        {cli_median * 1000:7.1f} ms  (sd {times['ringfence CLI'][1] * 1000:.1f})"
              f"   ratio {cli_median / raw_median:.2f}x   target <= 5x")
        api, raw_api = api_versus_raw(world, options.runs)
        print(f"   raw bwrap from Python      {raw_api * 1000:7.1f} ms")
        print(f"   Sandbox.run (API)          {api * 1000:7.1f} ms   ratio {api / raw_api:.2f}x   target <= 1.5x")

        masked_world = World(os.path.join(base, "masked"),
                             'default_permissions = "bench"\n[permissions.bench.filesystem]\n":root" = "read"\n'
                             '":project_roots" = { "." = "write", "**/*.secret" = "none" }\n')
        build_tree(masked_world.ws, options.files, options.masked)
        cache = os.path.join(masked_world.home, ".local", "state", "ringfence", "cache")
        command = [cli, "run", "--", "true"]
        first_ever = []
        for _ in range(3):
            shutil.rmtree(cache, ignore_errors=True)
            start = time.perf_counter()
            subprocess.run(command, cwd=masked_world.ws, env=masked_world.env, check=True)
            first_ever.append(time.perf_counter() - start)
        # A first run in this workspace: no scan of it is cached, while what
        # does not depend on the workspace (seccomp program, bwrap probe,
        # parsed config) is, as it is after any earlier run anywhere.
        cold = hyperfine({"ringfence CLI": f"{shlex.quote(cli)} run -- true"}, max(10, options.runs // 2),
                         masked_world.env, masked_world.ws,
                         prepare=f"rm -f {shlex.quote(cache)}/scan-*.bin")["ringfence CLI"]
        masked_raw, masked_placeholders = masked_world.raw_command(naive_masks=True)
        with placeholders_made(masked_placeholders):
            time.sleep(2.5)  # let the workspace's directories age past the scan cache's racy window
            warm = hyperfine({"ringfence CLI": f"{shlex.quote(cli)} run -- true"}, max(5, options.runs // 2),
                             masked_world.env, masked_world.ws)
            warm.update(hyperfine({"raw bwrap, masks via bwrap": masked_raw}, 3, masked_world.env,
                                  masked_world.ws))
        _, plan = masked_world.plan()
        print(f"\n2. {options.masked} glob-denied files in a {options.files}-file workspace "
              f"({len(plan.helper.masks) if plan.helper else plan.mounts.count('mask-file')} masks, "
              f"{'mask helper' if plan.helper else 'bwrap binds'})")
        print(f"   ringfence run, cold scan   {cold[2] * 1000:7.1f} ms  (mean {cold[0] * 1000:.1f}, "
              f"sd {cold[1] * 1000:.1f})   target <= 300 ms   first run in this workspace")
        print(f"   ringfence run, warm scan   {warm['ringfence CLI'][2] * 1000:7.1f} ms  (mean "
              f"{warm['ringfence CLI'][0] * 1000:.1f}, sd {warm['ringfence CLI'][1] * 1000:.1f})   target <= 300 ms")
        print(f"   first run ever (no caches) {statistics.median(first_ever) * 1000:7.1f} ms   "
              "(also compiles seccomp, probes bwrap, parses the config)")
        raw_masked = warm["raw bwrap, masks via bwrap"][2]
        print(f"   raw bwrap, one --ro-bind per mask  {raw_masked * 1000:7.1f} ms   "
              f"(ringfence is {raw_masked / warm['ringfence CLI'][2]:.1f}x faster)")

        default_world = World(os.path.join(base, "default"), config=None)
        build_tree(default_world.ws, options.files, 0)
        subprocess.run([cli, "run", "--", "true"], cwd=default_world.ws, env=default_world.env, check=True)
        time.sleep(2.5)
        default_raw, default_placeholders = default_world.raw_command()
        with placeholders_made(default_placeholders):
            times = hyperfine({"raw bwrap": default_raw, "ringfence CLI": f"{shlex.quote(cli)} run -- true"},
                              options.runs, default_world.env, default_world.ws)
        api, raw_api = api_versus_raw(default_world, options.runs)
        _, plan = default_world.plan()
        print(f"\n3. default profile, no configuration, {options.files}-file workspace "
              f"({len(plan.mounts.steps)} mount steps, {len(default_placeholders)} placeholders, warm scan)")
        print(f"   raw bwrap, same argv       {times['raw bwrap'][2] * 1000:7.1f} ms")
        print(f"   ringfence run (CLI)        {times['ringfence CLI'][2] * 1000:7.1f} ms   "
              f"ratio {times['ringfence CLI'][2] / times['raw bwrap'][2]:.2f}x   target <= 5x")
        print(f"   raw bwrap from Python      {raw_api * 1000:7.1f} ms")
        print(f"   Sandbox.run (API)          {api * 1000:7.1f} ms   ratio {api / raw_api:.2f}x   target <= 1.5x")

        total, rows = import_report(world, cli)
        print(f"\n4. python -X importtime ringfence run -- true: {total / 1000:.1f} ms of imports in all; "
              "largest (cumulative):")
        for cumulative, name in rows:
            print(f"   {cumulative / 1000:6.1f} ms  {name}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
