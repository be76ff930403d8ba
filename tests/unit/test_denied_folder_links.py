"""A file inside a denied folder with another name outside it is readable
under that name: the folder's rule refuses to run. Past the walk's bound,
the policy says so instead of staying silent."""

import os

import pytest

from ringfence.policy import refusals as refusals_module
from ringfence.policy.filesystem import NONE, FilesystemPolicy, PathRule


def _check(folder, home, limit=None, monkeypatch=None):
    if limit is not None:
        monkeypatch.setattr(refusals_module, "MAX_DENIED_FOLDER_WALK", limit)
    rule = PathRule(folder, NONE, "test", f'"{folder}" = "none"', kind="path", spelled=folder)
    found, notices = [], []
    refusals_module.check_hard_links([rule], FilesystemPolicy([rule]), home, found, notices)
    return found, notices


@pytest.fixture
def home(tmp_path):
    secret = tmp_path / ".aws" / "deep"
    secret.mkdir(parents=True)
    (secret / "credentials").write_text("key\n")
    return tmp_path


def test_a_folder_without_links_passes(home):
    assert _check(str(home / ".aws"), str(home)) == ([], [])


def test_a_linked_file_deep_in_the_folder_refuses(home):
    os.link(home / ".aws" / "deep" / "credentials", home / "backup")
    found, _ = _check(str(home / ".aws"), str(home))
    assert len(found) == 1
    assert "deep/credentials" in found[0].message and str(home / "backup") in found[0].message


def test_a_symlink_inside_is_not_followed(home, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "big").write_text("x")
    os.link(elsewhere / "big", elsewhere / "big2")
    os.symlink(elsewhere, home / ".aws" / "to-elsewhere")
    assert _check(str(home / ".aws"), str(home)) == ([], [])


def test_past_the_bound_a_notice_says_what_was_not_checked(home, monkeypatch):
    for index in range(5):
        (home / ".aws" / f"f{index}").write_text("")
    found, notices = _check(str(home / ".aws"), str(home), limit=3, monkeypatch=monkeypatch)
    assert found == []
    assert len(notices) == 1 and "more than 3 entries" in notices[0]
