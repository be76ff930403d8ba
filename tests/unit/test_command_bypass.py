"""Property tests: a `forbidden` rule is never bypassed by quoting, path
spelling, environment prefixes, wrappers or chaining.

Each example builds a command that runs `rm -rf TARGET` (or `curl URL`)
through a random composition of those disguises and checks the decision is
forbidden. The controls check the same generator without the forbidden
command is not forbidden, so the property cannot hold vacuously.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringfence.policy.commands import FORBIDDEN, CommandRule, CommandRules

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
RULES = CommandRules((CommandRule(("rm", "-rf"), FORBIDDEN, "test", "rm -rf"),
                      CommandRule(("curl",), FORBIDDEN, "test", "curl")))
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

target = st.text(alphabet="abcxyz/._-", min_size=1, max_size=8).filter(lambda t: not t.startswith("-"))


def _quote_word(word: str, style: int) -> str:
    """`word` spelled for a shell in one of several equivalent ways."""
    if style == 0:
        return word
    if style == 1:
        return "'" + word + "'"
    if style == 2:
        return '"' + word + '"'
    if style == 3:  # a backslash before each letter
        return "".join("\\" + c if c.isalpha() else c for c in word)
    if style == 4:  # split in two quoted halves
        half = len(word) // 2
        return "'" + word[:half] + "'\"" + word[half:] + '"'
    if style == 5:
        return "$'" + "".join(f"\\x{ord(c):02x}" for c in word) + "'"
    return word + "''"


# Decided from /usr/bin, where `./rm` is the system's rm (its directory is on PATH).
CWD = "/usr/bin"
PROGRAM_SPELLINGS = ["rm", "/bin/rm", "/usr/bin/rm", "/usr/bin/../bin/rm", "//usr//bin//rm", "./rm", "../bin/rm"]
WRAPPERS = [[], ["env"], ["env", "-i"], ["env", "A=1", "B=2"], ["command"], ["exec"], ["nice", "-n", "3"],
            ["timeout", "5"], ["timeout", "-k", "1", "5"], ["xargs", "-0"], ["sudo"], ["sudo", "-u", "x"],
            ["nohup"], ["stdbuf", "-o0"], ["time"], ["setsid"], ["env", "nice", "nohup"]]


@st.composite
def disguised_argv(draw, payload_words):
    """An argv that runs `payload_words` inside wrappers, a shell script chain, quoting and nesting."""
    program = draw(st.sampled_from(PROGRAM_SPELLINGS)) if payload_words[0] == "rm" else payload_words[0]
    words = [program] + list(payload_words[1:])
    wrapper = draw(st.sampled_from(WRAPPERS))
    command = wrapper + words
    if not draw(st.booleans()):
        return command  # an argv, no shell
    style = draw(st.integers(0, 6))
    text = " ".join(_quote_word(w, style if i < len(wrapper) + 2 else 0) for i, w in enumerate(command))
    if draw(st.booleans()):
        text = f"FOO=1 BAR=x {text}"
    neighbour = draw(st.sampled_from(["true", "echo hi", "ls -la /", "pwd"]))
    shape = draw(st.sampled_from(["{n} && {c}", "{n}; {c}", "{n} | {c}", "{n} & {c}", "{c} & {n}",
                                  "! {n} || {c}", "({c})", "{{ {c}; }}", "{n}\n{c}", "({n} && ({c}))",
                                  "if {n}; then {c}; fi", "{n} | {{ {c}; }} &", "! {c}"]))
    script = shape.format(n=neighbour, c=text)
    shell = draw(st.sampled_from(["sh", "bash", "zsh", "dash", "/bin/sh", "/usr/bin/bash"]))
    flag = draw(st.sampled_from(["-c", "-lc", "-ec"]))
    argv = [shell, flag, script]
    if draw(st.booleans()):  # nest once more
        inner = "'" + script.replace("'", "'\\''") + "'"
        argv = [draw(st.sampled_from(["sh", "bash"])), "-c", f"{draw(st.sampled_from(['env ', '', 'nice ']))}"
                f"{shell} {flag} {inner}"]
    return argv


@SETTINGS
@given(st.data(), target)
def test_forbidden_rm_is_never_bypassed(data, path):
    argv = data.draw(disguised_argv(("rm", "-rf", path)))
    decision = RULES.decide(argv, env=ENV, cwd=CWD)
    assert decision.decision == FORBIDDEN, (argv, decision.why)


@SETTINGS
@given(st.data())
def test_forbidden_curl_is_never_bypassed(data):
    argv = data.draw(disguised_argv(("curl", "http://example.invalid")))
    decision = RULES.decide(argv, env=ENV, cwd="/tmp")
    assert decision.decision == FORBIDDEN, (argv, decision.why)


@SETTINGS
@given(st.data(), target)
def test_control_the_same_disguises_of_an_unforbidden_command_are_not_forbidden(data, path):
    argv = data.draw(disguised_argv(("rm", "-r", path)))
    assert RULES.decide(argv, env=ENV, cwd=CWD).decision != FORBIDDEN, argv


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), path=target)
def test_control_the_disguised_scripts_really_run_the_command(data, path, bash_as_every_shell):
    """The disguises are real: a shell given the generated script runs the
    payload (every shell name is bash here, whose syntax the disguises use)."""
    argv = data.draw(disguised_argv(("echo", "PAYLOAD", path)))
    if os.path.basename(argv[0]) not in ("sh", "bash", "dash") or "zsh" in " ".join(argv):
        return  # an argv of wrappers needs no control: each is the documented program
    argv = [os.path.basename(argv[0])] + argv[1:] if "/" in argv[0] else argv
    # A login shell reads /etc/profile, which resets PATH; the disguise is the same without it.
    # A nested shell named by path would be the system's dash, which lacks $'...'.
    argv = [word.replace(" -lc ", " -c ").replace("/usr/bin/bash ", "bash ").replace("/bin/sh ", "sh ")
            if index else word for index, word in enumerate(argv)]
    argv = ["-c" if word == "-lc" else word for word in argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL,
                            env={"PATH": bash_as_every_shell + ":" + ENV["PATH"], "HOME": bash_as_every_shell})
    assert f"PAYLOAD {path}" in result.stdout, (argv, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def bash_as_every_shell(tmp_path_factory):
    directory = tmp_path_factory.mktemp("shells")
    for name in ("sh", "bash", "dash"):
        os.symlink(shutil.which("bash"), directory / name)
    sudo = directory / "sudo"  # runs its command as sudo would, minus the privileges
    sudo.write_text('#!/bin/sh\nwhile :; do case "$1" in -u) shift 2;; -*) shift;; *) break;; esac; done\n'
                    'exec "$@"\n')
    sudo.chmod(0o755)
    return str(directory)


class _Policy:
    """What the approval flow reads of a policy."""

    def __init__(self, mode):
        self.approval_policy = mode
        self.commands = RULES
        self.cwd = CWD
        self.sandboxed = True
        self.home = "/nonexistent"


@SETTINGS
@given(st.data(), target, st.sampled_from(["untrusted", "on-request", "on-request-rule", "on-failure", "never"]),
       st.sampled_from([None, "needs it"]))
def test_forbidden_is_refused_under_every_approval_policy_and_nobody_is_asked(data, path, mode, escalation):
    from ringfence.approval import decide_run

    argv = data.draw(disguised_argv(("rm", "-rf", path)))
    asked = []
    verdict = decide_run(_Policy(mode), argv, env=ENV, cwd=CWD, approver=lambda request: asked.append(request) or "once",
                         escalation=escalation)
    assert verdict.action == "refuse" and not asked, (argv, verdict.reason)
