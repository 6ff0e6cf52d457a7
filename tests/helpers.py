"""What the tests share: small datasets written in their real on-disk formats, runs of the scripts,
bad checkpoints, and the checks of a clean error and of a figure that shows something."""

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import model as models
import train
from utils import cli

REPO = Path(__file__).resolve().parents[1]


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the IDX format of (Fashion-)MNIST, gzipped if path ends in .gz."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (gzip.open if path.suffix == ".gz" else open)(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


PATTERNS = np.random.default_rng(1234).integers(0, 2, size=(10, 8, 8)) * 255  # class k: its own 8x8 pattern


def pattern_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """count 28x28 uint8 images of faint noise holding the pattern of their class at a random place:
    (images (N, 28, 28), labels (N,) cycling 0..9, top-left corners (N, 2) as (row, col))."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = rng.integers(0, 40, size=(count, 28, 28))
    corners = rng.integers(0, 21, size=(count, 2))
    for image, label, (row, col) in zip(images, labels, corners):
        image[row:row + 8, col:col + 8] = np.maximum(image[row:row + 8, col:col + 8], PATTERNS[label])
    return images.astype(np.uint8), labels, corners


def write_mnist_like(folder: Path, train_size: int = 96, test_size: int = 48, seed: int = 0) -> dict:
    """The four original .gz files of an MNIST-like dataset of pattern_images in folder;
    returns {"train" | "t10k": (images, labels, corners)}."""
    arrays = {}
    for offset, (prefix, count) in enumerate((("train", train_size), ("t10k", test_size))):
        arrays[prefix] = pattern_images(count, seed + offset)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", arrays[prefix][0])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", arrays[prefix][1])
    return arrays


def run_script(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a repo script from the command line in cwd; returns the finished process (text output)."""
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / script), *args],
        cwd=cwd, capture_output=True, text=True, timeout=300, env=environment, check=False,
    )


def train_args(data_dir: Path, workdir: Path, *extra: str) -> list[str]:
    """Command-line values for a fast run on the small Fashion-MNIST, writing inside workdir, in
    fp32 so that results do not depend on whether this CPU has native bf16."""
    return [
        f"--data_dir={data_dir}", f"--checkpoint_dir={workdir / 'checkpoints'}", f"--output_dir={workdir / 'outputs'}",
        "--epochs=1", "--batch_size=32", "--download=false", "--precision=fp32", *extra,
    ]


def run_training(data_dir: Path, workdir: Path, *extra: str) -> dict:
    """Train in this process (much faster than a new one); returns the last metrics row."""
    return train.train(cli.parse_hyperparameters(train, train_args(data_dir, workdir, *extra)))


def write_bad_checkpoints(folder: Path) -> dict[str, tuple[Path, str]]:
    """case -> (path, expected message fragment) for each way a checkpoint file can be wrong."""
    good = folder / "good.pt"
    info = {"name": "mnist", "classes": list("abcd"), "channels": 1, "image_size": 28, "mean": [0.5], "std": [0.5]}
    models.save_checkpoint(good, models.build_model("cnn", 4, 1, width=4), dataset=info,
                           hyperparameters={"data_dir": str(folder)})
    cases = {"missing": (folder / "nope.pt", "not found; train one with `python train.py`")}
    (folder / "text.pt").write_text("these are not weights")
    cases["not a checkpoint"] = (folder / "text.pt", "is not a readable checkpoint")
    (folder / "truncated.pt").write_bytes(good.read_bytes()[:2000])
    cases["truncated"] = (folder / "truncated.pt", "is not a readable checkpoint")
    torch.save({"weights": torch.zeros(3)}, folder / "foreign.pt")
    cases["foreign"] = (folder / "foreign.pt", "is not a checkpoint written by this repo's train.py")
    checkpoint = torch.load(good, weights_only=True)
    checkpoint["arch"]["options"] = {"width": 8}
    torch.save(checkpoint, folder / "mismatch.pt")
    cases["weights do not fit"] = (folder / "mismatch.pt", "do not fit its stated model 'cnn'")
    checkpoint["arch"] = {"name": "mysterynet", "num_classes": 4, "in_channels": 1, "options": {}}
    torch.save(checkpoint, folder / "unknown.pt")
    cases["unknown model"] = (folder / "unknown.pt", "unknown model 'mysterynet'")
    return cases


def assert_clean_error(result: subprocess.CompletedProcess, message: str) -> None:
    """The script failed with exit code 1 and one line on stderr holding message, and no traceback."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def assert_drawn(path: Path, min_ink: float = 0.01, min_color: float = 0.001) -> None:
    """The PNG at path shows something: at least min_ink of its pixels differ from its most common
    color (the background), and at least min_color of them are colored (channels apart by more than
    40 of 255: a map, a curve), so that a blank canvas or empty axes fail."""
    pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(np.int16)
    colors, counts = np.unique(pixels, axis=0, return_counts=True)
    background = colors[counts.argmax()]
    ink = float((pixels != background).any(axis=1).mean())
    colored = float((pixels.max(axis=1) - pixels.min(axis=1) > 40).mean())
    assert ink >= min_ink and colored >= min_color, f"{path} looks blank: ink {ink:.4f}, colored {colored:.4f}"
