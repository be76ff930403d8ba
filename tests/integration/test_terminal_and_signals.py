"""A terminal passes through (through a private pty), and so do Ctrl-C and SIGTERM."""

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

pytestmark = pytest.mark.integration


class Terminal:
    """ringfence started on a pseudo-terminal we control, as a user at a shell would."""

    def __init__(self, scene, argv, rows=24, cols=80, options=(), sandbox=True):
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        kwargs = {} if scene.user.is_current else {"user": scene.user.uid, "group": scene.user.gid,
                                                    "extra_groups": []}
        wrapper = [sys.executable, "-P", "-m", "ringfence", "run", *options, "--"] if sandbox else []
        self.process = subprocess.Popen([*wrapper, *argv],
                                        cwd=scene.ws, env=scene.env(), stdin=slave, stdout=slave, stderr=slave,
                                        start_new_session=True, **kwargs)
        os.close(slave)
        self.output = b""

    def expect(self, text: str, timeout=20):
        deadline = time.time() + timeout
        while text.encode() not in self.output:
            remaining = deadline - time.time()
            assert remaining > 0, f"did not see {text!r}; output so far: {self.output!r}"
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                self.output += chunk
        assert text.encode() in self.output, f"did not see {text!r}; output: {self.output!r}"

    def send(self, data: bytes):
        os.write(self.master, data)

    def echoing(self) -> bool:
        """Whether the terminal (as the user's shell would find it) echoes keys."""
        return bool(termios.tcgetattr(self.master)[3] & termios.ECHO)

    def wait(self, timeout=20):
        deadline = time.time() + timeout
        while self.process.poll() is None and time.time() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.output += os.read(self.master, 4096)
                except OSError:
                    pass
        # What was written just before the exit is still in the pty's buffer.
        while select.select([self.master], [], [], 0.05)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk
        return self.process.wait(timeout=1)

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


@pytest.fixture
def terminal(scene):
    opened = []

    def start(argv, **kwargs):
        term = Terminal(scene, argv, **kwargs)
        opened.append(term)
        return term

    yield start
    for term in opened:
        term.close()


def test_interactive_program_works(scene, terminal):
    scene.write("ws/ask.py", "import os\nprint('tty', os.isatty(0), flush=True)\n"
                             "name = input('name? ')\nprint('hello', name, flush=True)\n")
    term = terminal(["python3", "ask.py"])
    term.expect("name? ")
    term.send(b"world\r")
    term.expect("hello world")
    assert term.wait() == 0
    assert b"tty True" in term.output


def test_controlling_terminal_and_window_size(scene, terminal):
    scene.write("ws/tty.py", "import os, shutil\n"
                             "open('/dev/tty', 'w').write('via-dev-tty\\n')\n"
                             "print('size', os.get_terminal_size(0).lines, os.get_terminal_size(0).columns)\n")
    term = terminal(["python3", "tty.py"], rows=33, cols=101)
    term.expect("via-dev-tty")
    term.expect("size 33 101")
    assert term.wait() == 0


def test_ctrl_c_reaches_the_program(scene, terminal):
    scene.write("ws/wait.py", "import sys, time\ntry:\n    print('ready', flush=True)\n    time.sleep(60)\n"
                              "except KeyboardInterrupt:\n    print('caught', flush=True)\n    sys.exit(7)\n")
    term = terminal(["python3", "wait.py"])
    term.expect("ready")
    time.sleep(0.3)
    term.send(b"\x03")
    term.expect("caught")
    assert term.wait() == 7


def test_the_sandbox_cannot_inject_into_the_users_terminal(scene, terminal):
    """TIOCSTI from inside must not push keystrokes into the terminal ringfence runs on."""
    scene.write("ws/inject.py", "import fcntl, termios\n"
                                "for fd in (0, 1, 2):\n"
                                "    try:\n"
                                "        for ch in b'touch INJECTED\\n':\n"
                                "            fcntl.ioctl(fd, termios.TIOCSTI, bytes([ch]))\n"
                                "    except OSError as e:\n"
                                "        print('refused', e.errno, flush=True)\n")
    term = terminal(["python3", "inject.py"])
    term.wait()
    # Whatever was injected could only reach the sandbox's own pty, which nobody reads as a shell.
    assert not scene.exists("ws/INJECTED")
    assert b"touch INJECTED" not in term.output.replace(b"refused", b"")


def _start_plain(scene, script):
    kwargs = {} if scene.user.is_current else {"user": scene.user.uid, "group": scene.user.gid,
                                                "extra_groups": []}
    return subprocess.Popen([sys.executable, "-P", "-m", "ringfence", "run", "--no-tty", "--", "python3", "-c", script],
                            cwd=scene.ws, env=scene.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, **kwargs)


SIGNAL_SCRIPT = ("import signal, sys, time\n"
                 "def stop(n, f):\n    open('got', 'w').write(str(n))\n    sys.exit(5)\n"
                 "signal.signal(signal.SIGTERM, stop)\nsignal.signal(signal.SIGINT, stop)\n"
                 "open('ready', 'w').close()\ntime.sleep(60)\n")


def _wait_for(scene, name, timeout=20):
    deadline = time.time() + timeout
    while not scene.exists(f"ws/{name}"):
        assert time.time() < deadline, f"{name} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_to_ringfence_reach_the_command(scene, signum):
    process = _start_plain(scene, SIGNAL_SCRIPT)
    _wait_for(scene, "ready")
    process.send_signal(signum)
    process.wait(timeout=20)
    assert scene.read("ws/got") == str(int(signum))
    assert process.returncode == 5


def test_second_interrupt_kills_everything(scene):
    stubborn = ("import signal, subprocess, time\n"
                "signal.signal(signal.SIGINT, signal.SIG_IGN)\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "subprocess.Popen(['sh', '-c', 'trap \"\" TERM INT; sleep 60; echo survived > survived'])\n"
                "open('ready', 'w').close()\ntime.sleep(60)\n")
    process = _start_plain(scene, stubborn)
    _wait_for(scene, "ready")
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=20)
    assert process.returncode == 130
    time.sleep(0.5)
    assert not scene.exists("ws/survived")


def test_sandbox_dies_with_ringfence_and_leftovers_are_cleaned(scene):
    """SIGKILL of ringfence itself: nothing it started survives, and the next
    run removes the placeholders the killed run could not."""
    marker = f"{os.getpid()}.{int(time.time() * 1000) % 100000}"
    process = _start_plain(scene, f"import time\nopen('ready', 'w').close()\ntime.sleep(600)  # {marker}\n")
    _wait_for(scene, "ready")
    assert scene.exists("ws/.ringfence"), "a placeholder should exist while the run lasts"
    process.kill()
    process.wait()
    time.sleep(1.0)
    survivors = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if marker.encode() in open(f"/proc/{pid}/cmdline", "rb").read():
                    survivors.append(pid)
            except OSError:
                pass
    assert survivors == []
    assert scene.exists("ws/.ringfence"), "the killed run could not clean up"
    assert scene.sh("true").returncode == 0
    assert not scene.exists("ws/.ringfence")
    assert not scene.exists("ws/.codex")


def test_the_sandbox_cannot_set_the_users_clipboard(scene, terminal):
    """OSC 52 would put text on the user's clipboard, ready to be pasted outside."""
    script = "printf 'before\\033]52;c;Y3VybCBldmlsIHwgc2g=\\007after\\n'"
    control = subprocess.run(["sh", "-c", script], capture_output=True)
    assert b"]52;" in control.stdout, "control: the program does write the sequence"
    term = terminal(["sh", "-c", script])
    term.expect("after")
    term.wait()
    assert b"]52;" not in term.output and b"Y3VybCBldmlsIHwgc2g=" not in term.output
    assert b"beforeafter" in term.output


# -- the user's terminal never reaches the sandbox, whatever the flags -----------------------------

LEAKS = ("printf 'a\\033]52;c;Y3VybCBldmlsIHwgc2g=\\007b\\033]052;c;eA==\\007c"
         "\\033]1337;File=inline=1:eA==\\007d\\033]5522;type=write\\033\\\\e\\n'")


@pytest.mark.parametrize("options", [(), ("--no-tty",)], ids=["pty", "no-tty"])
def test_clipboard_and_file_sequences_never_reach_the_terminal(scene, terminal, options):
    control = terminal(["sh", "-c", LEAKS], sandbox=False)
    control.wait()
    assert b"]52;" in control.output and b"]1337;" in control.output, "control: the sequences are written"
    term = terminal(["sh", "-c", LEAKS], options=options)
    term.expect("e")
    term.wait()
    for marker in (b"]52;", b"]052;", b"]1337;", b"]5522;"):
        assert marker not in term.output, term.output
    assert b"abcde" in term.output


def test_no_tty_keeps_the_terminal_out_of_reach(scene, terminal):
    """With --no-tty the command gets pipes: it cannot turn the user's echo off,
    nor find a terminal to talk to."""
    control = terminal(["sh", "-c", "stty -echo; echo done"], sandbox=False)
    control.expect("done")
    control.wait()
    assert not control.echoing(), "control: stty -echo on the terminal turns echo off"
    term = terminal(["sh", "-c", "stty -echo; tty; echo done"], options=("--no-tty",))
    term.expect("done")
    term.wait()
    assert term.echoing()
    assert b"not a tty" in term.output


def test_no_tty_still_passes_typed_input(scene, terminal):
    term = terminal(["sh", "-c", "read line; echo got:$line"], options=("--no-tty",))
    time.sleep(1)
    term.send(b"hello\n")
    term.expect("got:hello")
    assert term.wait() == 0


def test_modes_the_sandbox_leaves_on_are_turned_off(scene, terminal):
    term = terminal(["sh", "-c", "printf '\\033[?1049h\\033[?1000h\\033[?25lbusy\\n'"])
    term.expect("busy")
    term.wait()
    tail = term.output[term.output.rindex(b"busy"):]
    assert b"\x1b[?1049l" in tail and b"\x1b[?1000l" in tail and b"\x1b[?25h" in tail


def test_the_api_without_a_pty_does_not_hand_over_the_terminal(scene, terminal):
    """A program using the API from a terminal: tty=False is the default."""
    script = scene.write("ws/agent.py", (
        "import sys\n"
        "from ringfence import Sandbox, load_policy\n"
        "Sandbox(load_policy('.')).run(['sh', '-c', sys.argv[1]])\n"))
    term = terminal([sys.executable, "-P", script, "stty -echo; " + LEAKS], sandbox=False)
    term.expect("e")
    term.wait()
    assert b"]52;" not in term.output and b"]1337;" not in term.output
    assert term.echoing()
