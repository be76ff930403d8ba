"""Every way a configuration is refused, and what the refusal says.

A refusal must name where the bad value came from (the file, or the `-c`
text), the key, and what would have been accepted: a user fixing a typo
should not have to read the source. Codex-only keys are the exception that
must load, so that an unchanged Codex config.toml works.
"""

import os
import textwrap

import pytest

from ringfence.config import load_config
from ringfence.errors import ConfigError
from ringfence.policy import build_policy


class World:
    def __init__(self, root):
        self.root = root
        self.home = str(root / "home")
        self.ws = str(root / "ws")
        self.user_dir = str(root / "userconf")
        os.makedirs(self.home)
        os.makedirs(os.path.join(self.ws, ".git"))

    def write(self, path, text):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(textwrap.dedent(text))
        return path

    def config_file(self, text, name="given.toml"):
        return self.write(str(self.root / name), text)

    @property
    def user_file(self):
        return os.path.join(self.user_dir, "config.toml")

    @property
    def project_file(self):
        return os.path.join(self.ws, ".ringfence", "config.toml")

    def load(self, **kwargs):
        kwargs.setdefault("cwd", self.ws)
        kwargs.setdefault("home", self.home)
        return load_config(**kwargs)

    def build(self, **kwargs):
        return build_policy(self.load(**kwargs), env={"PATH": "/usr/bin"})


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("RINGFENCE_CONFIG_DIR", str(tmp_path / "userconf"))
    monkeypatch.setenv("RINGFENCE_STATE_DIR", str(tmp_path / "state"))
    return World(tmp_path)


def refused(world, text, *, build=False):
    """Load `text` as a --config file; return (error, path)."""
    path = world.config_file(text)
    with pytest.raises(ConfigError) as info:
        if build:
            world.build(config_files=[path])
        else:
            world.load(config_files=[path])
    return info.value, path


def assert_names(error, source, key, *accepted):
    message = str(error)
    assert error.source == source
    assert message.startswith(f"{source}: ")
    assert error.key == key
    assert f": {key}: " in message
    for word in accepted:
        assert word in (error.accepted or ""), (word, error.accepted)
        assert word in message


# -- unknown keys -------------------------------------------------------------

def test_unknown_top_level_key_suggests_the_close_one(world):
    error, path = refused(world, 'sandbox_mod = "read-only"\n')
    assert_names(error, path, "sandbox_mod", "sandbox_mode", "default_permissions")
    assert error.hint == 'did you mean "sandbox_mode"?'
    assert 'did you mean "sandbox_mode"?' in str(error)


def test_unknown_nested_key_names_the_full_dotted_key(world):
    error, path = refused(world, """
        [sandbox_workspace_write]
        writeable_roots = ["/srv"]
    """)
    assert_names(error, path, "sandbox_workspace_write.writeable_roots", "writable_roots", "network_access")
    assert error.hint == 'did you mean "writable_roots"?'


def test_unknown_key_inside_a_profile_network_table(world):
    error, path = refused(world, """
        [permissions.dev.network]
        enable = true
    """)
    assert_names(error, path, "permissions.dev.network.enable", "enabled", "domains")
    assert "enabled" in error.hint


def test_unknown_key_without_a_close_match_has_no_hint(world):
    error, path = refused(world, 'zzzqqq = 1\n')
    assert_names(error, path, "zzzqqq", "sandbox_mode")
    assert error.hint is None


def test_unknown_key_in_the_user_layer_names_the_user_file(world):
    world.write(world.user_file, 'sandbox_mdoe = "read-only"\n')
    with pytest.raises(ConfigError) as info:
        world.load()
    assert_names(info.value, world.user_file, "sandbox_mdoe", "sandbox_mode")


def test_rule_missing_a_required_key(world):
    error, path = refused(world, """
        [[rules]]
        prefix = "rm -rf"
    """)
    assert_names(error, path, "rules.0.allow")
    assert "is required" in str(error)


# -- wrong types ---------------------------------------------------------------

@pytest.mark.parametrize("text, key, got, accepted", [
    ("default_permissions = 3\n", "default_permissions", "expected a string, got an integer", None),
    ("[sandbox_workspace_write]\nnetwork_access = \"yes\"\n", "sandbox_workspace_write.network_access",
     "expected a boolean, got a string", "true, false"),
    ("[permissions.p.filesystem]\nglob_scan_max_depth = \"3\"\n", "permissions.p.filesystem.glob_scan_max_depth",
     "expected an integer, got a string", None),
    ("project_root_markers = \".git\"\n", "project_root_markers", "expected an array of strings, got a string",
     None),
    ("project_root_markers = [\".git\", 1]\n", "project_root_markers.1", "expected a non-empty string, got an integer",
     None),
    ("shell_environment_policy = \"core\"\n", "shell_environment_policy", "expected a table, got a string", None),
    ("[shell_environment_policy]\nset = [\"A=1\"]\n", "shell_environment_policy.set",
     "expected a table, got an array", None),
    ("[shell_environment_policy.set]\nA = 1\n", "shell_environment_policy.set.A", "expected a string, got an integer",
     None),
    ("permissions = true\n", "permissions", "expected a table, got a boolean", None),
    ("[permissions.p]\nfilesystem = [\"/x\"]\n", "permissions.p.filesystem", "expected a table, got an array", None),
    ("rules = { prefix = \"x\" }\n", "rules", "expected an array of tables, got a table", None),
    ("[permissions.p.filesystem]\n\"/srv\" = true\n", 'permissions.p.filesystem."/srv"', "True is not an access level",
     '"read", "write", "none" ("deny")'),
    ("sandbox_mode = 1\n", "sandbox_mode", "expected a string, got an integer", '"read-only"'),
])
def test_wrong_type(world, text, key, got, accepted):
    error, path = refused(world, text)
    assert_names(error, path, key, *([accepted] if accepted else []))
    assert got in str(error)


# -- bad enum values -------------------------------------------------------------

@pytest.mark.parametrize("text, key, bad, accepted", [
    ('sandbox_mode = "workspace_write"\n', "sandbox_mode", "workspace_write",
     ('"read-only"', '"workspace-write"', '"danger-full-access"')),
    ('approval_policy = "always"\n', "approval_policy", "always",
     ('"untrusted"', '"on-request"', '"on-failure"', '"never"')),
    ('[shell_environment_policy]\ninherit = "some"\n', "shell_environment_policy.inherit", "some",
     ('"all"', '"core"', '"none"')),
    ('[permissions.p.filesystem]\n"/srv" = "rw"\n', 'permissions.p.filesystem."/srv"', "rw",
     ('"read"', '"write"', '"none"', '"deny"')),
    ('[permissions.p.filesystem]\n":project_roots" = { "." = "readwrite" }\n',
     'permissions.p.filesystem.":project_roots"."."', "readwrite", ('"read"', '"write"', '"none"')),
    ('[permissions.p.network]\nmode = "partial"\n', "permissions.p.network.mode", "partial",
     ('"limited"', '"full"')),
    ('[permissions.p.network.domains]\n"example.com" = "yes"\n', 'permissions.p.network.domains."example.com"',
     "yes", ('"allow"', '"deny"')),
    ('[profiles.fast]\nsandbox_mode = "open"\n', "profiles.fast.sandbox_mode", "open", ('"read-only"',)),
])
def test_bad_enum_value_lists_the_accepted_values(world, text, key, bad, accepted):
    error, path = refused(world, text)
    assert_names(error, path, key, *accepted)
    assert bad in str(error)


def test_deny_is_a_synonym_for_none(world):
    path = world.config_file("""
        default_permissions = "p"
        [permissions.p.filesystem]
        ":root" = "read"
        "/srv/secret" = "deny"
    """)
    policy = world.build(config_files=[path])
    assert policy.filesystem.decide_canonical("/srv/secret/x").access == "none"


# -- filesystem keys ---------------------------------------------------------------

def test_relative_filesystem_key(world):
    error, path = refused(world, '[permissions.p.filesystem]\n"src" = "read"\n')
    assert_names(error, path, 'permissions.p.filesystem.src', "/abs/path", "~/path", ":project_roots")
    assert "must be absolute" in str(error)


def test_unknown_special_token(world):
    error, path = refused(world, '[permissions.p.filesystem]\n":home" = "read"\n')
    assert_names(error, path, 'permissions.p.filesystem.":home"', ":root", ":minimal", ":project_roots",
                 ":workspace_roots", ":tmpdir", ":slash_tmp")
    assert "unknown special path token" in str(error)


@pytest.mark.parametrize("rel", ["../outside", "docs/../../x", ".."])
def test_dotdot_inside_a_scoped_table(world, rel):
    error, path = refused(world, f'[permissions.p.filesystem]\n":project_roots" = {{ "{rel}" = "read" }}\n')
    assert_names(error, path, f'permissions.p.filesystem.":project_roots"."{rel}"', "a path below the scope")
    assert '".." is not allowed' in str(error)


@pytest.mark.parametrize("rel", ["/etc", "~/x"])
def test_absolute_key_inside_a_scoped_table(world, rel):
    error, path = refused(world, f'[permissions.p.filesystem]\n":project_roots" = {{ "{rel}" = "read" }}\n')
    assert_names(error, path, f'permissions.p.filesystem.":project_roots"."{rel}"', '"." or a relative path')
    assert "relative to it" in str(error)


@pytest.mark.parametrize("depth", [0, -3])
def test_glob_scan_max_depth_below_one(world, depth):
    error, path = refused(world, f"[permissions.p.filesystem]\nglob_scan_max_depth = {depth}\n")
    assert_names(error, path, "permissions.p.filesystem.glob_scan_max_depth", "an integer >= 1")
    assert f"{depth} is below the minimum" in str(error)


def test_profile_name_starting_with_colon(world):
    error, path = refused(world, '[permissions.":mine".filesystem]\n":root" = "read"\n')
    assert_names(error, path, 'permissions.":mine"', "a name without a leading ':'")
    assert "reserved for built-ins" in str(error)


@pytest.mark.parametrize("root", ["relative/dir", "~user/x", "./x"])
def test_writable_roots_must_be_absolute(world, root):
    error, path = refused(world, f'[sandbox_workspace_write]\nwritable_roots = ["{root}"]\n')
    assert_names(error, path, "sandbox_workspace_write.writable_roots.0", "an absolute path or ~/...")
    assert f'"{root}" is not an absolute path' in str(error)


def test_absolute_writable_root_is_accepted(world):
    path = world.config_file('[sandbox_workspace_write]\nwritable_roots = ["/srv/cache", "~/cache"]\n')
    config = world.load(config_files=[path])
    assert config.value("sandbox_workspace_write", "writable_roots") == ["/srv/cache", "~/cache"]


def test_project_trust_key_must_be_absolute(world):
    error, path = refused(world, '[projects."work/repo"]\ntrust_level = "trusted"\n')
    assert_names(error, path, 'projects."work/repo"', "an absolute path or ~/...")


# -- layers and sources ---------------------------------------------------------------

def test_project_layer_cannot_contain_projects(world):
    world.write(world.project_file, f'[projects."{world.ws}"]\ntrust_level = "trusted"\n')
    with pytest.raises(ConfigError) as info:
        world.load()
    assert_names(info.value, world.project_file, "projects")
    assert "cannot mark projects trusted" in str(info.value)
    assert "~/.ringfence/config.toml" in info.value.hint


def test_invalid_toml_names_the_file(world):
    path = world.config_file('sandbox_mode = "read-only\n')
    with pytest.raises(ConfigError) as info:
        world.load(config_files=[path])
    assert info.value.source == path
    assert str(info.value).startswith(f"{path}: invalid TOML")


def test_invalid_toml_in_the_project_layer_names_the_project_file(world):
    world.write(world.project_file, "[permissions\n")
    with pytest.raises(ConfigError) as info:
        world.load()
    assert info.value.source == world.project_file
    assert "invalid TOML" in str(info.value)


def test_override_without_equals(world):
    with pytest.raises(ConfigError) as info:
        world.load(overrides=["sandbox_mode"])
    error = info.value
    assert error.source == "-c sandbox_mode"
    assert str(error).startswith("-c sandbox_mode: expected key=value")
    assert "-c sandbox_mode=read-only" in error.accepted


def test_override_with_empty_key(world):
    with pytest.raises(ConfigError) as info:
        world.load(overrides=["=read-only"])
    assert info.value.source == "-c =read-only"
    assert "missing key" in str(info.value)


def test_override_with_bad_value_names_the_override_and_key(world):
    with pytest.raises(ConfigError) as info:
        world.load(overrides=["sandbox_mode=bogus"])
    assert_names(info.value, "-c sandbox_mode=bogus", "sandbox_mode", '"read-only"', '"workspace-write"')


def test_override_bare_word_is_a_string_and_type_checked(world):
    with pytest.raises(ConfigError) as info:
        world.load(overrides=["sandbox_workspace_write.network_access=maybe"])
    assert_names(info.value, "-c sandbox_workspace_write.network_access=maybe",
                 "sandbox_workspace_write.network_access", "true, false")
    assert "got a string" in str(info.value)


def test_config_file_that_does_not_exist(world):
    missing = str(world.root / "nope.toml")
    with pytest.raises(ConfigError) as info:
        world.load(config_files=[missing])
    assert info.value.source == missing
    assert str(info.value).startswith(f"{missing}: no such file")
    assert "--config" in info.value.hint


def test_config_file_that_is_a_directory(world):
    with pytest.raises(ConfigError) as info:
        world.load(config_files=[world.home])
    assert info.value.source == world.home


# -- profile resolution (detected when the policy is built) --------------------------

def test_extends_cycle(world):
    error, path = refused(world, """
        default_permissions = "a"
        [permissions.a]
        extends = "b"
        [permissions.b]
        extends = "c"
        [permissions.c]
        extends = "a"
    """, build=True)
    assert error.source == path
    assert error.key == "permissions.a.extends"
    assert "extends forms a cycle: a -> b -> c -> a" in str(error)


def test_profile_extending_itself(world):
    error, path = refused(world, 'default_permissions = "a"\n[permissions.a]\nextends = "a"\n', build=True)
    assert error.source == path
    assert "a -> a" in str(error)


def test_default_permissions_names_a_missing_profile(world):
    error, path = refused(world, """
        default_permissions = "ci"
        [permissions.dev.filesystem]
        ":root" = "read"
    """, build=True)
    assert_names(error, path, "default_permissions", ":read-only", ":workspace", ":danger-full-access", "dev")
    assert 'no permission profile named "ci"' in str(error)


def test_missing_profile_chosen_by_override_names_the_override(world):
    with pytest.raises(ConfigError) as info:
        world.build(overrides=["default_permissions=ghost"])
    assert_names(info.value, "-c default_permissions=ghost", "default_permissions", ":workspace")


def test_extends_naming_a_missing_profile_names_the_extends_key(world):
    # Regression: this used to be reported against default_permissions.
    path = world.config_file('default_permissions = "dev"\n[permissions.dev]\nextends = "base"\n')
    with pytest.raises(ConfigError) as info:
        world.build(config_files=[path])
    assert_names(info.value, path, "permissions.dev.extends", ":workspace", "dev")
    assert 'no permission profile named "base"' in str(info.value)


def test_codex_profile_naming_a_missing_table(world):
    error, path = refused(world, 'profile = "slow"\n[profiles.fast]\nmodel = "o3"\n', build=True)
    assert_names(error, path, "profile", "fast")
    assert "no [profiles.slow] table" in str(error)


@pytest.mark.parametrize("line, key", [
    ('"/**/*.pem" = "none"', '"/**/*.pem"'),
    ('"/*" = "none"', '"/*"'),
    ('"/us?/share" = "read"', '"/us?/share"'),
    (':root_scoped', '":root"."**/*.pem"'),
])
def test_glob_rooted_at_slash_is_refused(world, line, key):
    if line == ":root_scoped":
        body = '":root" = { "." = "read", "**/*.pem" = "none" }'
    else:
        body = '":root" = "read"\n' + line
    error, path = refused(world, 'default_permissions = "p"\n[permissions.p.filesystem]\n' + body + "\n",
                          build=True)
    assert error.source == path
    assert error.key == f"permissions.p.filesystem.{key}"
    assert 'rooted at "/"' in str(error)
    assert error.hint and ":project_roots" in error.hint


@pytest.mark.parametrize("body, key", [
    ('":project_roots" = { "." = "read", "src/*" = "write" }', '":project_roots"."src/*"'),
    ('"~/work/*/build" = "write"', '"~/work/*/build"'),
])
def test_glob_granting_write_is_refused(world, body, key):
    error, path = refused(world, 'default_permissions = "p"\n[permissions.p.filesystem]\n' + body + "\n",
                          build=True)
    assert error.source == path
    assert error.key == f"permissions.p.filesystem.{key}"
    assert "grants write" in str(error)
    assert error.hint and "path" in error.hint


# -- Codex compatibility ----------------------------------------------------------------

CODEX_CONFIG = """
    model = "gpt-5-codex"
    model_provider = "openai"
    model_reasoning_effort = "high"
    approval_policy = "on-request"
    sandbox_mode = "workspace-write"
    notify = ["notify-send", "codex"]
    profile = "fast"

    [sandbox_workspace_write]
    writable_roots = ["/srv/cache"]
    network_access = false

    [shell_environment_policy]
    inherit = "core"
    experimental_use_profile = true

    [mcp_servers.foo]
    command = "y"
    args = ["--stdio"]

    [tui]
    notifications = true

    [history]
    persistence = "save-all"

    [projects."/srv/repo"]
    trust_level = "trusted"

    [profiles.fast]
    model = "o3"
    approval_policy = "never"
"""


def test_unchanged_codex_config_loads_and_lists_what_it_ignores(world):
    path = world.config_file(CODEX_CONFIG, name="codex.toml")
    config = world.load(config_files=[path])
    ignored = set(config.ignored)
    for key in ("model", "model_provider", "model_reasoning_effort", "notify", "mcp_servers", "tui", "history",
                "shell_environment_policy.experimental_use_profile", "profiles.fast.model"):
        assert f"{path}: {key}" in ignored, key
    # What matters to the sandbox is read, not ignored.
    assert f"{path}: sandbox_mode" not in ignored
    assert config.value("sandbox_mode") == "workspace-write"
    policy = build_policy(config, env={})
    assert policy.profile == ":workspace"
    assert policy.ignored_keys == tuple(config.ignored)


def test_codex_keys_are_ignored_in_the_user_layer_too(world):
    world.write(world.user_file, 'model = "x"\n[mcp_servers.foo]\ncommand = "y"\n[tui]\nanimations = false\n')
    config = world.load()
    assert set(config.ignored) == {f"{world.user_file}: model", f"{world.user_file}: mcp_servers",
                                   f"{world.user_file}: tui"}


def test_codex_key_with_any_type_is_ignored_not_checked(world):
    path = world.config_file("model = 42\ntui = \"weird\"\n")
    assert world.load(config_files=[path]).ignored == [f"{path}: model", f"{path}: tui"]


def test_a_codex_key_nested_where_codex_does_not_read_it_is_still_an_error(world):
    # Only the known places are lenient: a stray key in the sandbox tables
    # could be a typo that silently loosens the policy.
    error, path = refused(world, '[sandbox_workspace_write]\nmodel = "x"\n')
    assert_names(error, path, "sandbox_workspace_write.model")


# -- numbers: finite and in range at load, never a crash after the command started --------------

@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-5", "2592001", "true", '"10"'])
def test_timeout_must_be_a_finite_positive_number(world, value):
    with pytest.raises(ConfigError) as info:
        world.load(overrides=[f"limits.timeout={value}"])
    assert "limits.timeout" in str(info.value)


@pytest.mark.parametrize("value", ["0", "4194305", "-1", "nan", '"lots"'])
def test_process_count_must_be_in_the_kernel_range(world, value):
    with pytest.raises(ConfigError) as info:
        world.load(overrides=[f"limits.processes={value}"])
    assert "limits.processes" in str(info.value) and "4194304" in str(info.value)


@pytest.mark.parametrize("value", ['"99999999999T"', "1", '"0M"', '"1.5G"', "nan"])
def test_memory_must_be_a_sane_amount(world, value):
    with pytest.raises(ConfigError) as info:
        world.load(overrides=[f"limits.memory={value}"])
    assert "limits.memory" in str(info.value)


# str.isdigit and float() take superscripts and other scripts' digits: "²" made
# int() raise past the config check, and Arabic-Indic "٥١٢M" read as 512M.
NON_ASCII_NUMBERS = ["²", "٥١٢M", "１２M", "5²G", "۱G"]


@pytest.mark.parametrize("text", NON_ASCII_NUMBERS)
def test_memory_in_other_digits_is_refused_not_read_or_crashed_on(world, text):
    with pytest.raises(ConfigError) as info:
        world.load(overrides=[f'limits.memory="{text}"'])
    assert "limits.memory" in str(info.value) and "amount of memory" in str(info.value)


@pytest.mark.parametrize("text", NON_ASCII_NUMBERS)
def test_parse_memory_takes_ascii_digits_only(text):
    from ringfence.config.quantities import parse_memory

    assert parse_memory(text) is None
    assert parse_memory(" 512M ") == 512 << 20 and parse_memory("2GiB") == 2 << 30


def test_a_project_timeout_of_nan_is_refused_not_taken_for_a_tightening(world):
    world.write(world.project_file, "[limits]\ntimeout = nan\n")
    with pytest.raises(ConfigError) as info:
        world.load()
    assert world.project_file in str(info.value) and "finite" in str(info.value)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "1e9", "٦٠٠", "６００", "6²"])
def test_the_timeout_flag_is_checked_before_anything_runs(value):
    from ringfence.cli import UsageError, parse

    with pytest.raises(UsageError) as info:
        parse(["run", "--timeout", value, "--", "true"])
    assert "--timeout" in str(info.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, 0])
def test_the_api_timeout_is_checked_before_anything_runs(world, value):
    from ringfence import Sandbox

    sandbox = Sandbox(world.build())
    with pytest.raises(ValueError) as info:
        sandbox.run(["true"], timeout=value)
    assert "timeout" in str(info.value)


@pytest.mark.parametrize("text", ['[shell_environment_policy]\nset = { X = "a\\u0000--bind" }\n',
                                  '[permissions.p.filesystem]\n"/x\\u0000y" = "read"\n',
                                  '[sandbox_workspace_write]\nwritable_roots = ["/a\\u0000b"]\n'])
def test_a_nul_anywhere_is_refused(world, text):
    world.write(world.user_file, text)
    with pytest.raises(ConfigError) as info:
        world.load()
    assert "NUL" in str(info.value) and world.user_file in str(info.value)


@pytest.mark.parametrize("where", ["config_files", "home", "cwd"])
def test_a_path_with_a_nul_is_a_configuration_error(world, where):
    nul = {"config_files": {"config_files": [world.ws + "/given\0.toml"]}, "home": {"home": world.home + "\0x"},
           "cwd": {"cwd": world.ws + "\0x"}}[where]
    with pytest.raises(ConfigError) as info:
        world.build(**nul)
    assert "NUL" in str(info.value) and "\\0" in str(info.value) and "\0" not in str(info.value)


def test_load_policy_refuses_a_working_directory_with_a_nul(world):
    from ringfence import load_policy

    with pytest.raises(ConfigError) as info:
        load_policy(world.ws + "\0x", home=world.home, env={"PATH": "/usr/bin"})
    assert "NUL" in str(info.value) and "working directory" in str(info.value)
