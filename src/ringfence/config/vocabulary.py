"""The words of the configuration, in one place: what `sandbox_mode`,
`approval_policy` and the access levels accept, the special path tokens,
and the built-in permission profiles each sandbox mode stands for."""

from __future__ import annotations

from typing import Literal

SandboxMode = Literal["read-only", "workspace-write", "danger-full-access"]
Access = Literal["none", "read", "write"]

SANDBOX_MODES: tuple[str, ...] = ("read-only", "workspace-write", "danger-full-access")
APPROVAL_POLICIES: tuple[str, ...] = ("untrusted", "on-request", "on-failure", "never", "on-request-rule")
ACCESS_WORDS = {"read": "read", "write": "write", "none": "none", "deny": "none"}
# A unix socket is reached by connect(2), which a read-only mount allows.
SOCKET_ACCESS = {"allow": "read", "none": "none", "deny": "none"}

# Special path tokens and what each names (paths are filled in by the policy).
ROOT, MINIMAL, PROJECT_ROOTS, WORKSPACE_ROOTS, TMPDIR, SLASH_TMP = (
    ":root", ":minimal", ":project_roots", ":workspace_roots", ":tmpdir", ":slash_tmp")
TOKENS: tuple[str, ...] = (ROOT, MINIMAL, PROJECT_ROOTS, WORKSPACE_ROOTS, TMPDIR, SLASH_TMP)

READ_ONLY_PROFILE, WORKSPACE_PROFILE, FULL_ACCESS_PROFILE = ":read-only", ":workspace", ":danger-full-access"
BUILTIN_PROFILES: tuple[str, ...] = (READ_ONLY_PROFILE, WORKSPACE_PROFILE, FULL_ACCESS_PROFILE)
PROFILE_OF_MODE = {"read-only": READ_ONLY_PROFILE, "workspace-write": WORKSPACE_PROFILE,
                   "danger-full-access": FULL_ACCESS_PROFILE}
