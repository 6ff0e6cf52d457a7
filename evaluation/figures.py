"""The figures of evaluate_cam.py's report, drawn from its records (evaluation/results.py): examples with
boxes, box accuracy against the threshold, deletion and insertion curves, and the sanity cascade.

Images are uint8 RGB (H, W, 3); maps are floats in [0, 1] (H, W); PNGs are written whole
(utils/drawing.py).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure

from datasets.ground_truth import as_boxes
from evaluation import localization, map_reading
from utils.drawing import colorize, draw_box, overlay, save_figure

if TYPE_CHECKING:
    from evaluation.results import FaithfulnessResult, LocalizationResult, SanityResult


@dataclass
class Example:
    """One image of the examples figure: its index in the split, the image (uint8 RGB (H, W, 3)),
    the map of the predicted class (float (H, W) in [0, 1]), the true box (4,) or boxes (M, 4) with
    padding rows x1 < x0, the class names, and the
    box drawn from the map at the operating threshold (boxes (x0, y0, x1, y1), exclusive ends)."""

    index: int
    image: np.ndarray
    heat: np.ndarray
    truth: np.ndarray
    true: str
    predicted: str
    box: np.ndarray | None = None


def boxed_overlay(image: np.ndarray, heat: np.ndarray, truth: np.ndarray, box: np.ndarray | None,
                  scale: int = 4) -> np.ndarray:
    """uint8 RGB (S H, S W, 3), S = scale: the map (H, W) in [0, 1] over the image (uint8 RGB (H, W, 3)),
    enlarged pixel for pixel, with the true boxes (4,) or (M, 4) in red (padding rows x1 < x0
    skipped) and the map's box (4,) in green (None: masks-only ground truth, no box); exclusive ends."""
    size = (image.shape[1] * scale, image.shape[0] * scale)
    drawn = overlay(cv2.resize(image, size, interpolation=cv2.INTER_NEAREST),
                    cv2.resize(heat, size, interpolation=cv2.INTER_NEAREST), alpha=0.45)
    true_boxes = as_boxes(np.asarray(truth)[None])[0]
    for true_box in true_boxes[true_boxes[:, 2] >= true_boxes[:, 0]]:
        draw_box(drawn, true_box * scale, (255, 0, 0))
    if box is not None:
        draw_box(drawn, box * scale, (0, 255, 0))
    return drawn


def examples_figure(examples: list[Example], path: Path, scale: int = 4) -> None:
    """A grid of images: the map over the image, its box (green) and the true box (red), with the IoU."""
    columns = min(8, len(examples))
    rows = -(-len(examples) // columns)
    figure = Figure(figsize=(2.1 * columns, 2.4 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, example in zip(axes, examples):
        drawn = boxed_overlay(example.image, example.heat, example.truth, example.box, scale)
        truth = as_boxes(np.asarray(example.truth)[None])[0]  # (M, 4), padding rows x1 < x0
        scored = "" if example.box is None else f"\nIoU {localization.best_iou(example.box[None], truth[None])[0]:.2f}"
        axis.imshow(drawn)
        mark = "" if example.true == example.predicted else " (wrong)"
        axis.set_title(f"#{example.index} {example.predicted}{mark}{scored}", fontsize=8)
        axis.axis("off")
    for axis in axes[len(examples):]:
        axis.axis("off")
    save_figure(figure, path)


def threshold_curves_figure(rows: list[tuple[str, "LocalizationResult"]], path: Path) -> None:
    """Box accuracy against the threshold (largest component, IoU 0.5), with each method's best
    (dotted) and operating (dashed) threshold, and pixel precision-recall; rows: (name, result)."""
    figure = Figure(figsize=(11, 4), layout="constrained")
    box_axis, pixel_axis = figure.subplots(1, 2)
    for name, result in rows:
        curves = result.curves
        if result.max_box_acc is not None:  # a dataset with boxes
            line, = box_axis.plot(curves["thresholds"], curves["box_acc_largest_iou0.5"], label=name)
            box_axis.axvline(result.max_box_acc_threshold, color=line.get_color(), alpha=0.3, linestyle=":")
            box_axis.axvline(result.operating.threshold, color=line.get_color(), alpha=0.6, linestyle="--")
        if result.pxap is not None:  # a dataset with masks
            pixel_axis.plot(curves["pixel_recall"], curves["pixel_precision"], label=f"{name} (PxAP {result.pxap:.1f})")
    box_axis.set(xlabel="threshold on the normalized map", ylabel="box accuracy at IoU 0.5 (%)",
                 title="box accuracy against the threshold" + ("" if box_axis.lines else " (no boxes)"), ylim=(0, 100))
    pixel_axis.set(xlabel="pixel recall", ylabel="pixel precision", xlim=(0, 1), ylim=(0, 1.02),
                   title="pixel precision-recall" + ("" if pixel_axis.lines else " (no masks: no PxAP)"))
    for axis in (box_axis, pixel_axis):
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=8)
    save_figure(figure, path)


def removal_curves_figure(rows: list[tuple[str, "FaithfulnessResult"]], path: Path) -> None:
    """The mean deletion and insertion curves of each method: class probability against the share
    of pixels removed (deletion) or revealed (insertion); rows: (name, result)."""
    figure = Figure(figsize=(11, 4), layout="constrained")
    axes = figure.subplots(1, 2)
    for name, result in rows:
        for axis, kind, auc in zip(axes, ("deletion", "insertion"), (result.deletion_auc, result.insertion_auc)):
            curve = result.curves[kind]
            axis.plot(np.linspace(0, 1, len(curve)), curve, label=f"{name} (AUC {100 * auc:.1f})")
    for axis, kind, verb in zip(axes, ("deletion", "insertion"), ("removed", "revealed")):
        axis.set(xlabel=f"share of pixels {verb} (highest map values first)", ylabel="probability of the class",
                 title=f"{kind} ({'lower' if kind == 'deletion' else 'higher'} is more faithful)",
                 xlim=(0, 1), ylim=(0, 1.02))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    save_figure(figure, path)


def cascade_figure(rows: list[tuple[str, dict[str, np.ndarray]]], path: Path) -> None:
    """Adebayo et al.'s figure: a row per (label, {stage: raw map (H, W)}), a column per stage of
    the cascade (trained, then each stage re-initialized from the top); maps min-max normalized."""
    stages = list(rows[0][1])
    figure = Figure(figsize=(1.3 * len(stages), 1.45 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), len(stages), squeeze=False)
    for row, (label, maps) in enumerate(rows):
        for column, stage in enumerate(stages):
            heat = map_reading.normalize_maps(torch.from_numpy(maps[stage][None]))[0].numpy()
            axes[row, column].imshow(colorize(heat))
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
            if row == 0:
                axes[row, column].set_title(stage.replace("features.", "conv "), fontsize=7)
        axes[row, 0].set_ylabel(label, fontsize=7)
    save_figure(figure, path)


def sanity_curves_figure(rows: list[tuple[str, "SanityResult"]], path: Path) -> None:
    """Adebayo et al.'s curves: each method's Spearman correlation and SSIM with its trained maps after
    each stage of the cascade, the mean over its random draws with the standard deviation as error
    bars; rows: (name, result)."""
    figure = Figure(figsize=(11, 4), layout="constrained")
    axes = figure.subplots(1, 2)
    for name, result in rows:
        stages = [stage.replace("features.", "conv ") for stage in result.cascade]
        for axis, score in zip(axes, ("spearman", "ssim")):
            means = [np.nan if getattr(scores, score) is None else getattr(scores, score)  # undefined: no point
                     for scores in result.cascade.values()]
            deviations = [getattr(scores, f"{score}_std") or 0.0 for scores in result.cascade.values()]
            axis.errorbar(stages, means, yerr=deviations, label=name, marker="o", markersize=3, capsize=2)
    for axis, title in zip(axes, ("Spearman rank correlation", "SSIM")):
        axis.set(xlabel="re-initialized from the top down to", ylabel=f"{title} with the trained maps",
                 title=f"cascading randomization: {title} (lower passes)")
        axis.tick_params(axis="x", labelrotation=45, labelsize=7)
        axis.axhline(0, color="gray", linewidth=0.5)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    save_figure(figure, path)
