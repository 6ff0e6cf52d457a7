import csv
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import REPO, assert_clean_error, run_script, run_training, train_args, write_mnist_like

import model as models
import train
from datasets.cluttered import CLUTTER_DEFAULTS
from training import schedules, wsol
from utils import cli, distributed


@pytest.mark.slow
def test_training_learns_and_writes_everything(trained):
    checkpoints, outputs = trained / "checkpoints", trained / "outputs"
    _, checkpoint = models.load_checkpoint(checkpoints / "best.pt")
    assert checkpoint["test_accuracy"] == 100.0  # each class is a square at its own place: easy
    assert checkpoint["arch"] == {"name": "cnn", "num_classes": 10, "in_channels": 1,
                                  "options": {"width": 16, "pools": 2, "convs": (2, 2, 2), "head": 256, "dilation": 1}}
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


@pytest.mark.slow
def test_same_seed_same_weights(tmp_path, fashion_data):
    run_training(fashion_data, tmp_path / "a", "--subset=64")
    run_training(fashion_data, tmp_path / "b", "--subset=64")
    run_training(fashion_data, tmp_path / "c", "--subset=64", "--seed=1")
    assert_same_weights(state(tmp_path / "a/checkpoints/last.pt"), state(tmp_path / "b/checkpoints/last.pt"))
    different = state(tmp_path / "c/checkpoints/last.pt")
    assert not torch.equal(different["fc.weight"], state(tmp_path / "a/checkpoints/last.pt")["fc.weight"])


def crash_in_epoch(epoch, monkeypatch, data_dir, workdir, *extra):
    """A run in workdir that crashes in that epoch (a RuntimeError out of train.train_epoch)."""
    real_epoch, calls = train.train_epoch, []

    def crashing(*args, **kwargs):
        calls.append(1)
        if len(calls) == epoch:
            raise RuntimeError("power cut")
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train, "train_epoch", crashing)
    with pytest.raises(RuntimeError, match="power cut"):
        run_training(data_dir, workdir, *extra)
    monkeypatch.setattr(train, "train_epoch", real_epoch)


@pytest.mark.slow
def test_resume_after_a_crash_ends_where_an_uninterrupted_run_ends(tmp_path, fashion_data, monkeypatch):
    # 2 steps an epoch: the resumed run starts at a third of the run, where the images are still growing
    run_training(fashion_data, tmp_path / "whole", "--subset=64", "--epochs=3")
    crash_in_epoch(2, monkeypatch, fashion_data, tmp_path / "crashed", "--subset=64", "--epochs=3")
    assert models.load_checkpoint(tmp_path / "crashed/checkpoints/last.pt")[1]["epoch"] == 1

    # train(cfg) with --resume takes the saved run's hyperparameters: --epochs=1 here does not shorten it
    # (on the command line, a flag that differs from the saved run is an error: tests/test_inputs.py)
    last_row = run_training(fashion_data, tmp_path / "crashed", "--resume", "--epochs=1")
    assert last_row["epoch"] == 3
    assert_same_weights(state(tmp_path / "whole/checkpoints/last.pt"), state(tmp_path / "crashed/checkpoints/last.pt"))
    with open(tmp_path / "crashed/outputs/metrics.csv") as file:
        assert [int(row["epoch"]) for row in csv.DictReader(file)] == [1, 2, 3]


@pytest.mark.slow
def test_progressive_resizing_trains_on_smaller_images_first_and_shifts_are_tested_at_the_end(
        tmp_path, fashion_data, monkeypatch):
    real_step, sides = train.train_step, []

    def recording_step(run, images, *args):
        sides.append(images.shape[-1])
        return real_step(run, images, *args)

    monkeypatch.setattr(train, "train_step", recording_step)
    last_row = run_training(fashion_data, tmp_path, "--subset=64", "--epochs=4", "--batch_size=16")  # 16 steps
    assert sides == [20] * 4 + [24] * 4 + [28] * 8  # fashion-mnist's own start: 0.7 of 28 px, full size by half the run
    _, saved = models.load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert saved["hyperparameters"]["progressive_start"] == 0.7  # saved as its value, not as "the dataset's own"
    assert {"test_tta_accuracy", "test_tta_loss"} <= set(last_row)  # the final model, also with test-time shifts
    with open(tmp_path / "outputs/metrics.csv") as file:
        rows = list(csv.DictReader(file))
    assert rows[0]["test_tta_accuracy"] == "" and float(rows[-1]["test_tta_accuracy"]) == last_row["test_tta_accuracy"]
    sides.clear()
    run_training(fashion_data, tmp_path / "off", "--subset=64", "--epochs=4", "--batch_size=16",
                 "--progressive_start=1", "--shift_test=false")
    assert sides == [28] * 16


@pytest.mark.slow
def test_evaluate_every_measures_only_those_epochs_and_the_last_and_trains_the_same_weights(tmp_path, fashion_data):
    run_training(fashion_data, tmp_path / "every", "--subset=64", "--epochs=3", "--validation=32", "--evaluate_every=1")
    run_training(fashion_data, tmp_path / "default", "--subset=64", "--epochs=4", "--validation=32")
    with open(tmp_path / "default/outputs/metrics.csv") as file:
        assert [int(row["epoch"]) for row in csv.DictReader(file) if row["test_accuracy"]] == [3, 4]  # every third
    last_row = run_training(fashion_data, tmp_path / "second", "--subset=64", "--epochs=3", "--validation=32",
                            "--evaluate_every=2")
    run_training(fashion_data, tmp_path / "last", "--subset=64", "--epochs=3", "--validation=32",
                 "--evaluate_every=0")
    every = state(tmp_path / "every/checkpoints/last.pt")
    for run, measured in (("every", [1, 2, 3]), ("second", [2, 3]), ("last", [3])):
        assert_same_weights(every, state(tmp_path / run / "checkpoints/last.pt"))  # measuring draws nothing
        with open(tmp_path / run / "outputs/metrics.csv") as file:
            rows = list(csv.DictReader(file))
        assert [int(row["epoch"]) for row in rows] == [1, 2, 3] and all(row["train_loss"] for row in rows)
        assert [int(row["epoch"]) for row in rows if row["validation_accuracy"]] == measured
        assert [int(row["epoch"]) for row in rows if row["test_accuracy"]] == measured
        _, best = models.load_checkpoint(tmp_path / run / "checkpoints/best.pt")
        assert best["best_epoch"] in measured
        assert best["test_accuracy"] == float(rows[best["best_epoch"] - 1]["test_accuracy"])
    assert {"test_accuracy", "test_tta_accuracy", "validation_accuracy"} <= set(last_row)


@pytest.mark.slow
def test_resume_of_a_finished_run_does_nothing(tmp_path, fashion_data, capsys):
    run_training(fashion_data, tmp_path, "--subset=32")
    before = (tmp_path / "checkpoints/last.pt").read_bytes()
    run_training(fashion_data, tmp_path, "--resume")
    assert "nothing to resume" in capsys.readouterr().out
    assert (tmp_path / "checkpoints/last.pt").read_bytes() == before


@pytest.mark.slow
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


@pytest.mark.slow
def test_training_in_bf16_learns(tmp_path, fashion_data):
    first = run_training(fashion_data, tmp_path, "--subset=64", "--epochs=3", "--precision=bf16")
    _, checkpoint = models.load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert checkpoint["state_dict"]["fc.weight"].dtype == torch.float32  # autocast: the weights stay fp32
    assert checkpoint["history"][-1]["train_loss"] < checkpoint["history"][0]["train_loss"] and first["epoch"] == 3


@pytest.mark.slow
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


LONG_RUN = ("--subset=64", "--epochs=12", "--batch_size=8")


@pytest.fixture(scope="session")
def long_run_weights(tmp_path_factory) -> dict:
    """The final weights of LONG_RUN without interruption, on the fashion_data set: trained once for
    the tests that stop the same run and resume it."""
    workdir = tmp_path_factory.mktemp("long_run")
    write_mnist_like(workdir / "data" / "fashion-mnist")  # the same files as the fashion_data fixture
    run_training(workdir / "data", workdir, *LONG_RUN)
    return state(workdir / "checkpoints/last.pt")


@pytest.mark.slow
def test_ctrl_c_saves_the_step_and_resume_ends_where_an_uninterrupted_run_ends(tmp_path, fashion_data,
                                                                              long_run_weights):
    process = start_training(tmp_path, fashion_data, *LONG_RUN)
    wait_for_line(process, "epoch 1/12")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "stopped by SIGINT in epoch " in stderr and "continue with --resume: saved " in stderr
    assert "Traceback" not in stderr
    _, saved = models.load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert saved["epoch"] >= 1 and 1 <= saved["position"]["step"] <= 8  # 64 images in steps of 8
    assert saved["epoch"] < 12
    last_row = run_training(fashion_data, tmp_path, "--resume")
    assert last_row["epoch"] == 12
    assert_same_weights(long_run_weights, state(tmp_path / "checkpoints/last.pt"))
    with open(tmp_path / "outputs/metrics.csv") as file:
        assert [int(row["epoch"]) for row in csv.DictReader(file)] == list(range(1, 13))


@pytest.mark.slow
def test_sigkill_leaves_a_whole_checkpoint_to_resume_from(tmp_path, fashion_data, long_run_weights):
    process = start_training(tmp_path, fashion_data, *LONG_RUN)
    wait_for_line(process, "epoch 3/12")
    process.kill()  # SIGKILL: no handler runs
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    _, saved = models.load_checkpoint(tmp_path / "checkpoints/last.pt")  # whole, and loads
    assert 3 <= saved["epoch"] < 12 and "position" not in saved
    assert run_training(fashion_data, tmp_path, "--resume")["epoch"] == 12
    assert_same_weights(long_run_weights, state(tmp_path / "checkpoints/last.pt"))
    # the kill may have left its lock file and a temporary file; the resumed run cleaned both up
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


@pytest.mark.slow
def test_any_seed_works(tmp_path, fashion_data):
    """torch takes seeds below 2**64: larger and negative ones are taken modulo 2**64."""
    for seed in (2**70, -3):
        assert run_training(fashion_data, tmp_path / str(seed), "--subset=32", f"--seed={seed}")["epoch"] == 1
    assert models.load_checkpoint(tmp_path / str(2**70) / "checkpoints/last.pt")[1]["hyperparameters"]["seed"] == 2**70


@pytest.mark.slow
def test_a_command_line_error_is_one_line_and_exit_1_and_clobbers_nothing(tmp_path, fashion_data):
    """The command-line smoke test of train.py's errors; tests/test_inputs.py checks every message in-process."""
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"earlier work")
    result = run_script("train.py", *train_args(fashion_data, tmp_path, "--overwrite", "--epoch=3"), cwd=tmp_path)
    assert_clean_error(result, "unknown hyperparameter '--epoch'; did you mean --epochs?")
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == b"earlier work"


@pytest.mark.slow
def test_a_diverging_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path, fashion_data):
    run_training(fashion_data, tmp_path, "--subset=64")
    before = {path.name: path.read_bytes() for path in (tmp_path / "checkpoints").iterdir()}
    with pytest.raises(cli.UserError) as error:
        run_training(fashion_data, tmp_path, "--subset=64", "--lr=1e30", "--epochs=2", "--overwrite")
    message = str(error.value)
    assert message.startswith(("the training loss became nan", "the training loss became inf"))
    assert "keeping the checkpoints of the last finished epoch; try a lower --lr" in message
    assert {path.name: path.read_bytes() for path in (tmp_path / "checkpoints").iterdir()} == before


def test_the_defaults_are_the_networks_and_the_cluttered_sets_the_libraries_build():
    """train.py's literal defaults of the cnn and of the cluttered set are the libraries' own, so they cannot drift
    apart: model.CNN_DEFAULTS (what build_model("cnn") builds without options, as benchmark.py does) and
    cluttered.CLUTTER_DEFAULTS (the set's settings where none are given)."""
    convs = tuple(int(count) for count in train.convs.split(","))
    assert {"width": train.width, "pools": train.pools, "convs": convs, "head": train.head,
            "dilation": train.dilation} == models.CNN_DEFAULTS
    assert {"clutter": train.clutter, "clutter_size": train.clutter_size} == {
        name: CLUTTER_DEFAULTS[name] for name in ("clutter", "clutter_size")}


def test_help_lists_every_hyperparameter(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for name, _, default, *_ in cli.declared_hyperparameters(train):
        assert f"--{name}" in out and f"(default: {default!r})" in out


@pytest.mark.slow
def test_a_user_error_under_torchrun_ends_every_rank_with_the_same_line(tmp_path, fashion_data):
    """rank 0 alone checks the checkpoint folder; its verdict reaches rank 1 before any other
    collective, so rank 1 does not die in a barrier with a traceback."""
    run_training(fashion_data, tmp_path, "--subset=32")  # a finished run in tmp_path/checkpoints
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "train.py"), *train_args(fashion_data, tmp_path, "--subset=32")]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 2 and lines[0] == lines[1] and "holds last.pt and best.pt of an earlier run" in lines[0], \
        result.stderr[-3000:]
    assert "Connection closed" not in result.stderr and "dist.barrier" not in result.stderr


@pytest.mark.slow
def test_resume_keeps_the_saved_folders_unless_given(tmp_path, fashion_data, monkeypatch):
    """`--resume --checkpoint_dir=X` goes on with the run's own data_dir and output_dir, not the
    defaults, even where another dataset sits at the default data_dir."""
    crash_in_epoch(2, monkeypatch, fashion_data, tmp_path / "run", "--subset=32", "--epochs=2")
    monkeypatch.chdir(tmp_path)
    write_mnist_like(tmp_path / "data" / "fashion-mnist", seed=5)  # another dataset at the default --data_dir
    train.main([f"--checkpoint_dir={tmp_path / 'run/checkpoints'}", "--resume"])
    _, last = models.load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert last["epoch"] == 2 and last["hyperparameters"]["data_dir"] == str(fashion_data)
    assert (tmp_path / "run/outputs/metrics.csv").is_file() and not (tmp_path / "outputs").exists()


def write_image_folder(root, classes: str, per_class: int = 6):
    """root/{train,test}/<class>/<n>.png: small RGB images, a color per class."""
    from PIL import Image
    for split in ("train", "test"):
        for index, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for n in range(per_class):
                pixels = np.full((12, 12, 3), 40 * index + n, dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{n}.png")


FOLDER_RUN = ("--dataset=folder", "--image_size=16", "--width=4", "--head=0", "--subset=8", "--epochs=2")


@pytest.mark.slow
def test_resume_refuses_a_data_dir_with_another_dataset(tmp_path, monkeypatch):
    write_image_folder(tmp_path / "two", "ab")
    write_image_folder(tmp_path / "three", "abc")
    crash_in_epoch(2, monkeypatch, tmp_path / "two", tmp_path / "run", *FOLDER_RUN)
    argv = train_args(tmp_path / "three", tmp_path / "run", *FOLDER_RUN, "--resume")
    with pytest.raises(cli.UserError, match=r"the dataset in --data_dir=.*three is not the one the saved run trained "
                                            r"on: classes \['a', 'b', 'c'\] \(saved: \['a', 'b'\]\)"):
        train.main(argv)
    argv = train_args(tmp_path / "two", tmp_path / "run", *FOLDER_RUN, "--resume")
    assert train.train(cli.parse_hyperparameters(train, argv), cli.given_names(argv))["epoch"] == 2


@pytest.mark.slow
def test_resume_accepts_progressive_start_auto_as_the_datasets_own(tmp_path, fashion_data, monkeypatch):
    crash_in_epoch(2, monkeypatch, fashion_data, tmp_path, "--subset=32", "--epochs=2")
    argv = train_args(fashion_data, tmp_path, "--subset=32", "--epochs=2", "--resume", "--progressive_start=auto")
    assert train.train(cli.parse_hyperparameters(train, argv), cli.given_names(argv))["epoch"] == 2
    argv[-1] = "--progressive_start=0.5"
    with pytest.raises(cli.UserError, match=r"--progressive_start='0.5' \(saved: 0.7\)"):
        train.train(cli.parse_hyperparameters(train, argv), cli.given_names(argv))


@pytest.mark.slow
def test_the_last_epoch_trains_at_full_size_whatever_progressive_until_says(tmp_path, fashion_data, monkeypatch):
    real_step, sides = train.train_step, []

    def recording_step(run, images, *args):
        sides.append(images.shape[-1])
        return real_step(run, images, *args)

    monkeypatch.setattr(train, "train_step", recording_step)
    run_training(fashion_data, tmp_path, "--subset=64", "--epochs=3", "--batch_size=16", "--progressive_until=1",
                 "--shift_test=false")
    assert sides[-4:] == [28] * 4 and sides[0] == 20  # 4 steps an epoch: the last epoch at 28 px


@pytest.mark.slow
def test_a_second_run_into_the_same_output_dir_is_refused(tmp_path, fashion_data):
    run_training(fashion_data, tmp_path, "--subset=32")
    before = (tmp_path / "outputs/metrics.csv").read_bytes()
    other = train_args(fashion_data, tmp_path, "--subset=32", "--seed=1")
    other[1] = f"--checkpoint_dir={tmp_path / 'other_checkpoints'}"
    with pytest.raises(cli.UserError, match="outputs holds metrics.csv and training_curves.png of an earlier run; "
                                            "choose another --output_dir, or replace them with --overwrite"):
        train.main(other)
    assert (tmp_path / "outputs/metrics.csv").read_bytes() == before
    train.main(other + ["--overwrite"])
    assert (tmp_path / "outputs/metrics.csv").read_bytes() != before


def test_the_step_is_cross_entropy_and_adds_the_alignment_terms_from_align_start():
    torch.manual_seed(0)
    net = models.build_model("cnn", 3, 1, width=2, convs=(1, 1, 1), head=0).train()
    images, labels = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])

    def step(progress: float, *flags: str) -> torch.Tensor:
        cfg = cli.parse_hyperparameters(train, ["--label_smoothing=0.1", "--precision=fp32", *flags])
        optimizer = torch.optim.SGD(net.parameters(), lr=0.0)  # the weights stay as they are
        run = SimpleNamespace(cfg=cfg, device=torch.device("cpu"), train_net=net, net=net, optimizer=optimizer,
                              processes=distributed.Processes(),
                              scheduler=schedules.make_scheduler(optimizer, "constant", 1))
        loss, logits, stopping = train.train_step(run, images, labels, progress, torch.Generator(),
                                                  distributed.StopRequest())
        assert torch.allclose(logits, net(images)) and not stopping
        return loss.detach()

    logits = net(images).detach()
    plain = step(0.9)
    assert torch.allclose(plain, F.cross_entropy(logits, labels, label_smoothing=0.1))
    aligning = ("--align_weight=0.1", "--norm_weight=1", "--align_start=0.3")
    alignment, norm = wsol.alignment_losses(net.features(images).detach(), net.fc.weight[labels].detach())
    assert torch.allclose(step(0.29, *aligning), plain)  # cross-entropy alone before --align_start
    assert torch.allclose(step(0.3, *aligning), plain + 0.1 * alignment + norm)


@pytest.mark.slow
def test_resume_refuses_a_folder_dataset_whose_files_changed(tmp_path, monkeypatch):
    """The one-cycle schedule and the exact resume are sized for the saved run's images: after 4 of
    a folder's 12 training images are deleted, --resume is refused, naming the counts."""
    write_image_folder(tmp_path / "photos", "ab")
    args = ["--dataset=folder", "--image_size=12", "--model=cnn", "--width=4"]
    crash_in_epoch(2, monkeypatch, tmp_path / "photos", tmp_path / "run", "--epochs=2", *args)
    for path in sorted((tmp_path / "photos" / "train" / "a").iterdir())[:4]:
        path.unlink()
    changed = r"images \{'train': 8, 'test': 12\} \(saved: \{'train': 12, 'test': 12\}\)"
    with pytest.raises(cli.UserError, match=r"--resume: the dataset in .* is not the one the saved run trained on: "
                                            + changed):
        train.main([f"--checkpoint_dir={tmp_path / 'run/checkpoints'}", "--resume"])
