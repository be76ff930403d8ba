"""Which layer wins, how profiles are chosen and expanded, and why an
untrusted project's own configuration can only tighten the sandbox.

Layers, weakest first: built-in, user, project, --config files, -c, flags.
"""

import os
import textwrap

import pytest

from ringfence.config import find_project_root, load_config
from ringfence.errors import ConfigError
from ringfence.policy import build_policy
from ringfence.policy.filesystem import NONE, READ, WRITE
from ringfence.sandbox import load_policy


# tmp_path lives under /tmp, which every sandbox replaces with a private
# tmpfs; anything meant to stand for "the rest of the host" must be outside
# it. Nothing is created at these paths: decisions do not need the disk.
HOME = "/srv/ringfence-unit-tests/home"
ELSEWHERE = "/srv/ringfence-unit-tests/elsewhere"
assert not os.path.lexists("/srv/ringfence-unit-tests")


class World:
    def __init__(self, root):
        self.root = root
        self.home = HOME
        self.ws = str(root / "ws")
        self.user_dir = str(root / "userconf")
        os.makedirs(os.path.join(self.ws, ".git"))
        self.env = {"PATH": "/usr/bin:/bin", "HOME": self.home, "LANG": "C.UTF-8", "FOO": "bar"}

    def write(self, path, text):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(textwrap.dedent(text))
        return path

    def path(self, relative):
        return os.path.join(str(self.root), relative)

    @property
    def user_file(self):
        return os.path.join(self.user_dir, "config.toml")

    @property
    def project_file(self):
        return os.path.join(self.ws, ".ringfence", "config.toml")

    def user(self, text):
        return self.write(self.user_file, text)

    def project(self, text):
        return self.write(self.project_file, text)

    def config_file(self, text, name="given.toml"):
        return self.write(self.path(name), text)

    def load(self, **kwargs):
        kwargs.setdefault("cwd", self.ws)
        kwargs.setdefault("home", self.home)
        return load_config(**kwargs)

    def build(self, env=None, **kwargs):
        return build_policy(self.load(**kwargs), env=self.env if env is None else env)

    def policy(self, **kwargs):
        kwargs.setdefault("home", self.home)
        kwargs.setdefault("env", self.env)
        return load_policy(kwargs.pop("cwd", self.ws), **kwargs)


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("RINGFENCE_CONFIG_DIR", str(tmp_path / "userconf"))
    monkeypatch.setenv("RINGFENCE_STATE_DIR", str(tmp_path / "state"))
    return World(tmp_path)


def access(policy, path):
    return policy.filesystem.access(path).access


def host_writable(policy, path):
    decision = policy.filesystem.access(path)
    return decision.access == WRITE and not decision.private


# -- layer order -----------------------------------------------------------------

def test_builtin_default_is_the_workspace_profile(world):
    policy = world.build()
    assert policy.profile == ":workspace"
    assert policy.profile_origin.startswith("default")
    assert host_writable(policy, world.ws)
    assert access(policy, ELSEWHERE) == READ
    assert access(policy, world.home) == READ
    assert access(policy, os.path.join(world.home, ".ssh", "id_ed25519")) == NONE


@pytest.mark.parametrize("text, expected", [("", "on-request"), ('approval_policy = "never"\n', "never")])
def test_approval_policy_reaches_the_policy(world, text, expected):
    # Regression: build() passed the default as a second key and always got None.
    given = world.config_file(text)
    assert world.build(config_files=[given]).approval_policy == expected


def test_each_layer_overrides_the_one_below(world):
    world.user('approval_policy = "untrusted"\n')
    config = world.load()
    assert config.get("approval_policy").source == world.user_file

    world.project('approval_policy = "on-failure"\n')
    config = world.load()
    assert config.get("approval_policy").source == world.project_file

    given = world.config_file('approval_policy = "never"\n')
    config = world.load(config_files=[given])
    assert config.get("approval_policy").source == given
    assert config.value("approval_policy") == "never"

    config = world.load(config_files=[given], overrides=["approval_policy=untrusted"])
    assert config.get("approval_policy").source == "-c approval_policy=untrusted"
    assert config.value("approval_policy") == "untrusted"

    config = world.load(config_files=[given], overrides=["approval_policy=untrusted"],
                        flags={"approval_policy": "on-failure"})
    assert config.get("approval_policy").source == "command-line flags"
    assert config.value("approval_policy") == "on-failure"
    assert [layer.name for layer in config.layers] == ["user", "project", "config-file", "override", "flags"]


def test_later_config_file_beats_earlier_one(world):
    first = world.config_file('sandbox_mode = "read-only"\n', name="one.toml")
    second = world.config_file('sandbox_mode = "danger-full-access"\n', name="two.toml")
    assert world.build(config_files=[first, second]).profile == ":danger-full-access"
    assert world.build(config_files=[second, first]).profile == ":read-only"


def test_later_override_beats_earlier_override(world):
    config = world.load(overrides=["sandbox_mode=read-only", "sandbox_mode=workspace-write"])
    assert config.value("sandbox_mode") == "workspace-write"


def test_tables_merge_key_by_key_across_layers(world):
    world.user('[shell_environment_policy]\ninherit = "core"\n')
    given = world.config_file('[shell_environment_policy]\nexclude = ["LANG"]\n')
    env = world.build(config_files=[given]).environment
    assert env.inherit == "core"
    assert env.exclude == ("LANG",)


def test_command_rules_add_up_and_the_strictest_wins(world):
    world.user('[[rules]]\nprefix = "git push"\nallow = false\n')
    given = world.config_file('[[rules]]\nprefix = "git"\nallow = true\n')
    rules = world.build(config_files=[given]).commands
    assert rules.decide(["git", "push", "origin"]).decision == "forbidden"
    assert rules.decide(["git", "status"]).decision == "allow"


def test_user_layer_can_be_skipped(world):
    world.user('sandbox_mode = "read-only"\n')
    assert world.build(read_user_config=False).profile == ":workspace"
    assert world.build().profile == ":read-only"


# -- profile selection -------------------------------------------------------------

CI_PROFILE = """
    [permissions.ci.filesystem]
    ":root" = "read"
    ":project_roots" = { "." = "read", "out" = "write" }
"""


def test_sandbox_mode_beats_default_permissions_in_the_same_layer(world):
    world.user('sandbox_mode = "read-only"\ndefault_permissions = "ci"\n' + textwrap.dedent(CI_PROFILE))
    policy = world.build()
    assert policy.profile == ":read-only"
    assert world.user_file in policy.profile_origin


def test_higher_default_permissions_beats_lower_sandbox_mode(world):
    world.user('sandbox_mode = "danger-full-access"\n' + textwrap.dedent(CI_PROFILE))
    given = world.config_file('default_permissions = "ci"\n')
    policy = world.build(config_files=[given])
    assert policy.profile == "ci"
    assert given in policy.profile_origin
    assert access(policy, os.path.join(world.ws, "src")) == READ
    assert access(policy, os.path.join(world.ws, "out", "x")) == WRITE


def test_higher_sandbox_mode_beats_lower_default_permissions(world):
    world.user('default_permissions = "ci"\n' + textwrap.dedent(CI_PROFILE))
    policy = world.build(overrides=["sandbox_mode=read-only"])
    assert policy.profile == ":read-only"
    assert "-c sandbox_mode=read-only" in policy.profile_origin


def test_permissions_flag_selects_a_profile_over_the_users_sandbox_mode(world):
    world.user('sandbox_mode = "read-only"\n' + textwrap.dedent(CI_PROFILE))
    policy = world.policy(permissions="ci")
    assert policy.profile == "ci"
    assert "command-line flags" in policy.profile_origin
    assert access(policy, os.path.join(world.ws, "out")) == WRITE


def test_sandbox_flag_and_permissions_flag_together_are_refused(world):
    with pytest.raises(ConfigError) as info:
        world.policy(sandbox_mode="read-only", permissions="ci")
    assert info.value.source == "command-line flags"


@pytest.mark.parametrize("mode, profile, sandboxed", [
    ("read-only", ":read-only", True),
    ("workspace-write", ":workspace", True),
    ("danger-full-access", ":danger-full-access", False),
])
def test_sandbox_mode_maps_to_the_builtin_profiles(world, mode, profile, sandboxed):
    policy = world.policy(sandbox_mode=mode)
    assert (policy.profile, policy.sandboxed) == (profile, sandboxed)
    assert host_writable(policy, os.path.join(world.ws, "f")) == (mode != "read-only")
    assert host_writable(policy, ELSEWHERE) == (mode == "danger-full-access")


def test_read_only_keeps_a_project_under_tmp_visible(world):
    # Regression: the project fell under the private /tmp and vanished from the sandbox.
    decision = world.policy(sandbox_mode="read-only").filesystem.access(os.path.join(world.ws, "f"))
    assert (decision.access, decision.private) == (READ, False)


def test_codex_profile_selection_is_applied(world):
    # Regression: [profiles.NAME] was validated and then silently dropped.
    given = world.config_file('profile = "safe"\nsandbox_mode = "workspace-write"\n'
                              '[profiles.safe]\nsandbox_mode = "read-only"\napproval_policy = "never"\n')
    policy = world.build(config_files=[given])
    assert policy.profile == ":read-only"
    assert policy.approval_policy == "never"


def test_codex_profile_is_laid_over_the_file_layers_but_under_the_command_line(world):
    world.user('profile = "safe"\n[profiles.safe]\nsandbox_mode = "read-only"\n')
    given = world.config_file('sandbox_mode = "danger-full-access"\n')
    assert world.build(config_files=[given]).profile == ":read-only"
    assert world.build(config_files=[given], overrides=["sandbox_mode=workspace-write"]).profile == ":workspace"


# -- extends -------------------------------------------------------------------------

def test_extends_inherits_and_overrides_per_key(world):
    outside = ELSEWHERE
    given = world.config_file(f"""
        default_permissions = "child"
        [permissions.base.filesystem]
        ":root" = "read"
        "{outside}/a" = "write"
        "{outside}/b" = "write"
        [permissions.base.network]
        enabled = true
        [permissions.child]
        extends = "base"
        [permissions.child.filesystem]
        "{outside}/b" = "read"
        "{outside}/c" = "none"
    """)
    policy = world.build(config_files=[given])
    assert access(policy, f"{outside}/a/x") == WRITE
    assert access(policy, f"{outside}/b/x") == READ
    assert access(policy, f"{outside}/c/x") == NONE
    assert access(policy, f"{outside}/d") == READ
    assert policy.network.mode == "full"


def test_extends_a_builtin_profile(world):
    given = world.config_file("""
        default_permissions = "net"
        [permissions.net]
        extends = ":read-only"
        [permissions.net.network]
        enabled = true
    """)
    policy = world.build(config_files=[given])
    assert access(policy, ELSEWHERE) == READ
    assert not host_writable(policy, os.path.join(world.ws, "f"))
    assert policy.network.mode == "full"


def test_extends_chain_of_three(world):
    given = world.config_file("""
        default_permissions = "c"
        [permissions.a.filesystem]
        ":root" = "read"
        [permissions.b]
        extends = "a"
        [permissions.b.filesystem]
        ":project_roots" = { "." = "write" }
        [permissions.c]
        extends = "b"
        [permissions.c.filesystem]
        ":project_roots" = { "." = "write", "vendor" = "read" }
    """)
    policy = world.build(config_files=[given])
    assert access(policy, "/usr") == READ
    assert access(policy, os.path.join(world.ws, "src")) == WRITE
    assert access(policy, os.path.join(world.ws, "vendor", "x")) == READ


# -- tokens, scoped tables, ~ ------------------------------------------------------------

def profile_config(world, body, **kwargs):
    given = world.config_file('default_permissions = "p"\n[permissions.p.filesystem]\n' + textwrap.dedent(body))
    return world.build(config_files=[given], **kwargs)


def test_project_roots_scoped_table(world):
    os.makedirs(os.path.join(world.ws, "docs"))
    policy = profile_config(world, """
        ":root" = "read"
        ":project_roots" = { "." = "write", "docs" = "read", "build/cache" = "none" }
    """)
    assert access(policy, os.path.join(world.ws, "src", "a.py")) == WRITE
    assert access(policy, os.path.join(world.ws, "docs", "x.md")) == READ
    assert access(policy, os.path.join(world.ws, "build", "cache", "o")) == NONE
    assert access(policy, os.path.join(world.ws, "build", "o")) == WRITE
    rule = policy.filesystem.access(os.path.join(world.ws, "docs")).rule
    assert rule.label == 'permissions.p.filesystem.":project_roots"."docs" = "read"'


def test_project_roots_and_workspace_roots_are_the_same(world):
    def decisions(token):
        policy = profile_config(world, f"""
            ":root" = "read"
            "{token}" = {{ "." = "write", "docs" = "read" }}
        """)
        return {path: rule.access for path, rule in policy.filesystem.index.items()}

    assert decisions(":project_roots") == decisions(":workspace_roots")
    assert decisions(":project_roots")[os.path.realpath(world.ws)] == WRITE


def test_root_token_is_slash(world):
    policy = profile_config(world, '":root" = "read"\n')
    assert policy.filesystem.index["/"].access == READ
    assert access(policy, "/opt/anything") == READ


def test_minimal_token_reads_system_paths_and_nothing_else(world):
    policy = profile_config(world, '":minimal" = "read"\n":project_roots" = { "." = "write" }\n')
    assert "/" not in policy.filesystem.index
    for path in ("/usr/bin", "/etc/passwd"):
        assert access(policy, path) == READ, path
    for path in ("/opt", "/root", "/home", ELSEWHERE):
        assert access(policy, path) == NONE, path
    assert host_writable(policy, os.path.join(world.ws, "a"))
    # The home is outside :minimal: only the workspace and system paths are visible.
    assert access(policy, os.path.join(world.home, "notes")) == NONE


def test_tmpdir_token_follows_the_given_environment(world):
    tmpdir = world.path("mytmp")
    os.makedirs(tmpdir)
    body = '":root" = "read"\n":tmpdir" = "write"\n'
    with_tmpdir = profile_config(world, body, env={"TMPDIR": tmpdir})
    assert host_writable(with_tmpdir, os.path.join(tmpdir, "f"))
    # A writable $TMPDIR is passed through rather than replaced with /tmp.
    assert with_tmpdir.environment.apply({"TMPDIR": tmpdir}).env["TMPDIR"] == tmpdir

    without = profile_config(world, body, env={})
    assert not host_writable(without, os.path.join(tmpdir, "f"))
    assert without.environment.apply({}).env["TMPDIR"] == "/tmp"

    relative = profile_config(world, body, env={"TMPDIR": "mytmp"})
    assert not host_writable(relative, os.path.join(tmpdir, "f"))


def test_slash_tmp_token_makes_host_tmp_writable_instead_of_private(world):
    default = profile_config(world, '":root" = "read"\n')
    assert default.filesystem.access("/tmp").private
    shared = profile_config(world, '":root" = "read"\n":slash_tmp" = "write"\n')
    decision = shared.filesystem.access("/tmp/x")
    assert decision.access == WRITE
    assert not decision.private


def test_tilde_expands_against_the_given_home(world):
    policy = profile_config(world, '":root" = "read"\n"~" = "none"\n"~/notes" = "write"\n')
    assert access(policy, os.path.join(world.home, "notes", "a")) == WRITE
    assert access(policy, os.path.join(world.home, "other")) == NONE
    assert access(policy, ELSEWHERE) == READ
    real_home = os.path.realpath(os.path.expanduser("~"))
    assert real_home not in policy.filesystem.index


def test_writable_roots_apply_to_workspace_write(world):
    extra = ELSEWHERE
    given = world.config_file(f"""
        sandbox_mode = "workspace-write"
        [sandbox_workspace_write]
        writable_roots = ["{extra}", "~/.cache"]
    """)
    policy = world.build(config_files=[given])
    assert access(policy, os.path.join(extra, "f")) == WRITE
    assert access(policy, os.path.join(world.home, ".cache", "pip")) == WRITE
    assert access(policy, os.path.join(world.home, "other")) == READ
    assert not host_writable(policy, "/srv/ringfence-unit-tests/elsewhere-not")


def test_writable_roots_do_not_apply_to_read_only(world):
    extra = ELSEWHERE
    given = world.config_file(f"""
        sandbox_mode = "read-only"
        [sandbox_workspace_write]
        writable_roots = ["{extra}"]
        network_access = true
    """)
    policy = world.build(config_files=[given])
    assert access(policy, os.path.join(extra, "f")) == READ
    assert policy.network.mode == "off"


def test_network_access_turns_on_the_network_for_workspace_write(world):
    given = world.config_file('[sandbox_workspace_write]\nnetwork_access = true\n')
    assert world.build(config_files=[given]).network.mode == "full"
    assert world.build().network.mode == "off"


# -- project root -------------------------------------------------------------------------

def test_project_root_is_the_nearest_ancestor_with_git(world):
    deep = os.path.join(world.ws, "pkg", "sub")
    os.makedirs(deep)
    assert world.load(cwd=deep).project_root == world.ws
    policy = world.build(cwd=deep)
    assert policy.project_roots == (os.path.realpath(world.ws),)
    assert access(policy, os.path.join(world.ws, "README")) == WRITE


def test_a_git_file_marks_a_project_root_too(world):
    inner = os.path.join(world.ws, "worktree")
    os.makedirs(os.path.join(inner, "src"))
    world.write(os.path.join(inner, ".git"), "gitdir: ../.git/worktrees/w\n")
    assert world.load(cwd=os.path.join(inner, "src")).project_root == inner


def test_custom_project_root_markers(world):
    deep = os.path.join(world.ws, "pkg", "sub")
    os.makedirs(deep)
    world.write(os.path.join(world.ws, "pkg", "pyproject.toml"), "")
    world.user('project_root_markers = ["pyproject.toml"]\n')
    assert world.load(cwd=deep).project_root == os.path.join(world.ws, "pkg")


def test_project_root_search_stops_below_home(tmp_path):
    home = tmp_path / "home"
    (home / ".git").mkdir(parents=True)
    below = home / "scratch" / "deeper"
    below.mkdir(parents=True)
    # A dotfiles repository must not make the whole home the workspace.
    assert find_project_root(str(below), str(home), (".git",)) == str(below)
    (home / "scratch" / ".git").mkdir()
    assert find_project_root(str(below), str(home), (".git",)) == str(home / "scratch")


def test_project_root_without_marker_is_cwd(world):
    lone = world.path("lone/dir")
    os.makedirs(lone)
    assert world.load(cwd=lone).project_root == lone


def test_config_file_tilde_expands_against_the_given_home(tmp_path, monkeypatch):
    monkeypatch.setenv("RINGFENCE_CONFIG_DIR", str(tmp_path / "userconf"))
    monkeypatch.setenv("HOME", str(tmp_path / "process-home"))
    home = tmp_path / "given-home"
    home.mkdir()
    (home / "extra.toml").write_text('sandbox_mode = "read-only"\n')
    config = load_config(cwd=str(tmp_path), home=str(home), config_files=["~/extra.toml"])
    assert config.value("sandbox_mode") == "read-only"


def test_project_layer_is_read_from_the_project_root_not_cwd(world):
    deep = os.path.join(world.ws, "pkg")
    os.makedirs(deep)
    world.project('approval_policy = "never"\n')
    assert world.load(cwd=deep).value("approval_policy") == "never"


def test_running_from_home_does_not_read_the_user_config_as_a_project(world, monkeypatch):
    # Regression: with cwd == home the user's file was read again as the project layer,
    # which may not hold [projects], so the user's own trust entries were refused.
    monkeypatch.delenv("RINGFENCE_CONFIG_DIR")
    home = world.path("realhome")
    world.write(os.path.join(home, ".ringfence", "config.toml"),
                f'[projects."{world.ws}"]\ntrust_level = "trusted"\n')
    config = world.load(cwd=home, home=home)
    assert [layer.name for layer in config.layers] == ["user"]


# -- an untrusted project can only tighten ------------------------------------------------------

def test_tightening_project_with_glob_loads(world):
    secret = os.path.join(world.ws, "conf", "db.secret")
    world.write(secret, "pw\n")
    world.project("""
        default_permissions = "tight"
        [permissions.tight.filesystem]
        ":root" = "read"
        ":project_roots" = { "." = "write", "**/*.secret" = "none" }
    """)
    policy = world.policy()
    assert not policy.project_trusted
    assert access(policy, secret) == NONE
    assert access(policy, os.path.join(world.ws, "conf", "ok.txt")) == WRITE


def test_read_only_project_loads(world):
    world.project('sandbox_mode = "read-only"\n')
    policy = world.policy()
    assert policy.profile == ":read-only"
    assert not host_writable(policy, os.path.join(world.ws, "f"))


def test_permissions_flag_can_pick_a_tightening_profile_from_the_project(world):
    world.project('[permissions.tight.filesystem]\n":root" = "read"\n')
    policy = world.policy(permissions="tight")
    assert policy.profile == "tight"


def test_project_dropping_variables_loads(world):
    world.project('[shell_environment_policy]\ninherit = "none"\n')
    assert "FOO" not in world.policy().environment.apply(world.env).env


LOOSENING = {
    "danger": ('sandbox_mode = "danger-full-access"\n', None, "turns the sandbox off"),
    "write_outside": ('[sandbox_workspace_write]\nwritable_roots = ["{outside}"]\n', None,
                      "{outside}: read -> write"),
    "network": ('[sandbox_workspace_write]\nnetwork_access = true\n', None, "network: off -> full"),
    "inherit_all": ('[shell_environment_policy]\ninherit = "all"\n',
                    '[shell_environment_policy]\ninherit = "core"\n', "passes through FOO"),
    "credentials_off": ('[protection]\ncredentials = false\n', None, "{home}/.ssh: none -> read"),
    "reopen_credentials": ('default_permissions = "p"\n[permissions.p.filesystem]\n":root" = "read"\n'
                           '":project_roots" = {{ "." = "write" }}\n"~/.aws" = "read"\n', None,
                           "{home}/.aws: none -> read"),
    "unprotect_git": ('[protection]\nmetadata = []\n', None, "{ws}/.ringfence: read -> write"),
    "scrub_off": ('[shell_environment_policy]\nignore_default_excludes = true\n', None,
                  "passes through GITHUB_TOKEN"),
}


def _fill(text, world):
    return text.format(outside=ELSEWHERE, home=world.home,
                       ws=os.path.realpath(world.ws))


@pytest.mark.parametrize("case", sorted(LOOSENING))
def test_loosening_project_is_refused_unless_trusted(world, case):
    project_text, user_text, problem = LOOSENING[case]
    world.env["GITHUB_TOKEN"] = "ghp_x"
    world.project(_fill(project_text, world))
    world.user(user_text or "")
    with pytest.raises(ConfigError) as info:
        world.policy()
    error = info.value
    assert error.source == world.project_file
    assert "would loosen the sandbox" in str(error)
    assert _fill(problem, world) in str(error)
    assert "trusted" in error.hint
    # Secrets are named, never shown.
    assert "ghp_x" not in str(error)

    world.user((user_text or "") + f'[projects."{world.ws}"]\ntrust_level = "trusted"\n')
    policy = world.policy()
    assert policy.project_trusted


def test_project_adding_to_a_network_allowlist_is_refused(world):
    world.user("""
        default_permissions = "dev"
        [permissions.dev]
        extends = ":workspace"
        [permissions.dev.network]
        enabled = true
        [permissions.dev.network.domains]
        "pypi.org" = "allow"
    """)
    world.project("""
        [permissions.dev.network.domains]
        "exfil.example" = "allow"
    """)
    try:
        policy = world.policy()
    except ConfigError as error:
        assert error.source == world.project_file
        return
    assert not policy.network.decide("exfil.example", 443).allowed, "the project widened the allowlist"


def test_project_trust_is_compared_on_the_real_path(world):
    link = world.path("ws-link")
    os.symlink(world.ws, link)
    world.project('sandbox_mode = "danger-full-access"\n')
    world.user(f'[projects."{link}"]\ntrust_level = "trusted"\n')
    assert world.policy().sandboxed is False


def test_untrusted_marking_keeps_the_check(world):
    world.project('sandbox_mode = "danger-full-access"\n')
    world.user(f'[projects."{world.ws}"]\ntrust_level = "untrusted"\n')
    with pytest.raises(ConfigError):
        world.policy()


def test_trust_from_a_config_file_counts(world):
    world.project('sandbox_mode = "danger-full-access"\n')
    given = world.config_file(f'[projects."{world.ws}"]\ntrust_level = "trusted"\n')
    assert world.policy(config_files=[given]).sandboxed is False


def test_a_record_with_a_default_before_a_field_without_one_is_refused_when_defined():
    from ringfence._record import Record

    with pytest.raises(TypeError, match="must come last"):
        class Misordered(Record):  # noqa: F841
            __slots__ = ("a", "b")
            _defaults = {"a": 1}
    with pytest.raises(TypeError, match="does not have"):
        class Unknown(Record):  # noqa: F841
            __slots__ = ("a",)
            _defaults = {"b": 1}


def test_a_record_builds_the_same_before_and_after_it_is_compiled():
    from ringfence._record import COMPILE_AFTER, Record

    class Point(Record):
        __slots__ = ("x", "y", "label")
        _defaults = {"label": None}

    for _round in range(2):  # the closure, then the compiled __init__
        assert Point(0, y=2) == Point(0, 2, None) == Point(x=0, y=2) != Point(0, 2, "a")
        assert Point(0, 2, label="a").label == "a"
        for bad in (lambda: Point(1), lambda: Point(1, 2, 3, 4), lambda: Point(1, 2, z=3), lambda: Point(1, x=2),
                    lambda: Point(y=2)):
            with pytest.raises(TypeError):
                bad()
        for index in range(COMPILE_AFTER):
            assert Point(index, 2).x == index
    assert Point.__init__.__code__.co_argcount == 4, "a class built often has its own compiled __init__"
