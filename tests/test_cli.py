import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import REPO

import cli

SCRIPT = '''"""A script.

More text."""
name: str = "cnn"  # which network
epochs: int = 5  # passes over the data
lr: float = 0.1
resume: bool = False  # go on from the last run
batch_size: int = 128  # images per step
CONSTANT = 3  # not annotated: not a hyperparameter
items: list = []  # not a plain type: not a hyperparameter
'''


@pytest.fixture
def script(tmp_path, monkeypatch):
    path = tmp_path / "fake_script.py"
    path.write_text(SCRIPT)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fake_script", None)
    import fake_script

    return fake_script


def test_declared_hyperparameters_reads_types_defaults_and_comments(script):
    assert cli.declared_hyperparameters(script) == [
        ("name", str, "cnn", "which network"),
        ("epochs", int, 5, "passes over the data"),
        ("lr", float, 0.1, ""),
        ("resume", bool, False, "go on from the last run"),
        ("batch_size", int, 128, "images per step"),
    ]


def test_defaults_when_nothing_is_given(script):
    assert vars(cli.parse_hyperparameters(script, [])) == {
        "name": "cnn", "epochs": 5, "lr": 0.1, "resume": False, "batch_size": 128,
    }


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--epochs=3"], {"epochs": 3}),
        (["--epochs", "3"], {"epochs": 3}),
        (["--lr=2e-3", "--name=resnet18"], {"lr": 0.002, "name": "resnet18"}),
        (["--batch_size=7"], {"batch_size": 7}),
        (["--batch-size", "7"], {"batch_size": 7}),
        (["--resume"], {"resume": True}),
        (["--resume=true"], {"resume": True}),
        (["--resume=False"], {"resume": False}),
        (["--resume", "no"], {"resume": False}),
        (["--epochs=3", "--epochs=4"], {"epochs": 4}),
    ],
)
def test_overrides_are_typed(script, argv, expected):
    values = vars(cli.parse_hyperparameters(script, argv))
    for key, value in expected.items():
        assert values[key] == value and type(values[key]) is type(value)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epoch=3"], "unknown hyperparameter '--epoch'; did you mean --epochs?"),
        (["--colour=red"], "unknown hyperparameter '--colour'"),
        (["stray"], "unknown hyperparameter 'stray'"),
        (["--epochs=three"], "argument --epochs: invalid int value: 'three'"),
        (["--lr=fast"], "argument --lr: invalid float value: 'fast'"),
        (["--resume=maybe"], "expected true or false, got 'maybe'"),
        (["--epochs"], "argument --epochs: expected one argument"),
        (["--ep=3"], "unknown hyperparameter '--ep'"),  # no prefix matching
    ],
)
def test_bad_overrides_raise_user_error(script, argv, message):
    with pytest.raises(cli.UserError) as error:
        cli.parse_hyperparameters(script, argv)
    assert message in str(error.value)
    assert "--help" in str(error.value)


def test_help_lists_every_hyperparameter_with_default_and_help(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_hyperparameters(script, ["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for fragment in [
        "--name STR which network (default: 'cnn')", "--epochs INT passes over the data (default: 5)",
        "--lr FLOAT (default: 0.1)", "--resume [BOOL] go on from the last run (default: False)",
        "--batch_size INT, --batch-size INT images per step (default: 128)", "A script.",
    ]:
        assert fragment in text
    assert "CONSTANT" not in text and "items" not in text


def test_edited_value_at_the_top_becomes_the_default(script):
    script.epochs = 9  # as if the line at the top of the file said 9
    assert cli.parse_hyperparameters(script, []).epochs == 9


def test_run_turns_user_error_into_one_line_and_exit_1(capsys):
    def main():
        raise cli.UserError("checkpoint x.pt not found; train one")

    with pytest.raises(SystemExit) as exit_info:
        cli.run(main)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "error: checkpoint x.pt not found; train one\n"


def test_run_lets_bugs_through():
    def main():
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        cli.run(main)


def test_atomic_output_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    with cli.atomic_output(target) as temporary:
        assert temporary.parent == target.parent and temporary != target
        temporary.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_atomic_output_keeps_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), cli.atomic_output(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]



def test_stop_requests_turn_the_first_signal_into_a_flag_and_the_second_into_an_interrupt(capsys):
    before = signal.getsignal(signal.SIGINT)
    with cli.stop_requests() as stop:
        assert stop.signal == ""
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == "SIGTERM"  # the run goes on to a safe point
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # a second signal: at once
    assert signal.getsignal(signal.SIGINT) is before  # the handlers are given back
    assert "SIGTERM: stopping after this step, then saving" in capsys.readouterr().err


def test_writable_folder_makes_missing_folders_and_refuses_a_file_in_the_way(tmp_path):
    assert cli.writable_folder(tmp_path / "a" / "b", "output_dir").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe file is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(cli.UserError, match=r"cannot write to folder .*file/sub \(.*\); choose another --output_dir"):
        cli.writable_folder(tmp_path / "file" / "sub", "output_dir")


def test_stop_requests_outside_the_main_thread_leave_signals_alone():
    results = []

    def worker():
        with cli.stop_requests() as stop:
            results.append(stop.signal)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert results == [""]


def test_a_forked_worker_neither_stops_nor_speaks_on_ctrl_c(tmp_path):
    """DataLoader workers inherit the handler; the terminal sends them Ctrl-C too."""
    request = cli.StopRequest()
    child = os.fork()
    if child == 0:  # the worker: its stderr goes to a file the test reads
        with open(tmp_path / "worker.err", "w") as err:
            os.dup2(err.fileno(), 2)
            request.handle(signal.SIGINT, None)
            os._exit(0 if request.signal == "" else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and (tmp_path / "worker.err").read_text() == ""


def test_an_uncaught_ctrl_c_ends_in_one_line():
    """As when Ctrl-C lands while a script's libraries load, before cli.run is reached."""
    result = subprocess.run([sys.executable, "-c", "import cli; raise KeyboardInterrupt"], capture_output=True,
                            text=True, cwd=REPO, check=False)
    assert result.stderr == "interrupted\n" and result.returncode in (130, -signal.SIGINT)


def test_enough_memory_names_the_setting_to_change():
    memory_error = pytest.raises(cli.UserError, match=r"^out of memory \(Unable to allocate .*\); lower --batch_size$")
    with memory_error, cli.enough_memory("lower --batch_size"):
        np.zeros((10**7, 10**7))  # 800 TB: refused at once
    with pytest.raises(RuntimeError, match="not about memory"), cli.enough_memory("lower --batch_size"):
        raise RuntimeError("not about memory")


def test_atomic_output_on_a_full_disk_is_one_clear_error_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")
    full_disk = pytest.raises(cli.UserError, match="no space left on the disk of .* to write file.txt")
    with full_disk, cli.atomic_output(target) as temporary:
        temporary.symlink_to("/dev/full")  # a disk with no room left
        temporary.write_text("new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_remove_temporary_files_takes_only_what_killed_writers_left(tmp_path):
    names = [".last.123.tmp.pt", ".metrics.9.tmp.csv", ".write-check-x1y2", "last.pt", ".last.pt", "a.123.tmp.pt"]
    for name in names:
        (tmp_path / name).write_text("x")
    removed = cli.remove_temporary_files(tmp_path)
    assert sorted(path.name for path in removed) == [".last.123.tmp.pt", ".metrics.9.tmp.csv", ".write-check-x1y2"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [".last.pt", "a.123.tmp.pt", "last.pt"]
