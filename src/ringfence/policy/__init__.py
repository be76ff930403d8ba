"""The policy of one run: pure data, built once from the configuration.

`Policy` holds every decision ringfence will enforce, each with the rule that
made it. Backends turn it into what they need; `status` and `explain` read it
as it is.
"""

from __future__ import annotations

from .record import Policy

__all__ = ["Policy", "build_policy"]


def build_policy(config, *, env=None) -> Policy:
    # build.py brings the scan and every built-in layer; `import ringfence.policy`
    # alone (for the Policy type) stays cheap.
    from .build import build

    return build(config, env=env)
