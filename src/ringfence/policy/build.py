"""From merged configuration to a `Policy`: select the profile, expand its
keys, add the built-in layers (credentials, private temporary space,
protected metadata, ringfence's own files), scan the globs, and record what
cannot be enforced. Each step lives in a module of its own; this one only
puts them in order."""

from __future__ import annotations

import os

from ..errors import PolicyError
from ..paths import canonical
from ..state import state_dir
from ..config.vocabulary import FULL_ACCESS_PROFILE, MINIMAL, ROOT
from .builtin_data import BUILTIN, PRIVATE_PATHS, RESOLVER_PATHS
from .commands import CommandRules
from .credentials import credential_rules
from .environment import EnvironmentPolicy
from .expand import Expander
from .filesystem import READ, TIER_BUILTIN, TIER_PROFILE, TIER_PROTECTED, WRITE, Cap, FilesystemPolicy, PathRule
from .limits import Limits
from .network import FULL, LIMITED, OFF, NetworkPolicy, network_options
from .profiles import Selection, resolve_profile, select_profile
from .protection import (nested_protection_specs, outermost, own_files, own_repositories, protected_entries,
                         writable_before_scan)
from .record import Policy
from .refusals import check_hard_links, check_symlinks, refuse_credentials_as_workspace, refuse_home_as_workspace
from .scan import scan_globs

# Each repository inside a writable folder is protected as a project of its
# own (a placeholder for every protected name, read-only mounts for what it
# holds); past this many, a start would mount thousands of entries.
MAX_NESTED_REPOSITORIES = 128


def _environment_policy(config, added) -> EnvironmentPolicy:
    table = config.get("shell_environment_policy") or {}

    def value(key, default):
        setting = table.get(key)
        return default if setting is None else setting.value

    return EnvironmentPolicy(
        inherit=value("inherit", "all"),
        ignore_default_excludes=value("ignore_default_excludes", False),
        exclude=tuple(value("exclude", ())),
        set=tuple(sorted(value("set", {}).items())),
        include_only=tuple(value("include_only", ())),
        added=tuple(added),
    )


def _network_policy(table: dict, selection: Selection) -> NetworkPolicy:
    enabled = table.get("enabled")
    if enabled is None or not enabled.value:
        origin = enabled.key + f" = false ({enabled.source})" if enabled is not None else \
            f"default: network off (profile {selection.name})"
        return NetworkPolicy(OFF, origin)
    mode = table.get("mode")
    domains = table.get("domains") or {}
    sockets = table.get("unix_sockets") or {}
    origin = f"{enabled.key} = true ({enabled.source})"
    if (mode is not None and mode.value == "limited") or domains or sockets:
        return NetworkPolicy(LIMITED, origin,
                             tuple((k, v.value, f"{v.key} ({v.source})") for k, v in domains.items()),
                             tuple((k, v.value, f"{v.key} ({v.source})") for k, v in sockets.items()),
                             **network_options(table))
    return NetworkPolicy(FULL, origin)


def _unix_socket_rules(network: NetworkPolicy, home: str) -> list[PathRule]:
    """`unix_sockets` entries as path rules: an allowed socket is mounted where
    the sandbox can reach it (inside the private /run too), a denied one
    masked. connect(2) needs no write access to the mount, so read will do."""
    from ..config.vocabulary import SOCKET_ACCESS
    from ..paths import expand_home

    rules = []
    for spelled, access, origin in network.unix_sockets:
        path = expand_home(spelled, home)
        if not os.path.isabs(path):
            raise PolicyError(f"{origin}: the unix socket {spelled!r} is not an absolute path",
                              hint='name the socket by its full path, e.g. "/run/user/1000/ssh-agent.sock"')
        rules.append(PathRule(canonical(path), SOCKET_ACCESS[access], origin,
                              f'unix_sockets."{spelled}" = "{access}"', kind="path", tier=TIER_PROFILE,
                              spelled=path))
    return rules


def _limits(config, profile_limits: dict) -> Limits:
    """[limits], with the profile's own limits table winning key by key."""
    from ..config.quantities import parse_memory
    from .limits import default_temporary_space

    table = dict(config.get("limits") or {})
    table.update(profile_limits)
    fields = {"temporary_space": default_temporary_space()}
    origins = []
    for key, setting in table.items():
        value = setting.value
        if key == "processes":
            value = None if value == "unlimited" else value
            fields["processes_explicit"] = True
        elif key in ("memory", "temporary_space"):
            value = parse_memory(value)
        fields[key] = value
        origins.append((key, f"{setting.key} ({setting.source})"))
    return Limits(origins=tuple(origins), **fields)


def _command_rules(config) -> CommandRules:
    from .rules_file import command_rules

    return command_rules(config)


def build(config, *, env=None) -> Policy:
    env = dict(os.environ if env is None else env)
    cwd = canonical(config.cwd)
    home = canonical(config.home)
    selection = select_profile(config)
    fs_table, net_table, profile_limits = resolve_profile(selection.name, config)
    limits = _limits(config, profile_limits)
    project_roots = (canonical(config.project_root),)
    tmpdir = env.get("TMPDIR")
    tmpdir = canonical(tmpdir) if tmpdir and os.path.isabs(tmpdir) else None
    expander = Expander(cwd, home, project_roots, tmpdir, env)
    approval = config.value("approval_policy", default="on-request")
    commands = _command_rules(config)
    sources = tuple(config.sources)
    ignored = tuple(config.ignored)

    mounts: tuple = ()
    if config.get("cloud", "additional_mounts") is not None:
        from .cloud import additional_mounts

        mounts = additional_mounts(config, home)
    common = dict(profile=selection.name, profile_origin=selection.origin, cwd=cwd, home=home,
                  project_roots=project_roots, commands=commands, approval_policy=approval,
                  project_trusted=config.project_trusted, sources=sources, ignored_keys=ignored, limits=limits,
                  additional_mounts=mounts)
    if selection.name == FULL_ACCESS_PROFILE:
        filesystem = FilesystemPolicy([PathRule("/", WRITE, BUILTIN, f"{FULL_ACCESS_PROFILE} (no sandbox)")])
        return Policy(sandboxed=False, filesystem=filesystem, network=NetworkPolicy(FULL, FULL_ACCESS_PROFILE),
                      environment=_environment_policy(config, ()), builtins=(), **common)

    profile_rules, glob_specs = expander.expand(fs_table, TIER_PROFILE)
    if not ({ROOT, MINIMAL} & set(fs_table)) and not any(rule.path == "/" for rule in profile_rules):
        # As Codex's platform defaults: a profile that names neither :root
        # nor :minimal still runs programs (its own rules win at their paths).
        profile_rules += [PathRule(path, READ, BUILTIN, f'{path}: system directories ({MINIMAL} = "read", '
                                   'built-in where a profile names neither :root nor :minimal)', kind="path",
                                   tier=TIER_BUILTIN, spelled=path) for path in expander.bases(MINIMAL)]
    builtin_rules = [PathRule(p, WRITE, BUILTIN, f'{p}: private to the run (built-in)', kind="private",
                              tier=TIER_BUILTIN, spelled=p) for p in PRIVATE_PATHS]
    network = _network_policy(net_table, selection)
    profile_rules += _unix_socket_rules(network, home)
    if network.mode == FULL:
        builtin_rules += [PathRule(p, READ, BUILTIN, f"{p}: name resolution with the host's network (built-in)",
                                   kind="path", tier=TIER_BUILTIN, spelled=p) for p in RESOLVER_PATHS]
    protection = config.get("protection") or {}
    credentials_setting = protection.get("credentials")
    credentials_on = True if credentials_setting is None else credentials_setting.value
    cred_rules, cred_globs = credential_rules(expander, credentials_on)
    base_rules = builtin_rules + cred_rules + profile_rules
    provisional = FilesystemPolicy(base_rules)
    # Before the scan: a workspace of / or $HOME would be scanned whole first.
    refuse_home_as_workspace(project_roots, home, provisional)
    refuse_credentials_as_workspace(project_roots, provisional)
    names_setting = protection.get("metadata")
    if names_setting is None:
        from .builtin_data import protected_names

        names = protected_names()
    else:
        names = tuple((n.rstrip("/"), "dir" if n.endswith("/") else "file") for n in names_setting.value)
    # Every protected name already anywhere in a writable tree, not only at its
    # top: a submodule's .git file redirected to a gitdir of the sandbox's
    # making would run that gitdir's config on the host's next `git status`,
    # and editors and agents open subfolders as projects (sub/.vscode,
    # sub/.claude). Every writable root, however it became writable, is scanned.
    nested = nested_protection_specs(outermost(writable_before_scan(base_rules, project_roots, provisional)),
                                      names)

    refusals: list[PolicyError] = []
    snapshots: dict = {}
    scanned_directories: dict = {}
    kinds: dict = {}
    denied_files: list = []
    glob_rules, glob_summaries, glob_caps = scan_globs(glob_specs + cred_globs + nested, provisional,
                                                        cache_dir=os.path.join(state_dir(home), "cache"),
                                                        home=home, snapshots=snapshots,
                                                        identities=scanned_directories, refusals=refusals,
                                                        kinds=kinds, denied_files=denied_files)
    link_check = None
    if denied_files:
        from .linkcheck import LinkCheck  # most projects' globs deny nothing

        # Forked here, it checks while the rest of the build and the mount plan go on.
        link_check = LinkCheck(denied_files)
    rules = base_rules + glob_rules
    provisional = FilesystemPolicy(rules)
    check_symlinks(profile_rules, provisional, refusals)
    notices: list[str] = []
    check_hard_links(cred_rules + profile_rules, provisional, home, refusals, notices, kinds)

    writable_roots = sorted({r.path for r in rules if r.access == WRITE and r.kind == "path" and r.path != "/"}
                            | {p for p in project_roots if provisional.decide_canonical(p).access == WRITE
                               and not provisional.decide_canonical(p).private})
    nested_repositories = sorted({os.path.dirname(cap.path) for cap in glob_caps
                                  if os.path.basename(cap.path) == ".git"})
    if len(nested_repositories) > MAX_NESTED_REPOSITORIES:
        refusals.append(PolicyError(
            f"the writable folders hold {len(nested_repositories)} repositories (more than "
            f"{MAX_NESTED_REPOSITORIES}), each protected as a project of its own: starting would mount "
            f"thousands of entries (first: {', '.join(nested_repositories[:3])})",
            hint="narrow the writable folders to the projects worked on, or deny the folder that holds "
                 'the others ("/path/to/repos" = "read")'))
        nested_repositories = nested_repositories[:MAX_NESTED_REPOSITORIES]
    # The project's own repository is committed to in place (see protection.py):
    # its .git is no nested repository to cap read-only whole.
    in_place = own_repositories(project_roots, writable_roots) if (".git", "dir") in names else []
    in_place_dirs = {os.path.join(root, ".git") for root in in_place}
    glob_caps = [cap for cap in glob_caps if cap.path not in in_place_dirs]
    protected = protected_entries(writable_roots, names, home, env, nested_repositories, refusals, in_place)
    caps = [Cap(entry.path, READ, PathRule(entry.path, READ, BUILTIN, entry.label, kind="protected",
                                           tier=TIER_PROTECTED, spelled=entry.path)) for entry in protected]
    caps += glob_caps
    caps += own_files(home, writable_roots)
    filesystem = FilesystemPolicy(rules, caps, glob_summaries, tuple(protected), snapshots, scanned_directories,
                                  kinds=kinds)

    added = [("RINGFENCE_SANDBOX", "1")]
    if not (tmpdir and filesystem.decide_canonical(tmpdir).access == WRITE
            and not filesystem.decide_canonical(tmpdir).private):
        added.append(("TMPDIR", "/tmp"))
    environment = _environment_policy(config, added)
    builtins = (
        ("private /tmp, /var/tmp, /run, /dev/shm", '":slash_tmp" = "write" (or a rule for the path)'),
        ("credentials layer" + ("" if credentials_on else " (off)"), "[protection] credentials = false"),
        ("protected metadata: " + ", ".join(n for n, _ in names), "[protection] metadata = [...]"),
        ("ringfence state hidden, user config read-only", "none (always on)"),
        ("process cap: " + ", ".join(limits.describe()), '[limits] processes = "unlimited"'),
    )
    return Policy(sandboxed=True, filesystem=filesystem, network=network, environment=environment, builtins=builtins,
                  found_refusals=tuple(refusals), notices=tuple(notices), git_in_place=tuple(in_place),
                  link_check=link_check, **common)
