"""Command rules: matching tables (alternatives, host executables, strictest
wins, program spelling), wrappers, shell scripts, and what stays unproven."""

from __future__ import annotations

import os

import pytest

from ringfence.policy.commands import (ALLOW, FORBIDDEN, NO_RULE, PROMPT, CommandRule, CommandRules,
                                       HostExecutable)
from ringfence.policy.rules_file import parse_rules

SYSTEM_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}

RULES = """
prefix_rule(pattern=["git", ["status", "diff", "log"]], decision="allow",
            match=["git status", "git log -p"], not_match=["git push", "git --no-pager status"])
prefix_rule(pattern=["git", "push"], decision="prompt", justification="publishes code")
prefix_rule(pattern=["git", "push", "--force"], decision="forbidden", justification="rewrites history")
prefix_rule(pattern=["rm", "-rf"], decision="forbidden")
prefix_rule(pattern=["ls"], decision="allow")
prefix_rule(pattern=["npm", "test"], decision="allow")
prefix_rule(pattern=["sudo", "apt"], decision="allow")
prefix_rule(pattern=["apt", "install"], decision="allow")
prefix_rule(pattern=[["docker", "podman"]], decision="forbidden")
prefix_rule(pattern=["make", "deploy"], decision="prompt")
prefix_rule(pattern=["make"], decision="allow")
"""


@pytest.fixture(scope="module")
def rules() -> CommandRules:
    loaded = parse_rules(RULES, "test.rules")
    return CommandRules(loaded.rules, loaded.host_executables)


def decide(rules, argv, cwd="/tmp", env=SYSTEM_ENV):
    return rules.decide(argv, env=env, cwd=cwd)


@pytest.mark.parametrize("argv, expected", [
    (["git", "status"], ALLOW),
    (["git", "diff", "--stat"], ALLOW),
    (["git", "log"], ALLOW),
    (["git", "show"], NO_RULE),
    (["git", "--no-pager", "status"], NO_RULE),        # token-exact: option order matters
    (["git", "push", "origin", "main"], PROMPT),
    (["git", "push", "--force", "origin"], FORBIDDEN),  # strictest wins over the prompt rule
    (["make"], ALLOW),
    (["make", "deploy"], PROMPT),                        # prompt beats the shorter allow
    (["docker", "run", "x"], FORBIDDEN),                 # alternatives in the program position
    (["podman", "ps"], FORBIDDEN),
    (["rm", "-r", "x"], NO_RULE),
    (["rm", "-rf", "x"], FORBIDDEN),
])
def test_rule_table(rules, argv, expected):
    assert decide(rules, argv).decision == expected


def test_decision_names_the_rule_origin_justification_and_command(rules):
    decision = decide(rules, ["git", "push", "origin"])
    assert decision.rule.label == 'prefix_rule(pattern=["git", "push"], decision="prompt")'
    assert decision.rule.origin == "test.rules:4"
    assert decision.rule.justification == "publishes code"
    assert "publishes code" in decision.why and "git push" in decision.why
    [match] = decision.matches
    assert match.command == ("git", "push", "origin") and match.prefix == ("git", "push") and match.certain


def test_every_matching_rule_is_reported(rules):
    decision = decide(rules, ["git", "push", "--force"])
    assert {m.decision for m in decision.matches} == {PROMPT, FORBIDDEN}
    assert decision.rule.decision == FORBIDDEN


def test_old_single_argument_call_still_works():
    rules = CommandRules((CommandRule(("touch",), FORBIDDEN, "config.toml", '[[rules]] prefix = "touch"'),))
    assert rules.decide(["touch", "x"]).decision == FORBIDDEN
    assert rules.decide(["/usr/bin/touch", "x"]).decision == FORBIDDEN
    assert CommandRules(()).decide(["touch"]).decision == NO_RULE


# -- program spelling ---------------------------------------------------------------

def _executable(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write("#!/bin/sh\n")
    os.chmod(path, 0o755)
    return path


@pytest.mark.parametrize("program", ["ls", "/bin/ls", "/usr/bin/ls", "/usr/bin/../bin/ls"])
def test_a_path_on_path_is_its_basename(rules, program):
    assert decide(rules, [program]).decision == ALLOW


def test_a_workspace_program_is_not_the_system_one(rules, tmp_path):
    _executable(str(tmp_path / "rm"))
    _executable(str(tmp_path / "ls"))
    assert decide(rules, ["./rm", "-rf", "x"], cwd=str(tmp_path)).decision == NO_RULE
    assert decide(rules, ["./ls"], cwd=str(tmp_path)).decision == NO_RULE
    # ... unless the workspace is on the command's PATH: then it is `rm` to the shell too.
    env = {"PATH": f"{tmp_path}:/usr/bin"}
    assert decide(rules, ["./rm", "-rf", "x"], cwd=str(tmp_path), env=env).decision == FORBIDDEN


def test_dot_slash_from_a_path_directory_is_the_program(rules):
    assert decide(rules, ["./rm", "-rf", "x"], cwd="/usr/bin").decision == FORBIDDEN
    assert decide(rules, ["../bin/rm", "-rf", "x"], cwd="/usr/lib").decision == FORBIDDEN


def test_a_symlink_to_a_system_program_is_that_program(rules, tmp_path):
    os.symlink("/bin/rm", tmp_path / "remove")
    assert decide(rules, ["./remove", "-rf", "x"], cwd=str(tmp_path)).decision == FORBIDDEN


def test_host_executable_limits_basename_matching_to_its_paths(tmp_path):
    tool = _executable(str(tmp_path / "opt" / "bin" / "git"))
    other = _executable(str(tmp_path / "elsewhere" / "git"))
    loaded = parse_rules(f"""
host_executable(name="git", paths=["{tool}"])
prefix_rule(pattern=["git", "status"], decision="allow")
""", "h.rules")
    rules = CommandRules(loaded.rules, loaded.host_executables)
    env = {"PATH": f"{tmp_path / 'elsewhere'}:/usr/bin"}
    assert rules.decide([tool, "status"], env=env, cwd="/").decision == ALLOW
    # On PATH, but not a listed path: not `git` for these rules.
    assert rules.decide([other, "status"], env=env, cwd="/").decision == NO_RULE
    assert rules.decide(["/usr/bin/git", "status"], env=env, cwd="/").decision == NO_RULE
    assert rules.decide(["git", "status"], env=env, cwd="/").decision == ALLOW


def test_a_rule_for_an_absolute_path_matches_the_file_however_spelled(tmp_path):
    tool = _executable(str(tmp_path / "bin" / "deploy"))
    rules = CommandRules((CommandRule((tool,), FORBIDDEN, "x", "deploy"),))
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin"}
    assert rules.decide(["deploy"], env=env, cwd="/").decision == FORBIDDEN
    assert rules.decide(["./deploy"], env=env, cwd=str(tmp_path / "bin")).decision == FORBIDDEN
    assert rules.decide([str(tmp_path / "bin" / ".." / "bin" / "deploy")], env=env, cwd="/").decision == FORBIDDEN
    assert rules.decide(["deploy"], env={"PATH": "/usr/bin"}, cwd="/").decision == NO_RULE


def test_host_executable_rejects_paths_of_another_name():
    with pytest.raises(Exception, match="does not end in 'git'"):
        parse_rules('host_executable(name="git", paths=["/usr/bin/hg"])', "h.rules")


# -- wrappers -------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["env", "rm", "-rf", "x"],
    ["env", "-i", "FOO=1", "rm", "-rf", "x"],
    ["env", "-u", "HOME", "--chdir=/", "rm", "-rf", "x"],
    ["env", "-S", "rm -rf", "x"],
    ["command", "rm", "-rf", "x"],
    ["exec", "-a", "name", "rm", "-rf", "x"],
    ["nice", "-n", "5", "rm", "-rf", "x"],
    ["nice", "-5", "rm", "-rf", "x"],
    ["timeout", "-s", "KILL", "10", "rm", "-rf", "x"],
    ["timeout", "--kill-after=1", "10s", "rm", "-rf", "x"],
    ["xargs", "-0", "-n", "1", "rm", "-rf"],
    ["xargs", "-I{}", "rm", "-rf", "{}"],
    ["sudo", "-u", "root", "rm", "-rf", "x"],
    ["sudo", "FOO=1", "rm", "-rf", "x"],
    ["nohup", "rm", "-rf", "x"],
    ["stdbuf", "-oL", "rm", "-rf", "x"],
    ["time", "-p", "rm", "-rf", "x"],
    ["setsid", "-f", "rm", "-rf", "x"],
    ["/usr/bin/env", "nice", "timeout", "5", "rm", "-rf", "x"],
    ["find", ".", "-name", "*.o", "-exec", "rm", "-rf", "{}", ";"],
    ["env", "--frobnicate", "rm", "-rf", "x"],   # unknown option: the words after it are still checked
])
def test_wrappers_are_looked_through(rules, argv):
    decision = decide(rules, argv)
    assert decision.decision == FORBIDDEN, decision.why
    assert "rm" in decision.why


@pytest.mark.parametrize("argv, expected", [
    (["env", "FOO=1", "ls"], ALLOW),
    (["timeout", "5", "npm", "test"], ALLOW),
    (["env"], NO_RULE),                        # runs nothing but itself
    (["command", "-v", "rm"], NO_RULE),        # looks up, does not run
    (["env", "--frobnicate", "ls"], PROMPT),   # cannot tell what it runs
    (["sudo", "ls"], NO_RULE),                 # an allow for ls does not carry through sudo
    (["sudo", "apt", "install", "x"], ALLOW),  # a rule naming sudo's command does
    (["sudo", "-s", "ls"], PROMPT),            # sudo -s runs a shell
    (["xargs", "rm"], PROMPT),                 # its input may supply -rf
    (["xargs", "-0", "ls"], ALLOW),
])
def test_wrapper_table(rules, argv, expected):
    assert decide(rules, argv).decision == expected


def test_an_allowed_wrapper_does_not_allow_what_it_runs():
    rules = CommandRules((CommandRule(("env",), ALLOW, "x", "env"),))
    assert rules.decide(["env"]).decision == ALLOW
    assert rules.decide(["env", "curl", "x"]).decision == NO_RULE


def test_env_path_changes_where_a_bare_name_is_found(tmp_path):
    tool = _executable(str(tmp_path / "deploy"))
    rules = CommandRules((CommandRule((tool,), FORBIDDEN, "x", "deploy"),))
    assert rules.decide(["env", f"PATH={tmp_path}", "deploy"], env={"PATH": "/usr/bin"}).decision == FORBIDDEN
    assert rules.decide(["env", "-i", "deploy"], env={"PATH": str(tmp_path)}).decision == NO_RULE


# -- shell scripts ----------------------------------------------------------------------

@pytest.mark.parametrize("script", [
    "true & rm -rf x",
    "true && rm -rf x",
    "false || rm -rf x",
    "true; rm -rf x",
    "echo | rm -rf x",
    "(rm -rf x)",
    "{ rm -rf x; }",
    "! rm -rf x",
    "if true; then rm -rf x; fi",
    "for f in a b; do rm -rf $f; done",
    "while true; do rm -rf x; done",
    "case a in a) rm -rf x;; esac",
    "rm -rf x > /dev/null 2>&1",
    "echo $(rm -rf x)",
    "echo `rm -rf x`",
    "cat <(rm -rf x)",
    "f() { rm -rf x; }; f",
    "FOO=1 rm -rf x",
    "sh -c 'rm -rf x'",
    "bash -lc \"env rm -rf x\"",
    "eval 'rm -rf x'",
    "cat <<EOF | sh\nhi\nEOF\nrm -rf x",
    "x=$(rm -rf y)",
    "[[ -n $(rm -rf x) ]]",
])
@pytest.mark.parametrize("shell", ["sh", "bash", "/bin/zsh", "dash"])
def test_a_forbidden_command_anywhere_in_a_script_forbids_it(rules, shell, script):
    decision = decide(rules, [shell, "-c", script])
    assert decision.decision == FORBIDDEN, decision.why


@pytest.mark.parametrize("script", [
    "ls && git status",
    "git diff | ls",
    "ls; npm test",
    "(ls) && { git log; }",
    "ls > /dev/null",
    "make 2>&1 | ls",
])
def test_a_plain_script_of_allowed_commands_is_allowed(rules, script):
    decision = decide(rules, ["bash", "-lc", script])
    assert decision.decision == ALLOW, decision.why


@pytest.mark.parametrize("script, reason", [
    ("ls $(pwd)", "command substitution"),
    ("ls `pwd`", "command substitution"),
    ("eval ls", "eval"),
    ("$CMD -la", "known only at run time"),
    ("source ./x.sh", "source"),
    (". ./x.sh", "runs a file"),
    ("f() { ls; }; f", "function"),
    ("ls &&", "does not parse"),
    ("cat <<EOF | sh\nls\nEOF", "reads commands from its input"),
    ("sh <<<'ls'", "reads commands from its input"),
    ("bash ./build.sh", "script file"),
    ("(( x = 1 )); ls", "arithmetic"),
    ("ls;; ls", ";;"),
    ("alias ls='rm -rf x'", "alias"),
    ("printf -v 'a[$(id)]' x", "arithmetic"),
])
def test_what_cannot_be_proven_plain_asks_even_when_every_command_is_allowed(rules, script, reason):
    decision = decide(rules, ["sh", "-c", script])
    assert decision.decision == PROMPT, decision.why
    assert reason in decision.why


def test_an_allow_rule_naming_the_whole_script_allows_it(rules):
    script = "ls $(pwd)"
    literal = CommandRules(rules.rules + (CommandRule(("sh", "-c", script), ALLOW, "x", "literal"),))
    assert literal.decide(["sh", "-c", script]).decision == ALLOW
    # The literal does not reach another script, nor does a rule for `sh` alone allow any script.
    assert literal.decide(["sh", "-c", "ls $(id)"]).decision == PROMPT
    shell = CommandRules((CommandRule(("sh",), ALLOW, "x", "sh"),))
    assert shell.decide(["sh", "-c", "curl x"]).decision == NO_RULE


def test_a_forbidden_rule_still_wins_over_a_literal_allow():
    rules = CommandRules((CommandRule(("sh", "-c", "rm -rf x"), ALLOW, "x", "literal"),
                          CommandRule(("rm", "-rf"), FORBIDDEN, "y", "rm")))
    assert rules.decide(["sh", "-c", "rm -rf x"]).decision == FORBIDDEN


@pytest.mark.parametrize("script", ["F=-rf; rm $F x", "rm ${FLAGS} x", "rm -r? x"])
def test_a_word_known_only_at_run_time_never_completes_a_rule_for_sure(rules, script):
    decision = decide(rules, ["sh", "-c", script])
    assert decision.decision == PROMPT
    assert "could match" in decision.why


def test_a_run_time_word_never_completes_an_allow():
    rules = CommandRules((CommandRule(("npm", "test"), ALLOW, "x", "npm test"),))
    assert rules.decide(["sh", "-c", "npm $TARGET"]).decision == NO_RULE
    assert rules.decide(["sh", "-c", "npm test $EXTRA"]).decision == ALLOW


def test_after_cd_a_path_spelled_program_may_be_the_system_one(rules):
    decision = decide(rules, ["sh", "-c", "cd /usr/bin && ./rm -rf x"])
    assert decision.decision == PROMPT and "not certain" in decision.why


def test_parts_say_where_each_command_was_found(rules):
    decision = decide(rules, ["env", "A=1", "sh", "-c", "ls && git push"])
    by_argv = {part.argv: part for part in decision.parts}
    assert by_argv[("git", "push")].decision == PROMPT
    assert by_argv[("git", "push")].via == ("env", "sh -c")
    assert by_argv[("ls",)].decision == ALLOW


def test_a_non_exec_shell_invocation_is_only_itself(rules):
    # Only `-c` is unwrapped: a script given as several words is not a script.
    assert decide(rules, ["bash", "-lc", "ls", "git", "push"]).decision == ALLOW


# -- the read-only list (untrusted) --------------------------------------------------------

@pytest.mark.parametrize("argv, safe", [
    (["ls", "-la"], True),
    (["cat", "README"], True),
    (["sed", "-n", "1,5p", "f"], True),
    (["sed", "-i", "s/a/b/", "f"], False),
    (["find", ".", "-name", "x"], True),
    (["find", ".", "-delete"], False),
    (["rg", "--pre", "x", "y"], False),
    (["base64", "-o", "out"], False),
    (["git", "status"], False),
    (["sh", "-c", "ls | wc -l"], True),
    (["sh", "-c", "ls > out"], False),
    (["sh", "-c", "ls $(pwd)"], False),
    (["sudo", "ls"], False),
    (["./ls"], False),
])
def test_safe_list(argv, safe, tmp_path):
    assert CommandRules(()).decide(argv, env=SYSTEM_ENV, cwd=str(tmp_path)).safe is safe


def test_hosts_are_data():
    host = HostExecutable("git", ("/usr/bin/git",), "x:1")
    assert CommandRules((), (host,)) == CommandRules((), (host,))


def test_deciding_a_plain_argv_does_not_load_the_shell_parser():
    """Start-up cost: tree-sitter is imported for the first script, never for an argv."""
    import subprocess
    import sys

    src = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src")
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "from ringfence.policy.commands import CommandRules, CommandRule;"
            "r = CommandRules((CommandRule(('rm', '-rf'), 'forbidden', 'x', 'x'),));"
            "r.decide(['env', 'timeout', '5', '/usr/bin/rm', '-rf', 'x']);"
            "print('tree_sitter' in sys.modules, 'ast' in sys.modules);"
            "r.decide(['sh', '-c', 'ls']); print('tree_sitter' in sys.modules)")
    out = subprocess.run([sys.executable, "-P", "-c", code, src], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True"]


@pytest.mark.parametrize("script", ["ls $(pwd)", "eval ls", "$CMD -la", "source ./x.sh", "ls &&"])
def test_what_cannot_be_checked_asks_only_where_a_prompt_or_forbidden_rule_could_hide(script):
    allow_only = CommandRules((CommandRule(("ls",), ALLOW, "x", "ls"),))
    decision = allow_only.decide(["sh", "-c", script], env=SYSTEM_ENV, cwd="/tmp")
    assert decision.decision == NO_RULE and "cannot be checked" in decision.why  # never allow
    assert not decision.safe  # so `untrusted` still asks
    guarded = allow_only.extended([CommandRule(("docker",), FORBIDDEN, "y", "docker")])
    assert guarded.decide(["sh", "-c", script], env=SYSTEM_ENV, cwd="/tmp").decision == PROMPT
    asks = allow_only.extended([CommandRule(("git", "push"), PROMPT, "z", "git push")])
    assert asks.decide(["sh", "-c", script], env=SYSTEM_ENV, cwd="/tmp").decision == PROMPT
