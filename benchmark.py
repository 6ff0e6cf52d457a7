"""Speed of training and of computing maps, side by side on this machine: prints tables, writes JSON.

    python benchmark.py                                   # every model, Fashion-MNIST and the cluttered set
    python benchmark.py --model_names=cnn --dataset_names=fashion-mnist --repeats=9
    python benchmark.py --help                            # every hyperparameter with its default

Training: images/s of full training steps (loading, augmentation, forward, backward, SGD step) on
the real training set, and the epoch time that implies. Maps, per image, on batches of test images
in eval mode: the plain forward pass (the floor), CAM of every class from one forward pass, and
Grad-CAM as evaluation/registry.py makes it (pytorch-grad-cam's GradCAM on the same model, maps at the
image's size); for photos, torchvision's ResNet-50 at 224 px (--photo_models).
Peers (--peers, on each dataset's models): the same computation in this repo and in torchcam 0.5
(CAM, DeletionInsertionMetric; skipped with a note where torchcam is not installed) or
pytorch-grad-cam (GradCAM, ROAD), on the same model, images, classes, maps and steps, as a ratio.
Each number is the median of `repeats` timed runs after `warmup` untimed ones. Timings vary between
machines and runs: compare within one table.
"""

from utils import cli  # noqa: I001 -- first: a Ctrl-C while torch loads then ends in one line, not a traceback

if __name__ == "__main__":
    cli.quiet_interrupts()

import contextlib
import json
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirst, ROADMostRelevantFirst
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

import data
import model
from evaluation import faithfulness, registry
from networks import torchvision_models
from utils import devices, files

# --- hyperparameters: edit them here, or override them on the command line (--name=value) ---
# models and data
model_names: str = "cnn"  # comma-separated model names (cnn,resnet18_small,vgg16_gap: every model, minutes on a CPU)
dataset_names: str = "fashion-mnist,fashion-mnist-cluttered"  # comma-separated dataset names
data_dir: str = "data"  # where datasets are looked for (see train.py)
download: bool = True  # download a dataset that is not on disk
# training steps
batch_size: int = 128  # training batch size
train_warmup: int = 15  # untimed training steps first (oneDNN and the allocator warm up over several)
train_steps: int = 40  # training steps timed back to back, as in an epoch
precision: str = "auto"  # training steps: auto (bf16 autocast where it is fast, as in train.py) | bf16 | fp32
# maps
map_batch_size: int = 64  # test images per batch when timing maps
warmup: int = 3  # map timings: untimed rounds before the timed ones
repeats: int = 50  # map timings: timed rounds, each running every method once; the median is reported
# photos
photo_models: str = "resnet50"  # torchvision classifiers whose maps are timed on photo-sized inputs
    # (random weights, 1,000 classes); "": none
photo_size: int = 224  # side of those inputs
photo_batch_size: int = 8  # images per batch for those
photo_repeats: int = 10  # timed rounds for those (after `warmup` untimed ones)
# peers
peers: bool = True  # also time the same computations in torchcam and pytorch-grad-cam, where installed
peer_images: int = 16  # test images of the peer rows
    # (deletion and insertion, ROAD: one sparse solve per image and step)
peer_repeats: int = 3  # timed rounds of the peer rows (after one untimed round)
steps: int = 16  # peer rows: deletion and insertion steps from 0% to 100% of the pixels
# output and runtime
device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
channels_last: bool = True  # NHWC memory layout, as train.py uses by default
output_dir: str = "outputs"  # where benchmark.json is written
# ------------------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(run, device: torch.device, warmup_runs: int, timed_runs: int) -> float:
    """Median wall time in seconds of run() over timed_runs calls, after warmup_runs untimed calls."""
    for _ in range(warmup_runs):
        run()
    synchronize(device)
    times = []
    for _ in range(timed_runs):
        started = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def training_speed(net, loader, device, layout: torch.memory_format, precision, warmup_steps: int,
                   timed_steps: int) -> float:
    """Images per second of whole training steps, batches drawn from loader (loading included),
    forward passes in the context precision() gives: timed_steps steps back to back, after
    warmup_steps untimed ones, as they run in an epoch."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    batches = iter(loader)
    net.train()

    def step():
        images, labels = next(batches)
        images = images.to(device, non_blocking=True, memory_format=layout)
        labels = labels.to(device, non_blocking=True)
        with precision():
            loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup_steps):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(timed_steps):
        step()
    synchronize(device)
    return timed_steps * loader.batch_size / (time.perf_counter() - started)


def map_timings(net, images: torch.Tensor, device, warmup_runs: int, timed_runs: int) -> dict[str, float]:
    """Milliseconds per image of each way to get maps for a batch (B, C, H, W): the median of
    timed_runs rounds, each timing every way once in turn, so that a slow moment of the machine
    falls on all of them alike and their ratios hold."""
    net.eval()
    classes = torch.zeros(len(images), dtype=torch.long, device=device)

    def forward():
        with torch.no_grad():
            net(images)

    def cam():
        with torch.no_grad():
            model.class_activation_maps(net, images)

    runs = {"forward": forward, "CAM (all classes)": cam,
            "Grad-CAM": lambda: registry.GRAD_CAM.raw(net, images, classes)}
    seconds = {name: [] for name in runs}
    for round_index in range(warmup_runs + timed_runs):
        for name, run in runs.items():
            synchronize(device)
            started = time.perf_counter()
            run()
            synchronize(device)
            if round_index >= warmup_runs:
                seconds[name].append(time.perf_counter() - started)
    return {name: 1000 * statistics.median(values) / len(images) for name, values in seconds.items()}


@contextlib.contextmanager
def peer_runs(net, images: torch.Tensor, mean: list[float], std: list[float], steps: int):
    """Within: the computations that torchcam 0.5 and pytorch-grad-cam 1.5 also implement, each as
    (computation, this repo's run, peer's name, peer's run or None where it is not installed), on
    net and images (B, C, H, W), for each image's predicted class: maps, deletion and insertion
    with `steps` steps to a black baseline, ROAD at faithfulness.ROAD_PERCENTAGES. This repo's runs
    are evaluate_cam.py's (curves and ROAD scored by the BN-folded copy of net, model.folded_batch_norms).
    torchcam's hooks are on net only within."""
    with torch.no_grad():
        classes = net(images).argmax(dim=1)
    black = faithfulness.baseline_images(images, "black", mean, std)
    maps = registry.CAM.maps(net, images, classes, 0)
    percentages = faithfulness.ROAD_PERCENTAGES

    def cam():
        with torch.no_grad():
            return registry.class_cams(net, images, classes)

    scorer = model.folded_batch_norms(net)  # as evaluate_cam.py scores the curves: the same logits, sooner

    def deletion_and_insertion():
        logits, cams = registry.logits_and_class_cams(net, images, classes)
        ends = faithfulness.unmasked(scorer, images, classes, black, faithfulness.probabilities_of(logits, classes))
        maps = registry.upsampled(cams, images)
        return [faithfulness.trapezoid_auc(faithfulness.removal_curves(scorer, images, classes, maps, steps, black,
                                                                       insertion=insertion, ends=ends))
                for insertion in (False, True)]

    with contextlib.ExitStack() as stack:
        torchcam_cam = torchcam_deletion_and_insertion = None
        try:
            import torchcam.methods
            import torchcam.metrics
        except ImportError:
            pass
        else:
            extractor = stack.enter_context(torchcam.methods.CAM(net, target_layer=net.features, fc_layer=net.fc,
                                                                 input_shape=tuple(images.shape[1:])))

            def torchcam_cam():
                with torch.no_grad():
                    return extractor(classes.tolist(), net(images), normalized=False)[0]

            def torchcam_deletion_and_insertion():
                metric = torchcam.metrics.DeletionInsertionMetric(
                    extractor, partial(torch.softmax, dim=-1), steps=steps, baseline=black, batch_size=len(images))
                metric.update(images, class_idx=classes.tolist())
                return metric.summary()

        yield [("CAM of the class, at the last conv's size", cam, "torchcam CAM", torchcam_cam),
               ("ReLU(CAM) of the class at the image's size, min-max (Grad-CAM's maps on GAP networks)",
                lambda: registry.relu_cam(net, images, classes),
                "pytorch-grad-cam GradCAM", lambda: registry.GRAD_CAM.maps(net, images, classes, 0)),
               (f"deletion and insertion AUC ({steps} steps, black baseline), maps included", deletion_and_insertion,
                "torchcam DeletionInsertionMetric", torchcam_deletion_and_insertion),
               (f"ROAD, MoRF and LeRF at {', '.join(map(str, percentages))}% removed, given maps",
                lambda: faithfulness.road_scores(scorer, images, classes, maps, percentages),
                "pytorch-grad-cam ROAD", peer_road(net, images, classes, maps, percentages))]


def peer_road(net, images: torch.Tensor, classes: torch.Tensor, maps: torch.Tensor, percentages):
    """pytorch-grad-cam's ROAD (most and least relevant first) removing the same percentages of the
    pixels of the same maps (B, H, W) as faithfulness.road_scores (its percentages): a run."""
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes]
    cams = maps.cpu().numpy()

    def road():  # the library's percentile keeps the pixels below it: removing p% is its percentile 100 - p
        return [order(100 - p)(images, cams, targets, net, return_diff=False)
                for p in percentages for order in (ROADMostRelevantFirst, ROADLeastRelevantFirst)]

    return road


def peer_timings(runs: list[tuple], device, timed_runs: int, count: int) -> list[dict]:
    """Each of runs (peer_runs) timed as map_timings does, this repo's and the peer's in turn, after
    one untimed round: rows {computation, ours_ms, peer, peer_ms (None: not installed), peer_over_ours},
    milliseconds per image of `count`."""
    seconds = {name: ([], []) for name, *_ in runs}
    for round_index in range(1 + timed_runs):
        for name, ours, _, peer in runs:
            for run, times in zip((ours, peer), seconds[name]):
                if run is None:
                    continue
                synchronize(device)
                started = time.perf_counter()
                run()
                synchronize(device)
                if round_index:
                    times.append(time.perf_counter() - started)
    rows = []
    for name, _, peer_name, peer in runs:
        ours_ms, peer_ms = (1000 * statistics.median(times) / count if times else None for times in seconds[name])
        rows.append({"computation": name, "ours_ms": round(ours_ms, 3), "peer": peer_name,
                     "peer_ms": None if peer_ms is None else round(peer_ms, 3),
                     "peer_over_ours": None if peer_ms is None else round(peer_ms / ours_ms, 2)})
    return rows


def test_pass_seconds(net, images: torch.Tensor, passes: int, count: int, cfg, device) -> float:
    """Seconds that train.py's test pass over count images takes: forward passes in eval mode on
    batches like images (train.py's 2 x batch_size), `passes` times (2 with test-time flips), in
    the training precision."""
    net.eval()

    def forward():
        with torch.no_grad(), devices.autocast(cfg.precision, device):
            for _ in range(passes):
                net(images)

    return count / len(images) * median_seconds(forward, device, cfg.warmup, cfg.repeats)


def run_benchmark(cfg) -> dict:
    device = devices.pick_device(cfg.device)
    names = [name.strip() for name in cfg.model_names.split(",") if name.strip()]
    datasets = [name.strip() for name in cfg.dataset_names.split(",") if name.strip()]
    photo_names = [name.strip() for name in cfg.photo_models.split(",") if name.strip()]
    for name in names:
        if name not in model.MODELS:
            raise cli.UserError(f"unknown model {name!r} in --model_names; choose from {', '.join(model.MODELS)}")
    for name in photo_names:
        if name not in torchvision_models.torchvision_names():
            raise cli.UserError(f"--photo_models: {name!r} is not a torchvision classifier with a GAP + linear head "
                                f"(for example resnet50, densenet121)")
    if min(cfg.photo_size, cfg.photo_batch_size, cfg.photo_repeats) < 1:
        raise cli.UserError("--photo_size, --photo_batch_size and --photo_repeats must be >= 1")
    for name in datasets:
        if name not in data.DATASETS:
            raise cli.UserError(f"unknown dataset {name!r} in --dataset_names; choose from {', '.join(data.DATASETS)}")
    if not (names or photo_names):
        raise cli.UserError("--model_names and --photo_models name no model, so there is nothing to time; name one "
                            "in either (for example --model_names=cnn or --photo_models=resnet50)")
    if names and not datasets:
        raise cli.UserError(f"--dataset_names names no dataset to time --model_names={cfg.model_names} on; name "
                            "one (for example --dataset_names=fashion-mnist), or time photo models only with "
                            "--model_names=")
    if min(cfg.warmup, cfg.train_warmup) < 0 or min(cfg.repeats, cfg.train_steps, cfg.batch_size, cfg.map_batch_size,
                                                      cfg.peer_images, cfg.peer_repeats) < 1:
        raise cli.UserError("--warmup and --train_warmup must be >= 0, and --repeats, --train_steps, --batch_size, "
                            "--map_batch_size, --peer_images and --peer_repeats >= 1")
    if cfg.steps < 2:
        raise cli.UserError(f"--steps must be at least 2, got {cfg.steps}")
    cli.check_choice("precision", cfg.precision, devices.PRECISIONS)
    for name in photo_names:
        if (side := model.map_side(name, 3, cfg.photo_size)) < 2:
            raise cli.UserError(f"--photo_size={cfg.photo_size} gives {name} maps of {side}x{side}, and CAM needs at "
                                f"least 2x2: use --photo_size={model.smallest_image_size(name, 3, cfg.photo_size)} "
                                f"or more, or leave {name} out of --photo_models")
    files.writable_folder(cfg.output_dir, "output_dir")  # before minutes of timing, not after
    torch.manual_seed(0)
    rows = []
    machine = devices.describe_device(device)
    kind = "bf16 autocast" if devices.uses_bf16(cfg.precision, device) else "fp32"
    precision = f"{kind} (--precision={cfg.precision})"
    print(f"benchmark on {machine}; training in {precision}; torch {torch.__version__}")
    for dataset_name in datasets if names else []:  # no dataset models: nothing to time on them
        loaded = data.load_dataset(dataset_name, cfg.data_dir, cfg.download)
        info = loaded.info
        steps = cfg.train_warmup + cfg.train_steps
        layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
        loader = loaded.loader("train", cfg.batch_size, device, torch.Generator().manual_seed(0), memory_format=layout)
        if len(loaded.train) // cfg.batch_size < steps:  # full batches only
            raise cli.UserError(f"{dataset_name} has fewer than {steps} training batches of {cfg.batch_size}")
        test_images = next(iter(loaded.loader("test", cfg.map_batch_size, device, memory_format=layout)))[0]
        eval_images = next(iter(loaded.loader("test", 2 * cfg.batch_size, device, memory_format=layout)))[0]
        test_passes = 2 if loaded.augment.flip else 1  # train.py's test accuracy averages each image with its mirror
        for name in names:
            net = model.build_model(name, len(info.classes), info.channels).to(device, memory_format=layout)
            images_per_second = training_speed(net, loader, device, layout,
                                               lambda: devices.autocast(cfg.precision, device),
                                               cfg.train_warmup, cfg.train_steps)
            maps = map_timings(net, test_images, device, cfg.warmup, cfg.repeats)
            test_seconds = test_pass_seconds(net, eval_images, test_passes, len(loaded.test), cfg, device)
            row = {
                "dataset": dataset_name, "model": name, "image_size": info.image_size,
                "train_images_per_second": round(images_per_second, 1),
                # what train.py prints as an epoch's seconds: the training steps and the test pass
                "epoch_seconds": round(len(loaded.train) / images_per_second + test_seconds, 1),
                "test_pass_seconds": round(test_seconds, 2),
                "map_ms_per_image": {key: round(value, 4) for key, value in maps.items()},
                "cam_over_forward": round(maps["CAM (all classes)"] / maps["forward"], 3),
                "grad_cam_over_cam": round(maps["Grad-CAM"] / maps["CAM (all classes)"], 3),
            }
            if cfg.peers:
                peer_images = next(iter(loaded.loader("test", cfg.peer_images, device, memory_format=layout)))[0]
                with peer_runs(net.eval(), peer_images, info.mean, info.std, cfg.steps) as runs:
                    row["peers"] = peer_timings(runs, device, cfg.peer_repeats, len(peer_images))
            rows.append(row)
            print(format_row(row))
    for name in photo_names:  # CAM on photos: a torchvision classifier at photo_size, maps only
        net = model.build_model(name, 1000, 3).to(device, memory_format=torch.channels_last)
        images = torch.randn(cfg.photo_batch_size, 3, cfg.photo_size, cfg.photo_size, device=device,
                             generator=torch.Generator(device).manual_seed(0)).to(memory_format=torch.channels_last)
        maps = map_timings(net, images, device, cfg.warmup, cfg.photo_repeats)
        row = {"dataset": f"random {cfg.photo_size} px images", "model": name, "image_size": cfg.photo_size,
               "train_images_per_second": None, "epoch_seconds": None, "test_pass_seconds": None,
               "map_ms_per_image": {key: round(value, 4) for key, value in maps.items()},
               "cam_over_forward": round(maps["CAM (all classes)"] / maps["forward"], 3),
               "grad_cam_over_cam": round(maps["Grad-CAM"] / maps["CAM (all classes)"], 3)}
        rows.append(row)
        print(format_row(row))
    report = {"device": str(device), "machine": machine, "platform": platform.platform(),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "channels_last": cfg.channels_last,
              "precision": precision, "batch_size": cfg.batch_size, "train_warmup": cfg.train_warmup,
              "train_steps": cfg.train_steps, "map_batch_size": cfg.map_batch_size,
              "warmup": cfg.warmup, "repeats": cfg.repeats, "rows": rows}
    print()
    print(markdown_table(rows))
    if any("peers" in row for row in rows):
        print()
        print(peer_table(rows))
    path = Path(cfg.output_dir) / "benchmark.json"
    try:
        with files.atomic_output(path) as temporary:
            temporary.write_text(json.dumps(report, indent=1) + "\n")
    except OSError as error:
        raise cli.UserError(f"cannot write {path} ({error.strerror}); choose another --output_dir") from None
    print(f"wrote {path}")
    return report


def format_row(row: dict) -> str:
    maps = row["map_ms_per_image"]
    training = (f"train {row['train_images_per_second']:8.1f} img/s (epoch {row['epoch_seconds']:7.1f} s)"
                if row["train_images_per_second"] else "maps only")
    return f"{row['dataset']:>24} {row['model']:>10}: {training}; maps ms/img: " + ", ".join(
        f"{k} {v:.3f}" for k, v in maps.items())


def markdown_table(rows: list[dict]) -> str:
    header = ("| dataset | model | train img/s | epoch (s) | forward ms/img | CAM ms/img | Grad-CAM ms/img | "
              "CAM / forward | Grad-CAM / CAM |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        maps = row["map_ms_per_image"]
        training = (f"{row['train_images_per_second']:.0f} | {row['epoch_seconds']:.0f}"
                    if row["train_images_per_second"] else "n/a | n/a")
        lines.append(
            f"| {row['dataset']} | {row['model']} | {training} | "
            f"{maps['forward']:.3f} | {maps['CAM (all classes)']:.3f} | {maps['Grad-CAM']:.3f} | "
            f"{row['cam_over_forward']:.3f} | {row['grad_cam_over_cam']:.2f} |"
        )
    return "\n".join(lines)


def peer_table(rows: list[dict]) -> str:
    """The peer rows of rows as a markdown table: milliseconds per image, and the peer's time over this repo's."""
    lines = ["| dataset | model | computation | this repo ms/img | peer | peer ms/img | peer / this repo |",
             "|---|---|---|---:|---|---:|---:|"]
    for row in rows:
        for peer in row.get("peers", []):
            timed = (f"{peer['peer_ms']:.3f} | {peer['peer_over_ours']:.2f}" if peer["peer_ms"] is not None
                     else "not installed | n/a")
            lines.append(f"| {row['dataset']} | {row['model']} | {peer['computation']} | {peer['ours_ms']:.3f} | "
                         f"{peer['peer']} | {timed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    devices.keep_freed_memory()
    with cli.enough_memory("lower --batch_size or --map_batch_size"):
        run_benchmark(cli.parse_hyperparameters(sys.modules[__name__], argv))


if __name__ == "__main__":
    cli.run(main)
