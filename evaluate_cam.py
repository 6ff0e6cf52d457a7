"""Does the map land on the object? The localization report of a checkpoint, on its whole test set.

    python evaluate_cam.py                                    # checkpoints/best.pt
    python evaluate_cam.py --checkpoint=PATH --limit=1000     # the first 1000 test images only
    python evaluate_cam.py --help                             # every hyperparameter with its default

The checkpoint's dataset must carry ground-truth boxes and masks (fashion-mnist-cluttered). For
CAM, for Grad-CAM on the same model and for a centered Gaussian baseline it measures top-1 and
GT-known localization accuracy at the CAM paper's threshold, MaxBoxAcc, MaxBoxAccV2 and PxAP
(see localization.py), and writes to outputs/: localization.md (the table), localization.json
(the numbers and the curves), localization_examples.png (test images with their CAM, the
predicted box in green and the ground-truth box in red) and localization_thresholds.png (box
accuracy against the threshold, and the pixel precision-recall curves).
"""

import cli  # noqa: I001 -- first: a Ctrl-C while torch loads then ends in one line, not a traceback

import json
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure

import data
import devices
import drawing
import files
import localization
import model as models

# --- hyperparameters: edit them here, or override them on the command line (--name=value) ---
checkpoint: str = "checkpoints/best.pt"  # a checkpoint trained on fashion-mnist-cluttered
data_dir: str = ""  # where the test set is found; "": the data_dir the checkpoint was trained with
download: bool = True  # download the source dataset if it is not on disk
batch_size: int = 250  # test images per batch
limit: int = 0  # evaluate the first N test images only (0: the whole test set)
cam_threshold: float = localization.CAM_THRESHOLD  # box threshold of top-1 and GT-known localization, on the min-max normalized map
threshold_step: float = localization.THRESHOLD_STEP  # step of the threshold sweep (0 to 1) of MaxBoxAcc, MaxBoxAccV2 and PxAP
examples: int = 16  # test images shown in localization_examples.png
seed: int = 0  # which test images the examples figure shows
output_dir: str = "outputs"  # where the report is written
device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
# ------------------------------------------------------------------------------------------------

METHODS = ("CAM", "Grad-CAM", "center baseline")


def validate(cfg) -> None:
    checks = [
        (cfg.batch_size >= 1, f"--batch_size must be at least 1, got {cfg.batch_size}"),
        (cfg.limit >= 0, f"--limit must be >= 0, got {cfg.limit}"),
        (0 <= cfg.cam_threshold < 1, f"--cam_threshold must be in [0, 1), got {cfg.cam_threshold}"),
        (0 < cfg.threshold_step <= 0.5, f"--threshold_step must be in (0, 0.5], got {cfg.threshold_step}"),
        (cfg.examples >= 0, f"--examples must be >= 0, got {cfg.examples}"),
    ]
    for ok, message in checks:
        if not ok:
            raise cli.UserError(message)


def method_maps(net, images: torch.Tensor, labels: torch.Tensor, center: np.ndarray):
    """(logits (B, num_classes), cams of every class (B, num_classes, h, w), {method: float maps
    (B, H, W) in [0, 1] of the true class}) for a batch of images (B, C, H, W)."""
    size = images.shape[-2:]
    with torch.no_grad():
        logits, cams = models.class_activation_maps(net, images)
    _, grad_cams = models.grad_cam(net, images, labels)
    true_cams = cams[torch.arange(len(labels)), labels]  # (B, h, w)
    maps = {
        name: localization.normalize_maps(localization.upsample_maps(heat[:, None], size))[:, 0].cpu().numpy()
        for name, heat in (("CAM", true_cams), ("Grad-CAM", grad_cams))
    }
    maps["center baseline"] = np.broadcast_to(center, (len(labels), *center.shape))
    return logits, cams, maps


def evaluate(cfg) -> dict:
    """Compute the report cfg asks for, write it, and return it (the JSON's content)."""
    validate(cfg)
    device = devices.pick_device(cfg.device)
    net, checkpoint = models.load_checkpoint(cfg.checkpoint, device, models.TRAINING_METADATA)
    info = data.DatasetInfo.from_dict(checkpoint["dataset"])
    loaded = data.load_dataset(
        info.name, cfg.data_dir or checkpoint["hyperparameters"]["data_dir"], cfg.download, info.image_size,
        info.options,
    )
    test_set = loaded.test
    if getattr(test_set, "masks", None) is None:
        raise cli.UserError(
            f"{cfg.checkpoint} was trained on {info.name}, whose test set has no ground-truth boxes; "
            "evaluate a checkpoint trained with --dataset=fashion-mnist-cluttered"
        )
    count = min(cfg.limit or len(test_set), len(test_set))
    loader = loaded.loader("test", cfg.batch_size, device, limit=count)
    output_dir = files.writable_folder(cfg.output_dir, "output_dir")

    thresholds = localization.threshold_sweep(cfg.threshold_step)
    evaluators = {name: localization.LocalizationEvaluator(thresholds, cfg.cam_threshold) for name in METHODS}
    center = localization.centered_gaussian(info.image_size, info.image_size)
    shown = sorted(random.Random(cfg.seed).sample(range(count), min(cfg.examples, count)))
    examples, correct_count, started = [], 0, time.perf_counter()
    print(f"evaluating {cfg.checkpoint} on {count} {info.name} test images on {device}")
    for start, (images, labels) in zip(range(0, count, cfg.batch_size), loader):
        stop = start + len(labels)
        images, labels = images.to(device), labels.to(device)
        logits, cams, maps = method_maps(net, images, labels, center)
        predicted = logits.argmax(1)
        correct = (predicted == labels).cpu().numpy()
        correct_count += int(correct.sum())
        boxes, masks = test_set.boxes[start:stop].numpy(), test_set.masks[start:stop].numpy()
        for name, evaluator in evaluators.items():
            evaluator.accumulate(maps[name], boxes, masks, correct)
        for index in (i for i in shown if start <= i < stop):
            b = index - start
            heat = localization.normalize_maps(
                localization.upsample_maps(cams[b:b + 1, predicted[b:b + 1]], images.shape[-2:])
            )[0, 0].cpu().numpy()
            examples.append({
                "index": index, "image": drawing.to_rgb_image(images[b], info.mean, info.std), "heat": heat,
                "box": localization.boxes_from_maps(heat[None], cfg.cam_threshold)[0], "truth": boxes[b],
                "true": info.classes[int(labels[b])], "predicted": info.classes[int(predicted[b])],
            })
    seconds = time.perf_counter() - started
    report = {
        "checkpoint": str(cfg.checkpoint), "dataset": info.as_dict(), "images": count,
        "classification_top1": 100 * correct_count / count, "cam_threshold": cfg.cam_threshold,
        "threshold_step": cfg.threshold_step, "seconds": round(seconds, 1),
        "methods": {name: evaluator.compute() for name, evaluator in evaluators.items()},
    }
    write_report(report, examples, output_dir)
    return report


def markdown_table(report: dict) -> str:
    """The report's metrics as a markdown table, a row per method."""
    lines = [
        "| method | top-1 cls | top-1 loc | GT-known loc | MaxBoxAcc | MaxBoxAccV2 | (IoU 0.3 / 0.5 / 0.7) | PxAP |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, metrics in report["methods"].items():
        by_iou = " / ".join(f"{value:.1f}" for value in metrics["max_box_acc_v2_by_iou"].values())
        lines.append(
            f"| {name} | {report['classification_top1']:.2f} | {metrics['top1_loc']:.2f} | "
            f"{metrics['gt_known_loc']:.2f} | {metrics['max_box_acc']:.2f} | {metrics['max_box_acc_v2']:.2f} | "
            f"{by_iou} | {metrics['pxap']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def write_report(report: dict, examples: list[dict], output_dir: Path) -> None:
    table = markdown_table(report)
    header = (
        f"Localization of `{report['checkpoint']}` on {report['images']} {report['dataset']['name']} test images "
        f"(box threshold {report['cam_threshold']} for top-1 / GT-known loc; sweep step {report['threshold_step']}).\n\n"
    )
    paths = {"table": output_dir / "localization.md", "json": output_dir / "localization.json"}
    with files.atomic_output(paths["table"]) as temporary:
        temporary.write_text(header + table)
    with files.atomic_output(paths["json"]) as temporary:
        temporary.write_text(json.dumps(report, indent=1) + "\n")
    if examples:
        paths["examples"] = output_dir / "localization_examples.png"
        write_examples(examples, paths["examples"])
    paths["curves"] = output_dir / "localization_thresholds.png"
    write_curves(report, paths["curves"])
    print(table, end="")
    print(f"{report['images']} images in {report['seconds']:.1f} s; wrote " + ", ".join(map(str, paths.values())))


def write_examples(examples: list[dict], path: Path, scale: int = 4) -> None:
    """A grid of test images: CAM of the predicted class over the image, its box (green) at the
    box threshold and the ground-truth box (red), with the IoU."""
    columns = min(8, len(examples))
    rows = -(-len(examples) // columns)
    figure = Figure(figsize=(2.1 * columns, 2.4 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, example in zip(axes, examples):
        size = example["image"].shape[0] * scale
        picture = cv2.resize(example["image"], (size, size), interpolation=cv2.INTER_NEAREST)
        heat = cv2.resize(example["heat"], (size, size), interpolation=cv2.INTER_NEAREST)
        drawn = drawing.overlay(picture, heat, alpha=0.45)
        drawing.draw_box(drawn, example["truth"] * scale, (255, 0, 0))
        drawing.draw_box(drawn, example["box"] * scale, (0, 255, 0))
        iou = localization.box_iou(example["box"], example["truth"])
        axis.imshow(drawn)
        mark = "" if example["true"] == example["predicted"] else " (wrong)"
        axis.set_title(f"#{example['index']} {example['predicted']}{mark}\nIoU {iou:.2f}", fontsize=8)
        axis.axis("off")
    for axis in axes[len(examples):]:
        axis.axis("off")
    drawing.save_figure(figure, path)


def write_curves(report: dict, path: Path) -> None:
    """Box accuracy against the threshold (largest component, IoU 0.5), and pixel precision-recall."""
    figure = Figure(figsize=(11, 4), layout="constrained")
    box_axis, pixel_axis = figure.subplots(1, 2)
    for name, metrics in report["methods"].items():
        curves = metrics["curves"]
        line, = box_axis.plot(curves["thresholds"], curves["box_acc_largest_iou0.5"], label=f"{name}")
        box_axis.axvline(metrics["max_box_acc_threshold"], color=line.get_color(), alpha=0.3, linestyle=":")
        pixel_axis.plot(curves["pixel_recall"], curves["pixel_precision"], label=f"{name} (PxAP {metrics['pxap']:.1f})")
    box_axis.axvline(report["cam_threshold"], color="gray", linestyle="--", label="box threshold")
    box_axis.set(xlabel="threshold on the normalized map", ylabel="box accuracy at IoU 0.5 (%)",
                 title="box accuracy against the threshold", ylim=(0, 100))
    pixel_axis.set(xlabel="pixel recall", ylabel="pixel precision", title="pixel precision-recall",
                   xlim=(0, 1), ylim=(0, 1.02))
    for axis in (box_axis, pixel_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    drawing.save_figure(figure, path)


def main(argv: list[str] | None = None) -> None:
    devices.keep_freed_memory()
    with cli.enough_memory("lower --batch_size"):
        evaluate(cli.parse_hyperparameters(sys.modules[__name__], argv))


if __name__ == "__main__":
    cli.run(main)
