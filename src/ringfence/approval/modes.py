"""Approval policies as data: what each one asks, and what it refuses.

| policy            | `prompt` rule / unprovable | no rule          | escalation request | after a failure the sandbox caused |
|-------------------|----------------------------|------------------|--------------------|------------------------------------|
| `untrusted`       | ask                        | ask unless safe  | ask                | -                                  |
| `on-request`      | ask                        | run sandboxed    | ask                | -                                  |
| `on-request-rule` | as `on-request`            |                  |                    |                                    |
| `on-failure`      | ask                        | run sandboxed    | ask                | offer an unsandboxed re-run        |
| `never`           | refuse                     | run sandboxed    | refuse             | -                                  |

`forbidden` refuses under every policy. "safe" is Codex's list of commands
that only read (`policy.commands.SAFE_COMMANDS` and its conditional entries).
`on-request-rule` is Codex's on-request in which the model may propose a
rule to remember; in ringfence every remembered answer already writes a rule
(the "always" answer), so the two behave the same. `granular` (settings per
category) is refused by name: guessing its categories would ask less or
refuse more than its author meant.
"""

from __future__ import annotations

from .._record import Record
from ..errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` loads `re`: checkers only
    from ..config.vocabulary import ApprovalPolicyName as ApprovalMode
MODES = ("untrusted", "on-request", "on-request-rule", "on-failure", "never")


class ApprovalPolicy(Record):
    """`asks`: whether a person is ever asked; `asks_unmatched`: whether a
    command no rule matches is asked (unless safe); `retries`: whether a
    failure the sandbox caused offers an unsandboxed re-run."""

    __slots__ = ("name", "asks", "asks_unmatched", "retries")
    name: ApprovalMode
    asks: bool
    asks_unmatched: bool
    retries: bool


# Situations a policy answers, and how much each answer lets run: refusing
# (or offering nothing) < asking a person < running without asking.
SITUATIONS = ("a command a prompt rule names, or one that cannot be checked",
              "a command no rule matches (and not on the read-only list)",
              "a request to run outside the sandbox",
              "a failure the sandbox caused")
_LEVELS = {"refuse": 0, "nothing": 0, "ask": 1, "offer a re-run outside the sandbox": 1, "run": 2}


def outcomes(policy: ApprovalPolicy) -> tuple[str, ...]:
    """What `policy` does in each of `SITUATIONS`, in that order."""
    return ("ask" if policy.asks else "refuse", "ask" if policy.asks_unmatched else "run",
            "ask" if policy.asks else "refuse", "offer a re-run outside the sandbox" if policy.retries else "nothing")


def looser_than(candidate: ApprovalPolicy, base: ApprovalPolicy) -> list[str]:
    """Each situation in which `candidate` lets more run than `base`, as a sentence."""
    return [f"{situation}: {before} -> {after}"
            for situation, before, after in zip(SITUATIONS, outcomes(base), outcomes(candidate))
            if _LEVELS[after] > _LEVELS[before]]


_POLICIES = {
    "untrusted": ApprovalPolicy("untrusted", True, True, False),
    "on-request": ApprovalPolicy("on-request", True, False, False),
    "on-request-rule": ApprovalPolicy("on-request-rule", True, False, False),
    "on-failure": ApprovalPolicy("on-failure", True, False, True),
    "never": ApprovalPolicy("never", False, False, False),
}


def approval_policy(name: str | ApprovalPolicy) -> ApprovalPolicy:
    """The policy called `name`; an unknown or unsupported name is an error."""
    if isinstance(name, ApprovalPolicy):
        return name
    found = _POLICIES.get(name)
    if found is not None:
        return found
    accepted = ", ".join(MODES)
    if name == "granular":
        raise ConfigError("approval_policy", "", "granular approval (settings per category) is not supported",
                          accepted=accepted, hint='use "on-request" or "never"')
    raise ConfigError("approval_policy", "", f"{name!r} is not an approval policy", accepted=accepted)
