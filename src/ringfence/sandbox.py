"""The Python API: `load_policy` and `Sandbox(policy).run(...)`."""

from __future__ import annotations

import os

from .errors import CommandRefused, PolicyError, RingfenceError
from .events import EventLog
from .policy.commands import FORBIDDEN

_SHIM_NAME = "setsid"


def load_policy(cwd: str | None = None, *, home: str | None = None, sandbox_mode: str | None = None,
                permissions: str | None = None, config_files=(), overrides=(), read_user_config: bool = True,
                env: dict | None = None):
    """Build the Policy for `cwd` from the configuration layers.

    `sandbox_mode` and `permissions` act like the `--sandbox` and `-P` flags;
    `overrides` like `-c key=value`; `config_files` like `--config FILE`.
    """
    from .config import load_config
    from .errors import ConfigError
    from .policy import build_policy

    for name, value in (("config_files", config_files), ("overrides", overrides)):
        if isinstance(value, (str, bytes)):
            raise TypeError(f"{name} takes a list, not one string: {name}=[{value!r}]")
    source_env = os.environ if env is None else env
    cwd = os.path.abspath(cwd or os.getcwd())
    if not os.path.isdir(cwd):
        raise RingfenceError(f"{cwd} is not a directory", hint="give the project directory the policy is for")
    home = home or source_env.get("HOME") or os.path.expanduser("~")
    if sandbox_mode and permissions:
        raise ConfigError("command-line flags", "", "--sandbox and -P choose the same thing; give one")
    flags = {}
    if sandbox_mode:
        flags["sandbox_mode"] = sandbox_mode
    if permissions:
        flags["default_permissions"] = permissions
    config = load_config(cwd=cwd, home=home, config_files=config_files, overrides=overrides, flags=flags,
                         read_user_config=read_user_config)
    policy = build_policy(config, env=source_env)
    if config.has_layer("project") and not config.project_trusted:
        from .policy.compare import widenings

        baseline = config.without("project")
        chosen = config.get("default_permissions")
        profiles = baseline.get("permissions") or {}
        if chosen is not None and chosen.value not in profiles and not chosen.value.startswith(":"):
            # The profile exists only in the project: measure it against what the
            # user would get without both the project and that choice.
            baseline = baseline.without_setting("default_permissions")
        without = build_policy(baseline, env=source_env)
        problems = widenings(without, policy, source_env)
        if problems:
            project_file = next(layer.source for layer in config.layers if layer.name == "project")
            raise ConfigError(project_file, "", "this project's configuration would loosen the sandbox: "
                              + "; ".join(problems),
                              hint=f'trust the project in ~/.ringfence/config.toml: [projects."{config.project_root}"] '
                                   'trust_level = "trusted", or remove the loosening keys')
    return policy


def _find_shim(env: dict, filesystem) -> str | None:
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory, _SHIM_NAME)
        if os.path.isabs(candidate) and os.access(candidate, os.X_OK):
            if filesystem.access(candidate).access != "none":
                return candidate
    for candidate in ("/usr/bin/setsid", "/bin/setsid"):
        if os.access(candidate, os.X_OK) and filesystem.access(candidate).access != "none":
            return candidate
    return None


def _ensure_own_directories(policy, state: str):
    """ringfence's state and configuration directories must exist before the
    mounts are planned: a missing one could be created by the sandbox, with
    contents ringfence would trust on the next start."""
    from .config import user_config_dir

    for path in (state, user_config_dir(policy.home)):
        os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(state, 0o700)  # it names the secrets it masks


class Sandbox:
    """Runs commands under one policy.

    >>> outcome = Sandbox(load_policy("/path/to/project")).run(["pytest"], capture_output=True)
    >>> outcome.exit_code, outcome.stdout
    """

    def __init__(self, policy=None, **load_options):
        from .policy import Policy

        if policy is not None and not isinstance(policy, Policy):
            raise TypeError(f"Sandbox takes a Policy (from load_policy), not {type(policy).__name__}: "
                            "Sandbox(load_policy(path)) or Sandbox(cwd=path)")
        self.policy = policy if policy is not None else load_policy(**load_options)
        self._reuse: dict = {}
        self._placeholders = None
        fs = self.policy.filesystem
        self._known_protected = {cap.path for cap in fs.caps} | {path for path, _kind, exists, _label in fs.protected
                                                                   if exists}

    def close(self):
        """Remove the placeholders this sandbox keeps between runs (also done at
        exit, and by the next run anywhere if this process is killed)."""
        if self._placeholders is not None:
            self._placeholders.release()
            self._placeholders = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _holder(self, state: str):
        if self._placeholders is None:
            import weakref

            from .launcher.placeholders import Placeholders

            self._placeholders = Placeholders(state)
            weakref.finalize(self, self._placeholders.release)
        return self._placeholders

    def check(self, command):
        """The command-rule decision for `command`, without running it."""
        return self.policy.commands.decide(list(command))

    def run(self, command, *, cwd: str | None = None, capture_output: bool = False, input: bytes | None = None,
            stdin: str | None = None, timeout: float | None = None, events_path: str | None = None,
            tty: bool = False, pass_fds=(), forward_signals: bool = False, env: dict | None = None,
            events: EventLog | None = None, keep_placeholders: bool = True):
        from .launcher.run import CAPTURE, DEVNULL, INHERIT, PIPE, IOSpec

        if isinstance(command, (str, bytes)):
            raise TypeError("the command is a list of arguments, not one string: "
                            "use ['sh', '-c', '...'] to run a shell command line")
        command = [os.fsdecode(part) if isinstance(part, bytes) else str(part) for part in command]
        if not command:
            raise ValueError("empty command")
        if timeout is not None:
            from .config.quantities import seconds_problem

            problem = seconds_problem(timeout)
            if problem:
                raise ValueError(f"timeout={timeout!r} {problem}: give a number of seconds")
        policy = self.policy
        if policy.refusals:
            first = policy.refusals[0]
            more = len(policy.refusals) - 1
            raise PolicyError(first.message + (f" (and {more} more: `ringfence status` lists them)" if more else ""),
                              hint=first.hint)
        events = events or EventLog(path=events_path)
        cwd = os.path.abspath(cwd or policy.cwd)
        if not os.path.isdir(cwd):
            raise RingfenceError(f"cannot run in {cwd}: no such directory")
        decision = policy.commands.decide(command)
        if decision.decision == FORBIDDEN:
            events.emit("run.refused", argv=command, rule=decision.rule.label, origin=decision.rule.origin)
            raise CommandRefused(f"refused by command rule {decision.rule.label} ({decision.rule.origin})",
                                 hint="remove or change the rule to run this command")
        events.emit("run.policy", profile=policy.profile, chosen_by=policy.profile_origin,
                    config_files=list(policy.sources), sandboxed=policy.sandboxed, network=policy.network.mode,
                    limits=policy.limits.describe())
        source_env = os.environ if env is None else env
        env_result = policy.environment.apply(source_env)
        if input is not None:
            stdin_mode = PIPE
        elif stdin is not None:
            stdin_mode = stdin
        else:
            stdin_mode = DEVNULL if capture_output else INHERIT
        output_mode = CAPTURE if capture_output else INHERIT
        io = IOSpec(stdin_mode, input, output_mode, output_mode, tty, tuple(pass_fds))
        if not policy.sandboxed:
            from .launcher.unsandboxed import run_unsandboxed

            return run_unsandboxed(policy, command, cwd=cwd, env=env_result.env, io=io, timeout=timeout,
                                   events=events)
        if policy.network.mode == "limited":
            raise PolicyError(
                "the profile allows the network only to listed domains, which needs the egress proxy; "
                "this version has none, and ringfence will not run with a weaker boundary",
                hint="use network enabled = true without domains (full network), or leave it off")
        from .launcher.run import recover_leftovers, run_plan
        from .linux.plan import plan_linux
        from .state import state_dir

        state = state_dir(policy.home)
        recover_leftovers(state, events)
        _ensure_own_directories(policy, state)
        shim = None
        if tty and os.isatty(0) and (stdin_mode == INHERIT):
            shim = _find_shim(env_result.env, policy.filesystem)
        plan = plan_linux(policy, command, cwd=cwd, env_result=env_result, tty_shim=shim, reuse=self._reuse)
        if plan.limits_mechanism.processes is None and policy.limits.processes is not None:
            events.emit("limits.unenforced", limit="processes", detail=plan.limits_mechanism.detail)
        if timeout is None:
            timeout = policy.limits.timeout
        outcome = run_plan(plan, io, timeout=timeout, events=events, forward_signals=forward_signals,
                           placeholders=self._holder(state) if keep_placeholders else None)
        from .launcher.run import report_new_protected

        if report_new_protected(policy, self._known_protected, events):
            outcome = outcome.replace(events=tuple(events.events))
        return outcome
