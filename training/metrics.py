"""What a training run measures: accuracy with test-time flips and shifts, and the per-epoch metrics files.

train.py's step and epoch loop use these; none of them reads train.py's flags.
"""

import contextlib
import csv
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from utils import drawing, files
from utils.distributed import Processes

SHIFT_WEIGHTS = (0.5, 0.25, 0.25)  # test-time shifts: the weights of the image and of it moved each way (airbench's)


@dataclass
class EpochPosition:
    """Where training stands within an epoch: steps done, the sums over all processes of the loss,
    right answers and images, and the seconds spent. A stop saves it (as a dict) in last.pt, so
    that --resume goes on from that step."""

    step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0


def shifted(images: torch.Tensor, offset: int, black: torch.Tensor) -> torch.Tensor:
    """images (B, C, H, W) moved `offset` pixels down and right (up and left when negative), the
    uncovered border filled with black (C,), the normalized value of a black pixel, as the
    training shifts fill it (datasets.augment.ShiftFlip)."""
    out = torch.empty_like(images)
    out[:] = black.to(images)[:, None, None]
    if offset >= 0:
        out[..., offset:, offset:] = images[..., : images.shape[-2] - offset, : images.shape[-1] - offset]
    else:
        out[..., :offset, :offset] = images[..., -offset:, -offset:]
    return out


@torch.no_grad()
def evaluate(model, loader, device, layout: torch.memory_format = torch.contiguous_format, flip: bool = False,
             precision=contextlib.nullcontext, processes: Processes = Processes(), shift: int = 0,
             black: tuple[float, ...] | None = None) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in %) of model on loader, in eval mode; with flip, of the mean
    logits of each image and its mirror image. With shift > 0, of the mean logits of the image and
    of it moved by shift pixels diagonally each way, weighted 1/2, 1/4, 1/4 as Jordan's airbench
    (2024) weights its test-time translations; the uncovered border is filled with black (per
    channel, DatasetInfo.black), as this repo's training shifts fill it (airbench reflects instead).
    precision() gives the context of each forward pass. Each process evaluates its own share of
    the images (loader); the sums are taken over all."""
    if shift and black is None:
        raise TypeError("evaluate with shift needs black, the normalized value of a black pixel")
    model.eval()
    views = [(0, 1.0)] if not shift else list(zip((0, -shift, shift), SHIFT_WEIGHTS))  # (offset, weight)
    black_pixel = torch.tensor(black, dtype=torch.float32, device=device) if shift else None
    loss_sum, correct, seen = 0.0, 0, 0
    for images, labels in loader:
        images = images.to(device, non_blocking=True, memory_format=layout)
        labels = labels.to(device, non_blocking=True)
        logits = 0
        with precision():
            for offset, weight in views:
                view = shifted(images, offset, black_pixel) if offset else images
                view_logits = model(view).float()
                if flip:
                    view_logits = (view_logits + model(view.flip(3)).float()) / 2
                logits = logits + weight * view_logits
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
    loss_sum, correct, seen = processes.sum([loss_sum, correct, seen], device)
    return loss_sum / seen, 100 * correct / seen


def metrics_row(epoch: int, learning_rate: float, position: EpochPosition, scores: dict, seconds: float,
                history: list[dict]) -> dict:
    """The metrics.csv row of a finished epoch: its training sums (position), the (loss, accuracy)
    of each evaluated split in scores, and its seconds added to those of the history before it."""
    seen = max(position.seen, 1)
    elapsed = (history[-1]["elapsed_seconds"] if history else 0.0) + seconds
    return {
        "epoch": epoch, "lr": round(learning_rate, 6),
        "train_loss": round(position.loss_sum / seen, 4), "train_accuracy": round(100 * position.correct / seen, 2),
        **{f"{split}_{name}": round(value, 4 if name == "loss" else 2)
           for split, values in scores.items() for name, value in zip(("loss", "accuracy"), values)},
        "epoch_seconds": round(seconds, 1), "elapsed_seconds": round(elapsed, 1),
    }


def last_test_accuracy(history: list[dict]) -> float | None:
    """The test accuracy (%) of the last epoch in history that measured the test split (None if none did)."""
    return next((row["test_accuracy"] for row in reversed(history) if "test_accuracy" in row), None)


def describe_epoch(row: dict, epochs: int) -> str:
    """A metrics row as the line train.py prints after each epoch."""
    splits = [key[: -len("_loss")] for key in row if key.endswith("_loss")]
    return f"epoch {row['epoch']}/{epochs}  " + "".join(
        f"{split} loss {row[f'{split}_loss']:.4f} acc {row[f'{split}_accuracy']:.2f}%  " for split in splits
    ) + f"{row['epoch_seconds']:.1f} s"


def write_metrics(history: list[dict], output_dir: Path) -> None:
    """metrics.csv (a row per epoch; a split's columns empty where that epoch did not measure it) and
    training_curves.png (loss and accuracy per epoch, each split at the epochs that measured it)."""
    with files.atomic_output(output_dir / "metrics.csv") as temporary, open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(dict.fromkeys(key for row in history for key in row)))
        writer.writeheader()
        writer.writerows(history)
    figure = Figure(figsize=(10, 4), layout="tight")
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    labels = {"train": "train (augmented; the loss it trains on)"}
    for split in ("train", "validation", "test"):
        rows = [row for row in history if f"{split}_loss" in row]
        if not rows:
            continue
        epochs, label = [row["epoch"] for row in rows], labels.get(split, split)
        loss_axis.plot(epochs, [row[f"{split}_loss"] for row in rows], "o-", label=label)
        accuracy_axis.plot(epochs, [row[f"{split}_accuracy"] for row in rows], "o-", label=label)
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    drawing.save_figure(figure, output_dir / "training_curves.png", bbox_inches="tight", pad_inches=0.1)
