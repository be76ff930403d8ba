"""The terminal approver through a real pseudo-terminal, concurrent "always"
answers, and `ringfence check` as a command.

A child process gets the pty as its controlling terminal and calls
`decide_run` with the default approver; the test types the answer and
judges from files the child and ringfence write, not from what is shown.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest

from harness import SRC

PROMPT_ENDS = (b"(default no): ", b"o or n: ", b"o, a or n: ")

CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from ringfence.sandbox import load_policy
from ringfence.approval import decide_run
policy = load_policy(sys.argv[2], home=sys.argv[3], env={"PATH": "/usr/bin:/bin"})
verdict = decide_run(policy, json.loads(sys.argv[5]), env={"PATH": "/usr/bin:/bin"}, approval_policy=sys.argv[6])
with open(sys.argv[4], "w") as handle:
    json.dump({"action": verdict.action, "reason": verdict.reason,
               "events": [t for t, _ in verdict.events]}, handle)
"""


class World:
    def __init__(self, root):
        self.home = root / "home"
        self.project = root / "project"
        (self.project / ".git").mkdir(parents=True)
        self.rules = self.home / ".ringfence" / "rules"
        self.rules.mkdir(parents=True)
        (self.rules / "team.rules").write_text(
            'prefix_rule(pattern=["git", "push"], decision="prompt", justification="publishes code")\n')
        self.default_rules = self.rules / "default.rules"
        self.result = root / "verdict.json"

    def ask(self, argv, answers, mode="untrusted"):
        """Run the child on a pty, answering each question in turn; return (verdict, screen)."""
        self.result.unlink(missing_ok=True)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.home), "LANG": "C.UTF-8"}
        _, screen = converse([sys.executable, "-P", "-c", CHILD, SRC, str(self.project), str(self.home),
                              str(self.result), json.dumps(argv), mode], env, str(self.project), answers)
        verdict = json.loads(self.result.read_text()) if self.result.exists() else None
        return verdict, screen


def converse(argv, env, cwd, answers, *, user=None, stdin: bytes | None = None, timeout=60):
    """Run `argv` with a pty as its controlling terminal (as `user`; with
    `stdin` as its standard input instead of the pty), typing each answer
    when a question ends; return (exit status, everything the pty showed)."""
    pipe = os.pipe() if stdin is not None else None
    pid, master = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal
        try:
            if pipe is not None:
                os.dup2(pipe[0], 0)
                os.close(pipe[0])
                os.close(pipe[1])
            if user is not None and not user.is_current:
                os.setgroups([])
                os.setgid(user.gid)
                os.setuid(user.uid)
            os.chdir(cwd)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    if pipe is not None:
        os.close(pipe[0])
        os.write(pipe[1], stdin)
        os.close(pipe[1])
    screen = b""
    answers = list(answers)
    status = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                screen += chunk
                if screen.endswith(PROMPT_ENDS) and answers:
                    os.write(master, answers.pop(0).encode() + b"\n")
            elif status is None:
                done, code = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = code
                    break
    finally:
        grace = time.monotonic() + 10  # the pty closed: the child is on its way out
        while status is None:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = code
            elif time.monotonic() > min(grace, deadline):
                os.kill(pid, 9)  # still waiting for an answer the test did not give
                status = os.waitpid(pid, 0)[1]
            else:
                time.sleep(0.02)
        os.close(master)
    return os.waitstatus_to_exitcode(status), screen.decode("utf-8", "replace")


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.delenv("RINGFENCE_CONFIG_DIR", raising=False)
    return World(tmp_path)


def test_once_runs_and_remembers_nothing(world):
    verdict, screen = world.ask(["make", "build"], ["o"])
    assert verdict["action"] == "sandboxed"
    assert "command:   make build" in screen and "[o]nce, [a]lways, [n]o" in screen
    assert not world.default_rules.exists()


def test_no_refuses(world):
    verdict, screen = world.ask(["make", "build"], ["n"])
    assert verdict["action"] == "refuse" and "not approved" in verdict["reason"]


def test_always_appends_the_rule_and_the_next_run_asks_nothing(world):
    verdict, screen = world.ask(["make", "build"], ["a"])
    assert verdict["action"] == "sandboxed"
    assert world.default_rules.read_text() == 'prefix_rule(pattern=["make", "build"], decision="allow")\n'
    again, screen = world.ask(["make", "build"], [])
    assert again["action"] == "sandboxed" and "run this command?" not in screen
    # Control: a command the rule does not cover is still asked.
    other, screen = world.ask(["make", "clean"], ["n"])
    assert other["action"] == "refuse" and "command:   make clean" in screen


def test_the_question_shows_rule_and_justification_and_offers_no_always_for_a_prompt_rule(world):
    verdict, screen = world.ask(["git", "push", "origin"], ["a", "o"], mode="on-request")
    assert 'rule:      prefix_rule(pattern=["git", "push"], decision="prompt")' in screen
    assert "why:       publishes code" in screen
    assert "[o]nce, [n]o" in screen and "please answer o or n" in screen  # "a" is not on offer here
    assert verdict["action"] == "sandboxed" and not world.default_rules.exists()


def test_control_characters_in_a_command_are_shown_escaped(world):
    verdict, screen = world.ask(["make", "\x1b[2J\x1b[Hfake"], ["n"])
    assert "\\x1b[2J" in screen and "\x1b[2J" not in screen
    assert verdict["action"] == "refuse"


def test_end_of_input_on_the_terminal_is_no(world, tmp_path):
    # A terminal whose other side is gone: the approver reads end of input.
    from ringfence.approval import ApprovalRequest, TerminalApprover

    master, slave = pty.openpty()
    name = os.ttyname(slave)
    os.close(master)
    request = ApprovalRequest("prompt", ("make",), ("make",), None, None, None, "x", None)
    assert TerminalApprover(tty=name)(request) == "no"
    os.close(slave)
    assert TerminalApprover(tty=str(tmp_path / "no-such-tty"))(request) == "no"


# -- concurrent "always" answers ---------------------------------------------------------------

APPENDER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from ringfence.approval import append_allow_rule
for i in range(int(sys.argv[4])):
    append_allow_rule(sys.argv[2], ["tool", sys.argv[3], str(i)], env={"PATH": "/usr/bin"}, cwd="/")
    append_allow_rule(sys.argv[2], ["shared", str(i)], env={"PATH": "/usr/bin"}, cwd="/")
"""


def test_concurrent_appends_leave_one_valid_file_with_each_rule_once(tmp_path):
    from ringfence.policy.rules_file import load_rules_file

    path = tmp_path / "rules" / "default.rules"
    writers, each = 24, 8
    processes = [subprocess.Popen([sys.executable, "-P", "-c", APPENDER, SRC, str(path), str(n), str(each)])
                 for n in range(writers)]
    assert [p.wait(timeout=120) for p in processes] == [0] * writers
    patterns = [rule.pattern for rule in load_rules_file(str(path)).rules]
    expected = {("tool", str(n), str(i)) for n in range(writers) for i in range(each)}
    expected |= {("shared", str(i)) for i in range(each)}
    assert sorted(patterns) == sorted(expected)  # each once: none lost, none doubled
    assert path.read_text().endswith("\n") and "\n\n" not in path.read_text()


# -- ringfence check ------------------------------------------------------------------------

def _check(world, *args):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(world.home), "PYTHONPATH": SRC, "LANG": "C.UTF-8"}
    return subprocess.run([sys.executable, "-P", "-m", "ringfence", "check", *args], cwd=world.project, env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_check_exit_codes_and_why(world, tmp_path):
    extra = tmp_path / "my.rules"
    extra.write_text('prefix_rule(pattern=["rm", "-rf"], decision="forbidden", justification="no")\n'
                     'prefix_rule(pattern=["npm", "test"], decision="allow")\n')
    forbidden = _check(world, "--rules", str(extra), "--", "sh", "-c", "npm test && rm -rf build")
    assert forbidden.returncode == 126, forbidden.stderr
    assert "decision  forbidden" in forbidden.stdout and f"[{extra}:1]" in forbidden.stdout
    allowed = _check(world, "--rules", str(extra), "npm", "test", "--watch")
    assert allowed.returncode == 0 and "decision  allow" in allowed.stdout
    asks = _check(world, "git", "push", "origin", "main")
    assert asks.returncode == 3 and "publishes code" in asks.stdout
    nothing = _check(world, "--", "make")
    assert nothing.returncode == 1 and "no rule matches make" in nothing.stdout


def test_check_json(world):
    result = _check(world, "--json", "--", "bash", "-lc", "git push && ls")
    assert result.returncode == 3
    data = json.loads(result.stdout)
    assert data["decision"] == "prompt"
    [rule] = data["matchedRules"]
    assert rule["decision"] == "prompt" and rule["justification"] == "publishes code"
    assert rule["command"] == ["git", "push"] and rule["matchedPrefix"] == ["git", "push"]
    assert rule["origin"].endswith("team.rules:1")
    assert [c["argv"] for c in data["commands"]] == [["git", "push"], ["ls"]]
    assert data["commands"][0]["via"] == ["bash -lc"]


def test_check_reports_a_broken_rules_file_with_its_line(world, tmp_path):
    bad = tmp_path / "bad.rules"
    bad.write_text('\nprefix_rule(pattern=["git"], decision="allow", not_match=["git status"])\n')
    result = _check(world, "--rules", str(bad), "--", "git", "status")
    assert result.returncode == 125 and f"{bad}:2" in result.stderr and "git status" in result.stderr


# -- `ringfence run` on a terminal, as each test user -------------------------------------------

def _run_on_terminal(scene, args, answers, **options):
    command = [sys.executable, "-P", "-m", "ringfence", "run", *args]
    return converse(command, scene.env(), scene.ws, answers, user=scene.user, **options)


def _default_rules(scene) -> str:
    return os.path.join(scene.home, ".ringfence", "rules", "default.rules")


def test_run_asks_once_always_no_and_always_holds_for_the_next_run(scene):
    scene.config('approval_policy = "untrusted"\n')
    made = os.path.join(scene.ws, "made")
    status, screen = _run_on_terminal(scene, ["--", "touch", "made"], ["n"])
    assert status == 126 and not os.path.exists(made), screen
    assert "command:   touch made" in screen and "not approved: touch made" in screen
    status, screen = _run_on_terminal(scene, ["--", "touch", "made"], ["o"])
    assert status == 0 and os.path.exists(made), screen
    assert not os.path.exists(_default_rules(scene))
    os.unlink(made)
    status, screen = _run_on_terminal(scene, ["--", "touch", "made"], ["a"])
    assert status == 0 and os.path.exists(made), screen
    assert scene.read("home/.ringfence/rules/default.rules") == \
        'prefix_rule(pattern=["touch", "made"], decision="allow")\n'
    os.unlink(made)
    status, screen = _run_on_terminal(scene, ["--", "touch", "made"], [])
    assert status == 0 and os.path.exists(made) and "run this command?" not in screen, screen
    # Control: what the remembered rule does not cover is still asked.
    status, screen = _run_on_terminal(scene, ["--", "touch", "other"], ["n"])
    assert status == 126 and not scene.exists("ws/other") and "command:   touch other" in screen


def test_the_answer_comes_from_the_terminal_not_from_the_commands_stdin(scene):
    scene.config('approval_policy = "untrusted"\n')
    status, screen = _run_on_terminal(scene, ["--", "touch", "made"], ["n"], stdin=b"a\no\nyes\n")
    assert status == 126 and not scene.exists("ws/made"), screen
    assert not os.path.exists(_default_rules(scene))


def test_what_the_question_and_the_refusal_show_is_escaped(scene):
    scene.config('approval_policy = "untrusted"\n')
    status, screen = _run_on_terminal(scene, ["--", "touch", "\x1b[2J\x1b]0;pwned\x07x"], ["n"])
    assert status == 126
    assert "\\x1b[2J\\x1b]0;pwned\\x07x" in screen
    assert "\x1b[2J" not in screen and "\x1b]0;pwned" not in screen


def test_escalation_runs_outside_the_sandbox_only_after_yes(scene):
    target = scene.write("outside/target", "before\n")
    script = f"echo after > {target}"
    status, screen = _run_on_terminal(scene, ["--", "sh", "-c", script], [])
    assert status != 0 and scene.read("outside/target") == "before\n"  # control: the sandbox stops it
    assert f"denied by the sandbox: write to {target}, rule `" in screen  # read from what the terminal showed
    status, screen = _run_on_terminal(scene, ["--escalate", "updates a file outside", "--", "sh", "-c", script],
                                      ["n"])
    assert status == 126 and scene.read("outside/target") == "before\n", screen
    assert "run this command OUTSIDE the sandbox?" in screen and "why:       updates a file outside" in screen
    status, screen = _run_on_terminal(scene, ["--escalate", "updates a file outside", "--", "sh", "-c", script],
                                      ["o"])
    assert status == 0 and scene.read("outside/target") == "after\n", screen


@pytest.mark.parametrize("options", [(), ("--no-tty",)], ids=["pty", "no-tty"])
def test_on_failure_offers_a_rerun_outside_after_a_denial(scene, options):
    scene.config('approval_policy = "on-failure"\n')
    target = scene.write("outside/target", "before\n")
    script = f"echo after > {target}"
    status, screen = _run_on_terminal(scene, [*options, "--", "sh", "-c", script], ["n"])
    assert status == 2 and scene.read("outside/target") == "before\n", screen
    assert "it failed because of the sandbox; run it again OUTSIDE the sandbox?" in screen
    assert f"denied by the sandbox: write to {target}" in screen
    status, screen = _run_on_terminal(scene, [*options, "--", "sh", "-c", script], ["o"])
    assert status == 0 and scene.read("outside/target") == "after\n", screen
    # Control: an ordinary failure is not the sandbox's, and nothing is offered.
    status, screen = _run_on_terminal(scene, [*options, "--", "sh", "-c", "echo failing >&2; exit 3"], ["o"])
    assert status == 3 and "OUTSIDE" not in screen and "denied by the sandbox" not in screen


def test_a_rules_file_that_tries_to_run_code_stops_run_before_anything_runs(scene):
    marker = os.path.join(scene.base, "MARKER")
    scene.write("home/.ringfence/rules/evil.rules",
                f'prefix_rule(pattern=[__import__("os").system("touch {marker}")], decision="allow")\n')
    result = scene.run(["touch", "ran"])
    assert result.returncode == 125 and "evil.rules:1" in result.stderr, result.stderr
    assert not os.path.exists(marker) and not scene.exists("ws/ran")
