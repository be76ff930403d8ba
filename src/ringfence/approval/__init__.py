"""Approvals: when to ask a person before a command runs, and what to do with the answer.

Backend-neutral: nothing here spawns or sandboxes a process. The run path
calls `decide_run` before spawning (and `decide_after_failure` after a
failed sandboxed run under `on-failure`) and does what the verdict says.
"""

from __future__ import annotations

from .flow import (ApprovalRequest, RunVerdict, decide_after_failure, decide_after_failure_async,
                   decide_run, decide_run_async, emit_all)
from .modes import MODES, ApprovalPolicy, approval_policy

__all__ = ["ApprovalRequest", "Approver", "RunVerdict", "decide_run", "decide_run_async", "decide_after_failure",
           "decide_after_failure_async", "emit_all", "MODES", "ApprovalPolicy", "approval_policy",
           "TerminalApprover", "append_allow_rule", "denial_report", "DenialReport", "Denial"]


def __getattr__(name):
    if name == "Approver":
        from . import flow

        return flow.Approver
    if name == "TerminalApprover":
        from .terminal import TerminalApprover

        return TerminalApprover
    if name == "append_allow_rule":
        from .amend import append_allow_rule

        return append_allow_rule
    if name in ("denial_report", "DenialReport", "Denial"):
        from . import denials

        return getattr(denials, name)
    raise AttributeError(name)
