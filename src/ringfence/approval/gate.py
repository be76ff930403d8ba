"""Approvals on the run path: what `Sandbox.run` calls before it spawns a
command, and after a sandboxed run of it failed.

`before_run` decides the command under the approval policy, asks whoever
must be asked, logs each decision and answer, and raises `CommandRefused`
when it must not run. `after_failure` reads what a failed sandboxed run
left (its captured stderr, or the end of what it showed on the terminal,
the command line and the run's events), logs what the sandbox denied, and
under `on-failure` asks whether to run it again outside the sandbox.
`threaded` lets an async approver answer from its own event loop while the
run itself waits in a worker thread (`Sandbox.run_async`).
"""

from __future__ import annotations

from .flow import decide_after_failure, decide_run, emit_all


def before_run(policy, argv, *, env: dict, cwd: str, approver, escalate: str | None, events):
    """The verdict for `argv` (action "sandboxed" or "unsandboxed"); refusals raise."""
    from ..errors import CommandRefused

    if escalate is not None and (not isinstance(escalate, str) or not escalate.strip()):
        raise ValueError("escalate= takes the reason to run outside the sandbox, as a non-empty string")
    verdict = decide_run(policy, argv, env=env, cwd=cwd, approver=approver, escalation=escalate)
    emit_all(events, verdict)
    if not verdict.runs:
        assert verdict.reason is not None, "a refusal gives its reason"
        raise CommandRefused(verdict.reason, hint=verdict.hint)
    return verdict


def after_failure(policy, argv, outcome, *, cwd: str, approver, events) -> bool:
    """After a sandboxed run of `argv` ended in `outcome`: log what the
    sandbox denied (`sandbox.denial` events); True when a re-run outside
    the sandbox was offered and approved (only under `on-failure`)."""
    if outcome.exit_code == 0 or outcome.reason != "exited":
        return False
    verdict = decide_after_failure(policy, argv, exit_code=outcome.exit_code, stderr=_shown_text(outcome),
                                   events=outcome.events, cwd=cwd, approver=approver)
    emit_all(events, verdict)
    return verdict.action == "unsandboxed"


def _shown_text(outcome) -> str:
    """What the command printed, as text a line-by-line reader can use:
    the captured stderr, else the end of what its terminal showed (with
    the escape sequences that move the cursor or colour it taken out)."""
    data = outcome.stderr if outcome.stderr is not None else outcome.shown_tail
    if not data:
        return ""
    text = data.decode("utf-8", "replace")
    if outcome.stderr is None:
        import re

        text = re.sub(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]", "", text)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


class ThreadedApprover:
    """An approver for a run waiting in a worker thread: an async answer is
    awaited on `loop`, the caller's event loop, where the approver lives."""

    def __init__(self, approver, loop):
        self.approver = approver
        self.loop = loop

    @property
    def answered_by(self):
        from .flow import answered_by

        return answered_by(self.approver)

    def __call__(self, request):
        import asyncio

        answer = self.approver(request)
        if not hasattr(answer, "__await__"):
            return answer

        async def wait():
            return await answer

        return asyncio.run_coroutine_threadsafe(wait(), self.loop).result()
