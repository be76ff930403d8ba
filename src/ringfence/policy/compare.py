"""Is one policy wider than another? Used to keep project configuration from
loosening the sandbox of an untrusted project.

The comparison is exact for filesystem rules: access is constant between
rule paths, so comparing the two policies at every rule path of either (and
at `/`) covers every path there is.
"""

from __future__ import annotations

from .filesystem import RANK
from .network import network_widenings


def _host_access(decision) -> int:
    # A private tmpfs shows nothing of the host, so for the host it is `none`.
    return 0 if decision.private else RANK[decision.access]


def widenings(base, candidate, source_env) -> list[str]:
    """Every way `candidate` grants more than `base`, as readable sentences."""
    found = []
    if base.sandboxed and not candidate.sandboxed:
        return ["it turns the sandbox off (danger-full-access)"]
    paths = {"/"} | set(base.filesystem.index) | set(candidate.filesystem.index)
    paths |= {cap.path for cap in base.filesystem.caps} | {cap.path for cap in candidate.filesystem.caps}
    for path in sorted(paths):
        before = base.filesystem.decide_canonical(path)
        after = candidate.filesystem.decide_canonical(path)
        if _host_access(after) > _host_access(before):
            rule = after.rule.describe() if after.rule else "no rule"
            found.append(f"{path}: {before.access} -> {after.access} by {rule}")
    found.extend(network_widenings(base.network, candidate.network))
    granted = {(mount.source, mount.target, mount.readonly) for mount in base.additional_mounts}
    for mount in candidate.additional_mounts:
        if (mount.source, mount.target, mount.readonly) not in granted \
                and (mount.source, mount.target, False) not in granted:
            found.append(f"isolated runs: mounts {mount.describe()}")
    for field in ("processes", "memory", "cpu_time", "timeout", "temporary_space"):
        before, after = getattr(base.limits, field), getattr(candidate.limits, field)
        if before is not None and (after is None or after > before):
            found.append(f"limits: {field} {before} -> {after if after is not None else 'unlimited'}")
    before_env = base.environment.apply(source_env).env
    after_env = candidate.environment.apply(source_env).env
    exposed = sorted(name for name, value in after_env.items()
                     if name in source_env and source_env[name] == value and name not in before_env)
    if exposed:
        found.append("environment: passes through " + ", ".join(exposed))
    return found
