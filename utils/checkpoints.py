"""Checkpoint files: written whole or not at all, read with weights_only=True and checked before use.

A checkpoint is a dict: {"format": CHECKPOINT_FORMAT, "arch": how model.build_model makes the
network, "state_dict": its weights, ...metadata}. `write_checkpoint` and `read_checkpoint` know
nothing of the networks; model.py builds the network from "arch" and checks that the weights fit.
"""

import math
import re
from pathlib import Path

import torch

from utils.cli import UserError
from utils.files import atomic_output

CHECKPOINT_FORMAT = "cam-checkpoint-v1"
TRAINING_METADATA = ("dataset", "hyperparameters")  # what train.py stores beside the weights


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or does not fit its stated model."""


def checkpoint_of(model, **metadata) -> dict:
    """The checkpoint dict of a model (a model.GapNet: its `arch` and state_dict) and metadata
    (plain values and tensors)."""
    return {"format": CHECKPOINT_FORMAT, "arch": model.arch, "state_dict": model.state_dict(), **metadata}


def write_checkpoint(path: str | Path, checkpoint: dict) -> None:
    """Write a checkpoint dict to path atomically: an interrupted save never leaves a broken
    checkpoint, and a full disk is a UserError that keeps the previous file."""
    with atomic_output(path) as temporary, open(temporary, "wb") as file:  # a file object: disk errors are OSErrors
        torch.save(checkpoint, file)


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu", needs: tuple[str, ...] = ()) -> dict:
    """The checkpoint dict at path, its tensors on device, loaded with weights_only=True (a file
    carrying pickled code is refused). CheckpointError when the file is missing, unreadable, not a
    checkpoint of this repo, lacks its model description or one of the entries in `needs`, or holds
    NaN or infinite weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} not found; train one with `python train.py` or pass --checkpoint=PATH"
        )
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # noqa: BLE001 -- torch raises many types for truncated, foreign or unsafe files
        raise CheckpointError(unreadable(path, error)) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint written by this repo's train.py")
    arch = checkpoint.get("arch")
    if not isinstance(arch, dict) or not {"name", "num_classes", "in_channels", "options"} <= arch.keys() \
            or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path} is incomplete: it lacks the model description or the weights; retrain it")
    missing = [key for key in needs if not isinstance(checkpoint.get(key), dict)]
    if missing:
        raise CheckpointError(
            f"{path} lacks its {' and '.join(missing)} description, which train.py writes; "
            "use a checkpoint from train.py"
        )
    if fault := metadata_fault(checkpoint, needs):
        raise CheckpointError(f"{path} is damaged: {fault}; use a checkpoint written by train.py")
    broken = [name for name, tensor in checkpoint["state_dict"].items()
              if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not tensor.isfinite().all()]
    if broken:
        raise CheckpointError(f"{path} holds NaN or infinite weights ({', '.join(broken[:3])}): its training diverged; "
                              f"use a checkpoint from before that, or retrain with a lower --lr")
    return checkpoint


def metadata_fault(checkpoint: dict, needs: tuple[str, ...]) -> str | None:
    """What is wrong with a checkpoint's model description and, where needed, its dataset and
    hyperparameters descriptions (types, ranges, and their agreement with each other), or None."""
    arch = checkpoint["arch"]
    whole = {key: value for key, value in arch.items() if key in ("num_classes", "in_channels")}
    if not isinstance(arch["name"], str) or not isinstance(arch["options"], dict):
        return "arch.name must be a name and arch.options a dict"
    if any(not isinstance(value, int) or isinstance(value, bool) or value < 1 for value in whole.values()):
        return f"arch's num_classes and in_channels must be whole numbers >= 1, got {whole}"
    if "dataset" in needs:
        dataset = checkpoint["dataset"]
        fields = {"name": str, "classes": list, "channels": int, "image_size": int, "mean": list, "std": list}
        wrong = [key for key, kind in fields.items() if not isinstance(dataset.get(key), kind)]
        if wrong:
            return f"its dataset description lacks or mistypes {', '.join(wrong)}"
        if len(dataset["classes"]) != arch["num_classes"] or dataset["channels"] != arch["in_channels"]:
            return (f"its dataset has {len(dataset['classes'])} classes and {dataset['channels']} channels, and its "
                    f"model {arch['num_classes']} outputs and {arch['in_channels']} input channels")
        mean, std = dataset["mean"], dataset["std"]
        if not (len(mean) == len(std) == dataset["channels"]) or not all(
                isinstance(value, (int, float)) and math.isfinite(value) for value in mean + std) or min(std) <= 0:
            return "its dataset's mean and std must give one finite number per channel, each std above 0"
    if "hyperparameters" in needs and not isinstance(checkpoint["hyperparameters"].get("data_dir"), str):
        return "its hyperparameters lack the data_dir it was trained from"
    return None


def unreadable(path: Path, error: Exception) -> str:
    """Why torch.load(weights_only=True) refused path, in one line that never suggests loading it
    unsafely: pickled code (a class or function to run) is named and not loaded; anything else is not
    a file torch.save wrote whole."""
    code = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", str(error))
    if code:
        return (f"{path} holds pickled code ({code.group(1)}), so it was not loaded: a checkpoint of this repo "
                "holds tensors and plain values only; use one written by train.py")
    return (f"{path} is not a readable checkpoint (not a file that torch.save wrote whole: cut short, or another "
            "kind of file); use one written by train.py")


def selection_note(path: str | Path, checkpoint: dict) -> str:
    """A line warning that the checkpoint at path is train.py's best.pt chosen by test accuracy (a
    run without a --validation split), so that its test-set numbers are optimistic; "" otherwise."""
    if checkpoint.get("chosen_on") != "test":
        return ""
    return (f"note: {path} is the epoch of best test accuracy (its run had no --validation split), so its test-set "
            f"numbers are optimistic; use last.pt, or train with --validation=N to choose on held-out images")
