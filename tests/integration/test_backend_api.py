"""The same API tests over the bubblewrap backend and the fake one.

What lies above the seam (the run's I/O, exit statuses, timeouts, the
environment scrub, command rules, refusals, events) must not depend on
which backend runs the command: each test here runs once with the real
bubblewrap backend and once with `FakeBackend`, which enforces nothing."""

import os

import pytest

from harness import Scene, current_user

pytestmark = pytest.mark.integration


@pytest.fixture(params=["bwrap", "fake"])
def backend_name(request):
    if request.param == "bwrap":
        request.getfixturevalue("sandbox_available")
    return request.param


@pytest.fixture
def world():
    scene = Scene(current_user())
    yield scene
    scene.cleanup()


def make_backend(name):
    if name == "fake":
        from ringfence.backends.fake import FakeBackend

        return FakeBackend()
    from ringfence.backends import select_backend

    return select_backend()


def sandbox(world, backend_name, backend=None, **options):
    from ringfence import Sandbox, load_policy

    return Sandbox(load_policy(world.ws, home=world.home, env=world.env(), **options),
                   backend=backend or make_backend(backend_name))


def types_of(outcome):
    return [event["type"] for event in outcome.events]


def test_exit_code_output_and_the_runs_events(world, backend_name):
    outcome = sandbox(world, backend_name).run(["sh", "-c", "echo out; echo err >&2; exit 7"],
                                               capture_output=True, env=world.env())
    assert (outcome.exit_code, outcome.stdout, outcome.stderr) == (7, b"out\n", b"err\n")
    types = types_of(outcome)
    assert types[0] == "run.policy" and types[-1] == "run.end"
    start = next(event for event in outcome.events if event["type"] == "run.start")
    assert start["backend"] == backend_name and start["argv"] == ["sh", "-c", "echo out; echo err >&2; exit 7"]
    assert outcome.events[-1]["exit_code"] == 7
    # Only a real backend is a boundary, and the Outcome says which it was.
    assert outcome.sandboxed is (backend_name == "bwrap")


def test_input_reaches_the_command(world, backend_name):
    outcome = sandbox(world, backend_name).run(["tr", "a-z", "A-Z"], input=b"hello", capture_output=True,
                                               env=world.env())
    assert outcome.stdout == b"HELLO" and outcome.exit_code == 0


def test_the_environment_is_scrubbed_before_the_backend_sees_it(world, backend_name):
    env = dict(world.env(), GITHUB_TOKEN="ghp_" + "a" * 36, KEPT_SETTING="1")
    outcome = sandbox(world, backend_name).run(["sh", "-c", 'echo "${GITHUB_TOKEN:-none} $KEPT_SETTING"'],
                                               capture_output=True, env=env)
    assert outcome.stdout == b"none 1\n"
    start = next(event for event in outcome.events if event["type"] == "run.start")
    assert "GITHUB_TOKEN" in start["env_dropped"]


def test_a_timeout_ends_the_command_with_124(world, backend_name):
    outcome = sandbox(world, backend_name).run(["sleep", "30"], timeout=1, env=world.env())
    assert (outcome.exit_code, outcome.reason) == (124, "timeout")


def test_a_forbidden_command_never_reaches_the_backend(world, backend_name):
    from ringfence.errors import CommandRefused
    from ringfence.events import EventLog

    world.config('[[rules]]\nprefix = "rm"\nallow = false\n')
    backend = make_backend(backend_name)
    events = EventLog()
    with pytest.raises(CommandRefused):
        sandbox(world, backend_name, backend=backend).run(["sh", "-c", "true && rm -rf x"], env=world.env(),
                                                          events=events)
    assert "run.start" not in [event["type"] for event in events.events]
    if backend_name == "fake":
        assert backend.plans == []


def test_a_missing_working_directory_is_an_error(world, backend_name):
    from ringfence.errors import RingfenceError

    with pytest.raises(RingfenceError, match="no such directory"):
        sandbox(world, backend_name).run(["true"], cwd=os.path.join(world.ws, "gone"), env=world.env())


def test_a_program_that_is_not_there_is_an_error_before_anything_runs(world, backend_name):
    from ringfence.errors import RingfenceError

    with pytest.raises(RingfenceError, match="no-such-program-here"):
        sandbox(world, backend_name).run(["no-such-program-here"], env=world.env())


def test_what_the_backend_cannot_enforce_is_refused_before_the_run(world, backend_name):
    from ringfence.backends.base import Unenforceable
    from ringfence.errors import PolicyError

    if backend_name == "fake":
        from ringfence.backends.fake import FakeBackend

        backend = FakeBackend(refuse=(Unenforceable("a limit", "not available here", "drop it"),))
        expected = "a limit: not available here"
    else:
        # A limited network with a rule its egress proxy cannot read.
        world.config('[permissions.dev]\nextends = ":workspace"\n[permissions.dev.network]\nenabled = true\n'
                     'mode = "limited"\n[permissions.dev.network.domains]\n"exa mple.com" = "allow"\n')
        backend = make_backend(backend_name)
        expected = "exa mple.com"
    box = sandbox(world, backend_name, backend=backend, **({"permissions": "dev"} if backend_name == "bwrap" else {}))
    with pytest.raises(PolicyError, match=expected):
        box.run(["true"], env=world.env())
    assert box.unenforceable()


def test_close_releases_the_backend(world, backend_name):
    backend = make_backend(backend_name)
    with sandbox(world, backend_name, backend=backend) as box:
        assert box.run(["true"], env=world.env()).exit_code == 0
    if backend_name == "fake":
        assert backend.closed
    else:
        # The placeholders a kept Sandbox held between runs are gone with it.
        assert not os.path.exists(os.path.join(world.ws, ".vscode"))
