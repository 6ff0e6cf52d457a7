import csv
import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import REPO, assert_clean_error, run_script, run_training, train_args, write_mnist_like

import cli
import model as models
import train


def test_training_learns_and_writes_everything(trained):
    checkpoints, outputs = trained / "checkpoints", trained / "outputs"
    _, checkpoint = models.load_checkpoint(checkpoints / "best.pt")
    assert checkpoint["test_accuracy"] == 100.0  # each class is a square at its own place: easy
    assert checkpoint["arch"] == {"name": "cnn", "num_classes": 10, "in_channels": 1, "options": {"width": 32, "pools": 2}}
    assert checkpoint["dataset"]["name"] == "mnist" and checkpoint["dataset"]["image_size"] == 28
    assert len(checkpoint["dataset"]["classes"]) == 10 and checkpoint["dataset"]["mean"] == [0.1307]
    assert checkpoint["hyperparameters"]["epochs"] == 5 and checkpoint["hyperparameters"]["batch_size"] == 16
    assert "optimizer" not in checkpoint  # best.pt is for using the model; last.pt is for resuming
    _, last = models.load_checkpoint(checkpoints / "last.pt")
    assert last["epoch"] == 5 and {"optimizer", "scheduler"} <= set(last)
    with open(outputs / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4, 5]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert (outputs / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.pt", "last.pt"]  # no temporary files


def state(path):
    return models.load_checkpoint(path)[0].state_dict()


def assert_same_weights(first, second):
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_same_seed_same_weights(tmp_path, fashion_data):
    run_training(fashion_data, tmp_path / "a", "--subset=64")
    run_training(fashion_data, tmp_path / "b", "--subset=64")
    run_training(fashion_data, tmp_path / "c", "--subset=64", "--seed=1")
    assert_same_weights(state(tmp_path / "a/checkpoints/last.pt"), state(tmp_path / "b/checkpoints/last.pt"))
    different = state(tmp_path / "c/checkpoints/last.pt")
    assert not torch.equal(different["fc.weight"], state(tmp_path / "a/checkpoints/last.pt")["fc.weight"])


def test_resume_after_a_crash_ends_where_an_uninterrupted_run_ends(tmp_path, fashion_data, monkeypatch):
    run_training(fashion_data, tmp_path / "whole", "--subset=64", "--epochs=3")

    real_epoch, calls = train.train_one_epoch, []

    def crash_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("power cut")
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train, "train_one_epoch", crash_in_epoch_3)
    with pytest.raises(RuntimeError, match="power cut"):
        run_training(fashion_data, tmp_path / "crashed", "--subset=64", "--epochs=3")
    monkeypatch.setattr(train, "train_one_epoch", real_epoch)
    assert models.load_checkpoint(tmp_path / "crashed/checkpoints/last.pt")[1]["epoch"] == 2

    # --resume takes the saved run's hyperparameters: --epochs=1 here does not shorten it
    last_row = run_training(fashion_data, tmp_path / "crashed", "--resume", "--epochs=1")
    assert last_row["epoch"] == 3
    assert_same_weights(state(tmp_path / "whole/checkpoints/last.pt"), state(tmp_path / "crashed/checkpoints/last.pt"))
    with open(tmp_path / "crashed/outputs/metrics.csv") as file:
        assert [int(row["epoch"]) for row in csv.DictReader(file)] == [1, 2, 3]


def test_resume_of_a_finished_run_does_nothing(tmp_path, fashion_data, capsys):
    run_training(fashion_data, tmp_path, "--subset=32")
    before = (tmp_path / "checkpoints/last.pt").read_bytes()
    run_training(fashion_data, tmp_path, "--resume")
    assert "nothing to resume" in capsys.readouterr().out
    assert (tmp_path / "checkpoints/last.pt").read_bytes() == before


@pytest.mark.parametrize("extra, message", [
    (["--dataset=imagenet"], "--dataset='imagenet' is unknown; choose one of: fashion-mnist"),
    (["--model=alexnet"], "--model='alexnet' is unknown; choose one of: cnn, resnet18, vgg16_gap"),
    (["--schedule=step"], "--schedule='step' is unknown"),
    (["--precision=fp16"], "--precision='fp16' is unknown; choose one of: auto, bf16, fp32"),
    (["--epochs=0"], "--epochs must be at least 1, got 0"),
    (["--lr=0"], "--lr must be positive, got 0.0"),
    (["--lr=-0.1"], "--lr must be positive"),
    (["--batch_size=0"], "--batch_size must be at least 1"),
    (["--label_smoothing=1"], "--label_smoothing must be in [0, 1)"),
    (["--epoch=3"], "unknown hyperparameter '--epoch'; did you mean --epochs?"),
    (["--epochs=three"], "argument --epochs: invalid int value: 'three'"),
    (["--dataset=cifar10"], "dataset 'cifar10' not found in"),
    (["--device=gpu0"], "unknown device 'gpu0'"),
    (["--output_dir=BLOCKER/outputs"], "cannot write to folder"),
    (["--resume", "--checkpoint_dir=empty"], "--resume: empty/last.pt not found"),
    ([], "holds last.pt of an earlier run; continue that run with --resume"),
])
def test_command_line_errors_are_one_line_and_clobber_nothing(tmp_path, fashion_data, extra, message):
    (tmp_path / "BLOCKER").write_text("a file where a folder is needed")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"earlier work")
    replace = ["--overwrite"] if extra and "--resume" not in extra else []  # past the check for an earlier run
    args = [arg.replace("BLOCKER", str(tmp_path / "BLOCKER"))
            for arg in train_args(fashion_data, tmp_path) + replace + extra]
    result = run_script("train.py", *args, cwd=tmp_path)
    assert_clean_error(result, message)
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == b"earlier work"
    assert not any((tmp_path / "outputs").rglob("*"))  # at most an empty folder, made when it was checked


def test_a_diverging_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path, fashion_data):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"earlier work")
    result = run_script("train.py", *train_args(fashion_data, tmp_path, "--lr=1e30", "--epochs=2", "--overwrite"),
                        cwd=tmp_path)
    assert_clean_error(result, "the training loss became ")
    assert "became nan" in result.stderr or "became inf" in result.stderr
    assert "keeping the checkpoints of the last finished epoch; try a lower --lr" in result.stderr
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == b"earlier work"
    assert not (tmp_path / "checkpoints" / "best.pt").exists()


def test_missing_dataset_message_says_how_to_get_it(tmp_path):
    result = run_script("train.py", "--dataset=cifar10", f"--data_dir={tmp_path}", "--download=false", cwd=tmp_path)
    assert_clean_error(result, "download is off (--download=false)")
    assert f"put the files in {tmp_path}/cifar-10-batches-py/" in result.stderr


def test_help_lists_every_hyperparameter(tmp_path):
    result = run_script("train.py", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for name, _, default, _ in cli.declared_hyperparameters(train):
        assert f"--{name}" in result.stdout
        assert f"(default: {default!r})" in " ".join(result.stdout.split())


def test_command_line_run_then_visualize(tmp_path):
    """The README's main job on a tiny Fashion-MNIST: train.py writes a checkpoint, visualize_cam.py draws it."""
    write_mnist_like(tmp_path / "data" / "fashion-mnist")
    trained = run_script("train.py", "--epochs=1", "--batch_size=32", "--download=false", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "epoch 1/1" in trained.stdout and (tmp_path / "checkpoints" / "best.pt").is_file()
    drawn = run_script("visualize_cam.py", "--seed=3", "--samples=2", cwd=tmp_path)
    assert drawn.returncode == 0, drawn.stderr
    written = sorted(p.name for p in (tmp_path / "outputs").glob("cam*.png"))
    assert len(written) == 2 * 3 + 1 and "cams_seed3.png" in written
    assert "wrote 6 images to outputs/ and the figure outputs/cams_seed3.png" in drawn.stdout


class LeftOrRight(torch.nn.Module):
    """Logits (sum of the left column, sum of the right column) of images (B, 1, H, W)."""

    def forward(self, images):
        return torch.stack([images[..., 0].sum((1, 2)), images[..., -1].sum((1, 2))], dim=1)


def test_flip_test_averages_the_logits_of_each_image_and_its_mirror_image():
    images = torch.zeros(2, 1, 4, 4)
    images[0, 0, :, 0] = 1.0  # bright left column: logits (4, 0), label 0
    images[1, 0, :, -1] = 1.0  # bright right column: logits (0, 4), label 1
    batches = [(images, torch.tensor([0, 1]))]
    loss, accuracy = train.evaluate(LeftOrRight(), batches, torch.device("cpu"))
    assert accuracy == 100.0 and loss == pytest.approx(torch.log1p(torch.exp(torch.tensor(-4.0))).item(), rel=1e-5)
    loss, accuracy = train.evaluate(LeftOrRight(), batches, torch.device("cpu"), flip=True)
    assert loss == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-5)  # mirrored: logits (2, 2) for both


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_precision_sets_the_dtype_of_the_forward_pass(precision, dtype):
    cfg = cli.parse_hyperparameters(train, [f"--precision={precision}"])
    with train.autocast(cfg, torch.device("cpu")):
        output = torch.nn.Linear(3, 2)(torch.ones(1, 3))
    assert output.dtype == dtype
    auto = cli.parse_hyperparameters(train, [])
    with train.autocast(auto, torch.device("cpu")):
        output = torch.nn.Linear(3, 2)(torch.ones(1, 3))
    assert output.dtype == (torch.bfloat16 if models.fast_bf16(torch.device("cpu")) else torch.float32)


def test_training_in_bf16_learns(tmp_path, fashion_data):
    first = run_training(fashion_data, tmp_path, "--subset=64", "--epochs=3", "--precision=bf16")
    _, checkpoint = models.load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert checkpoint["state_dict"]["fc.weight"].dtype == torch.float32  # autocast: the weights stay fp32
    assert checkpoint["history"][-1]["train_loss"] < checkpoint["history"][0]["train_loss"] and first["epoch"] == 3


def test_two_processes_with_gloo_train_one_model(tmp_path, fashion_data):
    """torchrun --nproc_per_node=2 on CPU: both ranks end with the same weights and batch-norm
    statistics, rank 0 alone writes, and its checkpoint draws CAMs in visualize_cam.py."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "tests" / "distributed_worker.py"), str(tmp_path),
               *train_args(fashion_data, tmp_path, "--subset=64", "--epochs=2", "--batch_size=16")]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[:3000]
    assert "in 2 processes (batch 16 each, 32 in all)" in result.stdout
    assert result.stdout.count("epoch 2/2") == 1  # only rank 0 prints
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert_same_weights(*ranks)
    assert_same_weights(ranks[0], state(tmp_path / "checkpoints/last.pt"))
    _, checkpoint = models.load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert checkpoint["world_size"] == 2 and [row["epoch"] for row in checkpoint["history"]] == [1, 2]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    drawn = run_script("visualize_cam.py", f"--checkpoint={tmp_path / 'checkpoints/best.pt'}", "--samples=1",
                       "--seed=0", f"--output_dir={tmp_path / 'drawn'}", cwd=tmp_path)
    assert drawn.returncode == 0, drawn.stderr
    assert len(list((tmp_path / "drawn").glob("*.png"))) == 4
    resumed = run_script("train.py", *train_args(fashion_data, tmp_path, "--resume"), cwd=tmp_path)
    assert_clean_error(resumed, "was trained by 2 process(es), this run has 1; resume with the same count")


def start_training(workdir, data_dir, *extra):
    """train.py in a new process, its output unbuffered, so a test can read it line by line."""
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *train_args(data_dir, workdir, *extra)], cwd=workdir,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
    )


def wait_for_line(process, text):
    for line in process.stdout:
        if text in line:
            return
    raise AssertionError(f"train.py ended before printing {text!r}: {process.stderr.read()[-2000:]}")


LONG_RUN = ("--subset=64", "--epochs=30", "--batch_size=8")


def test_ctrl_c_saves_the_step_and_resume_ends_where_an_uninterrupted_run_ends(tmp_path, fashion_data):
    run_training(fashion_data, tmp_path / "whole", *LONG_RUN)
    process = start_training(tmp_path, fashion_data, *LONG_RUN)
    wait_for_line(process, "epoch 1/30")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "stopped by SIGINT in epoch " in stderr and "continue with --resume: saved " in stderr
    assert "Traceback" not in stderr
    _, saved = models.load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert saved["epoch"] >= 1 and 0 <= saved["position"]["step"] < 8  # 64 images in steps of 8
    assert saved["epoch"] < 30
    last_row = run_training(fashion_data, tmp_path, "--resume")
    assert last_row["epoch"] == 30
    assert_same_weights(state(tmp_path / "whole/checkpoints/last.pt"), state(tmp_path / "checkpoints/last.pt"))
    with open(tmp_path / "outputs/metrics.csv") as file:
        assert [int(row["epoch"]) for row in csv.DictReader(file)] == list(range(1, 31))


def test_sigkill_leaves_a_whole_checkpoint_to_resume_from(tmp_path, fashion_data):
    run_training(fashion_data, tmp_path / "whole", *LONG_RUN)
    process = start_training(tmp_path, fashion_data, *LONG_RUN)
    wait_for_line(process, "epoch 3/30")
    process.kill()  # SIGKILL: no handler runs
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    _, saved = models.load_checkpoint(tmp_path / "checkpoints/last.pt")  # whole, and loads
    assert 3 <= saved["epoch"] < 30 and "position" not in saved
    assert run_training(fashion_data, tmp_path, "--resume")["epoch"] == 30
    assert_same_weights(state(tmp_path / "whole/checkpoints/last.pt"), state(tmp_path / "checkpoints/last.pt"))
    # the kill may have left its lock file and a temporary file; the resumed run cleaned both up
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


def test_any_seed_works(tmp_path, fashion_data):
    """torch takes seeds below 2**64: larger and negative ones are taken modulo 2**64."""
    for seed in (2**70, -3):
        assert run_training(fashion_data, tmp_path / str(seed), "--subset=32", f"--seed={seed}")["epoch"] == 1
    assert models.load_checkpoint(tmp_path / str(2**70) / "checkpoints/last.pt")[1]["hyperparameters"]["seed"] == 2**70


@pytest.mark.parametrize("total_steps", [1, 2, 3, 4, 5, 8, 100])
def test_onecycle_runs_any_number_of_steps_and_peaks_at_lr(total_steps):
    cfg = cli.parse_hyperparameters(train, ["--lr=0.4"])
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    scheduler = train.make_scheduler(optimizer, cfg, total_steps)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(total_steps):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert max(rates) <= 0.4 + 1e-9 and all(rate > 0 for rate in rates[:-1])
    if total_steps == 100:
        assert max(rates) == pytest.approx(0.4) and rates[-1] < 0.001
