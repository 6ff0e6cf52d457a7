"""No sequence of Ctrl-C, kill and restart loses a run's checkpoints or leaves last.pt and best.pt
disagreeing. Kills at exact moments are simulated by wrapping the save function; Ctrl-C by a stop
request that is set from a given step on. A Ctrl-C before the training loop (while the data loads)
raises KeyboardInterrupt; in the loop, the step in which it is seen is finished and saved: a run
never saves without having trained a step."""

import contextlib
import os

import pytest
import torch
from helpers import run_training

import model as models
import train
from training import metrics
from utils import checkpoints, cli, distributed, run_folder

pytestmark = pytest.mark.slow  # every test here trains, kills and resumes real runs

RUN = ("--subset=64", "--epochs=3", "--shift_test=false", "--evaluate_every=1")  # best.pt may change every epoch


class SimulatedKill(BaseException):
    """Stands for SIGKILL: no handler catches it, so nothing after it runs."""


def kill_before_saving(monkeypatch, name: str, epoch: int) -> None:
    """Make the save of checkpoint `name` at the end of `epoch` die before it writes anything."""
    real_write = checkpoints.write_checkpoint

    def write(path, checkpoint):
        if path.name == name and checkpoint["epoch"] == epoch and "position" not in checkpoint:
            raise SimulatedKill
        real_write(path, checkpoint)

    monkeypatch.setattr(checkpoints, "write_checkpoint", write)


def ctrl_c_after(monkeypatch, steps: int) -> None:
    """Make the next run see Ctrl-C in the step after its first `steps` steps."""

    class Request(distributed.StopRequest):
        checks = 0

        @property
        def signal(self):
            Request.checks += 1  # read once in each step
            return "SIGINT" if Request.checks > steps else ""

        @signal.setter
        def signal(self, value):
            pass

    @contextlib.contextmanager
    def stop_requests():
        yield Request()

    monkeypatch.setattr(distributed, "stop_requests", stop_requests)


def scripted_accuracies(monkeypatch, results: list[tuple[float, float]]) -> None:
    """metrics.evaluate returns these (test loss, accuracy %), one per epoch, in order (the runs
    that use it pass --shift_test=false: no second evaluation after the last epoch)."""
    remaining = list(results)
    monkeypatch.setattr(metrics, "evaluate", lambda *args, **kwargs: remaining.pop(0))


def checkpoint(path):
    return models.load_checkpoint(path)[1]


def same_weights(first, second) -> bool:
    return all(torch.equal(first["state_dict"][key], second["state_dict"][key]) for key in first["state_dict"])


def test_a_new_run_refuses_a_folder_that_holds_an_earlier_run(tmp_path, fashion_data):
    run_training(fashion_data, tmp_path, *RUN)
    before = {name: (tmp_path / "checkpoints" / name).read_bytes() for name in ("last.pt", "best.pt")}
    with pytest.raises(cli.UserError, match="holds last.pt and best.pt of an earlier run; continue that run with"):
        run_training(fashion_data, tmp_path, *RUN)
    assert {name: (tmp_path / "checkpoints" / name).read_bytes() for name in before} == before


def test_overwrite_replaces_best_when_the_new_run_first_saves_and_resume_finishes_it(tmp_path, fashion_data,
                                                                                      monkeypatch):
    run_training(fashion_data, tmp_path, *RUN)
    old = checkpoint(tmp_path / "checkpoints/last.pt")["run_id"]
    with monkeypatch.context() as patch:
        ctrl_c_after(patch, 0)  # seen in the first step, which is finished and saved
        with pytest.raises(cli.Stopped, match="in epoch 1, after step 1 of 2"):  # 64 images in steps of 32
            run_training(fashion_data, tmp_path, *RUN, "--overwrite")
    last = checkpoint(tmp_path / "checkpoints/last.pt")
    assert last["run_id"] != old and last["position"]["step"] == 1
    assert not (tmp_path / "checkpoints/best.pt").exists()  # the earlier run's best.pt went with its last.pt
    assert run_training(fashion_data, tmp_path, "--resume")["epoch"] == 3
    last, best = checkpoint(tmp_path / "checkpoints/last.pt"), checkpoint(tmp_path / "checkpoints/best.pt")
    assert best["run_id"] == last["run_id"] != old and best["epoch"] == last["best_epoch"]


def test_a_kill_between_last_and_best_is_repaired_on_resume(tmp_path, fashion_data, monkeypatch, capsys):
    results = [(1.0, 50.0), (0.9, 60.0), (0.8, 55.0)]  # epoch 2 is the best
    with monkeypatch.context() as patch:
        scripted_accuracies(patch, results)
        run_training(fashion_data, tmp_path / "whole", *RUN)
    with monkeypatch.context() as patch:
        scripted_accuracies(patch, results)
        kill_before_saving(patch, "best.pt", epoch=2)
        with pytest.raises(SimulatedKill):
            run_training(fashion_data, tmp_path, *RUN)
    last, best = checkpoint(tmp_path / "checkpoints/last.pt"), checkpoint(tmp_path / "checkpoints/best.pt")
    assert (last["epoch"], last["best_epoch"], best["epoch"]) == (2, 2, 1)  # last.pt says epoch 2 is the best
    capsys.readouterr()
    with monkeypatch.context() as patch:
        scripted_accuracies(patch, results[2:])
        assert run_training(fashion_data, tmp_path, "--resume")["epoch"] == 3
    out = capsys.readouterr().out
    assert "rewrote " in out and "best.pt from " in out and "(epoch 2, the best so far): it holds epoch 1" in out
    best, whole = checkpoint(tmp_path / "checkpoints/best.pt"), checkpoint(tmp_path / "whole/checkpoints/best.pt")
    assert best["epoch"] == whole["epoch"] == 2 and same_weights(best, whole)
    assert "optimizer" not in best


def test_a_kill_before_the_first_best_is_repaired_on_resume(tmp_path, fashion_data, monkeypatch, capsys):
    with monkeypatch.context() as patch:
        kill_before_saving(patch, "best.pt", epoch=1)
        with pytest.raises(SimulatedKill):
            run_training(fashion_data, tmp_path, *RUN)
    assert not (tmp_path / "checkpoints/best.pt").exists()
    run_training(fashion_data, tmp_path, "--resume")
    assert "it is missing or unreadable" in capsys.readouterr().out
    last, best = checkpoint(tmp_path / "checkpoints/last.pt"), checkpoint(tmp_path / "checkpoints/best.pt")
    assert best["epoch"] == last["best_epoch"] and best["run_id"] == last["run_id"]


def test_a_best_that_cannot_be_rebuilt_is_said_and_never_claimed(tmp_path, fashion_data, monkeypatch, capsys):
    with monkeypatch.context() as patch:
        scripted_accuracies(patch, [(1.0, 60.0), (1.0, 50.0), (1.0, 40.0)])
        kill_before_saving(patch, "last.pt", epoch=3)
        with pytest.raises(SimulatedKill):
            run_training(fashion_data, tmp_path, *RUN)
    (tmp_path / "checkpoints/best.pt").unlink()  # lost by hand: last.pt holds epoch 2, the best was epoch 1
    capsys.readouterr()
    with monkeypatch.context() as patch:
        scripted_accuracies(patch, [(1.0, 40.0)])
        run_training(fashion_data, tmp_path, "--resume")
    out = capsys.readouterr().out
    assert "warning: " in out and "is missing or unreadable, not the best epoch 1" in out
    assert "wrote " in out.splitlines()[-1] and "best.pt" not in out.splitlines()[-1]  # only what it wrote
    assert not (tmp_path / "checkpoints/best.pt").exists()


def test_a_nan_test_loss_never_makes_a_best(tmp_path, fashion_data, monkeypatch, capsys):
    scripted_accuracies(monkeypatch, [(1.0, 50.0), (float("nan"), 90.0), (1.0, 55.0)])
    run_training(fashion_data, tmp_path, *RUN)
    best = checkpoint(tmp_path / "checkpoints/best.pt")
    assert best["epoch"] == 3 and best["best_accuracy"] == 55.0
    assert "(test loss not finite: not kept as best.pt)" in capsys.readouterr().out


def test_with_a_validation_split_best_pt_is_chosen_on_it_never_on_test(tmp_path, fashion_data):
    # evaluated in this order each epoch: validation, then test
    scripted = [(1.0, 70.0), (1.0, 40.0), (1.0, 60.0), (1.0, 90.0), (1.0, 65.0), (1.0, 50.0)]
    with pytest.MonkeyPatch.context() as patch:
        scripted_accuracies(patch, scripted)
        run_training(fashion_data, tmp_path, *RUN, "--validation=16")
    best = checkpoint(tmp_path / "checkpoints/best.pt")
    assert (best["epoch"], best["best_accuracy"], best["chosen_on"]) == (1, 70.0, "validation")  # test's best: epoch 2
    assert checkpoint(tmp_path / "checkpoints/last.pt")["best_split"] == "validation"


def test_without_a_validation_split_best_pt_records_that_test_chose_it(tmp_path, fashion_data):
    run_training(fashion_data, tmp_path, *RUN)
    best = checkpoint(tmp_path / "checkpoints/best.pt")
    assert best["chosen_on"] == "test"
    assert "is the epoch of best test accuracy" in checkpoints.selection_note("best.pt", best)
    assert checkpoints.selection_note("last.pt", checkpoint(tmp_path / "checkpoints/last.pt")) == ""


def test_a_run_with_no_finite_loss_says_so_instead_of_a_best_accuracy(tmp_path, fashion_data, monkeypatch, capsys):
    scripted_accuracies(monkeypatch, [(float("nan"), 10.0)] * 3)
    run_training(fashion_data, tmp_path, *RUN)
    last_line = capsys.readouterr().out.splitlines()[-1]
    assert "no epoch had a finite test loss, so no best" in last_line and "-1.00" not in last_line
    assert not (tmp_path / "checkpoints/best.pt").exists()


def test_a_folder_in_use_is_refused_and_free_again_after(tmp_path, fashion_data):
    in_use = pytest.raises(cli.UserError, match=f"is in use by another training run \\(process {os.getpid()} on ")
    with run_folder.claimed(tmp_path / "checkpoints"), in_use:
        run_training(fashion_data, tmp_path, *RUN)
    assert not (tmp_path / "checkpoints" / ".lock").exists()
    run_training(fashion_data, tmp_path, *RUN)


def test_a_stale_lock_and_temporary_files_of_killed_runs_are_cleaned_up(tmp_path, fashion_data):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / ".lock").write_text("process 99999 on a-host, since 2026-01-01 00:00:00")  # its process is gone
    stale = [folder / ".last.99999.tmp.pt", folder / ".best.12.tmp.pt", folder / ".write-check-abc123"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    (folder / "notes.txt").write_text("mine")
    run_training(fashion_data, tmp_path, *RUN)
    assert sorted(path.name for path in folder.iterdir()) == ["best.pt", "last.pt", "notes.txt"]


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, fashion_data, monkeypatch):
    real_write = checkpoints.write_checkpoint

    def write_onto_a_full_disk(path, checkpoint):
        if checkpoint["epoch"] == 2:  # its temporary file is then /dev/full, which takes nothing
            path.with_name(f".{path.stem}.{os.getpid()}.tmp.pt").symlink_to("/dev/full")
        real_write(path, checkpoint)

    monkeypatch.setattr(checkpoints, "write_checkpoint", write_onto_a_full_disk)
    with pytest.raises(cli.UserError, match="no space left on the disk of .* to write last.pt .*; free some space or "
                                            "write elsewhere \\(the previous last.pt, if any, is kept\\)"):
        run_training(fashion_data, tmp_path, *RUN)
    assert checkpoint(tmp_path / "checkpoints/last.pt")["epoch"] == 1
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


@pytest.mark.parametrize("folder", ["checkpoint_dir", "output_dir"])
def test_folders_are_checked_before_the_data_is_read(tmp_path, fashion_data, monkeypatch, folder):
    def never(*args, **kwargs):
        raise AssertionError("the dataset was read before the folders were checked")

    monkeypatch.setattr(train.data, "load_dataset", never)
    (tmp_path / "BLOCKER").write_text("a file where a folder is needed")
    with pytest.raises(cli.UserError, match=f"cannot write to folder .*BLOCKER/sub .*; choose another --{folder}"):
        run_training(fashion_data, tmp_path, f"--{folder}={tmp_path / 'BLOCKER' / 'sub'}")


def test_ctrl_c_while_the_data_loads_leaves_the_earlier_run_as_it_was(tmp_path, fashion_data, monkeypatch):
    """E.g. while the cluttered set's cache is built: the run stops at once, with nothing to save."""
    run_training(fashion_data, tmp_path, *RUN)
    before = {path.name: path.read_bytes() for path in (tmp_path / "checkpoints").iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train.data, "load_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_training(fashion_data, tmp_path, *RUN, "--overwrite")
    assert {path.name: path.read_bytes() for path in (tmp_path / "checkpoints").iterdir()} == before
