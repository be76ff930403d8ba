"""The policy of one run as a record: every decision ringfence will enforce."""

from __future__ import annotations

from .._record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..config.vocabulary import ApprovalPolicyName
    from ..errors import PolicyError
    from .cloud import AdditionalMount
    from .commands import CommandRules
    from .environment import EnvironmentPolicy
    from .filesystem import FilesystemPolicy
    from .limits import Limits
    from .linkcheck import LinkCheck
    from .network import NetworkPolicy


class Policy(Record):
    """Everything one run enforces.

    `sandboxed` is False only for danger-full-access. `profile` names the
    permission profile and `profile_origin` where it was chosen. `refusals`
    are what keeps it from being enforced exactly, `found_refusals` and the
    verdict of `link_check` (a run refuses; `status` and `explain` show
    them beside the rest); `notices` what a run enforces
    but could not check in full, shown by `status`. `load_request` is how
    `load_policy` made it, for a Sandbox to build it afresh at every run.
    `additional_mounts` are what an isolated run sees beside its workspace;
    `git_in_place` the project roots whose own repository a run may commit to.
    """

    __slots__ = ("sandboxed", "profile", "profile_origin", "cwd", "home", "project_roots",
                 "filesystem", "network", "environment", "commands", "approval_policy",
                 "project_trusted", "sources", "ignored_keys", "builtins", "limits", "found_refusals", "notices",
                 "load_request", "additional_mounts", "git_in_place", "link_check")
    _defaults = {"found_refusals": (), "notices": (), "load_request": None, "additional_mounts": (),
                 "git_in_place": (), "link_check": None}
    sandboxed: bool
    profile: str
    profile_origin: str
    cwd: str
    home: str
    project_roots: tuple[str, ...]
    filesystem: FilesystemPolicy
    network: NetworkPolicy
    environment: EnvironmentPolicy
    commands: CommandRules
    approval_policy: ApprovalPolicyName
    project_trusted: bool
    sources: tuple[str, ...]
    ignored_keys: tuple[str, ...]
    builtins: tuple[tuple[str, str], ...]
    limits: Limits
    found_refusals: tuple[PolicyError, ...]
    notices: tuple[str, ...]
    load_request: tuple[tuple[str, Any], ...] | None
    additional_mounts: tuple[AdditionalMount, ...]
    git_in_place: tuple[str, ...]
    link_check: LinkCheck | None

    @property
    def refusals(self) -> tuple[PolicyError, ...]:
        """Everything that keeps this policy from running: what the build
        found, then the verdict of its hard-link check (which may still be
        under way beside the start: asking waits for it)."""
        if self.link_check is None:
            return self.found_refusals
        return self.found_refusals + self.link_check.refusals()
