"""What `ringfence run` loads: start-up is a measured feature, and one
`import signal` (enum, functools, collections behind it) costs more than a
fifth of what ringfence does before bwrap starts. The standard modules that
cost milliseconds stay off the path of an everyday run; the verdict is read
from the finished run's own module table, against what the interpreter had
loaded before ringfence (an interpreter's site may load some of them itself)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

SLOW_MODULES = ("enum", "signal", "re", "typing", "dataclasses", "inspect", "json", "subprocess", "threading",
                "weakref", "tempfile", "shutil", "hashlib", "ctypes", "selectors", "asyncio", "logging", "socket",
                "pathlib", "datetime", "random", "tomllib")

PROBE = r"""
import os, sys
before = set(sys.modules)
slow = sys.argv[1].split(",")
real_exit = os._exit


def report(code):
    loaded = sorted(name for name in slow if name in sys.modules and name not in before)
    sys.stderr.write("LOADED " + ",".join(loaded) + "\n")
    sys.stderr.flush()
    real_exit(code)


os._exit = report  # the CLI leaves by os._exit, with its module table whole
sys.argv = ["ringfence", "run", "--", "true"]
from ringfence.cli import command_line
command_line()
"""


def _loaded(scene) -> list[str]:
    result = subprocess.run([sys.executable, "-P", "-c", PROBE, ",".join(SLOW_MODULES)], cwd=scene.ws,
                            env=scene.env(), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                            **scene._as_user())
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("LOADED "))
    return [name for name in line[len("LOADED "):].split(",") if name]


def test_a_run_loads_none_of_the_slow_standard_modules(scene):
    scene.git("init", "-q")
    first = scene.run(["true"])  # the first run ever compiles the seccomp program, with ctypes: cached after
    assert first.returncode == 0, first.stderr
    assert _loaded(scene) == []


def test_the_probe_sees_a_slow_module_loaded_on_the_way(scene):
    # Control: a configuration file whose cached parse is gone is parsed with
    # tomllib, and the same probe sees it loaded.
    import os

    scene.config('approval_policy = "never"\n')
    cache = os.path.join(scene.home, ".local", "state", "ringfence", "cache")
    for name in os.listdir(cache) if os.path.isdir(cache) else ():
        if name.startswith("toml-"):
            os.unlink(os.path.join(cache, name))
    assert "tomllib" in _loaded(scene)
