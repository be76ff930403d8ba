"""The git config reader against git itself: every setting git honours for
`core.hooksPath` or an include must be seen, or a hook planted by the sandbox
runs on the host."""

import os
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.policy import gitconfig

GIT = shutil.which("git")

TRICKY = [
    "[core]\n\thooksPath = plain\n",
    "[core] hooksPath = one-line\n",
    "[core]hooksPath=tight\n",
    "[CORE]\n\tHOOKSPATH = shouting\n",
    "[core]\n\thooksPath = h2#comment\n",
    "[core]\n\thooksPath = h3;comment\n",
    '[core]\n\thooksPath = "quoted # not a comment"\n',
    '[core]\n\thooksPath = half"quoted;part"rest ; comment\n',
    "[core]\n\thooksPath = con\\\ntinued\n",
    "[core]\n\thooksPath = tab\\tescape\n",
    "[core]\n\thooksPath =    spaced   out    \n",
    "[core]\r\n\thooksPath = crlf\r\n",
    "[core]\n\thooksPath = first\n[core]\n\thooksPath = second\n",
    '[core "sub"]\n\thooksPath = not-core\n[core]\n\thooksPath = real\n',
    "[core.sub]\n\thooksPath = dotted-sub\n",
    "; comment\n# comment\n[core] ; comment\n\thooksPath = after-comments\n",
    "[core]\n\thooksPath\n",
    '[core]\n\thooksPath = "unterminated\n',
    "[core]\n\thooksPath = bad\\qescape\n",
    "[core]\n\thooksPath = ok\n\tbad line here\n\thooksPath = after-bad\n",
    "hooksPath = before-any-section\n[core]\n\thooksPath = x\n",
    "[ core ]\n\thooksPath = spaced-header\n",
    "[core]\n\thooksPath ; comment\n",
    "\ufeff[core]hooksPath=after-bom\n",
    "[core]\n\thooksPath=con\\\r\ntinued-crlf\r\n",
    "[core]\n\thooksPath=\x0bvertical-tab\n",
    "[core]\n\thooksPath=\x0cform-feed\n",
    "[core]\n\thooksPath=before\x00after\n",
]


def git_value(tmp_path, text):
    path = tmp_path / "config"
    path.write_bytes(text.encode())
    result = subprocess.run([GIT, "config", "--file", str(path), "--get", "core.hooksPath"],
                            capture_output=True, text=True, env={"PATH": os.environ.get("PATH", ""),
                                                                 "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"})
    if result.returncode == 0:
        return result.stdout[:-1] if result.stdout.endswith("\n") else result.stdout
    if result.returncode == 1:
        return None  # not set
    return "<git rejects the file>"


def our_value(text):
    value = None
    for section, key, setting in gitconfig.parse(text):
        if section == "core" and key == "hookspath":
            value = setting if setting is not None else "<boolean>"
    return value


@pytest.mark.skipif(GIT is None, reason="git is not installed")
@pytest.mark.parametrize("text", TRICKY)
def test_hooks_path_is_read_as_git_reads_it(tmp_path, text):
    expected = git_value(tmp_path, text)
    ours = our_value(text)
    if expected == "<git rejects the file>":
        return  # git runs nothing from a file it rejects; what we read before the bad line is harmless
    if expected == "" and ours == "<boolean>":
        return  # `hooksPath` alone: git prints an empty value
    assert ours == expected, text


CONFIG_CHARS = st.sampled_from(list("[]\"\\#; \t\n\r\x0b=abcore.hksPth-x"))


@pytest.mark.skipif(GIT is None, reason="git is not installed")
@settings(max_examples=300, database=None, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(["[core]", "[core] ", "hooksPath", " = ", "\\\n", "\"", "#", ";",
                                           "\n", "\t", "[core \"x\"]", "path"]), CONFIG_CHARS), max_size=14))
def test_random_configs_agree_with_git(tmp_path_factory, pieces):
    text = "".join(pieces)
    expected = git_value(tmp_path_factory.mktemp("cfg"), text)
    if expected == "<git rejects the file>":
        return
    ours = our_value(text)
    if expected == "" and ours == "<boolean>":
        return
    assert ours == expected, repr(text)


def test_includes_are_found_in_every_spelling():
    text = ('[include]\n\tpath = a\n[includeIf "gitdir:~/x/"]\n\tpath = b\n'
            '[include] path = c ; one line\n[INCLUDE]\n\tPATH = "d"\n')
    found = [value for section, key, value in gitconfig.parse(text)
             if (section == "include" or section.startswith("includeif.")) and key == "path"]
    assert found == ["a", "b", "c", "d"]
