"""Approvals through the Python API: `Sandbox.run(approver=..., escalate=...)`
and `Sandbox.run_async`, with plain and async approvers, as an agent
framework calls them. Each verdict is read on the host: the file the
command makes exists or not."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import pytest

from harness import SRC, Scene, current_user

pytestmark = pytest.mark.integration

RULES = ('prefix_rule(pattern=["touch", "asked"], decision="prompt", justification="makes a file")\n'
         'prefix_rule(pattern=["rm", "-rf"], decision="forbidden")\n')


@pytest.fixture
def world(sandbox_available, monkeypatch):
    monkeypatch.delenv("RINGFENCE_CONFIG_DIR", raising=False)
    scene = Scene(current_user())
    scene.write("home/.ringfence/rules/team.rules", RULES)
    yield scene
    scene.cleanup()


def sandbox(world, config: str = ""):
    from ringfence import Sandbox, load_policy

    world.config(config)
    return Sandbox(load_policy(world.ws, home=world.home, env=world.env()))


class Recorder:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.asked = []

    def __call__(self, request):
        self.asked.append(request)
        return self.answers.pop(0)


def answers(outcome_or_events) -> list[dict]:
    events = getattr(outcome_or_events, "events", outcome_or_events)
    return [event for event in events if event["type"] == "approval.answer"]


def test_a_sync_approver_is_asked_with_the_rule_and_its_answer_decides(world):
    box = sandbox(world)
    approver = Recorder("once")
    outcome = box.run(["touch", "asked"], env=world.env(), approver=approver, capture_output=True)
    assert outcome.exit_code == 0 and world.exists("ws/asked")
    [request] = approver.asked
    assert request.kind == "prompt" and request.justification == "makes a file"
    assert request.rule == 'prefix_rule(pattern=["touch", "asked"], decision="prompt")'
    [answer] = answers(outcome)
    assert answer["answer"] == "once" and answer["answered_by"] == "approver Recorder"
    assert answer["justification"] == "makes a file" and answer["origin"].endswith("team.rules:1")
    os.unlink(os.path.join(world.ws, "asked"))
    from ringfence.errors import CommandRefused

    with pytest.raises(CommandRefused, match="not approved: touch asked"):
        box.run(["touch", "asked"], env=world.env(), approver=Recorder("no"), capture_output=True)
    assert not world.exists("ws/asked")


def test_what_needs_no_question_asks_nobody(world):
    approver = Recorder()
    outcome = sandbox(world).run(["touch", "plain"], env=world.env(), approver=approver, capture_output=True)
    assert outcome.exit_code == 0 and world.exists("ws/plain") and not approver.asked


def test_forbidden_is_refused_without_asking_under_every_policy(world):
    from ringfence.errors import CommandRefused

    target = world.write("ws/keep/file", "x")
    for mode in ("untrusted", "on-request", "on-failure", "never"):
        approver = Recorder("once")
        with pytest.raises(CommandRefused, match="forbidden"):
            sandbox(world, f'approval_policy = "{mode}"\n').run(["sh", "-c", "true; rm -rf keep"], env=world.env(),
                                                                approver=approver, capture_output=True)
        assert not approver.asked and os.path.exists(target)


def test_an_async_approver_through_the_sync_run(world):
    async def approver(request):
        await asyncio.sleep(0)
        return "once"

    outcome = sandbox(world).run(["touch", "asked"], env=world.env(), approver=approver, capture_output=True)
    assert outcome.exit_code == 0 and world.exists("ws/asked")


def test_run_async_awaits_the_approver_on_the_callers_loop(world):
    """The answer comes from another task of the caller's loop, as an agent
    framework's UI would give it; the run itself waits in a thread."""
    box = sandbox(world)

    async def main():
        loop_thread = threading.get_ident()
        answered = asyncio.Event()
        seen = []

        async def approver(request):
            seen.append((request.command, threading.get_ident() == loop_thread))
            await answered.wait()
            return "once"

        async def person():
            while not seen:
                await asyncio.sleep(0.01)
            answered.set()

        outcome, _ = await asyncio.gather(box.run_async(["touch", "asked"], env=world.env(), approver=approver,
                                                        capture_output=True), person())
        return outcome, seen

    outcome, seen = asyncio.run(main())
    assert outcome.exit_code == 0 and world.exists("ws/asked")
    assert seen == [(("touch", "asked"), True)]


def test_an_async_approver_in_a_running_loop_needs_run_async(world):
    from ringfence.errors import RingfenceError

    async def approver(request):
        return "once"

    async def main():
        return sandbox(world).run(["touch", "asked"], env=world.env(), approver=approver, capture_output=True)

    with pytest.raises(RingfenceError, match="run_async"):
        asyncio.run(main())
    assert not world.exists("ws/asked")


def test_always_through_the_api_holds_for_the_next_run(world):
    box = sandbox(world, 'approval_policy = "untrusted"\n')
    first = Recorder("always")
    assert box.run(["touch", "made"], env=world.env(), approver=first, capture_output=True).exit_code == 0
    assert world.read("home/.ringfence/rules/default.rules") == \
        'prefix_rule(pattern=["touch", "made"], decision="allow")\n'
    again = Recorder()
    assert box.run(["touch", "made"], env=world.env(), approver=again, capture_output=True).exit_code == 0
    assert not again.asked


def test_escalation_runs_outside_only_when_approved(world):
    from ringfence.errors import CommandRefused

    target = world.write("outside/target", "before\n")
    box = sandbox(world)
    script = ["sh", "-c", f"echo after > {target}"]
    control = box.run(script, env=world.env(), capture_output=True)
    assert control.exit_code != 0 and world.read("outside/target") == "before\n"
    with pytest.raises(CommandRefused, match="outside the sandbox was not approved"):
        box.run(script, env=world.env(), approver=Recorder("no"), escalate="updates a file", capture_output=True)
    assert world.read("outside/target") == "before\n"
    approver = Recorder("once")
    outcome = box.run(script, env=world.env(), approver=approver, escalate="updates a file", capture_output=True)
    assert outcome.exit_code == 0 and not outcome.sandboxed and world.read("outside/target") == "after\n"
    [request] = approver.asked
    assert request.kind == "escalation" and request.justification == "updates a file"
    start = next(event for event in outcome.events if event["type"] == "run.start")
    assert start["sandboxed"] is False and "approved escalation" in start["warning"]


def test_escalation_is_refused_under_never_without_asking(world):
    from ringfence.errors import CommandRefused

    approver = Recorder("once")
    with pytest.raises(CommandRefused, match="never"):
        sandbox(world, 'approval_policy = "never"\n').run(["true"], env=world.env(), approver=approver,
                                                          escalate="x", capture_output=True)
    assert not approver.asked


def test_on_failure_reruns_outside_after_a_denial_and_only_then(world):
    target = world.write("outside/target", "before\n")
    box = sandbox(world, 'approval_policy = "on-failure"\n')
    script = ["sh", "-c", f"echo after > {target}"]
    declined = Recorder("no")
    outcome = box.run(script, env=world.env(), approver=declined, capture_output=True)
    assert outcome.exit_code == 2 and outcome.sandboxed and world.read("outside/target") == "before\n"
    [request] = declined.asked
    assert request.kind == "retry-unsandboxed" and target in request.reason
    approver = Recorder("once")
    outcome = box.run(script, env=world.env(), approver=approver, capture_output=True)
    assert outcome.exit_code == 0 and not outcome.sandboxed and world.read("outside/target") == "after\n"
    types = [event["type"] for event in outcome.events]
    assert types.index("sandbox.denial") < types.index("approval.answer") < len(types) - 1
    # Control: an ordinary failure offers nothing.
    ordinary = Recorder()
    outcome = box.run(["sh", "-c", "echo no such thing >&2; exit 3"], env=world.env(), approver=ordinary,
                      capture_output=True)
    assert outcome.exit_code == 3 and not ordinary.asked


def test_without_an_approver_or_a_terminal_the_answer_is_no(world):
    """In a new session there is no controlling terminal: nobody can be asked."""
    world.config('approval_policy = "untrusted"\n')
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from ringfence import Sandbox, load_policy;"
            "from ringfence.errors import CommandRefused\n"
            "try:\n"
            "    Sandbox(load_policy(sys.argv[2], home=sys.argv[3])).run(['touch', 'made'])\n"
            "except CommandRefused as exc:\n"
            "    print('refused:', exc, '|', exc.hint)\n")
    result = subprocess.run([sys.executable, "-P", "-c", code, SRC, world.ws, world.home], capture_output=True,
                            text=True, start_new_session=True, stdin=subprocess.DEVNULL, timeout=60,
                            env=world.env())
    assert result.stdout.startswith("refused: not approved: touch made: nobody could be asked"), result.stderr
    assert "approver=" in result.stdout and not world.exists("ws/made")
