"""Whether a project's configuration loosens when a person is asked.

The counterpart of `policy.compare` for approvals: an untrusted project may
ask more, never less. Two things loosen:

- an `approval_policy` that, in some situation, lets more run than the
  user's own (`untrusted` -> `on-request` runs unmatched commands without
  asking; `on-request` -> `on-failure` adds offers to run outside the
  sandbox; `never` -> anything asks where `never` refuses). `never` after
  `on-request` is no loosening: it refuses what `on-request` would ask.
- an allow rule the project adds, where it changes an answer: under an
  approval policy that asks about commands no rule matches (`untrusted`),
  any allow does; under the others, an allow changes nothing that runs,
  except one that names a shell, `eval` or a wrapper, which can approve
  text that cannot be checked (and would otherwise be asked about).

Prompt and forbidden rules only tighten (the strictest rule wins), and a
project's `.rules` files are never read unless it is trusted.
"""

from __future__ import annotations

from .modes import approval_policy, looser_than


def approval_widenings(base, candidate) -> list[str]:
    """Every way `candidate` asks less than `base`, as readable sentences."""
    from ..policy.commands import ALLOW, names_unchecked_text

    before, after = approval_policy(base.approval_policy), approval_policy(candidate.approval_policy)
    found = [f"approval_policy {before.name} -> {after.name}: {change}" for change in looser_than(after, before)]
    known = set(base.commands.rules)
    for rule in candidate.commands.rules:
        if rule in known or rule.decision != ALLOW:
            continue
        if before.asks_unmatched:
            found.append(f"rules: {rule.label} ({rule.origin}) runs without asking what approval_policy = "
                         f"{before.name} asks about")
        elif names_unchecked_text(rule):
            found.append(f"rules: {rule.label} ({rule.origin}) could approve a script or wrapped command that "
                         "cannot be checked")
    return found
