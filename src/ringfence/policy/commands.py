"""Command rules: the one place a decision is asked before a command is spawned.

This release knows the TOML `[[rules]]` form (`prefix`, `allow`); a matching
`allow = false` rule refuses the command. When several rules match, the
strictest wins. `.rules` files and approval prompts extend this module.
"""

from __future__ import annotations

from .._record import Record

ALLOW, FORBIDDEN, NO_RULE = "allow", "forbidden", "no-rule"
_STRICTNESS = {NO_RULE: 0, ALLOW: 1, FORBIDDEN: 2}


class CommandRule(Record):
    __slots__ = ("prefix", "decision", "origin", "label")


class CommandDecision(Record):
    __slots__ = ("decision", "rule")


class CommandRules(Record):
    __slots__ = ("rules",)
    _defaults = {"rules": ()}

    def decide(self, argv) -> CommandDecision:
        best = CommandDecision(NO_RULE, None)
        for rule in self.rules:
            if tuple(argv[:len(rule.prefix)]) == rule.prefix:
                if _STRICTNESS[rule.decision] > _STRICTNESS[best.decision]:
                    best = CommandDecision(rule.decision, rule)
        return best
