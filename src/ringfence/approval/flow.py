"""The decision before a run (and after a failed one): rules, approval policy, approver.

`decide_run` is what the run path calls before spawning anything. It
decides the argv against the command rules, asks the approver what the
approval policy says must be asked, remembers "always" answers, and returns
a `RunVerdict`: run sandboxed, run unsandboxed (an approved escalation), or
refuse with a reason; with the events to log. `decide_after_failure` is the
`on-failure` half: given what a failed sandboxed run printed, it offers an
unsandboxed re-run when the denial report blames the sandbox.

Both are written once, as a generator that yields each `ApprovalRequest`
and receives the answer, and driven by a sync and an async face, so that an
approver may be a plain function or a coroutine function.

Events (for `EventLog.emit(type, **fields)`): `command.decision` (argv,
decision, approval_policy, why, rules: rule, origin, decision, command,
prefix, certain), `approval.answer` (kind, command, rule, origin,
justification, answer, answered_by, remember), `rules.amended` /
`rules.already_covered` (file, pattern), `run.refused` (argv, reason,
rule, origin), `sandbox.denial` (kind, target, rule, origin, message,
evidence, fix).
"""

from __future__ import annotations

from .._record import Record
from ..errors import RingfenceError
from ..policy.commands import ALLOW, FORBIDDEN, NO_RULE, PROMPT, CommandDecision, display_argv
from .terminal import NOBODY

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a run's start more than all of this module: checkers only
    from typing import Any, Awaitable, Callable, Literal, Union

    from ..policy.commands import CommandRules
    from .denials import DenialReport

    Action = Literal["sandboxed", "unsandboxed", "refuse"]
    Answer = Literal["once", "always", "no"]
    RequestKind = Literal["prompt", "escalation", "retry-unsandboxed"]
ANSWERS = ("once", "always", "no")


class ApprovalRequest(Record):
    """What a person (or an agent framework) is asked.

    `argv` is the whole command, `command` the part of it this request is
    about; `rule`/`origin`/`justification` the rule that asks (None when
    the question comes from the approval policy or an escalation, where
    `justification` is the caller's); `reason` why it is asked;
    `remember` the rules-file line an "always" answer appends (None when
    "always" would change nothing, and is then taken as "once").
    """

    __slots__ = ("kind", "argv", "command", "rule", "origin", "justification", "reason", "remember")
    kind: RequestKind
    argv: tuple[str, ...]
    command: tuple[str, ...]
    rule: str | None
    origin: str | None
    justification: str | None
    reason: str
    remember: str | None


if TYPE_CHECKING:
    Approver = Callable[[ApprovalRequest], Union[Answer, Awaitable[Answer]]]


def __getattr__(name: str):
    # The alias is for frameworks that annotate with it; made on first use.
    if name == "Approver":
        from typing import Awaitable, Callable, Literal, Union

        answer = Literal["once", "always", "no"]
        return Callable[[ApprovalRequest], Union[answer, Awaitable[answer]]]
    raise AttributeError(name)


class RunVerdict(Record):
    """What to do: `action`, with `reason` for a refusal and `hint` how to
    get it to run; the command-rule `decision`; `events` as (type, fields)
    pairs for the event log; `rules` the command rules to use from now on
    (with any remembered rule); `report` the denial report an on-failure
    verdict rests on."""

    __slots__ = ("action", "reason", "decision", "events", "rules", "report", "hint")
    _defaults = {"report": None, "hint": None}
    action: Action
    reason: str | None
    decision: CommandDecision | None
    events: tuple[tuple[str, dict[str, Any]], ...]
    rules: CommandRules
    report: DenialReport | None
    hint: str | None

    @property
    def runs(self) -> bool:
        return self.action != "refuse"


def decide_run(policy, argv, *, env: dict | None = None, cwd: str | None = None, approval_policy=None,
               approver: Approver | None = None, escalation: str | bool | None = None, rules=None,
               rules_path: str | None = None) -> RunVerdict:
    """Decide before spawning `argv` under `policy`.

    `approval_policy` defaults to the policy's; `approver` to asking on the
    controlling terminal (no terminal: no); `escalation` is the caller's
    request to run outside the sandbox (its justification, or True);
    `rules` defaults to `policy.commands`; `rules_path` is where "always"
    answers go (default `~/.ringfence/rules/default.rules`).
    """
    flow = _before_run(policy, tuple(argv), env, cwd, approval_policy, escalation, rules, rules_path)
    return _drive(flow, approver)


async def decide_run_async(policy, argv, *, env: dict | None = None, cwd: str | None = None, approval_policy=None,
                           approver: Approver | None = None, escalation: str | bool | None = None, rules=None,
                           rules_path: str | None = None) -> RunVerdict:
    """`decide_run` for callers inside an event loop (the approver may be async)."""
    flow = _before_run(policy, tuple(argv), env, cwd, approval_policy, escalation, rules, rules_path)
    return await _drive_async(flow, approver)


def decide_after_failure(policy, argv, *, exit_code: int, stderr: str, events=(), cwd: str | None = None,
                         approval_policy=None, approver: Approver | None = None) -> RunVerdict:
    """After a sandboxed run of `argv` failed: under `on-failure`, when the
    denial report blames the sandbox, ask whether to re-run unsandboxed.
    The verdict is "unsandboxed" (re-run approved) or "refuse" (do not)."""
    return _drive(_after_failure(policy, tuple(argv), exit_code, stderr, events, cwd, approval_policy), approver)


async def decide_after_failure_async(policy, argv, *, exit_code: int, stderr: str, events=(),
                                     cwd: str | None = None, approval_policy=None,
                                     approver: Approver | None = None) -> RunVerdict:
    return await _drive_async(_after_failure(policy, tuple(argv), exit_code, stderr, events, cwd, approval_policy),
                              approver)


def emit_all(event_log, verdict: RunVerdict):
    """Write a verdict's events to an `EventLog`."""
    for type_, fields in verdict.events:
        event_log.emit(type_, **fields)


# -- drivers ------------------------------------------------------------------------------


def _drive(flow, approver):
    # With answers resolved on the spot the coroutine never suspends, so one
    # send runs it to the end: the sync face needs no event loop.
    steps = _run_flow(flow, approver, _await_here)
    try:
        steps.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the approval flow suspended without an event loop")


async def _drive_async(flow, approver):
    return await _run_flow(flow, approver, None)


async def _run_flow(flow, approver, resolve):
    approver = _default_approver() if approver is None else approver
    try:
        request = next(flow)
        while True:
            answer = approver(request)
            if hasattr(answer, "__await__"):
                answer = resolve(answer) if resolve is not None else await answer
            request = flow.send((_checked(answer), answered_by(approver)))
    except StopIteration as done:
        return done.value


def _await_here(awaitable):
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        async def wait():
            return await awaitable

        return asyncio.run(wait())
    close = getattr(awaitable, "close", None)
    if close:
        close()
    raise RingfenceError("an async approver was given to a synchronous call inside a running event loop",
                         hint="await Sandbox.run_async(...) (or decide_run_async(...)) instead")


def _checked(answer) -> Answer:
    if answer not in ANSWERS:
        raise RingfenceError(f"the approver answered {answer!r}; nothing was run",
                             hint="an approver returns 'once', 'always' or 'no'")
    return answer


def _default_approver():
    from .terminal import TerminalApprover

    return TerminalApprover()


def answered_by(approver) -> str:
    """Who gave the last answer, for the event log: an approver may say
    (`answered_by`, as the terminal approver does), else its name."""
    said = getattr(approver, "answered_by", None)
    if isinstance(said, str):
        return said
    name = getattr(approver, "__qualname__", None) or type(approver).__qualname__
    return f"approver {name}"


# -- the flows ----------------------------------------------------------------------------


def _before_run(policy, argv, env, cwd, mode_name, escalation, rules, rules_path):
    from .modes import approval_policy

    mode = approval_policy(mode_name if mode_name is not None else policy.approval_policy)
    rules = policy.commands if rules is None else rules
    cwd = cwd or policy.cwd
    events: list = []
    if not rules.rules and not mode.asks_unmatched:
        # Nothing could match and no unmatched command is asked about: the
        # shell parser (tens of milliseconds to load) would decide nothing.
        decision = CommandDecision(NO_RULE, None, why="no command rules: nothing to match")
    else:
        decision = rules.decide(argv, env=env, cwd=cwd)
    events.append(("command.decision", _decision_fields(argv, decision, mode.name)))

    def verdict(action, reason=None, hint=None):
        if action == "refuse":
            events.append(("run.refused", {"argv": list(argv), "reason": reason,
                                           "rule": decision.rule.label if decision.rule else None,
                                           "origin": decision.rule.origin if decision.rule else None}))
        return RunVerdict(action, reason, decision, tuple(events), rules, None, hint)

    if decision.decision == FORBIDDEN:
        return verdict("refuse", f"refused by a command rule: {decision.why}",
                       "remove or change the rule to run this command (`ringfence check -- COMMAND` shows it)")
    asks = _questions(decision, mode)
    never_hint = ('approval_policy = "never" refuses what needs a person: allow the command with a rule, '
                  'or choose "on-request" to be asked')
    if not mode.asks:
        if asks:
            return verdict("refuse", f"needs approval, and approval_policy = never does not ask: {asks[0].why}",
                           never_hint)
        if escalation:
            return verdict("refuse", "asks to run outside the sandbox, and approval_policy = never does not ask",
                           never_hint)
        return verdict(_where(policy))
    settled = False
    for part in asks:
        if settled and part.rule is None and part.unproven is None:
            continue  # the whole command was already shown and approved
        remember = _remember_text(part)
        request = ApprovalRequest("prompt", argv, tuple(part.argv), part.rule.label if part.rule else None,
                                  part.rule.origin if part.rule else None,
                                  part.rule.justification if part.rule else None, part.why, remember)
        answer, by = yield request
        events.append(("approval.answer", _answer_fields(request, answer, by)))
        if answer == "no":
            return verdict("refuse", _not_approved(f"not approved: {display_argv(part.argv)}", by),
                           _refused_hint(by))
        if answer == "always" and remember:
            rules = _remember(policy, rules, part.cover, env, cwd, rules_path, events)
        if part.unproven is not None and tuple(part.cover or ()) == argv:
            settled = True
    if escalation and policy.sandboxed:
        justification = escalation if isinstance(escalation, str) else None
        request = ApprovalRequest("escalation", argv, argv, None, None, justification,
                                  "asks to run outside the sandbox", None)
        answer, by = yield request
        events.append(("approval.answer", _answer_fields(request, answer, by)))
        if answer == "no":
            return verdict("refuse", _not_approved("running outside the sandbox was not approved", by),
                           _refused_hint(by))
        return verdict("unsandboxed")
    return verdict(_where(policy))


def _after_failure(policy, argv, exit_code, stderr, run_events, cwd, mode_name):
    from .denials import denial_report
    from .modes import approval_policy

    mode = approval_policy(mode_name if mode_name is not None else policy.approval_policy)
    events: list = []
    report = denial_report(policy, argv, stderr, run_events, cwd=cwd)
    for denial in report.denials:
        events.append(("sandbox.denial", {"kind": denial.kind, "target": denial.target, "rule": denial.rule,
                                          "origin": denial.origin, "message": denial.message,
                                          "evidence": denial.evidence, "fix": denial.fix}))

    def verdict(action, reason=None):
        return RunVerdict(action, reason, None, tuple(events), policy.commands, report)

    if exit_code == 0 or not mode.retries or not policy.sandboxed:
        return verdict("refuse", "no re-run: " + ("it succeeded" if exit_code == 0 else
                                                 f"approval_policy = {mode.name} offers none"))
    if not report.denials:
        return verdict("refuse", "no re-run: nothing points at the sandbox as the cause of the failure")
    decision = policy.commands.decide(argv, cwd=cwd or policy.cwd)
    if decision.decision == FORBIDDEN:
        return verdict("refuse", f"refused by a command rule: {decision.why}")
    request = ApprovalRequest("retry-unsandboxed", argv, argv, report.denials[0].rule, report.denials[0].origin,
                              None, "; ".join(d.message for d in report.denials), None)
    answer, by = yield request
    events.append(("approval.answer", _answer_fields(request, answer, by)))
    if answer == "no":
        return verdict("refuse", _not_approved("the unsandboxed re-run was not approved", by))
    return verdict("unsandboxed")


def _questions(decision, mode) -> list:
    """The parts to ask about, rules' prompts first (each shows its justification)."""
    seen, asks = set(), []
    for part in decision.parts:
        if part.decision == PROMPT or (mode.asks_unmatched and part.decision == NO_RULE and not part.safe):
            key = (tuple(part.argv), part.why)
            if key not in seen:
                seen.add(key)
                asks.append(part)
    asks.sort(key=lambda part: 0 if part.rule is not None else 1 if part.unproven is not None else 2)
    return asks


def _remember_text(part) -> str | None:
    """An allow rule changes the answer only where no rule asks or forbids."""
    if part.cover is None or part.rule is not None and part.rule.decision != ALLOW:
        return None
    from ..policy.rules_file import rule_text

    return rule_text(part.cover)


def _remember(policy, rules, words, env, cwd, rules_path, events):
    from ..policy.commands import CommandRule
    from ..policy.rules_file import rule_label, user_rules_path
    from .amend import append_allow_rule

    path = rules_path or user_rules_path(policy.home)
    added = append_allow_rule(path, words, env=env, cwd=cwd, home=policy.home)
    events.append(("rules.amended" if added else "rules.already_covered", {"file": path, "pattern": list(words)}))
    rule = CommandRule(tuple(words), ALLOW, f"{path} (remembered)", rule_label(words, ALLOW))
    return rules.extended([rule])


def _where(policy) -> Action:
    return "sandboxed" if policy.sandboxed else "unsandboxed"


def _decision_fields(argv, decision, mode_name) -> dict:
    return {"argv": list(argv), "decision": decision.decision, "approval_policy": mode_name, "why": decision.why,
            "rules": [{"rule": m.label, "origin": m.origin, "decision": m.decision, "command": list(m.command), "prefix": list(m.prefix),
                       "certain": m.certain} for m in decision.matches]}


def _answer_fields(request, answer, by) -> dict:
    return {"kind": request.kind, "command": list(request.command), "rule": request.rule,
            "origin": request.origin, "justification": request.justification, "answer": answer,
            "answered_by": by, "remember": request.remember if answer == "always" else None}


def _not_approved(reason: str, by: str) -> str:
    return f"{reason}: nobody could be asked (no terminal, and no approver was given)" if by == NOBODY else reason


def _refused_hint(by: str) -> str:
    if by == NOBODY:
        return ("run it from a terminal to be asked, pass approver= from Python, or allow it with a rule "
                "(`ringfence check -- COMMAND` shows what asks)")
    return "the answer was no; allow it with a rule to stop being asked, or change the command"


def describe_approval(decision, policy, mode_name=None) -> str:
    """What the approval policy would do with `decision`, without asking anyone."""
    from .modes import approval_policy

    mode = approval_policy(mode_name if mode_name is not None else policy.approval_policy)
    if decision.decision == FORBIDDEN:
        return "refused (forbidden holds under every approval policy)"
    asks = _questions(decision, mode)
    if asks and not mode.asks:
        return "refused (it needs approval, and this policy never asks)"
    where = "in the sandbox" if policy.sandboxed else "without a sandbox (danger-full-access)"
    if asks:
        return f"asks first ({len(asks)} question{'s' if len(asks) > 1 else ''}), then runs {where}"
    return f"runs {where} without asking"
