import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (Scene, bwrap_problem, check_user_can_run_ringfence, must_have, open_for_test_user,  # noqa: E402
                     test_users)

_BWRAP = {}
_OPENED: list = []


def pytest_sessionstart(session):
    """As root, boundary tests also run as an unprivileged user, who must reach
    the interpreter and this checkout: an interpreter under /root (mode 700) is
    not. The suite opens what it needs for traversal and reading only, and
    puts every mode back when it ends."""
    if os.getuid() == 0:
        _OPENED.extend(open_for_test_user())


def pytest_sessionfinish(session, exitstatus):
    for path, mode in reversed(_OPENED):
        try:
            os.chmod(path, mode)
        except OSError:
            pass


def pytest_report_header(config):
    if _OPENED:
        return (f"opened {len(_OPENED)} paths (o+x on directories, o+r on files) so that the unprivileged test "
                "user reaches the interpreter and the checkout; their modes are put back at the end")
    return None


@pytest.fixture(scope="session")
def sandbox_available():
    if "problem" not in _BWRAP:
        _BWRAP["problem"] = bwrap_problem()
    must_have(_BWRAP["problem"] is None, f"bubblewrap: {_BWRAP['problem']}")


@pytest.fixture(params=test_users(), ids=lambda user: user.name)
def user(request):
    check_user_can_run_ringfence(request.param)
    return request.param


@pytest.fixture
def scene(user, sandbox_available):
    world = Scene(user)
    yield world
    world.cleanup()


@pytest.fixture
def ordinary_scene(sandbox_available):
    """A scene for a user without root's privileges: the unprivileged test user
    when the suite runs as root, else the current user."""
    from harness import Scene, check_user_can_run_ringfence, current_user, unprivileged_user

    user = unprivileged_user() if os.getuid() == 0 else current_user()
    check_user_can_run_ringfence(user)
    world = Scene(user)
    yield world
    world.cleanup()


@pytest.fixture
def root_scene(sandbox_available):
    """A scene for root's own questions (what only root could do without a sandbox,
    or what only root's runs get). The suite runs as root in CI, so never skipped there."""
    from harness import Scene, current_user

    must_have(os.getuid() == 0, "this question is root's: run the suite as root")
    world = Scene(current_user())
    yield world
    world.cleanup()
