import json

import pytest

import benchmark
from utils import cli


def test_benchmark_times_training_and_maps(tmp_path, fashion_data, capsys):
    args = [f"--data_dir={fashion_data}", f"--output_dir={tmp_path}", "--model_names=cnn", "--dataset_names=fashion-mnist",
            "--batch_size=8", "--map_batch_size=4", "--warmup=0", "--repeats=2", "--train_warmup=1", "--train_steps=2",
            "--download=false", "--precision=fp32", "--photo_models=resnet18", "--photo_size=64", "--photo_batch_size=2",
            "--photo_repeats=1"]
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
    (["--model_names=", "--photo_models="], "--model_names and --photo_models name no model, so there is nothing to time"),
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
    (["--photo_models=resnet18,inception_v3", "--photo_size=64"],  # resnet18 gives 2x2 maps at 64 px
     r"^--photo_size=64 gives inception_v3 maps of 0x0, and CAM needs at least 2x2: use --photo_size=107 or more"),
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
