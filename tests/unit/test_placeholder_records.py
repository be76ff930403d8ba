"""The placeholder record: unambiguous entries, and removal only of what
ringfence made (same device and inode), whatever has happened since."""

import os

from ringfence.backends.bwrap.placeholders import Placeholders, _read_record


def test_paths_with_newlines_and_odd_bytes_round_trip(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    odd = [str(workspace / "a\nb"), str(workspace / "tab\there"), os.fsdecode(bytes(workspace) + b"/\xff\xfe")]
    holder = Placeholders(str(tmp_path / "state"))
    created = holder.acquire(odd)
    assert sorted(created) == sorted(odd)
    records = [name for name in os.listdir(holder.directory) if name.endswith(".placeholders")]
    entries = _read_record(os.path.join(holder.directory, records[0]))
    assert sorted(path for path, _dev, _ino in entries) == sorted(odd)
    assert sorted(holder.release()) == sorted(odd)
    assert os.listdir(workspace) == []


def test_a_directory_swapped_in_under_the_same_name_is_left_alone(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    path = str(workspace / ".vscode")
    holder = Placeholders(str(tmp_path / "state"))
    holder.acquire([path])
    os.rmdir(path)
    (tmp_path / "keeps-the-inode-busy").mkdir()
    os.mkdir(path)  # a new, different directory where ours was
    assert holder.release() == []
    assert os.path.isdir(path)


def test_a_torn_record_is_read_up_to_its_last_whole_entry(tmp_path):
    record = tmp_path / "x.placeholders"
    record.write_bytes(b"/ws/a\x001\x002\x00/ws/b\x003")
    assert _read_record(str(record)) == [("/ws/a", 1, 2)]


def test_a_killed_run_is_recovered_by_the_next(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    path = str(workspace / ".envrc")
    killed = Placeholders(str(tmp_path / "state"))
    killed.acquire([path])
    for _record, fd in killed.held:  # as a killed process would: its locks go with its descriptors
        os.close(fd)
    assert Placeholders(str(tmp_path / "state")).recover() == [path]
    assert not os.path.exists(path)
