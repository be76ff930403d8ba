"""The policy of one run as a record: every decision ringfence will enforce."""

from __future__ import annotations

from .._record import Record


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
