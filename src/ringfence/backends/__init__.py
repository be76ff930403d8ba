"""Backends: where the run path forks by the mechanism that enforces a policy.

`select_backend()` picks the strongest one this machine allows; `Sandbox`
takes another through `backend=` (tests use `FakeBackend`). Importing this
package loads no backend: each is imported when it is picked.
"""

from __future__ import annotations

import sys

from ..errors import BackendUnavailable
from .base import Backend, Unenforceable

__all__ = ["Backend", "Unenforceable", "select_backend"]


def select_backend() -> Backend:
    if sys.platform.startswith("linux"):
        from .bwrap import BwrapBackend

        return BwrapBackend()
    raise BackendUnavailable(f"no backend for {sys.platform}: ringfence enforces its policies on Linux",
                             hint="run ringfence on Linux (WSL2 included)")
