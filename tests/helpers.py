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


WSOL_RNG = np.random.default_rng(0)  # the pixels of the WSOL images written
CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross"]


def write_image(path: Path, width: int, height: int, suffix_format: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(WSOL_RNG.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).save(path, suffix_format)


def write_metadata(folder: Path, split: str, rows: list[tuple], localization: list[str] | None) -> None:
    """metadata/<NAME>/<split>/ as wsolevaluation writes it; rows are (id, label, (w, h))."""
    split_dir = folder / split
    split_dir.mkdir(parents=True, exist_ok=True)
    (split_dir / "image_ids.txt").write_text("\n".join(row[0] for row in rows) + "\n")
    (split_dir / "class_labels.txt").write_text("\n".join(f"{row[0]},{row[1]}" for row in rows) + "\n")
    (split_dir / "image_sizes.txt").write_text("\n".join(f"{row[0]},{row[2][0]},{row[2][1]}" for row in rows) + "\n")
    if localization is not None:
        (split_dir / "localization.txt").write_text("\n".join(localization) + ("\n" if localization else ""))


def write_cub(root: Path) -> dict:
    """A small CUB in its layout: images of several sizes and aspect ratios, one val image with two boxes."""
    sizes = [(500, 333), (300, 450), (224, 224), (640, 480), (120, 200), (333, 250)]
    splits = {"train": [], "val": [], "test": []}
    boxes = {}
    for number, (width, height) in enumerate(sizes * 2):
        split = ["train", "train", "val", "test"][number % 4]
        label = number % 2
        image_id = f"{CUB_CLASSES[label]}/Bird_{number:04d}_{split}.jpg"
        write_image(root / "CUB" / image_id, width, height)
        splits[split].append((image_id, label, (width, height)))
        boxes[image_id] = [(width // 10, height // 8, width - 1 - width // 5, height - 1)]
    two = splits["val"][1][0]  # the 500 x 333 one
    boxes[two].append((0, 0, 9, 19))  # a second box
    metadata = root / "metadata" / "CUB"
    for split, rows in splits.items():
        lines = [f"{row[0]},{x0},{y0},{x1},{y1}" for row in rows for x0, y0, x1, y1 in boxes[row[0]]]
        write_metadata(metadata, split, rows, lines)
    return {"splits": splits, "boxes": boxes, "metadata": metadata}


def write_openimages(root: Path) -> dict:
    """A small OpenImages: val and test images with instance masks and ignore masks beside them."""
    splits = {"train": [], "val": [], "test": []}
    localization = {"train": [], "val": [], "test": []}
    masks = {}
    for number, (width, height) in enumerate([(100, 60), (80, 120), (150, 100), (64, 64), (90, 70), (60, 90)]):
        split = ["train", "val", "test"][number % 3]
        label = number % 2
        folder = ["01226z", "0by6g"][label]
        image_id = f"{split}/{folder}/{number:016x}.jpg"
        write_image(root / "OpenImages" / image_id, width, height)
        splits[split].append((image_id, label, (width, height)))
        first = np.zeros((height, width), dtype=np.uint8)
        first[height // 6 : height // 2, width // 5 : width // 2] = 255
        second = np.zeros_like(first)
        second[2 * height // 3 : height - 2, 3 * width // 5 : width - 3] = 255
        ignore = np.zeros_like(first)
        ignore[2 : height - 2, 4 : width - 4] = 255
        stem = image_id[: -len(".jpg")]
        paths = [f"{stem}_m{folder}_{index:08x}.png" for index in range(2)]
        for path, mask in zip(paths + [f"{stem}_ignore.png"], (first, second, ignore)):
            Image.fromarray(mask).save(root / "OpenImages" / path)
        localization[split] += [f"{image_id},{paths[0]},{stem}_ignore.png", f"{image_id},{paths[1]},"]
        masks[image_id] = (first, second, ignore)
    metadata = root / "metadata" / "OpenImages"
    for split, rows in splits.items():
        write_metadata(metadata, split, rows, localization[split] if split != "train" else [])
    return {"splits": splits, "masks": masks, "metadata": metadata}


def write_balanced_folder(root, per_class=10, size=8):
    """root/train/{cat,dog}/ with per_class tiny images each (listed class by class, as ImageFolder
    reads them) and one test image per class."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("test", 1)):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")


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
