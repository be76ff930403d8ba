"""Which permission profile a configuration selects, and what it holds:
the built-in profiles, `extends` chains, and the tables they merge."""

from __future__ import annotations

from .._record import Record
from ..config import Setting
from ..config.vocabulary import (BUILTIN_PROFILES, PROFILE_OF_MODE, PROJECT_ROOTS, READ_ONLY_PROFILE, ROOT,
                                 WORKSPACE_PROFILE)
from ..errors import ConfigError
from .filesystem import READ, WRITE


class Selection(Record):
    """The profile in force, and where it was chosen."""

    __slots__ = ("name", "origin")
    name: str
    origin: str


def _layer_rank(config, setting) -> int:
    for index, layer in enumerate(config.layers):
        if layer.source == setting.source:
            return index
    return -1


def select_profile(config) -> Selection:
    """The permission profile in force. A higher layer's choice wins; within one
    layer `sandbox_mode` wins over `default_permissions`, as in Codex."""
    mode = config.get("sandbox_mode")
    named = config.get("default_permissions")
    if mode is not None and named is not None and _layer_rank(config, named) > _layer_rank(config, mode):
        mode = None
    if mode is not None:
        name = PROFILE_OF_MODE[mode.value]
        return Selection(name, f"sandbox_mode = \"{mode.value}\" ({mode.source})")
    if named is not None:
        return Selection(named.value, f"default_permissions = \"{named.value}\" ({named.source})")
    return Selection(WORKSPACE_PROFILE, "default (no sandbox_mode or default_permissions set)")


def _builtin_profile(name: str, config) -> tuple[dict, dict]:
    """Filesystem and network tables of a built-in profile, as Settings."""
    origin = f"built-in profile {name}"
    if name == READ_ONLY_PROFILE:
        # The project is named explicitly so that it stays visible even under
        # the private /tmp (a project in /tmp would otherwise vanish).
        return {ROOT: Setting(READ, origin, ROOT),
                PROJECT_ROOTS: Setting({".": Setting(READ, origin, f'{PROJECT_ROOTS}."."')}, origin,
                                       PROJECT_ROOTS)}, {}
    if name == WORKSPACE_PROFILE:
        fs = {ROOT: Setting(READ, origin, ROOT),
              PROJECT_ROOTS: Setting({".": Setting(WRITE, origin, f'{PROJECT_ROOTS}."."')}, origin, PROJECT_ROOTS)}
        roots = config.get("sandbox_workspace_write", "writable_roots")
        if roots is not None:
            for root in roots.value:
                fs[root] = Setting(WRITE, roots.source, f'sandbox_workspace_write.writable_roots "{root}"')
        network = {}
        access = config.get("sandbox_workspace_write", "network_access")
        if access is not None:
            network["enabled"] = Setting(access.value, access.source, "sandbox_workspace_write.network_access")
        return fs, network
    return {ROOT: Setting(WRITE, origin, ROOT)}, {"enabled": Setting(True, origin, "network")}


def resolve_profile(name: str, config, chain=(), referrer=None) -> tuple[dict, dict, dict]:
    if name in BUILTIN_PROFILES:
        return _builtin_profile(name, config) + ({},)
    profiles = config.get("permissions") or {}
    if name not in profiles:
        available = ", ".join(sorted(list(profiles) + list(BUILTIN_PROFILES)))
        source = referrer or config.get("default_permissions") or config.get("sandbox_mode")
        raise ConfigError(source.source if source else "command line",
                          source.key if source else "default_permissions",
                          f'no permission profile named "{name}"', accepted=available)
    if name in chain:
        cycle = " -> ".join(chain + (name,))
        raise ConfigError(profiles[name]["extends"].source, f"permissions.{name}.extends",
                          f"extends forms a cycle: {cycle}")
    table = profiles[name]
    fs: dict = {}
    network: dict = {}
    limits: dict = {}
    if "extends" in table:
        fs, network, limits = resolve_profile(table["extends"].value, config, chain + (name,), table["extends"])
        fs, network, limits = dict(fs), dict(network), dict(limits)
    for key, value in (table.get("filesystem") or {}).items():
        inherited = fs.get(key)
        if inherited is not None and isinstance(inherited.value, dict) and isinstance(value.value, dict):
            # A scoped table extends the inherited one: adding a glob under
            # :project_roots must not drop the parent's "." = "write".
            value = value.replace(value={**inherited.value, **value.value})
        fs[key] = value
    for key, value in (table.get("network") or {}).items():
        network[key] = value
    for key, value in (table.get("limits") or {}).items():
        limits[key] = value
    return fs, network, limits
