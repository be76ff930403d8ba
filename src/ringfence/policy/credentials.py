"""The built-in credential layer as rules: secrets under the home directory
and in every project root, and the ssh agent's socket."""

from __future__ import annotations

import os

from ..paths import canonical
from .builtin_data import BUILTIN, credential_entries
from .filesystem import NONE, TIER_BUILTIN, GlobSpec, PathRule
from .globs import is_glob, static_prefix


def _resolved(parents: dict, path: str) -> str:
    resolved = parents.get(path)
    if resolved is None:
        resolved = parents[path] = canonical(path)
    return resolved


def _canonical_under(parents: dict, path: str) -> str:
    """`canonical(path)`, resolving each parent directory once: the credential
    list names dozens of paths under the same few directories."""
    parent, _, name = path.rpartition("/")
    resolved = _resolved(parents, parent)
    full = f"{resolved}/{name}" if resolved != "/" else f"/{name}"
    return canonical(full) if os.path.islink(full) else full


def credential_rules(expander, enabled: bool) -> tuple[list[PathRule], list[GlobSpec]]:
    """The layer's rules (paths) and glob specs, for one home and set of project roots."""
    if not enabled:
        return [], []
    parents: dict = {}
    rules, globs = [], []
    agent = expander.env.get("SSH_AUTH_SOCK", "")
    if agent.startswith("/"):
        # Wherever the agent's socket lives, the sandbox reaching it could sign
        # as the user. Under the private /tmp it is out of reach only until a
        # rule shares its folder, so it is denied there too.
        rules.append(PathRule(canonical(agent), NONE, BUILTIN,
                              f'"{agent}" = "none"  (built-in :credentials: the ssh agent named by SSH_AUTH_SOCK)',
                              kind="credentials", tier=TIER_BUILTIN, spelled=agent))
    for spelled, access, excludes, holds in credential_entries():
        label = f'{spelled} = "{access}"  (built-in :credentials)'
        bases = [expander.home] if spelled.startswith("~/") else list(expander.project_roots)
        relative = spelled[2:]
        for base in bases:
            target = os.path.join(base, relative)
            if is_glob(relative):
                root = static_prefix(target)
                pattern = target[len(root):].lstrip("/")
                globs.append(GlobSpec(root=_resolved(parents, root), pattern=pattern, access=access, origin=BUILTIN,
                                      label=label, tier=TIER_BUILTIN, excludes=excludes, fold=True, holds=holds))
            else:
                rules.append(PathRule(_canonical_under(parents, target), access, BUILTIN, label,
                                      kind="credentials", tier=TIER_BUILTIN, spelled=target))
    return rules, globs
