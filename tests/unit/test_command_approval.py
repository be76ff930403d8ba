"""Approval policies and the approver seam: who is asked what, and what each answer does.

Approvers here are plain functions and coroutines that record what they
were asked; the terminal approver is driven through a real pseudo-terminal
in tests/integration/test_approval_terminal.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from ringfence.approval import (ApprovalRequest, decide_after_failure, decide_after_failure_async, decide_run,
                                decide_run_async, denial_report)
from ringfence.errors import RingfenceError
from ringfence.policy.commands import ALLOW
from ringfence.policy.rules_file import load_rules_file

RULES = """\
prefix_rule(pattern=["git", "push"], decision="prompt", justification="publishes code")
prefix_rule(pattern=["rm", "-rf"], decision="forbidden")
prefix_rule(pattern=["npm", "test"], decision="allow")
"""


class World:
    def __init__(self, root, monkeypatch, config=""):
        from ringfence.sandbox import load_policy

        monkeypatch.delenv("RINGFENCE_CONFIG_DIR", raising=False)
        self.home = root / "home"
        self.project = root / "project"
        (self.project / ".git").mkdir(parents=True)
        self.rules_dir = self.home / ".ringfence" / "rules"
        self.rules_dir.mkdir(parents=True)
        (self.rules_dir / "team.rules").write_text(RULES)
        (self.home / ".ringfence" / "config.toml").write_text(config)
        self.default_rules = self.rules_dir / "default.rules"
        self.env = {"PATH": "/usr/bin:/bin", "HOME": str(self.home)}
        self.load = lambda: load_policy(str(self.project), home=str(self.home), env=self.env)
        self.policy = self.load()


@pytest.fixture
def world(tmp_path, monkeypatch):
    return World(tmp_path, monkeypatch)


class Recorder:
    """A sync approver that answers from a list and keeps every request."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.asked: list[ApprovalRequest] = []

    def __call__(self, request):
        self.asked.append(request)
        return self.answers.pop(0)


def run(world, argv, mode, approver=None, **options):
    approver = approver if approver is not None else Recorder()
    verdict = decide_run(world.policy, argv, env=world.env, approval_policy=mode, approver=approver, **options)
    return verdict, approver


# -- the policies ---------------------------------------------------------------------

# (argv, approval policy) -> (questions asked, action when every answer is "once")
TABLE = [
    (["rm", "-rf", "x"], "untrusted", 0, "refuse"),
    (["rm", "-rf", "x"], "on-request", 0, "refuse"),
    (["rm", "-rf", "x"], "on-failure", 0, "refuse"),
    (["rm", "-rf", "x"], "never", 0, "refuse"),
    (["sh", "-c", "true & rm -rf x"], "never", 0, "refuse"),
    (["git", "push"], "untrusted", 1, "sandboxed"),
    (["git", "push"], "on-request", 1, "sandboxed"),
    (["git", "push"], "on-request-rule", 1, "sandboxed"),
    (["git", "push"], "on-failure", 1, "sandboxed"),
    (["git", "push"], "never", 0, "refuse"),
    (["sh", "-c", "ls $(pwd)"], "on-request", 1, "sandboxed"),
    (["sh", "-c", "ls $(pwd)"], "never", 0, "refuse"),
    (["make"], "untrusted", 1, "sandboxed"),
    (["make"], "on-request", 0, "sandboxed"),
    (["make"], "on-failure", 0, "sandboxed"),
    (["make"], "never", 0, "sandboxed"),
    (["ls", "-la"], "untrusted", 0, "sandboxed"),              # Codex's safe list
    (["sh", "-c", "ls | wc -l"], "untrusted", 0, "sandboxed"),
    (["npm", "test"], "untrusted", 0, "sandboxed"),             # allowed by a rule
    (["sh", "-c", "npm test && make"], "untrusted", 1, "sandboxed"),
]


@pytest.mark.parametrize("argv, mode, questions, action", TABLE)
def test_policy_table(world, argv, mode, questions, action):
    approver = Recorder(*["once"] * questions)
    verdict, _ = run(world, argv, mode, approver)
    assert len(approver.asked) == questions, [r.command for r in approver.asked]
    assert verdict.action == action, verdict.reason


# With no prompt or forbidden rule at all, nothing can hide in what cannot be
# checked: the sandbox is the boundary, and only `untrusted` asks about it.
UNCHECKED = ["sh", "-c", "make $(nproc) 2>&1 | tee log"]
NO_RULES_TABLE = [
    (UNCHECKED, "untrusted", 1, "sandboxed"),
    (UNCHECKED, "on-request", 0, "sandboxed"),
    (UNCHECKED, "on-request-rule", 0, "sandboxed"),
    (UNCHECKED, "on-failure", 0, "sandboxed"),
    (UNCHECKED, "never", 0, "sandboxed"),
    (["bash", "-lc", "eval \"$BUILD\""], "on-request", 0, "sandboxed"),
    (["bash", "-lc", "eval \"$BUILD\""], "untrusted", 1, "sandboxed"),
]


@pytest.mark.parametrize("argv, mode, questions, action", NO_RULES_TABLE)
def test_policy_table_without_rules(world, argv, mode, questions, action):
    (world.rules_dir / "team.rules").unlink()
    world.policy = world.load()
    approver = Recorder(*["once"] * questions)
    verdict, _ = run(world, argv, mode, approver)
    assert len(approver.asked) == questions, [r.command for r in approver.asked]
    assert verdict.action == action, verdict.reason


def test_a_prompt_request_carries_command_rule_and_justification(world):
    verdict, approver = run(world, ["sh", "-c", "ls && git push origin"], "on-request", Recorder("once"))
    [request] = approver.asked
    assert request.kind == "prompt"
    assert request.command == ("git", "push", "origin") and request.argv == ("sh", "-c", "ls && git push origin")
    assert request.rule == 'prefix_rule(pattern=["git", "push"], decision="prompt")'
    assert request.origin.endswith("team.rules:1") and request.justification == "publishes code"
    assert request.remember is None  # an allow could never outvote the prompt rule


def test_no_refuses_and_says_what(world):
    verdict, _ = run(world, ["git", "push"], "on-request", Recorder("no"))
    assert verdict.action == "refuse" and "git push" in verdict.reason
    types = [t for t, _ in verdict.events]
    assert types == ["command.decision", "approval.answer", "run.refused"]


def test_forbidden_refusal_names_the_rule_and_asks_nobody(world):
    verdict, approver = run(world, ["env", "rm", "-rf", "/"], "untrusted", Recorder())
    assert verdict.action == "refuse" and not approver.asked
    assert 'prefix_rule(pattern=["rm", "-rf"], decision="forbidden")' in verdict.reason
    refused = dict(verdict.events)["run.refused"]
    assert refused["rule"].startswith("prefix_rule") and refused["origin"].endswith("team.rules:2")


@pytest.mark.parametrize("mode", ["untrusted", "on-request", "on-failure"])
def test_escalation_is_asked_and_runs_unsandboxed_when_approved(world, mode):
    verdict, approver = run(world, ["npm", "test"], mode, Recorder("once"), escalation="needs ~/.npmrc")
    [request] = approver.asked
    assert request.kind == "escalation" and request.justification == "needs ~/.npmrc"
    assert verdict.action == "unsandboxed"
    verdict, _ = run(world, ["npm", "test"], mode, Recorder("no"), escalation=True)
    assert verdict.action == "refuse"


def test_never_refuses_escalation_without_asking(world):
    verdict, approver = run(world, ["npm", "test"], "never", Recorder(), escalation="x")
    assert verdict.action == "refuse" and not approver.asked and "never" in verdict.reason


def test_unknown_and_granular_policies_are_errors(world):
    for name in ("granular", "sometimes"):
        with pytest.raises(RingfenceError) as info:
            run(world, ["ls"], name)
        assert name in str(info.value) and "on-request" in str(info.value)


# -- "always" ---------------------------------------------------------------------------

def test_always_appends_a_rule_that_takes_effect_on_the_next_decision(world):
    verdict, approver = run(world, ["make", "build"], "untrusted", Recorder("always"))
    assert verdict.action == "sandboxed"
    assert approver.asked[0].remember == 'prefix_rule(pattern=["make", "build"], decision="allow")'
    text = world.default_rules.read_text()
    assert text == 'prefix_rule(pattern=["make", "build"], decision="allow")\n'
    assert [r.pattern for r in load_rules_file(str(world.default_rules)).rules] == [("make", "build")]
    # The same Sandbox (with the verdict's rules) and a fresh policy from the files both know it now.
    again = decide_run(world.policy.replace(commands=verdict.rules), ["make", "build", "-j4"], env=world.env,
                       approval_policy="untrusted", approver=Recorder())
    assert again.action == "sandboxed" and again.decision.decision == ALLOW
    world.policy = world.load()
    fresh, nobody = run(world, ["make", "build"], "untrusted", Recorder())
    assert fresh.action == "sandboxed" and not nobody.asked


def test_always_is_skipped_when_a_rule_in_the_file_already_covers_it(world):
    # Written after the policy was loaded: only the file, re-read under the lock, knows it.
    world.default_rules.write_text('prefix_rule(pattern=["make"], decision="allow")')
    verdict, _ = run(world, ["make", "x"], "untrusted", Recorder("always"))
    assert dict(verdict.events)["rules.already_covered"]["file"] == str(world.default_rules)
    assert world.default_rules.read_text() == 'prefix_rule(pattern=["make"], decision="allow")'


def test_always_adds_a_newline_when_the_file_lacks_one(world):
    world.default_rules.write_text('prefix_rule(pattern=["cargo"], decision="allow")')
    run(world, ["make"], "untrusted", Recorder("always"))
    assert world.default_rules.read_text().splitlines() == [
        'prefix_rule(pattern=["cargo"], decision="allow")', 'prefix_rule(pattern=["make"], decision="allow")']


def test_always_on_an_unprovable_script_remembers_that_exact_script(world):
    script = "make 2>&1 | tee $(date +%s).log"
    verdict, approver = run(world, ["bash", "-lc", script], "on-request", Recorder("always"))
    assert verdict.action == "sandboxed" and len(approver.asked) == 1
    world.policy = world.load()
    again, nobody = run(world, ["bash", "-lc", script], "on-request", Recorder())
    assert again.action == "sandboxed" and not nobody.asked
    other, asked = run(world, ["bash", "-lc", script + " "], "on-request", Recorder("no"))
    assert other.action == "refuse" and len(asked.asked) == 1


def test_always_for_a_prompt_rule_is_taken_as_once_and_writes_nothing(world):
    verdict, _ = run(world, ["git", "push"], "on-request", Recorder("always"))
    assert verdict.action == "sandboxed" and not world.default_rules.exists()


def test_a_broken_default_rules_file_gets_nothing_appended(world):
    world.default_rules.write_text("prefix_rule(\n")  # broken after the policy was loaded
    with pytest.raises(RingfenceError) as info:
        run(world, ["make"], "untrusted", Recorder("always"))
    assert "default.rules" in str(info.value)
    assert world.default_rules.read_text() == "prefix_rule(\n"


# -- the approver seam: sync, async, and wrong answers --------------------------------------

def test_an_async_approver_through_the_sync_call(world):
    asked = []

    async def approver(request):
        await asyncio.sleep(0)
        asked.append(request.command)
        return "once"

    verdict = decide_run(world.policy, ["git", "push"], env=world.env, approval_policy="on-request",
                         approver=approver)
    assert verdict.action == "sandboxed" and asked == [("git", "push")]


def test_async_and_sync_approvers_through_the_async_call(world):
    async def approver(request):
        await asyncio.sleep(0)
        return "no"

    async def main():
        refused = await decide_run_async(world.policy, ["git", "push"], env=world.env,
                                         approval_policy="on-request", approver=approver)
        allowed = await decide_run_async(world.policy, ["git", "push"], env=world.env,
                                         approval_policy="on-request", approver=lambda request: "once")
        return refused, allowed

    refused, allowed = asyncio.run(main())
    assert refused.action == "refuse" and allowed.action == "sandboxed"


def test_an_async_approver_in_a_running_loop_needs_the_async_call(world):
    async def approver(request):
        return "once"

    async def main():
        return decide_run(world.policy, ["git", "push"], env=world.env, approval_policy="on-request",
                          approver=approver)

    with pytest.raises(RingfenceError, match="decide_run_async"):
        asyncio.run(main())


@pytest.mark.parametrize("answer", ["yes", None, True, "ALWAYS"])
def test_an_answer_that_is_not_once_always_or_no_is_an_error(world, answer):
    with pytest.raises(RingfenceError, match="once', 'always' or 'no'"):
        run(world, ["make"], "untrusted", lambda request: answer)
    assert not world.default_rules.exists()


def test_without_a_terminal_the_default_approver_says_no(world):
    """In a new session there is no controlling terminal: nobody can be asked."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from ringfence.sandbox import load_policy;"
            "from ringfence.approval import decide_run;"
            "p = load_policy(sys.argv[2], home=sys.argv[3]);"
            "v = decide_run(p, ['git', 'push'], approval_policy='on-request');"
            "print(v.action)")
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src")
    result = subprocess.run([sys.executable, "-c", code, src, str(world.project), str(world.home)],
                            capture_output=True, text=True, start_new_session=True, stdin=subprocess.DEVNULL,
                            timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(world.home)})
    assert result.stdout.strip() == "refuse", result.stderr


# -- on-failure and the denial report -------------------------------------------------------

READ_ONLY = "sh: 1: cannot create /etc/hosts: Read-only file system\n"


def test_on_failure_offers_an_unsandboxed_rerun_when_the_sandbox_caused_it(world):
    approver = Recorder("once")
    verdict = decide_after_failure(world.policy, ["sh", "-c", "echo x > /etc/hosts"], exit_code=2, stderr=READ_ONLY,
                                   approval_policy="on-failure", approver=approver)
    [request] = approver.asked
    assert request.kind == "retry-unsandboxed" and "/etc/hosts" in request.reason
    assert verdict.action == "unsandboxed"
    assert dict(verdict.events)["sandbox.denial"]["target"] == "/etc/hosts"


def test_on_failure_does_not_offer_for_an_ordinary_failure(world):
    approver = Recorder()
    verdict = decide_after_failure(world.policy, ["pytest"], exit_code=1, stderr="FAILED test_x.py::test_y\n",
                                   approval_policy="on-failure", approver=approver)
    assert verdict.action == "refuse" and not approver.asked and "nothing points at the sandbox" in verdict.reason


@pytest.mark.parametrize("mode", ["on-request", "never", "untrusted"])
def test_only_on_failure_offers_a_rerun(world, mode):
    approver = Recorder()
    verdict = decide_after_failure(world.policy, ["x"], exit_code=1, stderr=READ_ONLY, approval_policy=mode,
                                   approver=approver)
    assert verdict.action == "refuse" and not approver.asked
    assert verdict.report.sandbox_caused  # reported all the same


def test_on_failure_async(world):
    async def approver(request):
        return "no"

    verdict = asyncio.run(decide_after_failure_async(world.policy, ["x"], exit_code=1, stderr=READ_ONLY,
                                                     approval_policy="on-failure", approver=approver))
    assert verdict.action == "refuse" and "not approved" in verdict.reason


def test_denial_report_write_outside(world):
    report = denial_report(world.policy, ["sh"], READ_ONLY + "touch: cannot touch '/usr/x': Read-only file system\n")
    assert [(d.kind, d.target) for d in report.denials] == [("write", "/etc/hosts"), ("write", "/usr/x")]
    assert report.denials[0].message == 'denied by the sandbox: write to /etc/hosts, rule `:root = "read"`'


def test_denial_report_denied_read(world):
    secret = world.home / ".aws" / "credentials"
    secret.parent.mkdir()
    secret.write_text("x")
    report = denial_report(world.policy, ["cat", str(secret)], f"cat: {secret}: Permission denied\n")
    [denial] = report.denials
    assert denial.kind == "read" and denial.target == str(secret)
    assert "credentials" in denial.rule and denial.message.startswith(f"denied by the sandbox: read of {secret}")


def test_denial_report_refused_connection(world):
    report = denial_report(world.policy, ["curl"], "curl: (6) Could not resolve host: example.com\n"
                           "OSError: [Errno 101] Network is unreachable\n",
                           [{"type": "proxy.refused", "host": "evil.example", "port": 443,
                             "rule": 'domains."evil.example" = "deny"'}])
    kinds = {(d.kind, d.target) for d in report.denials}
    assert kinds == {("network", "network"), ("network", "evil.example:443")}
    assert any("network is off" in d.message for d in report.denials)


def test_denial_report_private_temporary_space(world, tmp_path):
    host_file = tmp_path / "shared.txt"  # tmp_path is under /tmp, private to each run
    host_file.write_text("x")
    report = denial_report(world.policy, ["cat"], f"cat: {host_file}: No such file or directory\n"
                           "cat: /tmp/never-existed: No such file or directory\n")
    [denial] = report.denials
    assert denial.kind == "private" and denial.target == str(host_file) and "private to the run" in denial.message


def test_the_program_prefixing_its_message_is_not_a_path_it_touched(world):
    report = denial_report(world.policy, ["/bin/sh"], "/bin/sh: 1: cannot create /etc/x: Read-only file system\n")
    assert [d.target for d in report.denials] == ["/etc/x"]


def test_denial_report_refused_system_call(world):
    report = denial_report(world.policy, ["unshare"], "unshare: unshare failed: Operation not permitted\n")
    assert [(d.kind, d.target) for d in report.denials] == [("syscall", "unshare")]


@pytest.mark.parametrize("stderr", [
    "FAILED tests/test_x.py::test_y - assert 1 == 2\n",
    "cat: ./missing: No such file or directory\n",
    "error: could not write ./build/out: Permission denied\n",   # writable here: not the sandbox
    "grep: /etc/shadow0: Permission denied\n",                   # readable under the policy
])
def test_ordinary_failures_are_not_blamed_on_the_sandbox(world, stderr):
    (world.project / "build").mkdir()
    report = denial_report(world.policy, ["x"], stderr, cwd=str(world.project))
    assert not report.sandbox_caused, report.lines()
