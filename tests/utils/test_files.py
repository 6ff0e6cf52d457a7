import pytest

from utils import cli, files


def test_atomic_output_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    with files.atomic_output(target) as temporary:
        assert temporary.parent == target.parent and temporary != target
        temporary.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_atomic_output_keeps_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), files.atomic_output(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_writable_folder_makes_missing_folders_and_refuses_a_file_in_the_way(tmp_path):
    assert files.writable_folder(tmp_path / "a" / "b", "output_dir").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe file is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(cli.UserError, match=r"cannot write to folder .*file/sub \(.*\); choose another --output_dir"):
        files.writable_folder(tmp_path / "file" / "sub", "output_dir")


def test_atomic_output_on_a_full_disk_is_one_clear_error_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")
    full_disk = pytest.raises(cli.UserError, match="no space left on the disk of .* to write file.txt")
    with full_disk, files.atomic_output(target) as temporary:
        temporary.symlink_to("/dev/full")  # a disk with no room left
        temporary.write_text("new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_remove_temporary_files_takes_only_what_killed_writers_left(tmp_path):
    names = [".last.123.tmp.pt", ".metrics.9.tmp.csv", ".write-check-x1y2", "last.pt", ".last.pt", "a.123.tmp.pt"]
    for name in names:
        (tmp_path / name).write_text("x")
    removed = files.remove_temporary_files(tmp_path)
    assert sorted(path.name for path in removed) == [".last.123.tmp.pt", ".metrics.9.tmp.csv", ".write-check-x1y2"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [".last.pt", "a.123.tmp.pt", "last.pt"]

