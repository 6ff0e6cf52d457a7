import json

import pytest
import torch
from torch import nn

import benchmark
import model as models
from evaluation import faithfulness
from utils import cli


def test_the_steps_default_is_the_reports():
    """benchmark.py's literal --steps is evaluate_cam.py's (faithfulness.STEPS): the peer rows time the report's
    deletion and insertion, so the two cannot drift apart."""
    assert benchmark.steps == faithfulness.STEPS


def test_benchmark_times_training_and_maps(tmp_path, fashion_data, capsys):
    args = [f"--data_dir={fashion_data}", f"--output_dir={tmp_path}", "--model_names=cnn",
            "--dataset_names=fashion-mnist", "--batch_size=8", "--map_batch_size=4", "--warmup=0", "--repeats=2",
            "--train_warmup=1", "--train_steps=2", "--download=false", "--precision=fp32", "--photo_models=resnet18",
            "--photo_size=64", "--photo_batch_size=2", "--photo_repeats=1", "--peers=false"]
    report = benchmark.run_benchmark(cli.parse_hyperparameters(benchmark, args))
    row, photo = report["rows"]
    assert photo["model"] == "resnet18" and photo["train_images_per_second"] is None and photo["cam_over_forward"] > 0
    assert row["dataset"] == "fashion-mnist" and row["model"] == "cnn" and row["train_images_per_second"] > 0
    assert 0 < row["test_pass_seconds"] < row["epoch_seconds"]  # the training steps, then the test pass
    assert report["precision"] == "fp32 (--precision=fp32)" and " kernels, native bf16: " in report["machine"]
    assert set(row["map_ms_per_image"]) == {"forward", "CAM (all classes)", "Grad-CAM"}  # Grad-CAM: the registry's
    assert row["cam_over_forward"] > 0 and row["grad_cam_over_cam"] > 0
    assert json.loads((tmp_path / "benchmark.json").read_text()) == report
    table = capsys.readouterr().out
    assert "| fashion-mnist | cnn |" in table and "| random 64 px images | resnet18 | n/a | n/a |" in table


@pytest.mark.parametrize("extra, message", [
    (["--model_names=cnn,alexnet"], "unknown model 'alexnet'"),
    (["--repeats=0"], "--repeats"),
    (["--batch_size=64"], "fewer than 3 training batches of 64"),
    (["--photo_models=vgg16"], "'vgg16' is not a torchvision classifier with a GAP"),
    (["--photo_size=0"], "--photo_size, --photo_batch_size and --photo_repeats must be >= 1"),
    (["--model_names=", "--photo_models="],
     "--model_names and --photo_models name no model, so there is nothing to time"),
    (["--dataset_names="], "--dataset_names names no dataset to time --model_names=cnn on"),
])
def test_benchmark_errors(tmp_path, fashion_data, extra, message):
    args = [f"--data_dir={fashion_data}", f"--output_dir={tmp_path}", "--dataset_names=fashion-mnist",
            "--train_warmup=1", "--train_steps=2", "--download=false", *extra]
    with pytest.raises(cli.UserError, match=message):
        benchmark.run_benchmark(cli.parse_hyperparameters(benchmark, args))


def never(*args, **kwargs):
    raise AssertionError("timed or loaded what it should not")


@pytest.mark.parametrize("extra, message", [
    (["--dataset_names=fashion-mnist,imagenet"], "unknown dataset 'imagenet' in --dataset_names"),
    pytest.param(["--photo_models=resnet18,inception_v3", "--photo_size=64"],  # resnet18 gives 2x2 maps at 64 px
                 r"^--photo_size=64 gives inception_v3 maps of 0x0, and CAM needs at least 2x2: use --photo_size=107 "
                 "or more", marks=pytest.mark.slow),
])
def test_every_name_and_size_is_checked_before_any_timing(tmp_path, fashion_data, monkeypatch, extra, message):
    monkeypatch.setattr(benchmark, "training_speed", never)
    monkeypatch.setattr(benchmark, "map_timings", never)
    monkeypatch.setattr(benchmark.data, "load_dataset", never)
    with pytest.raises(cli.UserError, match=message):
        benchmark.main([f"--data_dir={fashion_data}", "--dataset_names=fashion-mnist", "--model_names=cnn",
                        f"--output_dir={tmp_path / 'out'}", *extra])
    assert not (tmp_path / "out").exists()


def test_photo_models_alone_load_no_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmark.data, "load_dataset", never)
    timings = dict.fromkeys(("forward", "CAM (all classes)", "Grad-CAM"), 1.0)
    monkeypatch.setattr(benchmark, "map_timings", lambda *args: timings)
    args = ["--model_names=", "--photo_models=resnet18", "--photo_size=64", f"--output_dir={tmp_path}"]
    report = benchmark.run_benchmark(cli.parse_hyperparameters(benchmark, args))
    assert [row["model"] for row in report["rows"]] == ["resnet18"]


def blob_net_and_images() -> tuple[models.GapNet, torch.Tensor]:
    """A GAP network whose class c is the mean of input channel c (a 1x1 identity conv, ReLU, fc 10 x
    identity), and 6 images (3 x 16 x 16) of faint noise with a bright 6x6 square in channel n % 3 at
    a seeded place: each map finds its square, so deleting it first drops the class probability."""
    features = nn.Sequential(nn.Conv2d(3, 3, 1, bias=False), nn.ReLU())
    fc = nn.Linear(3, 3)
    with torch.no_grad():
        features[0].weight.copy_(torch.eye(3)[:, :, None, None])
        fc.weight.copy_(10 * torch.eye(3))
        fc.bias.zero_()
    generator = torch.Generator().manual_seed(3)
    images = 0.1 * torch.randn(6, 3, 16, 16, generator=generator)
    for n, (y, x) in enumerate(torch.randint(0, 10, (6, 2), generator=generator).tolist()):
        images[n, n % 3, y:y + 6, x:x + 6] += 3
    arch = {"name": "blobs", "num_classes": 3, "in_channels": 3, "options": {}}
    return models.GapNet(features, fc, arch).eval(), images


@pytest.mark.oracle
@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # pytorch-grad-cam's ROAD, numpy 2
def test_each_peer_row_times_the_same_computation_as_this_repo():
    pytest.importorskip("torchcam")
    net, images = blob_net_and_images()
    with benchmark.peer_runs(net, images, [0.5] * 3, [0.25] * 3, steps=16) as runs:
        (_, cam, _, torchcam_cam), (_, maps, _, grad_cam), (_, curves, _, torchcam_curves) = runs[:3]
        (_, road, _, grad_cam_road) = runs[3]
        assert torch.allclose(cam(), torchcam_cam(), atol=1e-5)
        assert torch.allclose(maps(), torch.as_tensor(grad_cam()), atol=1e-4)
        deletion, insertion = curves()
        theirs = torchcam_curves()
        assert deletion.mean() < insertion.mean() - 0.2  # the curves see the maps: a wrong ranking would fail
        # the same curves but for the order of tied map values (torchcam's follows position, ours is random)
        assert deletion.mean().item() == pytest.approx(theirs["deletion_auc"], abs=5e-3)
        assert insertion.mean().item() == pytest.approx(theirs["insertion_auc"], abs=5e-3)
        ours, library = road(), grad_cam_road()
        assert len(library) == 2 * len(ours["morf"][0]) == 10  # MoRF and LeRF at each percentage
    assert not net.features._forward_hooks and not net.features._forward_pre_hooks  # torchcam's hooks are gone


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")
def test_peer_rows_print_beside_the_table(tmp_path, fashion_data, capsys):
    args = [f"--data_dir={fashion_data}", f"--output_dir={tmp_path}", "--model_names=cnn",
            "--dataset_names=fashion-mnist", "--batch_size=8", "--map_batch_size=2", "--warmup=0", "--repeats=1",
            "--train_warmup=1", "--train_steps=2", "--download=false", "--precision=fp32", "--photo_models=",
            "--peer_images=2", "--peer_repeats=1", "--steps=4"]
    report = benchmark.run_benchmark(cli.parse_hyperparameters(benchmark, args))
    peers = report["rows"][0]["peers"]
    assert [peer["peer"] for peer in peers] == ["torchcam CAM", "pytorch-grad-cam GradCAM",
                                                "torchcam DeletionInsertionMetric", "pytorch-grad-cam ROAD"]
    assert all(peer["ours_ms"] > 0 for peer in peers) and peers[1]["peer_over_ours"] > 0
    assert "| fashion-mnist | cnn | ROAD, MoRF and LeRF at 10, 30, 50, 70, 90% removed" in capsys.readouterr().out
