"""Review of the hardening: reading what the credential layer denies.

A secret counts as read when it reaches a file in the workspace, checked on
the host.
"""

import os
import socket
import sys
import tempfile

import pytest
from test_network_and_env import Server

pytestmark = pytest.mark.boundary

OPEN = "open review finding: "
SECRET = "s3cr3t-review-5d1c"


def _leaked(scene) -> bool:
    return SECRET in (scene.read("ws/leak.txt") or "")


def test_a_hard_link_into_a_denied_folder_is_refused_or_hidden(scene):
    scene.git("init", "-q")
    credentials = scene.write("home/.aws/credentials", f"aws_secret_access_key={SECRET}\n", mode=0o600)
    backup = os.path.join(scene.home, "old-aws-credentials")
    os.link(credentials, backup)
    scene.sh(f"cat {backup} > leak.txt", sandbox=False)
    assert _leaked(scene), "control: the other name reads the secret"
    scene.write("ws/leak.txt", "")
    scene.sh(f"cat {credentials} > leak.txt")
    assert not _leaked(scene), "control: the denied name itself is masked"
    result = scene.sh(f"cat {backup} > leak.txt")
    assert not _leaked(scene), result.stderr


def test_the_ssh_agent_stays_out_of_reach_when_its_folder_is_shared(scene):
    scene.git("init", "-q")
    folder = tempfile.mkdtemp(prefix="ssh-review-", dir="/tmp")
    os.chmod(folder, 0o755)
    agent = os.path.join(folder, "agent.1")
    listener = Server(socket.AF_UNIX, agent)
    os.chmod(agent, 0o777)
    try:
        scene.extra_env["SSH_AUTH_SOCK"] = agent
        connect = [sys.executable, "-c", "import os, socket; socket.socket(socket.AF_UNIX).connect("
                                         "os.environ['SSH_AUTH_SOCK'])"]
        scene.run(connect, sandbox=False)
        assert len(listener.settle()) == 1, "control: the agent accepts this user"
        scene.run(connect)
        assert len(listener.settle()) == 1, "control: under the private /tmp the agent is out of reach"
        # A user who shares part of /tmp (a build cache, an X socket folder) says nothing about the agent.
        scene.config(f'default_permissions = "dev"\n[permissions.dev]\nextends = ":workspace"\n'
                     f'[permissions.dev.filesystem]\n"{folder}" = "read"\n')
        result = scene.run(connect)
        assert len(listener.settle()) == 1, result.stderr
    finally:
        listener.close()
        os.unlink(agent)
        os.rmdir(folder)


def test_a_sandbox_masks_a_secret_that_appeared_since_its_last_run(scene):
    scene.git("init", "-q")
    script = scene.write("ws/agent.py", (
        "import sys\n"
        "from ringfence import Sandbox, load_policy\n"
        "box = Sandbox(load_policy('.')) if sys.argv[1] == 'reused' else None\n"
        "if box: box.run(['true'], capture_output=True)\n"
        f"open('.env', 'w').write('API_KEY={SECRET}\\n')\n"
        "box = box or Sandbox(load_policy('.'))\n"
        "box.run(['sh', '-c', 'cat .env > leak.txt'], capture_output=True)\n"
        "box.close()\n"))
    scene.run([sys.executable, "-P", script, "fresh"], sandbox=False)
    assert not _leaked(scene), "control: a Sandbox made after the secret appeared masks it"
    os.unlink(os.path.join(scene.ws, ".env"))
    result = scene.run([sys.executable, "-P", script, "reused"], sandbox=False)
    assert not _leaked(scene), result.stderr


def test_secrets_in_connection_strings_webhooks_and_longer_values_stay_outside(scene):
    scene.git("init", "-q")
    token = "ghp_" + "aB3" * 12
    scene.extra_env.update({
        "DB_PASS": SECRET, "PGPASS": SECRET,
        "SQL_CONNECTION": f"Server=db;Database=app;User Id=app;Password={SECRET};",
        "STORAGE": f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={SECRET};EndpointSuffix=x",
        "MYSQL_ADDRESS": f"app:{SECRET}@tcp(db:3306)/app",
        "EXTRA_INDEX": f"https://pypi.org/simple https://u:{SECRET}@pkgs.example/simple",
        "NOTIFY": f"https://hooks.slack.com/services/T0/B0/{SECRET}",
        "CURL_HEADER": f"Authorization: Bearer {token}",
        "TOKENIZERS_PARALLELISM": "false", "XDG_SESSION_TYPE": "wayland",
    })
    scene.sh("env > leak.txt", sandbox=False)
    seen = scene.read("ws/leak.txt")
    assert seen.count(SECRET) == 7 and token in seen, "control: every secret is in the environment"
    scene.write("ws/leak.txt", "")
    result = scene.sh("env > leak.txt")
    inside = scene.read("ws/leak.txt") or ""
    assert SECRET not in inside and token not in inside, result.stderr
    assert "TOKENIZERS_PARALLELISM=false" in inside and "XDG_SESSION_TYPE=wayland" in inside, result.stderr


@pytest.mark.parametrize("name", ["prod.ENV", ".netrc", ".pgpass", ".PyPIrc", "prod.tfvars", "id_ECDSA", "auth.json"])
def test_more_workspace_secrets_are_unreadable_whatever_their_case(scene, name):
    scene.git("init", "-q")
    scene.write(f"ws/app/{name}", f'{{"http-basic": {{"repo": {{"password": "{SECRET}"}}}}}}\n')
    scene.write("ws/app/example.env", "API_KEY=\n")
    scene.sh(f"cat 'app/{name}' > leak.txt", sandbox=False)
    assert _leaked(scene), "control: the user reads the file"
    scene.write("ws/leak.txt", "")
    result = scene.sh(f"cat 'app/{name}' > leak.txt; cat app/example.env")
    assert not _leaked(scene), result.stderr
    assert "API_KEY=" in result.stdout, "an example of the settings stays readable: " + result.stderr
