"""ringfence: run commands inside a boundary the operating system enforces.

The Python API is the product; the `ringfence` command is a thin face on it.
Names are imported lazily so that `import ringfence` stays cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Sandbox", "Outcome", "Policy", "load_policy", "RingfenceError", "ConfigError",
           "PolicyError", "BackendUnavailable", "CommandRefused", "CommandNotFound",
           "CommandNotExecutable", "__version__"]

_LAZY = {
    "Sandbox": ("ringfence.sandbox", "Sandbox"),
    "Outcome": ("ringfence.launcher.outcome", "Outcome"),
    "load_policy": ("ringfence.sandbox", "load_policy"),
    "Policy": ("ringfence.policy", "Policy"),
    "RingfenceError": ("ringfence.errors", "RingfenceError"),
    "ConfigError": ("ringfence.errors", "ConfigError"),
    "PolicyError": ("ringfence.errors", "PolicyError"),
    "BackendUnavailable": ("ringfence.errors", "BackendUnavailable"),
    "CommandRefused": ("ringfence.errors", "CommandRefused"),
    "CommandNotFound": ("ringfence.errors", "CommandNotFound"),
    "CommandNotExecutable": ("ringfence.errors", "CommandNotExecutable"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ringfence' has no attribute {name!r}")
