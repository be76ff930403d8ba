"""EnvironmentPolicy.apply: the order of the steps is the whole semantics.

inherit -> default excludes -> exclude -> set -> include_only -> added.
"""

import pytest

from ringfence.config import load_config
from ringfence.policy import build_policy
from ringfence.policy.environment import EnvironmentPolicy

SOURCE = {
    "PATH": "/usr/bin",
    "HOME": "/home/u",
    "LANG": "C.UTF-8",
    "LC_ALL": "C",
    "TMPDIR": "/tmp/u",
    "EDITOR": "vi",
    "AWS_REGION": "eu-west-1",
    "AWS_SECRET_ACCESS_KEY": "s3cr3t-aws",
    "GITHUB_TOKEN": "ghp_value",
    "api_key": "lower-case-value",
    "MonkeyBusiness": "has-key-inside",
    "Client_Secret": "mixed-case-value",
}
SECRET_VALUES = ("s3cr3t-aws", "ghp_value", "lower-case-value", "has-key-inside", "mixed-case-value")


def apply(**fields):
    return EnvironmentPolicy(**fields).apply(SOURCE)


def reasons(result):
    return dict(result.dropped)


def test_inherit_all_keeps_everything_but_the_default_excludes():
    result = apply(inherit="all")
    assert result.env == {k: v for k, v in SOURCE.items()
                          if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "EDITOR", "AWS_REGION")}


def test_inherit_core_keeps_only_core_names_and_lc_prefix():
    result = apply(inherit="core")
    assert set(result.env) == {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}
    assert reasons(result)["EDITOR"] == "inherit = core"
    assert reasons(result)["AWS_REGION"] == "inherit = core"


def test_inherit_core_is_case_sensitive_about_names():
    result = EnvironmentPolicy(inherit="core").apply({"path": "/x", "PATH": "/usr/bin", "lc_all": "C"})
    assert result.env == {"PATH": "/usr/bin"}


def test_inherit_none_keeps_nothing():
    result = apply(inherit="none")
    assert result.env == {}
    assert {name for name, _ in result.dropped} == set(SOURCE)
    assert all(reason == "inherit = none" for _, reason in result.dropped)


def test_default_excludes_are_on_by_default_and_case_insensitive():
    result = apply()
    dropped = reasons(result)
    assert dropped["GITHUB_TOKEN"] == "default exclude *TOKEN*"
    assert dropped["api_key"] == "default exclude *KEY*"
    assert dropped["MonkeyBusiness"] == "default exclude *KEY*"
    assert dropped["Client_Secret"] == "default exclude *SECRET*"
    # The first matching pattern is the one reported, and a name is dropped once.
    assert dropped["AWS_SECRET_ACCESS_KEY"] == "default exclude *KEY*"
    assert [name for name, _ in result.dropped].count("AWS_SECRET_ACCESS_KEY") == 1


def test_ignore_default_excludes_turns_the_scrub_off():
    result = apply(ignore_default_excludes=True)
    assert result.env == SOURCE
    assert result.dropped == ()


def test_exclude_wildcards_are_case_insensitive():
    result = apply(exclude=("aws_*", "L?NG", "EDITOR"))
    assert "AWS_REGION" not in result.env
    assert "LANG" not in result.env
    assert "EDITOR" not in result.env
    assert "LC_ALL" in result.env
    assert reasons(result)["AWS_REGION"] == "exclude aws_*"
    assert reasons(result)["LANG"] == "exclude L?NG"


def test_exclude_applies_after_inherit_and_does_not_resurrect():
    result = apply(inherit="core", exclude=("PATH",))
    assert "PATH" not in result.env
    assert "EDITOR" not in result.env


def test_set_comes_after_the_default_excludes():
    result = apply(set=(("FOO_TOKEN", "from-config"), ("GITHUB_TOKEN", "replacement")))
    assert result.env["FOO_TOKEN"] == "from-config"
    assert result.env["GITHUB_TOKEN"] == "replacement"


def test_set_comes_after_exclude():
    result = apply(exclude=("EDITOR",), set=(("EDITOR", "nano"),))
    assert result.env["EDITOR"] == "nano"


def test_set_works_with_inherit_none():
    result = apply(inherit="none", set=(("ONLY", "1"),))
    assert result.env == {"ONLY": "1"}


def test_include_only_comes_last_and_can_drop_set_variables():
    result = apply(set=(("FOO_TOKEN", "x"), ("KEEP_ME", "y")), include_only=("PATH", "keep_*"))
    assert result.env == {"PATH": "/usr/bin", "KEEP_ME": "y"}
    assert reasons(result)["FOO_TOKEN"] == "not in include_only"
    assert reasons(result)["HOME"] == "not in include_only"


def test_include_only_cannot_bring_back_an_excluded_variable():
    result = apply(include_only=("GITHUB_TOKEN", "PATH"))
    assert result.env == {"PATH": "/usr/bin"}


def test_added_variables_come_after_everything():
    added = (("RINGFENCE_SANDBOX", "1"), ("TMPDIR", "/tmp"))
    result = apply(inherit="none", set=(("RINGFENCE_SANDBOX", "0"),), include_only=("NOTHING",), added=added)
    assert result.env == {"RINGFENCE_SANDBOX": "1", "TMPDIR": "/tmp"}


def test_added_overrides_an_inherited_value():
    result = apply(added=(("TMPDIR", "/tmp"),))
    assert result.env["TMPDIR"] == "/tmp"


@pytest.mark.parametrize("fields", [
    {},
    {"inherit": "core"},
    {"inherit": "none"},
    {"exclude": ("*",)},
    {"include_only": ("PATH",)},
])
def test_dropped_holds_names_and_reasons_never_values(fields):
    result = apply(**fields)
    assert result.dropped == tuple(sorted(result.dropped))
    for entry in result.dropped:
        assert len(entry) == 2
        name, reason = entry
        assert name in SOURCE
        for value in SECRET_VALUES:
            assert value not in reason
    assert not set(SECRET_VALUES) & {item for entry in result.dropped for item in entry}


def test_source_mapping_is_not_modified():
    before = dict(SOURCE)
    apply(inherit="none", set=(("X", "1"),))
    assert SOURCE == before


def test_the_built_policy_scrubs_by_default_and_marks_the_sandbox(tmp_path, monkeypatch):
    monkeypatch.setenv("RINGFENCE_CONFIG_DIR", str(tmp_path / "userconf"))
    monkeypatch.setenv("RINGFENCE_STATE_DIR", str(tmp_path / "state"))
    ws = tmp_path / "ws"
    (ws / ".git").mkdir(parents=True)
    policy = build_policy(load_config(cwd=str(ws), home=str(tmp_path / "home")), env={})
    env = policy.environment
    assert env.inherit == "all"
    assert env.ignore_default_excludes is False
    result = env.apply({"GITHUB_TOKEN": "t", "PATH": "/usr/bin"})
    assert "GITHUB_TOKEN" not in result.env
    assert result.env["RINGFENCE_SANDBOX"] == "1"


def test_the_built_policy_reads_every_key_from_config(tmp_path, monkeypatch):
    monkeypatch.setenv("RINGFENCE_CONFIG_DIR", str(tmp_path / "userconf"))
    monkeypatch.setenv("RINGFENCE_STATE_DIR", str(tmp_path / "state"))
    ws = tmp_path / "ws"
    (ws / ".git").mkdir(parents=True)
    given = tmp_path / "given.toml"
    given.write_text('[shell_environment_policy]\ninherit = "core"\nignore_default_excludes = true\n'
                     'exclude = ["LANG"]\ninclude_only = ["PATH", "*TOKEN*", "B"]\n'
                     '[shell_environment_policy.set]\nB = "2"\nA = "1"\n')
    config = load_config(cwd=str(ws), home=str(tmp_path / "home"), config_files=[str(given)])
    env = build_policy(config, env={}).environment
    assert (env.inherit, env.ignore_default_excludes, env.exclude, env.include_only) == \
        ("core", True, ("LANG",), ("PATH", "*TOKEN*", "B"))
    assert env.set == (("A", "1"), ("B", "2"))
    result = env.apply({"PATH": "/usr/bin", "LANG": "C", "HOME": "/h", "GH_TOKEN": "t"})
    assert {k: v for k, v in result.env.items() if k not in dict(env.added)} == {"PATH": "/usr/bin", "B": "2"}
    assert reasons(result) == {"LANG": "exclude LANG", "HOME": "not in include_only", "A": "not in include_only",
                               "GH_TOKEN": "inherit = core"}


# -- what the default excludes catch, by name and by value ----------------------------------------

SURVIVED_BEFORE = {
    "GH_PAT": "x1", "GITLAB_PAT": "x2", "MYSQL_PWD": "x3", "CI_JOB_JWT": "x4", "AWS_CREDENTIALS": "x5",
    "GOOGLE_APPLICATION_CREDENTIALS": "/k.json", "NPM_CONFIG__AUTH": "x6", "DOCKER_AUTH_CONFIG": "{}",
    "SENTRY_DSN": "https://k@sentry.io/1", "SESSION_COOKIE": "x7", "BROWSER_SESSION": "x8",
    "GPG_PASSPHRASE": "x9", "DB_PW": "x10",
}


@pytest.mark.parametrize("name", sorted(SURVIVED_BEFORE))
def test_credential_names_of_ci_systems_and_tools_are_dropped(name):
    result = EnvironmentPolicy().apply({name: SURVIVED_BEFORE[name], "PATH": "/usr/bin"})
    assert name not in result.env and "default exclude" in dict(result.dropped)[name]


SHAPES = {
    "DATABASE_URL": "postgres://app:hunter2@db.internal:5432/prod",
    "REDIS_URL": "redis://:pa55@cache:6379/0",
    "MY_VAR": "ghp_" + "a" * 36,
    "NEWER_GH": "github_pat_" + "A1b2" * 12,
    "CI_THING": "glpat-" + "x" * 20,
    "SLACK_HOOKISH": "xoxb-1234-5678-abcdefghijkl",
    "OPENAI": "sk-" + "Z" * 40,
    "AWS_ID": "AKIAIOSFODNN7EXAMPLE",
    "PLAIN_BEARER": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "PEM": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----",
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_secrets_under_innocent_names_are_dropped_by_their_shape(name):
    result = EnvironmentPolicy().apply({name: SHAPES[name]})
    assert name not in result.env
    assert "looks like" in dict(result.dropped)[name]


KEPT = {
    "PWD": "/work", "OLDPWD": "/", "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@x", "SSH_AUTH_SOCK": "/run/a",
    "PATH": "/usr/bin", "LANG": "sk-SK.UTF-8", "HOMEPAGE": "https://user@example.com/x", "PIP_INDEX_URL":
        "https://pypi.org/simple", "GIT_SSH_URL": "ssh://git@github.com/x/y", "SHORT": "sk-123",
    "EDITOR": "vim", "TERM": "xterm-256color", "AWS_REGION": "eu-west-1",
}


def test_ordinary_variables_are_kept():
    result = EnvironmentPolicy().apply(KEPT)
    assert result.env == KEPT, dict(result.dropped)


def test_shapes_are_not_scanned_when_the_default_excludes_are_off():
    result = EnvironmentPolicy(ignore_default_excludes=True).apply({"DATABASE_URL": SHAPES["DATABASE_URL"]})
    assert "DATABASE_URL" in result.env


# -- more names, the names kept although the patterns catch them -----------------------------------

@pytest.mark.parametrize("name", ["DB_PASS", "SMTP_PASS", "redis_pass", "PGPASS", "pgpass"])
def test_pass_names_are_dropped(name):
    result = EnvironmentPolicy().apply({name: "x1"})
    assert name not in result.env and "default exclude" in dict(result.dropped)[name]


HARMLESS = {
    "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", "TOKENIZERS_PARALLELISM": "false",
    "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus", "XDG_SESSION_TYPE": "wayland",
    "XDG_SESSION_ID": "2", "XDG_SESSION_CLASS": "user", "XDG_SESSION_DESKTOP": "gnome", "DESKTOP_SESSION": "ubuntu",
    "SESSION_MANAGER": "local/host:@/tmp/.ICE-unix/1234,unix/host:/tmp/.ICE-unix/1234",
    "KDE_SESSION_VERSION": "5", "GIT_ASKPASS": "/usr/lib/git-core/git-gui--askpass",
    "SSH_ASKPASS": "/usr/bin/ksshaskpass", "PGPASSFILE": "/home/u/.pgpass",
}


def test_harmless_names_the_patterns_catch_are_kept():
    result = EnvironmentPolicy().apply(HARMLESS)
    assert result.env == HARMLESS, dict(result.dropped)


def test_harmless_names_are_spelled_exactly_and_their_values_still_judged():
    result = EnvironmentPolicy().apply({"tokenizers_parallelism": "false", "XDG_SESSION_COOKIE": "c00k1e",
                                        "DESKTOP_SESSION": "postgres://u:pw@db/x"})
    dropped = dict(result.dropped)
    assert dropped["tokenizers_parallelism"] == "default exclude *TOKEN*"
    assert dropped["XDG_SESSION_COOKIE"] == "default exclude *COOKIE*"
    assert "URL with a password" in dropped["DESKTOP_SESSION"]


# -- more shapes: connection strings, DSNs, webhooks, tokens inside a longer value ----------------

GITHUB = "ghp_" + "aB3" * 12
MORE_SHAPES = {
    "ADO": ("Server=db;Database=app;User Id=app;Password=hunter2;", "connection string"),
    "ODBC": ("Driver={ODBC Driver 18};Server=db;UID=app; pwd = hunter2", "connection string"),
    "AZURE_STORAGE": ("DefaultEndpointsProtocol=https;AccountName=acct;accountkey=abc123==;"
                      "EndpointSuffix=core.windows.net", "connection string"),
    "SERVICE_BUS": ("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=abc=",
                    "connection string"),
    "GO_DATABASE": ("root:hunter2@tcp(127.0.0.1:3306)/app?parseTime=true", "database address"),
    "GO_SOCKET_DATABASE": ("app:hunter2@unix(/run/mysqld/mysqld.sock)/app", "database address"),
    "PIP_EXTRA_INDEX_URL": ("https://pypi.org/simple https://u:tok@pkgs.example/simple", "URL with a password"),
    "NOTIFY": ("https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXX", "Slack webhook"),
    "ALERTS": ("https://discord.com/api/webhooks/1234567/abcdefgh-ijkl", "Discord webhook"),
    "HEADER": ("Authorization: Bearer " + GITHUB, "GitHub token"),
    "CLONE_ARGS": ("--token=github_pat_" + "11AbC" * 10, "GitHub token"),
    "GITLAB_ARGS": ("-H 'PRIVATE-TOKEN: glpat-" + "xY9" * 7 + "'", "GitLab token"),
    "SLACK_ARGS": ("--auth xoxb-123456789012-1234567890123-AbCdEfGhIjKl", "Slack token"),
    "ANTHROPIC": ("key=sk-ant-api03-" + "Ab9" * 30, "Anthropic API key"),
    "OPENAI_ARGS": ("--key sk-proj-" + "Zq4" * 20, "sk-"),
    "AWS_ARGS": ("--id AKIAIOSFODNN7EXAMPLE --region eu-west-1", "AWS access key id"),
    "NPM_LINE": ("//registry.npmjs.org/:_authToken=npm_" + "aB1" * 12, "npm token"),
}


@pytest.mark.parametrize("name", sorted(MORE_SHAPES))
def test_secrets_inside_longer_values_are_dropped_by_their_shape(name):
    value, what = MORE_SHAPES[name]
    result = EnvironmentPolicy().apply({name: value})
    assert name not in result.env
    assert "looks like" in dict(result.dropped)[name] and what in dict(result.dropped)[name]


LOOK_ALIKES = {
    "LS_COLORS": "rs=0:di=01;34:ln=01;36:pi=40;33:so=01;35:*.tar=01;31:*.pwd=01;31:*.key=01;31",
    "CONNECTION": "Server=db;Database=app;Trusted_Connection=True;SharedAccessKeyName=Root",
    "CONNECTION_BLANK": "Server=db;Password=;",
    "GO_DATABASE_USER_ONLY": "root@tcp(db:3306)/app",
    "QUERY": "https://example.com/search?q=a:b@c",
    "GOPROXY": "https://proxy.golang.org,direct",
    "DOCS": "see https://hooks.slack.com/services/ for the format",
    "PYTHONPATH": "/opt/sk-learn-contrib-extensions/src:/opt/npm_global_packages_directory/lib",
    "TASK": "build task-abcdefghijklmnopqrstuvwxyz0123 done",
    "GIT_SSH_COMMAND": "ssh -i /keys/deploy -o StrictHostKeyChecking=no",
    "JAVA_OPTS": "-Xmx2g -Dfile.encoding=UTF-8 -Djava.awt.headless=true",
    "CI_HOST": "build sk-runner-eu-west.internal.example.com",
}


def test_values_that_only_look_alike_are_kept():
    result = EnvironmentPolicy().apply(LOOK_ALIKES)
    assert result.env == LOOK_ALIKES, dict(result.dropped)
