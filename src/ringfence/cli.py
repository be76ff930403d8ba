"""The `ringfence` command: argument parsing and output only; the work is the API's.

The parser is a few lines written here because `argparse` (with `re` and
`gettext` behind it) would cost more start-up time than the whole `run` path.
"""

from __future__ import annotations

import os
import sys

from . import __version__
from .errors import COMMAND_NOT_RUNNABLE, INTERRUPTED, SANDBOX_FAILED, RingfenceError
from .printable import printable, printable_lines

USAGE = """\
usage: ringfence run [OPTIONS] [--] COMMAND [ARGS...]
       ringfence changes [--json] | diff | apply [--force] | discard   [--run ID]
       ringfence status [OPTIONS] [--json]
       ringfence explain [OPTIONS] [--json] PATH...
       ringfence check [OPTIONS] [--rules FILE]... [--json] [--] COMMAND [ARGS...]
       ringfence --version

Run COMMAND inside a boundary the kernel enforces, as one TOML policy says.

policy options (every command):
  --sandbox MODE         read-only | workspace-write | danger-full-access
  -P, --permissions NAME use the permission profile [permissions.NAME]
  -c KEY=VALUE           override one configuration key (TOML value), repeatable
  --config FILE          read FILE as a configuration layer (a Codex config.toml works), repeatable
  -C, --cd DIR           work from DIR instead of the current directory

run options:
  --events FILE          append the run's events to FILE as JSON lines
  --timeout SECONDS      end the whole process tree after SECONDS (exit status 124)
  --no-tty               do not give the command a terminal, even when ringfence has one
  -v, --verbose          after the run, also list the hosts it reached
  --escalate REASON      ask (on the terminal) to run COMMAND outside the sandbox, saying REASON
  --isolated             work on a copy-on-write overlay of the workspace; the workspace is untouched
  --setup CMD            (isolated) run the shell command line CMD first, in the same overlay; repeatable
  --apply MODE           (isolated) never (default: keep the run for review) | on-success | ask
  --rootfs DIR           (isolated) a clean base system instead of the host's read-only root

review options (the last isolated run of this workspace, or --run ID):
  --run ID               the isolated run to act on
  --force                apply over files changed in the workspace since the run started

check options:
  --rules FILE           decide with the rules in FILE only (a .rules file), repeatable

exit status of run: the command's own; 125 the sandbox could not start,
126 the command cannot be run (a command rule or the approval policy refused
it, or the answer was no: questions go to the terminal, never to stdin),
127 the command was not found.
exit status of check: 0 allowed by the rules, 1 no rule matches (the approval
policy decides), 3 needs approval (a prompt rule, or a command that cannot be
checked while prompt or forbidden rules exist), 126 forbidden (run would
refuse it), 2 bad usage, 125 a configuration that cannot be loaded (as for
every command).
"""

VALUE_OPTIONS = {"--sandbox": "sandbox", "-P": "permissions", "--permissions": "permissions",
                 "-c": "overrides", "--config": "config_files", "-C": "cd", "--cd": "cd",
                 "--events": "events", "--timeout": "timeout", "--rules": "rules_files", "--escalate": "escalate",
                 "--setup": "setup", "--apply": "apply", "--rootfs": "rootfs", "--run": "run_id"}
FLAG_OPTIONS = {"--json": "json", "--no-tty": "no_tty", "-v": "verbose", "--verbose": "verbose",
                "--isolated": "isolated", "--force": "force"}
REPEATED = {"overrides", "config_files", "rules_files", "setup"}
REVIEW_COMMANDS = ("changes", "diff", "apply", "discard")
# Sub-commands whose first positional word starts the command line.
COMMAND_LINE = ("run", "check")


class UsageError(Exception):
    pass


def parse(argv: list[str]):
    if not argv or argv[0] in ("-h", "--help", "help"):
        return "help", {}, []
    if argv[0] in ("--version", "-V"):
        return "version", {}, []
    command, rest = argv[0], argv[1:]
    if command not in ("run", "status", "explain", "check") + REVIEW_COMMANDS:
        raise UsageError(f"unknown command {command!r}")
    options: dict = {"overrides": [], "config_files": [], "rules_files": [], "setup": []}
    positional: list[str] = []
    index = 0
    while index < len(rest):
        arg = rest[index]
        if arg == "--":
            positional.extend(rest[index + 1:])
            break
        if arg in ("-h", "--help"):
            return "help", {}, []
        if arg.startswith("--") and "=" in arg:
            name, inline = arg.split("=", 1)
        else:
            name, inline = arg, None
        if name in VALUE_OPTIONS:
            if inline is None:
                index += 1
                if index >= len(rest):
                    raise UsageError(f"{name} needs a value")
                inline = rest[index]
            key = VALUE_OPTIONS[name]
            if key in REPEATED:
                options[key].append(inline)
            elif key in options and options[key] != inline:
                # A later flag silently winning could turn a sandbox off.
                raise UsageError(f"{name} given twice, as {options[key]!r} and {inline!r}: give it once")
            else:
                options[key] = inline
        elif name in FLAG_OPTIONS:
            options[FLAG_OPTIONS[name]] = True
        elif arg.startswith("-") and arg != "-" and not (command in COMMAND_LINE and positional):
            raise UsageError(f"unknown option {arg!r}")
        else:
            positional.append(arg)
            if command in COMMAND_LINE:
                positional.extend(rest[index + 1:])
                break
        index += 1
    if options.get("sandbox"):
        from .config.vocabulary import SANDBOX_MODES

        if options["sandbox"] not in SANDBOX_MODES:
            raise UsageError(f"--sandbox {options['sandbox']!r}: use " + ", ".join(SANDBOX_MODES))
    if command == "run" and not options.get("isolated"):
        for name, key in (("--setup", "setup"), ("--apply", "apply"), ("--rootfs", "rootfs")):
            if options.get(key):
                raise UsageError(f"{name} belongs to isolated runs: add --isolated")
    if options.get("apply") and options["apply"] not in ("never", "on-success", "ask"):
        raise UsageError(f"--apply {options['apply']!r}: use never, on-success or ask")
    if "timeout" in options:
        from .config.quantities import parse_number, seconds_problem

        text = options["timeout"]
        options["timeout"] = parse_number(text)
        if options["timeout"] is None:
            raise UsageError(f"--timeout {text!r} is not a number of seconds")
        problem = seconds_problem(options["timeout"])
        if problem:
            raise UsageError(f"--timeout {text!r} {problem}: give a number of seconds such as 600")
    return command, options, positional


def _policy(options):
    from .sandbox import load_policy

    cwd = options.get("cd")
    if cwd is not None and not os.path.isdir(cwd):
        raise UsageError(f"--cd {cwd}: no such directory")
    if cwd is None:
        try:
            cwd = os.getcwd()
        except FileNotFoundError:
            raise UsageError("the current directory no longer exists: cd to an existing one") from None
    return load_policy(os.path.abspath(cwd), sandbox_mode=options.get("sandbox"),
                       permissions=options.get("permissions"), config_files=options["config_files"],
                       overrides=options["overrides"])


def _error(message: str):
    # Messages carry paths, configuration and git's words: none may act on the terminal.
    sys.stderr.write(f"ringfence: {printable_lines(message)}\n")


def _names(paths) -> str:
    """Paths the sandbox named, for a sentence: every control character escaped, line breaks too."""
    return ", ".join(printable(path) for path in paths)


def cmd_run(options, positional) -> int:
    if not positional:
        raise UsageError("run needs a command: ringfence run -- COMMAND")
    from .sandbox import Sandbox

    policy = _policy(options)
    if not policy.sandboxed:
        _error("danger-full-access: running WITHOUT a sandbox; nothing limits this command")
    isolated = {}
    if options.get("isolated"):
        isolated = {"isolated": True, "setup": options["setup"], "apply": options.get("apply") or "never",
                    "rootfs": options.get("rootfs") and os.path.abspath(options["rootfs"])}
    outcome = Sandbox(policy).run(positional, cwd=options.get("cd") and os.path.abspath(options["cd"]),
                                  timeout=options.get("timeout"), events_path=options.get("events"),
                                  tty=not options.get("no_tty"), forward_signals=True, keep_placeholders=False,
                                  escalate=options.get("escalate"), **isolated)
    if outcome.changeset is not None:
        from .isolate.review import RunChanges, run_summary

        # Outcome sits in the launcher, below isolate, so it cannot name the type.
        changes = outcome.changeset
        assert isinstance(changes, RunChanges), "only an isolated run has a changeset"
        for line in run_summary(changes):
            _error(line)
        if changes.apply_error and outcome.exit_code == 0:
            return 1   # the command succeeded, but its changes are not in the workspace
    for event in outcome.events:
        if event["type"] == "git.created":
            _error("warning: the sandbox created git repositories at " + _names(event["paths"])
                   + ". Their config and hooks run on your machine when you use git there: review "
                     ".git/config and .git/hooks first, or delete them.")
        elif event["type"] == "protected.created":
            loaded = [path for path in event["paths"] if os.path.basename(path) == ".ringfence"]
            _error("warning: the sandbox created " + _names(event["paths"])
                   + ". Programs on your machine act on these (editors and agents run their tasks, settings "
                     "and hooks" + (", and ringfence itself loads a .ringfence/config.toml as a project's "
                                    "configuration" if loaded else "")
                   + "): review them before you work in those folders, or delete them.")
        elif event["type"] == "network.summary":
            for refused in event["refused"]:
                _error(f"network: refused {printable(refused['target'])}: {printable(refused['reason'])}")
            if options.get("verbose"):
                for target in event["reached"]:
                    _error(f"network: reached {printable(target)}")
        elif event["type"] == "git.neutralized":
            _error(printable(f"warning: {event['repository']}: {event['action']}"
                             + (f" {event['path']}" if event.get("path") else "") + f": {event['why']}"))
        elif event["type"] == "protected.unchecked":
            _error("warning: " + event["warning"] + (": " + _names(event["paths"]) if event["paths"] else ""))
        elif event["type"] == "sandbox.denial":
            # One line, whatever the path holds: a name with a line break would forge a second.
            _error(printable(event["message"] + (f"; to allow it, {event['fix']}" if event.get("fix") else "")))
    if outcome.reason == "timeout":
        limit = options.get("timeout") or policy.limits.timeout
        _error(f"timed out after {limit:g}s; the whole process tree was killed")
    return outcome.exit_code


def cmd_review(command: str, options) -> int:
    """changes | diff | apply | discard, on the last isolated run of this
    workspace (or --run ID); 1 when there is none, or apply met a conflict."""
    from .isolate import review
    from .isolate.errors import ApplyConflict, RunNotFound
    from .state import state_dir

    policy = _policy(options)
    state, workspace, run_id = state_dir(policy.home), policy.project_roots[0], options.get("run_id")
    try:
        if command == "changes":
            changeset = review.changes(state, workspace, run_id=run_id)
            if options.get("json"):
                import json

                sys.stdout.write(json.dumps(changeset.to_json(), indent=2) + "\n")
            else:
                sys.stdout.write("".join(line + "\n" for line in review.listing(state, changeset)))
        elif command == "diff":
            sys.stdout.flush()
            sys.stdout.buffer.write(review.diff(state, workspace, run_id=run_id))
        elif command == "apply":
            report = review.apply(state, workspace, run_id=run_id, force=bool(options.get("force")))
            for line in review.apply_summary(report):
                _error(line)
        else:
            _error(f"discarded isolated run {review.discard(state, workspace, run_id=run_id)}")
    except (RunNotFound, ApplyConflict) as exc:
        _error(str(exc))
        return 1
    return 0


CHECK_STATUS = {"allow": 0, "no-rule": 1, "prompt": 3, "forbidden": COMMAND_NOT_RUNNABLE}


def cmd_check(options, positional) -> int:
    if not positional:
        raise UsageError("check needs a command: ringfence check -- COMMAND")
    from .approval.flow import describe_approval
    from .policy.commands import display_argv

    policy = _policy(options)
    rules = policy.commands
    if options["rules_files"]:
        from .policy.commands import CommandRules
        from .policy.rules_file import load_rules_file

        loaded = [load_rules_file(os.path.abspath(path), home=policy.home) for path in options["rules_files"]]
        rules = CommandRules(tuple(r for f in loaded for r in f.rules),
                             tuple(h for f in loaded for h in f.host_executables), tuple(f.path for f in loaded))
    cwd = os.path.abspath(options.get("cd") or policy.cwd)
    env = policy.environment.apply(os.environ).env
    decision = rules.decide(positional, env=env, cwd=cwd)
    approval = describe_approval(decision, policy)
    if options.get("json"):
        import json

        data = {"command": positional, "decision": decision.decision, "why": decision.why,
                "matchedRules": [{"rule": m.label, "origin": m.origin, "decision": m.decision,
                                  "justification": m.justification, "command": list(m.command),
                                  "matchedPrefix": list(m.prefix),
                                  "certain": m.certain} for m in decision.matches],
                "commands": [{"argv": list(p.argv), "decision": p.decision, "via": list(p.via),
                              "unproven": p.unproven, "safe": p.safe, "why": p.why} for p in decision.parts],
                "rulesFiles": list(rules.files), "approvalPolicy": policy.approval_policy, "approval": approval}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        out = [f"decision  {decision.decision}", f"why       {decision.why}"]
        for match in decision.matches:
            maybe = "" if match.certain else " (could match: a word is known only at run time)"
            out.append(f"matched   {match.decision:<9} {match.label}  [{match.origin}]  on: "
                       f"{display_argv(match.prefix)}{maybe}")
        if len(decision.parts) > 1 or decision.parts[0].via:
            for part in decision.parts:
                via = f"  (inside {', '.join(part.via)})" if part.via else ""
                out.append(f"command   {part.decision:<9} {display_argv(part.argv)}{via}")
        out.append(f"approval  {policy.approval_policy}: {approval}")
        sys.stdout.write("\n".join(printable(line) for line in out) + "\n")
    return CHECK_STATUS[decision.decision]


def _recover_isolated_runs():
    """Finish what a killed isolated run or apply left, before anything else
    (one listing when there is nothing to do), and say what was done."""
    from .state import state_dir

    state = state_dir(os.environ.get("HOME") or os.path.expanduser("~"))
    try:
        if not os.listdir(os.path.join(state, "runs")):
            return
    except OSError:
        return
    from .isolate.recovery import recover

    for line in recover(state).lines():
        _error(line)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else None
    try:
        command, options, positional = parse(argv)
        if command == "help":
            sys.stdout.write(USAGE)
            return 0
        if command == "version":
            sys.stdout.write(f"ringfence {__version__}\n")
            return 0
        _recover_isolated_runs()
        if command == "run":
            return cmd_run(options, positional)
        if command in REVIEW_COMMANDS:
            if positional:
                raise UsageError(f"{command} takes no arguments (--run ID names a run)")
            return cmd_review(command, options)
        if command == "check":
            return cmd_check(options, positional)
        from . import report

        policy = _policy(options)
        if command == "status":
            return report.status(policy, as_json=options.get("json", False))
        if not positional:
            raise UsageError("explain needs a path")
        return report.explain(policy, positional, as_json=options.get("json", False))
    except UsageError as exc:
        _error(f"{exc}\n{USAGE.splitlines()[0]}  (ringfence --help for more)")
        return SANDBOX_FAILED if command == "run" else 2
    except RingfenceError as exc:
        # The documented codes hold for every command: a configuration that
        # cannot be loaded is 125 for `status` as much as for `run`.
        _error(str(exc))
        return exc.exit_status
    except KeyboardInterrupt:
        return INTERRUPTED


def command_line() -> None:
    """`main` as the `ringfence` command (and `python -m ringfence`) runs it.

    The cyclic garbage collector stays off: a command's start builds a few
    thousand acyclic records, and collections of them cost about 2 ms of
    it, while what a long run allocates afterwards (the relay's buffers)
    holds no cycles. And the process ends without the interpreter's
    teardown (another 2 ms for a hundred modules): every event is written
    as it happens and every file ringfence writes is closed when written,
    so once the standard streams are flushed nothing is left to finish."""
    import gc

    gc.disable()
    code = main()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue  # started with that descriptor closed
        try:
            stream.flush()
        except (OSError, ValueError):
            # As the interpreter's own exit does: output that could not be
            # written (a full disk, a reader gone) is a failure, never a 0.
            code = 120
    os._exit(code)


if __name__ == "__main__":
    command_line()
