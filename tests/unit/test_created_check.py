"""The post-run search for protected names the sandbox created: it lists only
what changed, never follows a link the run put in place of a folder, looks
names up in folders it cannot list, and stops (saying so) past its budget."""

import os

from ringfence.launcher import created


def _snapshot(*directories):
    """A start-of-run snapshot that no longer matches (ctime 0), with no subdirectories known."""
    return {str(directory): (os.lstat(directory).st_ino, 0, ()) for directory in directories}


def test_a_new_repository_deep_in_a_new_folder_is_found(tmp_path):
    (tmp_path / "a" / "b" / "c" / ".git").mkdir(parents=True)
    found, unlisted, complete = created.entries_named(_snapshot(tmp_path), {".git"})
    assert found == [str(tmp_path / "a" / "b" / "c" / ".git")] and unlisted == [] and complete


def test_a_folder_swapped_for_a_link_is_not_followed(tmp_path, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "theirs" / ".git").mkdir(parents=True)
    (tmp_path / "sub").mkdir()
    snapshot = _snapshot(tmp_path, tmp_path / "sub")
    (tmp_path / "sub").rmdir()
    os.symlink(outside, tmp_path / "sub")
    found, _, _ = created.entries_named(snapshot, {".git"})
    assert found == []


def test_an_unlistable_folder_still_has_its_names_looked_up(tmp_path):
    (tmp_path / "evil" / ".git").mkdir(parents=True)
    os.chmod(tmp_path / "evil", 0o311)
    try:
        search = created._Search({".git"})
        search._probe(str(tmp_path / "evil"))
    finally:
        os.chmod(tmp_path / "evil", 0o755)
    assert search.found == [str(tmp_path / "evil" / ".git")]
    assert search.unlisted == [str(tmp_path / "evil")]


def test_past_the_budget_the_search_says_it_stopped(tmp_path, monkeypatch):
    for index in range(50):
        (tmp_path / f"d{index}").mkdir()
    monkeypatch.setattr(created, "MAX_CHECKED_ENTRIES", 10)
    _, _, complete = created.entries_named(_snapshot(tmp_path), {".git"})
    assert not complete
