"""`.rules` files: read as data, never run; errors name file, line and example;
loaded from the user's directory and only a trusted project's."""

from __future__ import annotations

import os
import textwrap

import pytest

from ringfence.policy.commands import ALLOW, FORBIDDEN, NO_RULE, PROMPT
from ringfence.policy.rules_file import RulesError, load_rules_file, parse_rules, rule_text


def parse(text: str, path="test.rules"):
    return parse_rules(textwrap.dedent(text), path)


def test_the_documented_example_reads():
    loaded = parse("""
        # comments are fine
        prefix_rule(pattern=["git", ["status", "diff", "log"]], decision="allow",
                    match=["git status"], not_match=["git push"])
        prefix_rule(pattern=["git", "push"], decision="prompt", justification="publishes code")
        prefix_rule(pattern=["rm", "-rf"], decision="forbidden")
        host_executable(name="git", paths=["/usr/bin/git", "/opt/git/bin/git"])
    """)
    assert [r.decision for r in loaded.rules] == [ALLOW, PROMPT, FORBIDDEN]
    assert loaded.rules[0].pattern == ("git", ("status", "diff", "log"))
    assert loaded.rules[1].justification == "publishes code"
    assert loaded.rules[1].origin == "test.rules:5"
    assert loaded.host_executables[0].paths == ("/usr/bin/git", "/opt/git/bin/git")


def test_examples_may_be_lists_and_a_one_item_alternative_is_the_token():
    loaded = parse('prefix_rule(pattern=["gh", ["pr"], "view"], decision="prompt", '
                   'match=[["gh", "pr", "view", "--repo", "x"]], not_match=["gh pr --repo x view 1"])\n')
    assert loaded.rules[0].pattern == ("gh", "pr", "view")


@pytest.mark.parametrize("text, line, words", [
    ('prefix_rule(pattern=["git", "push"], decision="allow", match=["git pull"])', 1, ["git pull", "does not match"]),
    ('prefix_rule(pattern=["git"], decision="allow",\n  not_match=["git status"])', 2, ["git status", "matches"]),
    ('prefix_rule(pattern=["git"])', 1, ["no decision", "never assumes allow"]),
    ('prefix_rule(pattern=["git"], decision="maybe")', 1, ["'maybe'"]),
    ('prefix_rule(decision="allow")', 1, ["pattern"]),
    ('prefix_rule(pattern=[], decision="allow")', 1, ["non-empty"]),
    ('prefix_rule(pattern=["a", ""], decision="allow")', 1, ["non-empty"]),
    ('prefix_rule(pattern=["a"], decision="allow", colour="red")', 1, ["'colour'"]),
    ('prefix_rule(["a"], "allow")', 1, ["by name"]),
    ('\n\nprefix_rule(pattern=["a"], decision="allow"', 3, ["not a rules file"]),
    ('host_executable(name="git")', 1, ["paths"]),
    ('host_executable(name="git", paths=["git"])', 1, ["not absolute"]),
    ('prefix_rule(pattern=["a"], decision="allow", match=["\'unclosed"])', 1, ["cannot be split"]),
])
def test_errors_name_file_line_and_example(text, line, words):
    with pytest.raises(RulesError) as info:
        parse_rules(text, "/home/u/.ringfence/rules/x.rules")
    message = str(info.value)
    assert message.startswith(f"/home/u/.ringfence/rules/x.rules:{line}:"), message
    for word in words:
        assert word in message


# Each of these would create MARKER if any part of it were executed as Python.
CODE = [
    'import os; os.system("touch MARKER")',
    '__import__("os").system("touch MARKER")',
    'prefix_rule(pattern=[__import__("os").system("touch MARKER")], decision="allow")',
    'prefix_rule(pattern=["a"], decision="allow", justification=open("MARKER", "w").name)',
    'prefix_rule(pattern=[x for x in [open("MARKER", "w")]], decision="allow")',
    'prefix_rule(pattern=["a"], decision=(lambda: open("MARKER", "w"))())',
    'prefix_rule(pattern=[f"{open(\'MARKER\', \'w\')}"], decision="allow")',
    'load("//x.star", "y")\nopen("MARKER", "w")',
    'rules = ["a"]\nprefix_rule(pattern=rules, decision="allow")',
    'prefix_rule(pattern=["a"], decision=ALLOW)',
    'prefix_rule(pattern=["a"] + [open("MARKER", "w").name], decision="allow")',
    'prefix_rule(pattern=["a"], decision="allow", **{"justification": open("MARKER", "w").name})',
    'def f():\n    open("MARKER", "w")\nf()',
    'for i in [1]:\n    open("MARKER", "w")',
    'os.path.join("a")',
    'prefix_rule(pattern=["a"], decision="allow").__class__',
    'open("MARKER", "w")',
    'prefix_rule(pattern=["a"], decision="allow")\nexec("open(\'MARKER\', \'w\')")',
    'prefix_rule(pattern=[b"a"], decision="allow")',
    'prefix_rule(pattern=[1], decision="allow")',
]


@pytest.mark.parametrize("text", CODE)
def test_a_file_that_tries_to_run_code_is_refused_and_nothing_runs(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.rules"
    path.write_text(text + "\n")
    with pytest.raises(RulesError) as info:
        load_rules_file(str(path))
    assert str(info.value).startswith(f"{path}:")
    assert not (tmp_path / "MARKER").exists()


def test_control_the_same_text_executed_as_python_would_have_run(tmp_path, monkeypatch):
    """The refusals above mean something: run as Python, these texts do create the marker."""
    monkeypatch.chdir(tmp_path)
    ran = 0
    for text in (CODE[0], CODE[1], CODE[16], CODE[12]):
        exec(compile(text, "evil.rules", "exec"), {})  # noqa: S102 - the control
        ran += (tmp_path / "MARKER").exists()
        (tmp_path / "MARKER").unlink(missing_ok=True)
    assert ran == 4


def test_a_symlinked_rules_file_is_refused(tmp_path):
    real = tmp_path / "real.rules"
    real.write_text('prefix_rule(pattern=["a"], decision="allow")\n')
    os.symlink(real, tmp_path / "link.rules")
    with pytest.raises(RulesError, match="symlink"):
        load_rules_file(str(tmp_path / "link.rules"))


def test_rule_text_reads_back_as_the_same_rule():
    words = ("sh", "-c", "echo \"$(date)\" 'x'\n\\", "é")
    loaded = parse_rules(rule_text(words, justification="because\n") + "\n", "r.rules")
    assert loaded.rules[0].pattern == words and loaded.rules[0].decision == ALLOW
    assert loaded.rules[0].justification == "because\n"


# -- where rules come from ---------------------------------------------------------------

def _policy(tmp_path, *, trusted: bool, config: str = ""):
    from ringfence.sandbox import load_policy

    home = tmp_path / "home"
    project = tmp_path / "project"
    (home / ".ringfence" / "rules").mkdir(parents=True, exist_ok=True)
    (project / ".git").mkdir(parents=True, exist_ok=True)
    (project / ".ringfence" / "rules").mkdir(parents=True, exist_ok=True)
    user_config = config
    if trusted:
        user_config += f'\n[projects."{project}"]\ntrust_level = "trusted"\n'
    (home / ".ringfence" / "config.toml").write_text(user_config)
    return home, project, lambda: load_policy(str(project), home=str(home), env={"PATH": "/usr/bin:/bin"})


@pytest.fixture
def own_config_dir(monkeypatch):
    monkeypatch.delenv("RINGFENCE_CONFIG_DIR", raising=False)


@pytest.mark.parametrize("trusted", [True, False])
def test_project_rules_load_only_for_a_trusted_project(tmp_path, own_config_dir, trusted):
    home, project, load = _policy(tmp_path, trusted=trusted)
    (home / ".ringfence" / "rules" / "default.rules").write_text(
        'prefix_rule(pattern=["curl"], decision="forbidden")\n')
    (project / ".ringfence" / "rules" / "project.rules").write_text(
        'prefix_rule(pattern=["npm", "publish"], decision="allow")\n')
    policy = load()
    assert policy.commands.decide(["curl", "x"]).decision == FORBIDDEN
    expected = ALLOW if trusted else NO_RULE
    assert policy.commands.decide(["npm", "publish"]).decision == expected
    assert (str(project / ".ringfence" / "rules" / "project.rules") in policy.commands.files) is trusted


def test_toml_and_rules_files_add_up_and_the_strictest_wins(tmp_path, own_config_dir):
    config = '[[rules]]\nprefix = "git push"\nallow = true\n\n[[rules]]\nprefix = "make deploy"\n' \
             'decision = "prompt"\njustification = "touches production"\n'
    home, project, load = _policy(tmp_path, trusted=False, config=config)
    (home / ".ringfence" / "rules" / "a.rules").write_text(
        'prefix_rule(pattern=["git", "push"], decision="forbidden", justification="not from here")\n')
    policy = load()
    decision = policy.commands.decide(["git", "push"])
    assert decision.decision == FORBIDDEN and "not from here" in decision.why
    assert {m.decision for m in decision.matches} == {ALLOW, FORBIDDEN}
    prompt = policy.commands.decide(["make", "deploy"])
    assert prompt.decision == PROMPT and prompt.rule.justification == "touches production"
    assert prompt.rule.label == '[[rules]] prefix = "make deploy" decision = "prompt"'


def test_a_broken_rules_file_stops_the_policy_loudly(tmp_path, own_config_dir):
    from ringfence.errors import ConfigError

    home, project, load = _policy(tmp_path, trusted=False)
    (home / ".ringfence" / "rules" / "bad.rules").write_text(
        'prefix_rule(pattern=["git"], decision="allow", match=["hg status"])\n')
    with pytest.raises(ConfigError) as info:
        load()
    assert "bad.rules:1" in str(info.value) and "hg status" in str(info.value)


@pytest.mark.parametrize("text, message", [
    ('[[rules]]\nprefix = "x"\nallow = true\ndecision = "prompt"\n', "not both"),
    ('[[rules]]\nprefix = "x"\ndecision = "ask"\n', '"ask" is not a valid value'),
    ('approval_policy = "granular"\n', "granular approval"),
    ('approval_policy = { granular = { sandbox_approval = true } }\n', "granular approval"),
])
def test_rules_and_approval_keys_are_validated(tmp_path, own_config_dir, text, message):
    from ringfence.errors import ConfigError

    home, project, load = _policy(tmp_path, trusted=False, config=text)
    with pytest.raises(ConfigError) as info:
        load()
    assert message in str(info.value)


def test_on_request_rule_is_accepted(tmp_path, own_config_dir):
    home, project, load = _policy(tmp_path, trusted=False, config='approval_policy = "on-request-rule"\n')
    assert load().approval_policy == "on-request-rule"


def test_a_cached_reading_is_reused_only_for_the_identical_file(tmp_path):
    path = tmp_path / "r.rules"
    cache = tmp_path / "cache"
    path.write_text('prefix_rule(pattern=["git", ["a", "b"]], decision="allow", justification="j")\n')
    first = load_rules_file(str(path), cache_dir=str(cache))
    assert list(cache.iterdir())
    assert load_rules_file(str(path), cache_dir=str(cache)) == first
    path.write_text('prefix_rule(pattern=["git"], decision="allow", match=["hg"])\n')  # now invalid
    with pytest.raises(RulesError, match="'hg' does not match"):
        load_rules_file(str(path), cache_dir=str(cache))
