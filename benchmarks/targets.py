"""ringfence's start-up targets, each printed as a ratio against a baseline
measured in the same run.

    python benchmarks/targets.py [--cli PATH] [--user cloudsdk] [--runs 40] [--only NAME ...]

Run it as root from an installed ringfence (`pip install .` into a virtualenv
whose interpreter loads nothing else at start; the baseline is that
interpreter's `python -c pass`). hyperfine is the Debian package.

1. user/root: `ringfence run -- true` (workspace-write, no configuration) as
   an ordinary user (`setpriv` to --user) and as root, and `python -c pass`
   both ways, in one hyperfine invocation. setpriv's own cost (`setpriv true`,
   same invocation) is taken off the user figures. Targets: user <= 2.6x
   `python -c pass`; root <= 1.2x the user figure.
2. trace: an agent-like trace of 60 short commands (git status, grep, sed,
   ls, a shell write, python -c import), as root, bare and each under
   `ringfence run --no-tty --`, in one hyperfine invocation. Target: <= 20 ms
   per command over bare. The same invocation measures the floor under any
   Python command line: `python -c pass`, plus each command in raw bwrap
   given ringfence's own argv, mounts and seccomp program. Then the trace
   through the API: one `Sandbox` kept by a Python process, as an agent
   framework would, against the same commands run bare from that process.
3. masks: `run -- true` with 2,000 and with 20,000 glob-denied files (warm
   scan cache), against `run -- true` in an empty project, in one hyperfine
   invocation; the 2,000 also cold (no scan cached). Targets: 20,000 within
   0.5 s warm; 2,000 at about 130 ms cold / 94 ms warm or better.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402
from startup import World, build_tree  # noqa: E402

MASKED_CONFIG = ('default_permissions = "bench"\n[permissions.bench.filesystem]\n":root" = "read"\n'
                 '":project_roots" = { "." = "write", "**/*.secret" = "none" }\n')
TRACE = [
    "git status --short",
    "grep -rn needle src",
    "sed -n 1,20p src/mod0.py",
    "ls -la src",
    "sh -c 'echo written > out.txt'",
    "{python} -c 'import json, os.path'",
]


def hyperfine(commands: dict, runs: int, env: dict, cwd: str, prepare: str | None = None,
              warmup: int = 3) -> dict:
    return compare.hyperfine(commands, runs, env, cwd, prepare=prepare, warmup=warmup, shell=False)


def line(name: str, row: dict, note: str = ""):
    print(f"   {name:<34} median {row['median'] * 1000:8.1f} ms   mean {row['mean'] * 1000:8.1f}   "
          f"sd {(row['stddev'] or 0) * 1000:5.1f}   {note}")


def verdict(value: float, target: float) -> str:
    return f"{value:.2f} (target <= {target}: {'met' if value <= target else 'NOT met'})"


def user_world(base: str, user: pwd.struct_passwd, config: str | None) -> World:
    world = World(base, config)
    for directory, _dirs, files in os.walk(base):
        os.chown(directory, user.pw_uid, user.pw_gid)
        for name in files:
            os.chown(os.path.join(directory, name), user.pw_uid, user.pw_gid, follow_symlinks=False)
    return world


def user_versus_root(cli: str, python: str, user: pwd.struct_passwd, base: str, runs: int):
    as_user = f"setpriv --reuid={user.pw_uid} --regid={user.pw_gid} --clear-groups"
    ours = user_world(os.path.join(user.pw_dir, ".cache", os.path.basename(base) + "-user"), user, None)
    root = World(os.path.join(base, "root"), None)
    # HOME and the directory are the user's; the root run gets its own through env.
    env = dict(ours.env, ROOT_HOME=root.home)
    for command in (f"{as_user} {cli} run -- true", f"{cli} run -- true"):  # seccomp compiled, bwrap probed
        subprocess.run(shlex.split(command), check=True, cwd=ours.ws,
                       env=env if "setpriv" in command else root.env)
    # -N runs no shell: the root rows set their own HOME with env(1), as the user rows do with setpriv.
    rows = hyperfine({
        "setpriv true": f"{as_user} true",
        "user: python -c pass": f"{as_user} {python} -c pass",
        "user: ringfence run -- true": f"{as_user} {cli} run -- true",
        "root: python -c pass": f"env HOME={root.home} {python} -c pass",
        "root: ringfence run -- true": f"env HOME={root.home} {cli} run -C {root.ws} -- true",
        "env true": f"env HOME={root.home} true",
    }, runs, env, ours.ws)
    print("1. run -- true, workspace-write, empty project (one hyperfine invocation)")
    for name, row in rows.items():
        line(name, row)
    median = {name: row["median"] for name, row in rows.items()}
    user_run = median["user: ringfence run -- true"] - median["setpriv true"]
    user_python = median["user: python -c pass"] - median["setpriv true"]
    root_run = median["root: ringfence run -- true"] - median["env true"]
    print(f"   user / python -c pass (setpriv's own cost taken off both): {verdict(user_run / user_python, 2.6)}")
    print(f"   root / user (env's and setpriv's own costs taken off):      {verdict(root_run / user_run, 1.2)}")
    shutil.rmtree(os.path.dirname(ours.ws), ignore_errors=True)
    return user_run, root_run


API_TRACE = r"""
import json, os, statistics, subprocess, sys, time
from ringfence import Sandbox

commands, rounds = json.loads(sys.argv[1]), int(sys.argv[2])


def bare():
    for command in commands:
        subprocess.run(command, shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)


sandbox = Sandbox(cwd=os.getcwd())


def boxed():
    for command in commands:
        outcome = sandbox.run(["sh", "-c", command], capture_output=True)
        if outcome.exit_code:
            raise SystemExit(f"{command}: exit {outcome.exit_code}: {outcome.stderr!r}")


samples = {"bare": [], "api": []}
for index in range(rounds + 1):  # the first round of each warms up
    for name, function in (("bare", bare), ("api", boxed)):
        start = time.perf_counter()
        function()
        if index:
            samples[name].append(time.perf_counter() - start)
sandbox.close()
print(json.dumps({name: statistics.median(values) for name, values in samples.items()}))
"""


def agent_trace(cli: str, python: str, base: str, runs: int):
    world = World(os.path.join(base, "trace"), None)
    for index in range(40):
        os.makedirs(os.path.join(world.ws, "src"), exist_ok=True)
        with open(os.path.join(world.ws, "src", f"mod{index}.py"), "w") as handle:
            handle.write("".join(f"def f{n}():\n    return {n}  # needle {n}\n" for n in range(50)))
    subprocess.run(["git", "-C", world.ws, "add", "-A"], check=True)
    subprocess.run(["git", "-C", world.ws, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "x"],
                   check=True)
    commands = [TRACE[index % len(TRACE)].format(python=shlex.quote(python)) for index in range(60)]
    raw_prefix, placeholders = world.raw_prefix()
    scripts = {}
    for name, lines in (("bare", commands), ("ringfence", [f"{cli} run --no-tty -- {c}" for c in commands]),
                        ("raw-bwrap", [f"{raw_prefix} {c}" for c in commands]),
                        ("python", [f"{shlex.quote(python)} -c pass"] * 60)):
        path = os.path.join(world.base, f"trace-{name}.sh")
        with open(path, "w") as handle:
            handle.write("set -e\n" + "".join(f"{line} > /dev/null\n" for line in lines))
        scripts[name] = f"sh {path}"
    subprocess.run(shlex.split(scripts["ringfence"]), check=True, cwd=world.ws, env=world.env)
    names = {"bare": "60 commands, bare", "ringfence": "60 commands, each in ringfence",
             "raw-bwrap": "60 commands, each in raw bwrap", "python": "60 x python -c pass"}
    from startup import placeholders_made

    # Raw bwrap mounts on the placeholders ringfence would make: they stand for the whole invocation.
    with placeholders_made(placeholders):
        rows = hyperfine({names[key]: script for key, script in scripts.items()}, runs, world.env, world.ws,
                         warmup=1)
    print("\n2. agent-like trace: 60 short commands, as root (one hyperfine invocation)")
    for name, row in rows.items():
        line(name, row)
    median = {key: rows[names[key]]["median"] / 60 for key in names}
    per_command = median["ringfence"] - median["bare"]
    print(f"   ringfence per command over bare: {per_command * 1000:.1f} ms "
          f"(target <= 20 ms: {'met' if per_command <= 0.020 else 'NOT met'})")
    # What no Python command line can go below: its interpreter's start, and
    # bwrap building this very sandbox (ringfence's argv, mounts and seccomp).
    floor = median["python"] + median["raw-bwrap"] - median["bare"]
    print(f"   floor of a Python CLI: python -c pass {median['python'] * 1000:.1f} ms + raw bwrap over bare "
          f"{(median['raw-bwrap'] - median['bare']) * 1000:.1f} ms = {floor * 1000:.1f} ms per command; "
          f"ringfence's own work {(per_command - floor) * 1000:.1f} ms")
    result = subprocess.run([python, "-c", API_TRACE, json.dumps(commands), str(max(8, runs))], cwd=world.ws,
                            env=world.env, check=True, capture_output=True, text=True)
    api = json.loads(result.stdout)
    over = (api["api"] - api["bare"]) / 60
    print(f"   through the API (one Sandbox in an agent's process, sh -c on both sides): "
          f"{api['api'] / 60 * 1000:.1f} ms per command, {over * 1000:.1f} ms over bare "
          f"(<= 20 ms: {'met' if over <= 0.020 else 'NOT met'})")
    return per_command


def masks(cli: str, base: str, runs: int, files: int):
    plain = World(os.path.join(base, "plain"), None)
    small = World(os.path.join(base, "m2000"), MASKED_CONFIG)
    big = World(os.path.join(base, "m20000"), MASKED_CONFIG)
    build_tree(small.ws, files, 2_000)
    build_tree(big.ws, max(files, 40_000), 20_000)
    for world in (plain, small, big):
        subprocess.run([cli, "run", "--", "true"], check=True, cwd=world.ws, env=world.env)
    time.sleep(2.5)  # the directories age past the scan cache's racy window
    env = dict(plain.env)
    rows = hyperfine({
        "empty project": f"env HOME={plain.home} {cli} run -C {plain.ws} -- true",
        "2,000 masks, warm": f"env HOME={small.home} {cli} run -C {small.ws} -- true",
        "20,000 masks, warm": f"env HOME={big.home} {cli} run -C {big.ws} -- true",
    }, runs, env, plain.ws)
    cache = os.path.join(small.home, ".local", "state", "ringfence", "cache")
    cold = hyperfine({"2,000 masks, cold": f"env HOME={small.home} {cli} run -C {small.ws} -- true"},
                     runs, env, plain.ws, prepare=f"sh -c 'rm -f {shlex.quote(cache)}/scan-*.bin'")
    rows.update(cold)
    print(f"\n3. masks, glob-denied files in a {files}-file workspace (2,000) and a "
          f"{max(files, 40_000)}-file one (20,000), as root")
    for name, row in rows.items():
        line(name, row, f"{row['median'] / rows['empty project']['median']:.1f}x the empty project")
    big_warm = rows["20,000 masks, warm"]["median"]
    print(f"   20,000 masks warm: {big_warm:.3f} s (target <= 0.5 s: {'met' if big_warm <= 0.5 else 'NOT met'})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cli", default=os.path.join(os.path.dirname(sys.executable), "ringfence"))
    parser.add_argument("--user", default="cloudsdk", help="the ordinary user (needs a home directory)")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--files", type=int, default=100_000, help="files in the 2,000-mask workspace")
    parser.add_argument("--only", nargs="*", choices=("user-root", "trace", "masks"))
    parser.add_argument("--dir", default="/var/lib", help="where to build the root worlds (not /tmp: private)")
    options = parser.parse_args()
    if os.getuid() != 0:
        raise SystemExit("run as root: it measures both an ordinary user and root")
    if not shutil.which("hyperfine"):
        raise SystemExit("needs hyperfine (apt install hyperfine)")
    cli = os.path.abspath(options.cli)
    python = os.path.join(os.path.dirname(cli), "python3")
    user = pwd.getpwnam(options.user)
    only = set(options.only or ("user-root", "trace", "masks"))
    base = tempfile.mkdtemp(prefix="ringfence-targets-", dir=options.dir)
    os.chmod(base, 0o755)
    try:
        print(f"ringfence start-up targets: {cli}, load average {os.getloadavg()[0]:.2f} at start\n")
        if "user-root" in only:
            user_versus_root(cli, python, user, base, options.runs)
        if "trace" in only:
            agent_trace(cli, python, base, max(3, options.runs // 8))
        if "masks" in only:
            masks(cli, base, max(5, options.runs // 4), options.files)
        print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
