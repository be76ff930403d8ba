"""An untrusted project's configuration may ask more, never less: its
`approval_policy` and `[[rules]]` are measured against the user's own, as
its filesystem and network keys are."""

from __future__ import annotations

import pytest

from ringfence.errors import ConfigError


def _load(tmp_path, monkeypatch, user: str, project: str, *, trusted: bool = False):
    from ringfence.sandbox import load_policy

    monkeypatch.delenv("RINGFENCE_CONFIG_DIR", raising=False)
    home, root = tmp_path / "home", tmp_path / "project"
    (home / ".ringfence").mkdir(parents=True)
    (root / ".git").mkdir(parents=True)
    (root / ".ringfence").mkdir()
    if trusted:
        user += f'\n[projects."{root}"]\ntrust_level = "trusted"\n'
    (home / ".ringfence" / "config.toml").write_text(user)
    (root / ".ringfence" / "config.toml").write_text(project)
    return load_policy(str(root), home=str(home), env={"PATH": "/usr/bin:/bin"})


FORBID_DOCKER = '[[rules]]\nprefix = "docker"\nallow = false\n'

# (the user's configuration, the project's, whether the project loosens it)
CASES = [
    ('approval_policy = "untrusted"\n', 'approval_policy = "on-request"\n', True),
    ('approval_policy = "untrusted"\n', 'approval_policy = "never"\n', True),        # unmatched commands run
    ('approval_policy = "on-request"\n', 'approval_policy = "on-failure"\n', True),  # offers runs outside
    ('approval_policy = "never"\n', 'approval_policy = "on-request"\n', True),       # asks where never refuses
    ("", 'approval_policy = "on-failure"\n', True),                                  # on-request by default
    ('approval_policy = "on-request"\n' + FORBID_DOCKER, 'approval_policy = "never"\n', False),  # refuses more
    ('approval_policy = "on-request"\n', 'approval_policy = "untrusted"\n', False),
    ('approval_policy = "on-failure"\n', 'approval_policy = "on-request"\n', False),
    ('approval_policy = "on-request"\n', 'approval_policy = "on-request-rule"\n', False),
    ('approval_policy = "untrusted"\n', '[[rules]]\nprefix = "make"\nallow = true\n', True),
    ('approval_policy = "on-request"\n' + FORBID_DOCKER,
     '[[rules]]\nprefix = "sh -c \'docker run x $(id)\'"\nallow = true\n', True),
    ('approval_policy = "on-request"\n' + FORBID_DOCKER, '[[rules]]\nprefix = "env FOO=1"\nallow = true\n', True),
    ('approval_policy = "on-request"\n' + FORBID_DOCKER, '[[rules]]\nprefix = "npm test"\nallow = true\n', False),
    ('approval_policy = "untrusted"\n', '[[rules]]\nprefix = "curl"\nallow = false\n', False),
    ('approval_policy = "untrusted"\n', '[[rules]]\nprefix = "git push"\ndecision = "prompt"\n', False),
]


@pytest.mark.parametrize("user, project, loosens", CASES)
def test_an_untrusted_project_may_only_ask_more(tmp_path, monkeypatch, user, project, loosens):
    if not loosens:
        _load(tmp_path, monkeypatch, user, project)
        return
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, monkeypatch, user, project)
    message = str(info.value)
    assert "would loosen the sandbox" in message and ("approval_policy" in message or "rules:" in message)
    assert "trust_level" in info.value.hint


@pytest.mark.parametrize("user, project, loosens", [case for case in CASES if case[2]])
def test_a_trusted_project_may_loosen_approvals(tmp_path, monkeypatch, user, project, loosens):
    _load(tmp_path, monkeypatch, user, project, trusted=True)


def test_the_refusal_says_which_situation_loosens(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, monkeypatch, 'approval_policy = "untrusted"\n', 'approval_policy = "on-request"\n')
    assert ("approval_policy untrusted -> on-request: a command no rule matches (and not on the read-only list): "
            "ask -> run") in str(info.value)


def test_a_project_allow_cannot_outvote_the_users_forbidden_rule(tmp_path, monkeypatch):
    """Not a loosening, because it changes nothing: the strictest rule wins."""
    from ringfence.policy.commands import FORBIDDEN

    policy = _load(tmp_path, monkeypatch, FORBID_DOCKER, '[[rules]]\nprefix = "docker run"\nallow = true\n')
    assert policy.commands.decide(["docker", "run", "x"]).decision == FORBIDDEN
