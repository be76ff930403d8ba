"""What ringfence itself prints: names it did not choose arrive as text."""

import os

import pytest

from ringfence import cli, report
from ringfence.printable import printable, printable_lines
from ringfence.proxy.launch import ProxySummary
from ringfence.sandbox import load_policy

CLIPBOARD = "\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07"
HOME = "/srv/ringfence-unit-tests/home"


@pytest.mark.parametrize("text, shown", [
    ("plain /path/with spaces/é/日本", "plain /path/with spaces/é/日本"),
    (CLIPBOARD, "\\x1b]52;c;Y3VybCBldmlsIHwgc2g=\\x07"),
    ("a\nb\rc\td", "a\\x0ab\\x0dc\\x09d"),
    ("\x9b21t \x9d52;x\x9c \x7f", "\\x9b21t \\x9d52;x\\x9c \\x7f"),
    ("evil\u202etxt.exe \u200b \u2028", "evil\\u202etxt.exe \\u200b \\u2028"),
    (os.fsdecode(b"name-\x1b-\x9d-\xff"), "name-\\x1b-\\x9d-\\xff"),
    ("\U000e0041", "\\U000e0041"),
])
def test_control_and_invisible_characters_are_escaped(text, shown):
    assert printable(text) == shown
    assert printable(text).isprintable()


def test_line_breaks_of_a_message_stay_and_nothing_else_acts():
    assert printable_lines(f"first {CLIPBOARD}\n  fix: second\r") == \
        "first \\x1b]52;c;Y3VybCBldmlsIHwgc2g=\\x07\n  fix: second\\x0d"


def test_ringfences_own_errors_are_printed_escaped(capsys):
    cli._error(f"cannot read /ws/{CLIPBOARD}\n  fix: look")
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    assert err == "ringfence: cannot read /ws/\\x1b]52;c;Y3VybCBldmlsIHwgc2g=\\x07\n  fix: look\n"


class _Outcome:
    def __init__(self, events):
        self.events, self.reason, self.exit_code, self.changeset = events, "exited", 0, None


def test_the_warning_about_folders_the_sandbox_created_names_them_escaped(monkeypatch, capsys):
    import ringfence.sandbox

    made = f"/ws/x{CLIPBOARD}\ny/.claude"
    repository = f"/ws/{CLIPBOARD}/.git"
    events = [{"type": "protected.created", "paths": [made]}, {"type": "git.created", "paths": [repository]},
              {"type": "network.summary", "refused": [{"target": f"h{CLIPBOARD}.example:443", "reason": "\x1b[2J"}],
               "reached": [f"r{CLIPBOARD}.example:443"]},
              {"type": "protected.unchecked", "warning": "folders that could not be listed",
               "paths": [f"/ws/u{CLIPBOARD}\nz"]},
              {"type": "git.neutralized", "repository": f"/ws/g{CLIPBOARD}\nq", "action": "moved aside",
               "path": "/ws/.git", "why": "made at a submodule"}]

    class Sandbox:
        def __init__(self, policy):
            pass

        def run(self, *args, **kwargs):
            return _Outcome(events)

    monkeypatch.setattr(cli, "_policy", lambda options: type("Policy", (), {"sandboxed": True})())
    monkeypatch.setattr(ringfence.sandbox, "Sandbox", Sandbox)
    assert cli.cmd_run({"verbose": True}, ["true"]) == 0
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    # One line per warning: a line break in a name cannot forge another.
    assert len(err.splitlines()) == 6
    assert "/ws/g\\x1b]52;c;" in err
    assert "h\\x1b]52;c;" in err and "r\\x1b]52;c;" in err and "/ws/u\\x1b]52;c;" in err
    assert "/ws/x\\x1b]52;c;Y3VybCBldmlsIHwgc2g=\\x07\\x0ay/.claude" in err
    assert "/ws/\\x1b]52;c;Y3VybCBldmlsIHwgc2g=\\x07/.git" in err


def test_status_and_explain_show_names_from_the_disk_escaped(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RINGFENCE_CONFIG_DIR", str(tmp_path / "userconf"))
    monkeypatch.setenv("RINGFENCE_STATE_DIR", str(tmp_path / "state"))
    workspace = tmp_path / f"ws{CLIPBOARD}"
    (workspace / ".git").mkdir(parents=True)
    (workspace / "target").write_text("")
    os.symlink(str(workspace / "target"), str(workspace / "link"))
    policy = load_policy(str(workspace), home=HOME, env={"PATH": "/usr/bin:/bin", "HOME": HOME})
    report.explain(policy, ["link"], as_json=False)
    shown = capsys.readouterr().out
    assert "ws\\x1b]52;c;" in shown and "\x1b" not in shown and "\x07" not in shown
    report.status(policy, as_json=False)
    shown = capsys.readouterr().out
    assert "ws\\x1b]52;c;" in shown and "\x1b" not in shown and "\x07" not in shown
    report.explain(policy, ["link"], as_json=True)
    assert "\x1b" not in capsys.readouterr().out


def test_hosts_the_sandbox_reached_are_shown_escaped():
    summary = ProxySummary(reached=(f"evil{CLIPBOARD}.example:443",), refused=((f"x{CLIPBOARD}", "not listed"),))
    lines = summary.lines()
    assert all(line.isprintable() for line in lines)
    assert "evil\\x1b]52;c;" in lines[0]
