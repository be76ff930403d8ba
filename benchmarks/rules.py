"""Cost of command rules, measured in one run.

    python benchmarks/rules.py [--rules 500] [--commands 50] [--runs 200] [--run]

1. Deciding a shell script of 50 simple commands (`bash -lc "a && b | c; ..."`)
   against 500 rules (target: under 5 ms), against two baselines measured
   here: tree-sitter parsing the same script alone, and deciding one plain
   argv against the same rules.
2. Loading 500 rules from 10 `.rules` files in a fresh interpreter: cold
   (parsed), warm (the per-file cache in ringfence's state directory), and
   a fresh interpreter that only reads the same files.
3. With `--run` (needs bubblewrap): `ringfence run -- true` with the 500
   rules in `~/.ringfence/rules` over the same run with none, the two
   alternating run by run; the run goes through the whole approval path
   (rules decided, approval policy applied) before it spawns.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO, "src")
sys.path.insert(0, SRC)

PROGRAMS = ["git", "npm", "cargo", "make", "docker", "kubectl", "pip", "python3", "go", "rm", "curl", "gh",
            "yarn", "pnpm", "terraform", "aws", "gcloud", "helm", "poetry", "uv"]
VERBS = ["status", "diff", "log", "push", "pull", "install", "test", "build", "run", "deploy", "publish",
         "apply", "delete", "exec", "login", "fetch", "clean", "lint", "fmt", "check", "add", "remove", "init",
         "show", "list"]


def rules_text(count: int) -> list[str]:
    """`count` rule lines: every program with many verbs, some with alternatives."""
    lines = []
    decisions = ["allow", "allow", "allow", "prompt", "forbidden"]
    index = 0
    while len(lines) < count:
        program = PROGRAMS[index % len(PROGRAMS)]
        verb = VERBS[(index // len(PROGRAMS)) % len(VERBS)]
        extra = f', "--flag{index // (len(PROGRAMS) * len(VERBS))}"' if index >= len(PROGRAMS) * len(VERBS) else ""
        decision = decisions[index % len(decisions)]
        if index % 7 == 0:
            lines.append(f'prefix_rule(pattern=["{program}", ["{verb}", "{verb}-x"]{extra}], decision="{decision}")')
        else:
            lines.append(f'prefix_rule(pattern=["{program}", "{verb}"{extra}], decision="{decision}", '
                         f'justification="rule {index}")')
        index += 1
    return lines


def script_of(commands: int) -> str:
    parts = []
    for index in range(commands):
        program = PROGRAMS[(index * 3) % len(PROGRAMS)]
        verb = VERBS[(index * 5) % len(VERBS)]
        parts.append(f"{program} {verb} --verbose 'arg {index}' \"$HOME/x{index}\"")
    joiners = [" && ", " | ", "; ", " || "]
    text = parts[0]
    for index, part in enumerate(parts[1:]):
        text += joiners[index % len(joiners)] + part
    return text


def timed(function, runs: int) -> float:
    function()  # warm: the parser and caches are loaded once per process
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def decision_figures(rule_count: int, commands: int, runs: int):
    from ringfence.policy.commands import CommandRules
    from ringfence.policy.rules_file import parse_rules
    from ringfence.policy.shell import _get_parser

    loaded = parse_rules("\n".join(rules_text(rule_count)) + "\n", "bench.rules")
    rules = CommandRules(loaded.rules)
    script = script_of(commands)
    argv = ["bash", "-lc", script]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    decision = rules.decide(argv, env=env, cwd="/tmp")
    assert len(decision.parts) >= commands, len(decision.parts)
    parser = _get_parser()
    source = script.encode()
    decide = timed(lambda: rules.decide(argv, env=env, cwd="/tmp"), runs)
    parse = timed(lambda: parser.parse(source), runs)
    single = timed(lambda: rules.decide(["git", "push", "origin"], env=env, cwd="/tmp"), runs)
    print(f"1. decide a {commands}-command script against {rule_count} rules "
          f"(decision: {decision.decision}, {len(decision.parts)} commands seen)")
    print(f"   decide script      {decide * 1000:8.3f} ms   (target < 5 ms: {decide * 1000 / 5:.2f} of it)")
    print(f"   tree-sitter parse  {parse * 1000:8.3f} ms   decide / parse = {decide / parse:.1f}x")
    print(f"   decide one argv    {single * 1000:8.3f} ms   script / argv = {decide / single:.1f}x")


LOADER = """
import sys, time
start = time.perf_counter()
sys.path.insert(0, sys.argv[1])
from ringfence.policy.rules_file import load_rules_file
cache = sys.argv[2] or None
count = sum(len(load_rules_file(path, cache_dir=cache).rules) for path in sys.argv[3:])
print(time.perf_counter() - start, count)
"""

READER = """
import sys, time
start = time.perf_counter()
count = sum(len(open(path, "rb").read()) > 0 for path in sys.argv[2:])
print(time.perf_counter() - start, count)
"""


def load_figures(rule_count: int, runs: int):
    lines = rules_text(rule_count)
    with tempfile.TemporaryDirectory() as directory:
        paths = []
        per_file = max(1, len(lines) // 10)
        for number, start in enumerate(range(0, len(lines), per_file)):
            path = os.path.join(directory, f"r{number:02d}.rules")
            with open(path, "w") as handle:
                handle.write("\n".join(lines[start:start + per_file]) + "\n")
            paths.append(path)
        cache = os.path.join(directory, "cache")
        loads, warm, reads, counted = [], [], [], 0
        for _ in range(max(5, runs // 20)):
            out = subprocess.run([sys.executable, "-P", "-c", LOADER, SRC, "", *paths], capture_output=True,
                                 text=True, check=True).stdout.split()
            loads.append(float(out[0]))
            counted = int(out[1])
            out = subprocess.run([sys.executable, "-P", "-c", LOADER, SRC, cache, *paths], capture_output=True,
                                 text=True, check=True).stdout.split()
            warm.append(float(out[0]))
            out = subprocess.run([sys.executable, "-P", "-c", READER, SRC, *paths], capture_output=True, text=True,
                                 check=True).stdout.split()
            reads.append(float(out[0]))
    load, read, cached = statistics.median(loads), statistics.median(reads), statistics.median(warm[1:] or warm)
    print(f"2. load {counted} rules from {len(paths)} files (a fresh interpreter each time)")
    print(f"   cold: import+parse {load * 1000:8.3f} ms   ({load * 1e6 / counted:.1f} us a rule)")
    print(f"   warm: from cache   {cached * 1000:8.3f} ms   cold / warm = {load / cached:.1f}x")
    print(f"   read the files     {read * 1000:8.3f} ms   cold / read = {load / read:.0f}x")


def run_figures(rule_count: int, runs: int):
    """Both configurations in one loop, alternating run by run, so that the
    machine's drift (other work on a shared machine) falls on both alike."""
    with tempfile.TemporaryDirectory() as root:
        workspace = os.path.join(root, "ws")
        os.makedirs(os.path.join(workspace, ".git"))
        homes = {}
        for name, count in (("none", 0), ("rules", rule_count)):
            home = homes[name] = os.path.join(root, name)
            os.makedirs(os.path.join(home, ".ringfence", "rules"))
            if count:
                with open(os.path.join(home, ".ringfence", "rules", "bench.rules"), "w") as handle:
                    handle.write("\n".join(rules_text(count)) + "\n")
        command = [sys.executable, "-P", "-m", "ringfence", "run", "--no-tty", "--", "true"]
        samples: dict = {name: [] for name in homes}
        for index in range(max(10, runs // 5) + 2):
            for name, home in homes.items():
                env = {"PATH": "/usr/bin:/bin", "HOME": home, "PYTHONPATH": SRC, "LANG": "C.UTF-8"}
                start = time.perf_counter()
                subprocess.run(command, cwd=workspace, env=env, check=True, capture_output=True)
                if index >= 2:  # the first two warm the caches (scan, seccomp, rules)
                    samples[name].append(time.perf_counter() - start)
    without, with_rules = statistics.median(samples["none"]), statistics.median(samples["rules"])
    print(f"3. ringfence run -- true, {rule_count} rules loaded over none "
          f"({len(samples['none'])} runs each, alternating; medians)")
    print(f"   none               {without * 1000:8.1f} ms")
    print(f"   {rule_count} rules          {with_rules * 1000:8.1f} ms   ratio = {with_rules / without:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=int, default=500)
    parser.add_argument("--commands", type=int, default=50)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--run", action="store_true", help="also time `ringfence run -- true` (needs bwrap)")
    options = parser.parse_args()
    decision_figures(options.rules, options.commands, options.runs)
    load_figures(options.rules, options.runs)
    if options.run:
        run_figures(options.rules, options.runs)


if __name__ == "__main__":
    main()
