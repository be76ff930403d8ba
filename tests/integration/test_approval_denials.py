"""Denial reports for real sandboxed failures: a write outside, a denied read,
a refused connection. Each has a control: the same command without the
sandbox succeeds, so the failure inside is the sandbox's; and an ordinary
failure inside the sandbox is not blamed on it. The verdicts are read on the
host (the file written or not) and from the report, never from what the
command claims."""

from __future__ import annotations

import pytest

from harness import must_have

pytestmark = pytest.mark.integration


def _failed_run(scene, script):
    """Run `script` with `ringfence run` as the scene's user; then the policy it ran under."""
    from ringfence import load_policy

    result = scene.sh(script)
    # Built after the run: built as root first, its caches would be root's in the user's state directory.
    policy = load_policy(scene.ws, home=scene.home, env=scene.env())
    return policy, result


def _report(policy, script, result):
    from ringfence.approval import denial_report

    return denial_report(policy, ["/bin/sh", "-c", script], result.stderr, (), cwd=policy.cwd)


def test_a_write_outside_the_workspace_is_reported_with_its_rule(scene):
    target = scene.write("outside/target.txt", "before")
    script = f"echo after > {target}"
    control = scene.sh(script, sandbox=False)
    assert control.returncode == 0 and scene.read("outside/target.txt") == "after\n"
    scene.write("outside/target.txt", "before")
    policy, outcome = _failed_run(scene, script)
    assert outcome.returncode != 0 and scene.read("outside/target.txt") == "before"
    report = _report(policy, script, outcome)
    assert len(report.denials) == 1, (outcome.stderr, report.lines())
    [denial] = report.denials
    assert denial.kind == "write" and denial.target == target
    assert denial.message == f"denied by the sandbox: write to {target}, rule `{denial.rule}`"
    assert denial.rule == policy.filesystem.access(target).rule.label


def test_a_denied_read_is_reported_with_its_rule(scene):
    secret = scene.write("home/.aws/credentials", "[default]\naws_secret_access_key = x\n")
    script = f"cat {secret} > /dev/null"
    assert scene.sh(script, sandbox=False).returncode == 0
    policy, outcome = _failed_run(scene, script)
    assert outcome.returncode != 0
    [denial] = _report(policy, script, outcome).denials
    assert denial.kind == "read" and denial.target == secret and "credentials" in denial.rule


def _host_address() -> str | None:
    import socket

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_a_refused_connection_is_reported_as_the_network_rule(scene):
    import socket

    address = _host_address()
    # A machine that installed the test extras has a route out, so an address.
    must_have(address is not None, "an address other than loopback (a default route)")
    server = socket.socket()
    server.bind((address, 0))
    server.listen(4)
    port = server.getsockname()[1]
    script = f"python3 -c \"import socket; socket.create_connection(('{address}', {port}), timeout=5)\""
    try:
        control = scene.sh(script, sandbox=False)
        assert control.returncode == 0, control.stderr
        server.accept()[0].close()  # the control did connect: the server saw it
        policy, outcome = _failed_run(scene, script)
    finally:
        server.close()
    assert outcome.returncode != 0
    report = _report(policy, script, outcome)
    assert [d.kind for d in report.denials] == ["network"], outcome.stderr
    assert policy.network.origin in report.denials[0].message


def test_an_ordinary_failure_inside_is_not_blamed_on_the_sandbox(scene):
    scene.write("ws/build/.keep", "")
    script = "echo x > build/out && ls ./missing"
    policy, outcome = _failed_run(scene, script)
    assert outcome.returncode != 0 and scene.read("ws/build/out") == "x\n"
    assert not _report(policy, script, outcome).sandbox_caused


def _loopback_server():
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.5)
    return server, server.getsockname()[1]


def _connections(server) -> int:
    import socket

    count = 0
    while True:
        try:
            server.accept()[0].close()
        except (socket.timeout, BlockingIOError):
            return count
        count += 1


def test_a_refused_connection_to_the_hosts_loopback_is_reported_as_network_off(scene):
    server, port = _loopback_server()
    script = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)\""
    try:
        control = scene.sh(script, sandbox=False)
        assert control.returncode == 0 and _connections(server) == 1, control.stderr
        policy, outcome = _failed_run(scene, script)
        assert outcome.returncode != 0 and _connections(server) == 0  # the host's server saw nothing
        report = _report(policy, script, outcome)
    finally:
        server.close()
    [denial] = report.denials
    assert denial.kind == "network" and denial.target == f"127.0.0.1:{port}"
    assert "network is off" in denial.message and f"rule `{policy.network.origin}`" in denial.message


def test_a_refused_connection_with_nothing_listening_on_the_host_is_not_the_sandbox(scene):
    server, port = _loopback_server()
    server.close()  # the port is free again: refused inside and outside alike
    script = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)\""
    assert scene.sh(script, sandbox=False).returncode != 0
    policy, outcome = _failed_run(scene, script)
    assert outcome.returncode != 0
    assert not _report(policy, script, outcome).sandbox_caused


# -- the same reports from Sandbox.run itself: events, with output captured --------------------

@pytest.fixture
def api_world(sandbox_available):
    from harness import Scene, current_user

    world = Scene(current_user())
    yield world
    world.cleanup()


def _denials(world, argv):
    from ringfence import Sandbox, load_policy

    policy = load_policy(world.ws, home=world.home, env=world.env())
    outcome = Sandbox(policy).run(argv, env=world.env(), capture_output=True)
    assert outcome.exit_code != 0
    return policy, [event for event in outcome.events if event["type"] == "sandbox.denial"]


def test_run_reports_a_write_outside(api_world):
    target = api_world.write("outside/target", "before\n")
    policy, [denial] = _denials(api_world, ["sh", "-c", f"echo after > {target}"])
    assert api_world.read("outside/target") == "before\n"
    assert denial["kind"] == "write" and denial["target"] == target
    assert denial["message"] == f"denied by the sandbox: write to {target}, rule `{denial['rule']}`"
    assert denial["rule"] == policy.filesystem.access(target).rule.label and '"write"' in denial["fix"]


def test_run_reports_a_denied_read(api_world):
    secret = api_world.write("home/.aws/credentials", "[default]\naws_secret_access_key = x\n")
    _, [denial] = _denials(api_world, ["cat", secret])
    assert denial["kind"] == "read" and denial["target"] == secret and "credentials" in denial["rule"]
    assert "[protection] credentials = false" in denial["fix"]


def test_run_reports_a_refused_connection(api_world):
    server, port = _loopback_server()
    code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)"
    try:
        policy, [denial] = _denials(api_world, ["python3", "-c", code])
        assert _connections(server) == 0
    finally:
        server.close()
    assert denial["kind"] == "network" and "network is off" in denial["message"]
    assert denial["rule"] == policy.network.origin


def test_run_does_not_blame_the_sandbox_for_an_ordinary_failure(api_world):
    api_world.mkdir("ws/build")
    _, denials = _denials(api_world, ["sh", "-c", "echo x > build/out && ls ./missing"])
    assert denials == [] and api_world.read("ws/build/out") == "x\n"
