"""Strict validation of one configuration layer.

Every accepted value becomes a `Setting` that remembers the file and key it
came from, so that `status` and `explain` can name the origin of each rule
and every error can name the file, the key and what would be accepted.
"""

from __future__ import annotations

from .._record import Record
from ..errors import ConfigError
from .quantities import MAX_PROCESSES, MAX_SECONDS, parse_memory, seconds_problem
from .vocabulary import ACCESS_WORDS, APPROVAL_POLICIES, SANDBOX_MODES, TOKENS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

GLOB_CHARS = "*?["

# Keys Codex reads that have nothing to do with the sandbox. They are accepted
# so that an unchanged Codex config.toml loads, and listed by `status` as
# ignored. Anything not here and not ours is an error: a typo must never turn
# into a silently looser policy.
CODEX_FOREIGN_KEYS = frozenset("""
agents allow_login_shell analytics approvals_reviewer apps apps_mcp_product_sku audio auto_review
background_terminal_max_timeout chatgpt_base_url check_for_update_on_startup cli_auth_credentials_store
cloud compact_prompt debug desktop developer_instructions disable_paste_burst disable_response_storage
experimental_compact_prompt_file experimental_instructions_file experimental_path_to_linux_sandbox_bwrap
experimental_realtime_start_instructions experimental_realtime_ws_backend_prompt
experimental_realtime_ws_base_url experimental_realtime_ws_model experimental_realtime_ws_startup_context
experimental_resume experimental_thread_config_endpoint experimental_thread_store
experimental_use_exec_command_tool experimental_use_freeform_apply_patch experimental_use_rmcp_client
experimental_use_unified_exec_tool
features feedback file_opener forced_chatgpt_workspace_id forced_login_method ghost_snapshot
hide_agent_reasoning history hooks include_apply_patch_tool include_apps_instructions
include_collaboration_mode_instructions include_environment_context include_permissions_instructions
include_plan_tool instructions log_dir marketplaces mcp_oauth_callback_port mcp_oauth_callback_url
mcp_oauth_credentials_store mcp_servers memories model model_auto_compact_token_limit
model_auto_compact_token_limit_scope model_catalog_json model_context_window model_family
model_instructions_file model_max_output_tokens model_provider model_providers model_reasoning_effort
model_reasoning_summary model_supports_reasoning_summaries model_verbosity notice notify openai_base_url
oss_provider otel personality plan_mode_reasoning_effort plugins preferred_auth_method
project_doc_fallback_filenames project_doc_max_bytes realtime responses_originator_header_internal_override
review_model service_tier show_raw_agent_reasoning skills sqlite_home suppress_unstable_features_warning
tool_output_token_limit tool_suggest tools tools_web_search_request tui use_experimental_streamable_shell_tool
web_search windows windows_wsl_setup_acknowledged zdr
""".split())


class Setting(Record):
    """One validated value and where it came from."""

    __slots__ = ("value", "source", "key")
    value: Any
    source: str
    key: str


def display_key(parts) -> str:
    out = []
    for part in parts:
        part = str(part)
        if part and all(c.isalnum() or c in "_-" for c in part):
            out.append(part)
        else:
            out.append('"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return ".".join(out)


class Context:
    def __init__(self, source: str):
        self.source = source
        self.ignored: list[str] = []

    def error(self, path, message, accepted=None, hint=None):
        return ConfigError(self.source, display_key(path), message, accepted=accepted, hint=hint)

    def setting(self, value, path) -> Setting:
        return Setting(value, self.source, display_key(path))


def _type_name(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


class Spec:
    expected = "a value"

    def check(self, value, path, ctx: Context):
        raise NotImplementedError


class Str(Spec):
    expected = "a string"

    def __init__(self, nonempty=True):
        self.nonempty = nonempty

    def check(self, value, path, ctx):
        if not isinstance(value, str):
            raise ctx.error(path, f"expected a string, got {_type_name(value)}")
        if self.nonempty and not value:
            raise ctx.error(path, "must not be empty")
        return ctx.setting(value, path)


class Bool(Spec):
    def check(self, value, path, ctx):
        if not isinstance(value, bool):
            raise ctx.error(path, f"expected a boolean, got {_type_name(value)}", accepted="true, false")
        return ctx.setting(value, path)


class Int(Spec):
    def __init__(self, minimum=None, maximum=None):
        self.minimum = minimum
        self.maximum = maximum

    def check(self, value, path, ctx):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.error(path, f"expected an integer, got {_type_name(value)}")
        if self.minimum is not None and value < self.minimum:
            raise ctx.error(path, f"{value} is below the minimum", accepted=f"an integer >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ctx.error(path, f"{value} is above the maximum", accepted=f"an integer <= {self.maximum}")
        return ctx.setting(value, path)


class Enum(Spec):
    def __init__(self, *choices):
        self.choices = choices

    def check(self, value, path, ctx):
        accepted = ", ".join(f'"{c}"' for c in self.choices)
        if not isinstance(value, str):
            raise ctx.error(path, f"expected a string, got {_type_name(value)}", accepted=accepted)
        if value not in self.choices:
            raise ctx.error(path, f'"{value}" is not a valid value', accepted=accepted)
        return ctx.setting(value, path)


class StrList(Spec):
    def __init__(self, item_check=None):
        self.item_check = item_check

    def check(self, value, path, ctx):
        if not isinstance(value, list):
            raise ctx.error(path, f"expected an array of strings, got {_type_name(value)}")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise ctx.error(path + [index], f"expected a non-empty string, got {_type_name(item)}")
            if self.item_check:
                self.item_check(item, path + [index], ctx)
        return ctx.setting(list(value), path)


class StrMap(Spec):
    """A table of string to string, such as `shell_environment_policy.set`."""

    def check(self, value, path, ctx):
        if not isinstance(value, dict):
            raise ctx.error(path, f"expected a table, got {_type_name(value)}")
        for key, item in value.items():
            if not isinstance(item, str):
                raise ctx.error(path + [key], f"expected a string, got {_type_name(item)}")
        return ctx.setting(dict(value), path)


class Ignored(Spec):
    def check(self, value, path, ctx):
        ctx.ignored.append(display_key(path))
        return None


class Table(Spec):
    def __init__(self, fields: dict, required=(), foreign=frozenset()):
        self.fields = fields
        self.required = required
        self.foreign = foreign

    def check(self, value, path, ctx):
        if not isinstance(value, dict):
            raise ctx.error(path, f"expected a table, got {_type_name(value)}")
        out = {}
        for key, item in value.items():
            spec = self.fields.get(key)
            if spec is None and key in self.foreign:
                spec = Ignored()
            if spec is None:
                raise ctx.error(path + [key], "unknown key", accepted=self._accepted(),
                                hint=_suggest(key, self.fields))
            checked = spec.check(item, path + [key], ctx)
            if checked is not None:
                out[key] = checked
        for key in self.required:
            if key not in value:
                raise ctx.error(path + [key], "is required")
        return out

    def _accepted(self):
        return ", ".join(sorted(self.fields))


class Map(Spec):
    """A table whose keys are names chosen by the user (profiles, projects)."""

    def __init__(self, value_spec: Spec, key_check=None):
        self.value_spec = value_spec
        self.key_check = key_check

    def check(self, value, path, ctx):
        if not isinstance(value, dict):
            raise ctx.error(path, f"expected a table, got {_type_name(value)}")
        out = {}
        for key, item in value.items():
            if self.key_check:
                self.key_check(key, path + [key], ctx)
            out[key] = self.value_spec.check(item, path + [key], ctx)
        return out


class TableList(Spec):
    def __init__(self, item_spec: Table):
        self.item_spec = item_spec

    def check(self, value, path, ctx):
        if not isinstance(value, list):
            raise ctx.error(path, f"expected an array of tables, got {_type_name(value)}")
        items = [self.item_spec.check(item, path + [index], ctx) for index, item in enumerate(value)]
        return ctx.setting(items, path)


def _suggest(key, known) -> str | None:
    import difflib  # only on the error path

    close = difflib.get_close_matches(key, list(known), n=1)
    return f'did you mean "{close[0]}"?' if close else None


def _check_absolute(item, path, ctx):
    if not (item.startswith("/") or item == "~" or item.startswith("~/")):
        raise ctx.error(path, f'"{item}" is not an absolute path', accepted="an absolute path or ~/...")


def _check_access(value, path, ctx) -> Setting:
    if not isinstance(value, str) or value not in ACCESS_WORDS:
        raise ctx.error(path, f"{value!r} is not an access level", accepted='"read", "write", "none" ("deny")')
    return ctx.setting(ACCESS_WORDS[value], path)


def _check_metadata_name(item, path, ctx):
    name = item.rstrip("/")
    if not name or "/" in name or name in (".", ".."):
        raise ctx.error(path, f'"{item}" is not a name', accepted='a file or directory name; end it with "/" '
                                                                  "for a directory, such as \".vscode/\"")


def _check_relative_key(key, path, ctx):
    if key == ".":
        return
    if key.startswith("/") or key.startswith("~"):
        raise ctx.error(path, "keys inside a scoped table are relative to it",
                        accepted='"." or a relative path or glob such as "**/*.env"')
    if any(part == ".." for part in key.split("/")):
        raise ctx.error(path, '".." is not allowed in a scoped path', accepted="a path below the scope")


class FilesystemSpec(Spec):
    """`[permissions.NAME.filesystem]`: path or token -> access, or -> scoped table."""

    def check(self, value, path, ctx):
        if not isinstance(value, dict):
            raise ctx.error(path, f"expected a table, got {_type_name(value)}")
        out = {}
        for key, item in value.items():
            kpath = path + [key]
            if key == "glob_scan_max_depth":
                out[key] = Int(minimum=1).check(item, kpath, ctx)
                continue
            if key.startswith(":"):
                if key not in TOKENS:
                    raise ctx.error(kpath, "unknown special path token", accepted=", ".join(TOKENS))
            elif not (key.startswith("/") or key == "~" or key.startswith("~/")):
                raise ctx.error(kpath, "a filesystem key must be absolute, start with ~, or be a token",
                                accepted="/abs/path, ~/path, " + ", ".join(TOKENS))
            if isinstance(item, dict):
                scoped = {}
                for rel, access in item.items():
                    _check_relative_key(rel, kpath + [rel], ctx)
                    scoped[rel] = _check_access(access, kpath + [rel], ctx)
                out[key] = ctx.setting(scoped, kpath)
            else:
                out[key] = _check_access(item, kpath, ctx)
        return out


class Processes(Spec):
    def check(self, value, path, ctx):
        if value == "unlimited" or (isinstance(value, int) and not isinstance(value, bool)
                                    and 1 <= value <= MAX_PROCESSES):
            return ctx.setting(value, path)
        raise ctx.error(path, f"{value!r} is not a process count",
                        accepted=f'an integer from 1 to {MAX_PROCESSES}, or "unlimited"')


class Memory(Spec):
    def check(self, value, path, ctx):
        if parse_memory(value) is None:
            raise ctx.error(path, f"{value!r} is not an amount of memory",
                            accepted='bytes as an integer, or a string such as "512M" or "2G", '
                                     'from 1M to 4096P')
        return ctx.setting(value, path)


class Seconds(Spec):
    def check(self, value, path, ctx):
        problem = seconds_problem(value)
        if problem:
            raise ctx.error(path, f"{value!r} {problem}", accepted=f"a number of seconds > 0 and <= {MAX_SECONDS}")
        return ctx.setting(value, path)


LIMITS = Table({
    "processes": Processes(),
    "memory": Memory(),
    "cpu_time": Int(minimum=1, maximum=30 * 24 * 3600),
    "timeout": Seconds(),
    "temporary_space": Memory(),
})

NETWORK = Table({
    "enabled": Bool(),
    "mode": Enum("limited", "full"),
    "proxy_url": Str(),
    "socks_url": Str(),
    "enable_socks5": Bool(),
    "enable_socks5_udp": Bool(),
    "allow_upstream_proxy": Bool(),
    "allow_local_binding": Bool(),
    "dangerously_allow_all_unix_sockets": Bool(),
    "domains": Map(Enum("allow", "deny")),
    "unix_sockets": Map(Enum("allow", "none", "deny")),
})


def _check_profile_name(key, path, ctx):
    if key.startswith(":"):
        raise ctx.error(path, "profile names starting with ':' are reserved for built-ins",
                        accepted="a name without a leading ':'")


PROFILE = Table({
    "description": Str(nonempty=False),
    "extends": Str(),
    "filesystem": FilesystemSpec(),
    "network": NETWORK,
    "limits": LIMITS,
    "workspace_roots": Ignored(),
})

ENVIRONMENT = Table({
    "inherit": Enum("all", "core", "none"),
    "ignore_default_excludes": Bool(),
    "exclude": StrList(),
    "set": StrMap(),
    "include_only": StrList(),
    "experimental_use_profile": Ignored(),
})

SANDBOX_WORKSPACE_WRITE = Table({
    "writable_roots": StrList(item_check=_check_absolute),
    "network_access": Bool(),
    "exclude_tmpdir_env_var": Bool(),
    "exclude_slash_tmp": Bool(),
})

RULE_DECISIONS = ("allow", "prompt", "forbidden")


class ApprovalPolicySpec(Enum):
    """Codex's approval modes. `granular` (per-category settings, in Codex a
    table) has no ringfence meaning yet, and guessing one would either ask
    less or refuse more than its author meant: it is refused by name."""

    def __init__(self):
        super().__init__(*APPROVAL_POLICIES)

    def check(self, value, path, ctx):
        if value == "granular" or (isinstance(value, dict) and "granular" in value):
            raise ctx.error(path, "granular approval (settings per category) is not supported",
                            accepted=", ".join(f'"{c}"' for c in self.choices),
                            hint='use "on-request" (ask for prompt rules and escalations) or "never"')
        return super().check(value, path, ctx)


class CommandRuleSpec(Table):
    """One `[[rules]]` table: `prefix`, and `allow = true|false` (the original
    form) or `decision = "allow"|"prompt"|"forbidden"`, with an optional
    `justification` shown when it stops or asks."""

    def __init__(self):
        super().__init__({"prefix": Str(), "allow": Bool(), "decision": Enum(*RULE_DECISIONS),
                          "justification": Str()}, required=("prefix",))

    def check(self, value, path, ctx):
        out = super().check(value, path, ctx)
        accepted = 'allow = true or false, or decision = "allow", "prompt" or "forbidden"'
        if "allow" not in out and "decision" not in out:
            raise ctx.error(path + ["allow"], "is required", accepted=accepted)
        if "allow" in out and "decision" in out:
            raise ctx.error(path + ["decision"], "give allow or decision, not both", accepted=accepted)
        return out

class _AnyKey:
    """Every key: Codex's own `[cloud]` settings load and are listed as ignored."""

    def __contains__(self, key) -> bool:
        return True


def _check_mount_target(item, path, ctx):
    _check_absolute(item, path, ctx)
    if item.rstrip("/") in ("", "/proc", "/dev") or item.startswith(("/proc/", "/dev/")):
        raise ctx.error(path, f'"{item}" cannot take a mount', accepted="an absolute path other than /, "
                                                                      "and outside /proc and /dev")


class MountSpec(Table):
    """One `[[cloud.additional_mounts]]` entry: what an isolated run sees
    beside the workspace and the read-only base system."""

    def __init__(self):
        super().__init__({"source": Str(), "target": Str(), "readonly": Bool()}, required=("source",))

    def check(self, value, path, ctx):
        out = super().check(value, path, ctx)
        _check_absolute(out["source"].value, path + ["source"], ctx)
        if "target" in out:
            _check_mount_target(out["target"].value, path + ["target"], ctx)
        return out


CLOUD = Table({"additional_mounts": TableList(MountSpec())}, foreign=_AnyKey())

# Keys a Codex `[profiles.NAME]` table may set that matter to the sandbox.
CONFIG_PROFILE = Table({
    "sandbox_mode": Enum(*SANDBOX_MODES),
    "approval_policy": ApprovalPolicySpec(),
    "default_permissions": Str(),
    "sandbox_workspace_write": SANDBOX_WORKSPACE_WRITE,
    "shell_environment_policy": ENVIRONMENT,
}, foreign=CODEX_FOREIGN_KEYS)


def _projects_spec(ctx: Context) -> Spec:
    return Map(Table({"trust_level": Enum("trusted", "untrusted")}), key_check=_check_absolute)


ROOT_FIELDS: dict[str, Spec | None] = {
    "sandbox_mode": Enum(*SANDBOX_MODES),
    "approval_policy": ApprovalPolicySpec(),
    "default_permissions": Str(),
    "project_root_markers": StrList(),
    "sandbox_workspace_write": SANDBOX_WORKSPACE_WRITE,
    "permissions": Map(PROFILE, key_check=_check_profile_name),
    "shell_environment_policy": ENVIRONMENT,
    "rules": TableList(CommandRuleSpec()),
    "profile": Str(),
    "profiles": Map(CONFIG_PROFILE),
    "protection": Table({"credentials": Bool(), "metadata": StrList(item_check=_check_metadata_name)}),
    "limits": LIMITS,
    "cloud": CLOUD,
    "projects": None,  # filled per layer: only the user's own layers may mark trust
}


def _refuse_nul(node, path, ctx):
    """TOML strings may hold NUL (\\u0000); no path, name or environment value
    can. bwrap reads its options NUL-separated: a NUL in a value would become
    options of its own."""
    if isinstance(node, str):
        if "\0" in node:
            raise ctx.error(path, "holds a NUL character", accepted="text without NUL")
    elif isinstance(node, dict):
        for key, value in node.items():
            if "\0" in key:
                raise ctx.error(path + [key.replace("\0", "\\0")], "the key holds a NUL character")
            _refuse_nul(value, path + [key], ctx)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            _refuse_nul(item, path + [index], ctx)


def validate_layer(raw: dict, source: str, *, allow_trust: bool) -> tuple[dict, list[str]]:
    """Validate one parsed TOML document; return the settings tree and ignored keys."""
    ctx = Context(source)
    _refuse_nul(raw, [], ctx)
    fields = dict(ROOT_FIELDS)
    if allow_trust:
        fields["projects"] = _projects_spec(ctx)
    else:
        del fields["projects"]
        if "projects" in raw:
            raise ctx.error(["projects"], "a project's own configuration cannot mark projects trusted",
                            hint="mark the project trusted in ~/.ringfence/config.toml instead")
    tree = Table(fields, foreign=CODEX_FOREIGN_KEYS).check(raw, [], ctx)
    return tree, ctx.ignored
