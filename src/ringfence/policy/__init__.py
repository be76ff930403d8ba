"""The policy of one run: pure data, built once from the configuration.

`Policy` holds every decision ringfence will enforce, each with the rule that
made it. Backends turn it into what they need; `status` and `explain` read it
as it is.
"""

from __future__ import annotations

from .._record import Record

__all__ = ["Policy", "build_policy"]


class Policy(Record):
    """Everything one run enforces.

    `sandboxed` is False only for danger-full-access. `profile` names the
    permission profile and `profile_origin` where it was chosen. `refusals`
    are what keeps it from being enforced exactly (a run refuses; `status`
    and `explain` show them beside the rest).
    """

    __slots__ = ("sandboxed", "profile", "profile_origin", "cwd", "home", "project_roots",
                 "filesystem", "network", "environment", "commands", "approval_policy",
                 "project_trusted", "sources", "ignored_keys", "builtins", "limits", "refusals")
    _defaults = {"refusals": ()}

    def decide_path(self, path: str):
        return self.filesystem.access(path)


def build_policy(config, *, env=None) -> Policy:
    from .build import build

    return build(config, env=env)
