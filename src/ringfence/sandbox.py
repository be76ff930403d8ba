"""The Python API: `load_policy` and `Sandbox(policy).run(...)`."""

from __future__ import annotations

import os

from .errors import PolicyError, RingfenceError
from .events import EventLog

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from .backends.base import Backend
    from .config.vocabulary import SandboxMode
    from .launcher.io import StdinMode
    from .launcher.outcome import Outcome
    from .policy.commands import CommandDecision
    from .policy.record import Policy


def load_policy(cwd: str | None = None, *, home: str | None = None, sandbox_mode: SandboxMode | None = None,
                permissions: str | None = None, config_files=(), overrides=(), read_user_config: bool = True,
                env: dict | None = None) -> Policy:
    """Build the Policy for `cwd` from the configuration layers.

    `sandbox_mode` and `permissions` act like the `--sandbox` and `-P` flags;
    `overrides` like `-c key=value`; `config_files` like `--config FILE`.
    """
    from .config import load_config, refuse_nul
    from .errors import ConfigError
    from .policy import build_policy

    for name, value in (("config_files", config_files), ("overrides", overrides)):
        if isinstance(value, (str, bytes)):
            raise TypeError(f"{name} takes a list, not one string: {name}=[{value!r}]")
    source_env = os.environ if env is None else env
    cwd = os.path.abspath(cwd or os.getcwd())
    refuse_nul(cwd, "the working directory", "give the directory without it")
    if not os.path.isdir(cwd):
        raise RingfenceError(f"{cwd} is not a directory", hint="give the project directory the policy is for")
    home = home or source_env.get("HOME") or os.path.expanduser("~")
    request = (("cwd", cwd), ("home", home), ("sandbox_mode", sandbox_mode), ("permissions", permissions),
               ("config_files", tuple(config_files)), ("overrides", tuple(overrides)),
               ("read_user_config", read_user_config), ("env", None if env is None else tuple(env.items())))
    if sandbox_mode and permissions:
        raise ConfigError("command-line flags", "", "--sandbox and -P choose the same thing; give one")
    flags: dict[str, str] = {}
    if sandbox_mode:
        flags["sandbox_mode"] = sandbox_mode
    if permissions:
        flags["default_permissions"] = permissions
    config = load_config(cwd=cwd, home=home, config_files=config_files, overrides=overrides, flags=flags,
                         read_user_config=read_user_config)
    policy = build_policy(config, env=source_env)
    if config.has_layer("project") and not config.project_trusted:
        from .approval.compare import approval_widenings
        from .policy.compare import widenings

        baseline = config.without("project")
        chosen = config.get("default_permissions")
        profiles = baseline.get("permissions") or {}
        if chosen is not None and chosen.value not in profiles and not chosen.value.startswith(":"):
            # The profile exists only in the project: measure it against what the
            # user would get without both the project and that choice.
            baseline = baseline.without_setting("default_permissions")
        without = build_policy(baseline, env=source_env)
        problems = widenings(without, policy, source_env) + approval_widenings(without, policy)
        if problems:
            project_file = next(layer.source for layer in config.layers if layer.name == "project")
            raise ConfigError(project_file, "", "this project's configuration would loosen the sandbox: "
                              + "; ".join(problems),
                              hint=f'trust the project in ~/.ringfence/config.toml: [projects."{config.project_root}"] '
                                   'trust_level = "trusted", or remove the loosening keys')
    return policy.replace(load_request=request)


def _reload(policy):
    """The policy as `load_policy` would make it now. Glob matches,
    protections, hard-link and symlink checks all describe the disk at build
    time: a secret written after it (by the last run, or by the caller) would
    be readable by the next run of a policy kept from before."""
    if policy.load_request is None:
        return policy
    request = dict(policy.load_request)
    if request["env"] is not None:
        request["env"] = dict(request["env"])
    return load_policy(**request)


def _check_environment(env: dict):
    """What an operating system environment can hold, as execve(2) takes it:
    a name neither empty nor with "=", and no NUL anywhere (bwrap reads its
    options NUL-separated, so a NUL would add options of its own)."""
    for name, value in env.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"env holds {name!r}: names and values are strings")
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise ValueError(f"env holds {name!r}, which no environment can hold: a name is not empty and has no "
                             "'=', and neither holds a NUL")


class Sandbox:
    """Runs commands under one policy, through one backend.

    >>> outcome = Sandbox(load_policy("/path/to/project")).run(["pytest"], capture_output=True)
    >>> outcome.exit_code, outcome.stdout

    `backend` is chosen for the machine when not given (tests pass a
    `ringfence.backends.fake.FakeBackend`).
    """

    def __init__(self, policy: Policy | None = None, *, backend: Backend | None = None, **load_options: Any):
        from .policy import Policy

        if policy is not None and not isinstance(policy, Policy):
            raise TypeError(f"Sandbox takes a Policy (from load_policy), not {type(policy).__name__}: "
                            "Sandbox(load_policy(path)) or Sandbox(cwd=path)")
        self.policy = policy if policy is not None else load_policy(**load_options)
        if backend is None and self.policy.sandboxed:
            from .backends import select_backend

            backend = select_backend()
        self.backend = backend
        self._fresh = True
        self._finalizer: object | None = None

    def close(self):
        """Release what the backend keeps between runs (placeholders); also done
        at exit, and by the next run anywhere if this process is killed."""
        if self.backend is not None:
            self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def unenforceable(self) -> tuple[RingfenceError, ...]:
        """What keeps this policy from running as it stands: the policy's own
        refusals, then what this backend cannot enforce (both as data)."""
        unplannable: tuple[RingfenceError, ...] = ()
        if self.backend is not None and self.policy.sandboxed:
            unplannable = tuple(PolicyError(item.message(), hint=item.hint) for item in self.backend.check(self.policy))
        # Asked second: the policy's hard-link check may still be under way
        # (see policy.linkcheck), and the backend's check plans the mounts meanwhile.
        return tuple(self.policy.refusals) + unplannable

    def check(self, command: Sequence[str]) -> CommandDecision:
        """The command-rule decision for `command`, without running it."""
        return self.policy.commands.decide(list(command))

    def run(self, command, *, cwd: str | None = None, capture_output: bool = False, input: bytes | None = None,
            stdin: StdinMode | None = None, timeout: float | None = None, events_path: str | None = None,
            tty: bool = False, pass_fds=(), forward_signals: bool = False, env: dict | None = None,
            events: EventLog | None = None, keep_placeholders: bool = True, approver=None,
            escalate: str | None = None, isolated: bool = False, setup=(), apply="never",
            rootfs: str | None = None) -> Outcome:
        """Run `command` under the policy, after the command rules and the
        approval policy allow it; returns an Outcome.

        `approver` answers the questions they ask (a callable taking an
        `ApprovalRequest` and returning "once", "always" or "no", or a
        coroutine function; default: the controlling terminal, and no
        terminal means no); `escalate`, the reason to run this command
        outside the sandbox, asks for that.

        With `isolated`, the workspace is a copy-on-write overlay: the
        `setup` shell command lines run first, in the same overlay, and the
        Outcome's `changeset` (isolate.review.RunChanges) lists, diffs,
        applies or discards what the run changed; `apply` is "never" (keep
        it for review), "on-success", "ask" or a callable deciding from the
        RunChanges; `rootfs` a clean base system instead of the host's root.
        """
        from .approval import gate
        from .launcher.io import CAPTURE, DEVNULL, INHERIT, PIPE, IOSpec

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
        # Built when this Sandbox was made, or by the previous run: a policy
        # from load_policy is built again (only a hand-built one is kept as is).
        if not self._fresh:
            self.policy = _reload(self.policy)
        self._fresh = False
        policy = self.policy
        backend = self.backend
        if isolated:
            from .backends.isolated import IsolatedBackend

            backend = IsolatedBackend(self.backend, setup=setup, apply=apply, rootfs=rootfs)
        elif setup or rootfs:
            raise ValueError("setup and rootfs belong to isolated runs: pass isolated=True")
        if isolated and escalate:
            raise ValueError("escalate runs a command outside the sandbox; an isolated run stays in its overlay")
        refusals = self.unenforceable()
        if isolated:
            assert backend is not None, "an isolated run has its wrapper"
            refusals += tuple(PolicyError(item.message(), hint=item.hint) for item in backend.check(policy))
        if refusals:
            first, more = refusals[0], len(refusals) - 1
            raise PolicyError(first.message + (f" (and {more} more: `ringfence status` lists them)" if more else ""),
                              hint=first.hint)
        events = events or EventLog(path=events_path)
        cwd = os.path.abspath(cwd or policy.cwd)
        if not os.path.isdir(cwd):
            raise RingfenceError(f"cannot run in {cwd}: no such directory")
        source_env = os.environ if env is None else env
        if env is not None:
            _check_environment(env)
        env_result = policy.environment.apply(source_env)
        events.emit("run.policy", profile=policy.profile, chosen_by=policy.profile_origin,
                    config_files=list(policy.sources), sandboxed=policy.sandboxed, network=policy.network.mode,
                    limits=policy.limits.describe())
        verdict = gate.before_run(policy, command, env=env_result.env, cwd=cwd, approver=approver,
                                  escalate=escalate, events=events)
        if verdict.rules is not policy.commands and policy.load_request is None:
            self.policy = policy.replace(commands=verdict.rules)  # an "always" answer, for a kept policy
        if input is not None:
            stdin_mode = PIPE
        elif stdin is not None:
            stdin_mode = stdin
        else:
            stdin_mode = DEVNULL if capture_output else INHERIT
        output_mode = CAPTURE if capture_output else INHERIT
        io = IOSpec(stdin=stdin_mode, input=input, stdout=output_mode, stderr=output_mode, tty=tty,
                    pass_fds=tuple(pass_fds))
        if not policy.sandboxed:
            from .launcher.unsandboxed import run_unsandboxed

            return run_unsandboxed(policy, command, cwd=cwd, env=env_result.env, io=io, timeout=timeout,
                                   events=events)
        if timeout is None:
            timeout = policy.limits.timeout
        if verdict.action == "unsandboxed":
            from .launcher.unsandboxed import run_unsandboxed

            return run_unsandboxed(policy, command, cwd=cwd, env=env_result.env, io=io, timeout=timeout,
                                   events=events, why="approved escalation")
        assert backend is not None, "a sandboxed policy has a backend"
        guard = None
        if policy.git_in_place and not isolated:
            from .launcher.gitguard import GitGuard

            guard = GitGuard.start(policy.git_in_place)
        plan = backend.plan(policy, command, cwd=cwd, env_result=env_result, io=io, events=events)
        if keep_placeholders and self._finalizer is None:
            # Only a run that keeps something needs the close at exit (weakref
            # and what it loads cost a CLI start, which keeps nothing).
            import weakref

            assert self.backend is not None, "a sandboxed run has a backend"
            self._finalizer = weakref.finalize(self, self.backend.close)
        outcome = backend.run(plan, io, timeout=timeout, events=events, forward_signals=forward_signals,
                              keep=keep_placeholders)
        if isolated:
            # The real workspace was not writable: nothing new can be in it, and a
            # re-run outside the sandbox would edit what the run was to leave alone.
            return outcome
        from .launcher.created import report_new_protected

        known = _known_protected(policy)
        report_new_protected(policy, set(known), events)
        if guard is not None:
            guard.finish(known, events, events.run_id)
        if gate.after_failure(policy, command, outcome, cwd=cwd, approver=approver, events=events):
            from .launcher.unsandboxed import run_unsandboxed

            return run_unsandboxed(policy, command, cwd=cwd, env=env_result.env, io=io, timeout=timeout,
                                   events=events, why="approved re-run after the sandbox denied it")
        return outcome.replace(events=tuple(events.events))

    async def run_async(self, command, *, approver=None, **options):
        """`run` for callers inside an event loop: the run waits in a worker
        thread, and an async `approver` is awaited on the caller's loop."""
        import asyncio

        from .approval.gate import ThreadedApprover

        if approver is not None:
            approver = ThreadedApprover(approver, asyncio.get_running_loop())
        return await asyncio.to_thread(self.run, command, approver=approver, **options)


def _known_protected(policy) -> set:
    fs = policy.filesystem
    return ({cap.path for cap in fs.caps} | {entry.path for entry in fs.protected if entry.exists}
            | {os.path.join(root, ".git") for root in policy.git_in_place})
