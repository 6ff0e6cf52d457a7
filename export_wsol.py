"""Write the cluttered Fashion-MNIST as a WSOL benchmark in wsolevaluation's CUB layout (`--dataset=cub`).

    python export_wsol.py                                     # wsol_data/CUB/ and wsol_data/metadata/CUB/
    python train.py --dataset=cub --data_dir=wsol_data         # then train on it like any WSOL benchmark
    python export_wsol.py --help                              # every hyperparameter with its default

A checkpoint-free export of `fashion-mnist-cluttered`'s splits: the training canvases go to train,
the last --validation training canvases (held out as train.py --validation=N holds them out) to val,
and the test canvases to test. Each canvas is a lossless PNG `<output_dir>/CUB/<NNN.class>/<split>_<n>.png`;
the metadata (`<output_dir>/metadata/CUB/<split>/` image_ids.txt, class_labels.txt, image_sizes.txt,
localization.txt) is written as wsolevaluation writes it, its boxes inclusive (the cluttered set's
exclusive x1, y1 minus 1). `write_split` is the layout itself: it is how to make a WSOL dataset of
your own images with boxes.
"""

from utils import cli  # noqa: I001 -- first: a Ctrl-C while torch loads then ends in one line, not a traceback

if __name__ == "__main__":
    cli.quiet_interrupts()

import re
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import cluttered
import data
from utils import files

# --- hyperparameters: edit them here, or override them on the command line (--name=value) ---
data_dir: str = "data"  # where Fashion-MNIST is found (and downloaded to) to make the cluttered set
download: bool = True  # download Fashion-MNIST if it is not on disk
output_dir: str = "wsol_data"  # writes <output_dir>/CUB/ (images) and <output_dir>/metadata/CUB/ (train.py --data_dir=<output_dir>)
image_size: int = 64  # side of the canvases in pixels (at least 28)
clutter: int = cluttered.CLUTTER_DEFAULTS["clutter"]  # crops of other items pasted on each canvas
clutter_size: int = cluttered.CLUTTER_DEFAULTS["clutter_size"]  # side of those crops in pixels (at most 28)
validation: int = 5000  # the last N training canvases (as train.py --validation=N holds them out) become the val split
overwrite: bool = False  # replace an earlier export in output_dir

FOLDER = "CUB"  # wsolevaluation's layout whose ids are <class folder>/<file> and whose localization is boxes


def class_folders(classes: list[str]) -> list[str]:
    """CUB-style class folder names, '001.T_shirt_top' for class 0 'T-shirt/top': numbered from 1, safe as paths."""
    return [f"{label + 1:03d}.{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_') or 'class'}"
            for label, name in enumerate(classes)]


def write_split(root: Path, split: str, images: np.ndarray, labels: np.ndarray, boxes: list[np.ndarray],
                folders: list[str]) -> None:
    """Write one split in wsolevaluation's CUB layout under root: the images as
    root/CUB/<folder of its label>/<split>_<n>.png and the metadata as root/metadata/CUB/<split>/.

    images uint8 (N, H, W) or (N, H, W, 3); labels int (N,); boxes: per image an int array (K, 4)
    of (x0, y0, x1, y1) inclusive (x1, y1 the last pixel of the object), K >= 1 (several lines in
    localization.txt for several boxes)."""
    metadata = root / "metadata" / FOLDER / split
    metadata.mkdir(parents=True, exist_ok=True)
    ids, label_lines, size_lines, box_lines = [], [], [], []
    for number, (image, label, image_boxes) in enumerate(zip(images, labels, boxes)):
        image_id = f"{folders[int(label)]}/{split}_{number:06d}.png"
        path = root / FOLDER / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        height, width = image.shape[:2]
        ids.append(image_id)
        label_lines.append(f"{image_id},{int(label)}")
        size_lines.append(f"{image_id},{width},{height}")
        box_lines += [f"{image_id},{x0},{y0},{x1},{y1}" for x0, y0, x1, y1 in np.asarray(image_boxes).tolist()]
    for name, lines in (("image_ids.txt", ids), ("class_labels.txt", label_lines),
                        ("image_sizes.txt", size_lines), ("localization.txt", box_lines)):
        (metadata / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def cluttered_split(loaded: data.LoadedDataset, split: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(images uint8 (N, S, S), labels int64 (N,), boxes: per image int64 (1, 4) inclusive) of a split
    of the cluttered set (a Subset of its canvases for train and validation)."""
    dataset = getattr(loaded, split)
    images, labels = loaded.split_tensors(dataset)
    canvases, index, _ = data.unwrap(dataset)
    exclusive = canvases.boxes if index is None else canvases.boxes[index]
    inclusive = exclusive.numpy() - np.array([0, 0, 1, 1])  # the last pixel itself, as wsolevaluation counts boxes
    return images[:, 0].numpy(), labels.numpy(), [box[None] for box in inclusive]


def export(cfg) -> Path:
    """Make the cluttered set as cfg says and write its three splits; returns the output folder."""
    output = files.writable_folder(cfg.output_dir, "output_dir")
    existing = [output / FOLDER, output / "metadata" / FOLDER]
    if any(path.exists() for path in existing):
        if not cfg.overwrite:
            raise cli.UserError(f"{output} already holds an export ({FOLDER}/ or metadata/{FOLDER}/); "
                                f"pass --overwrite to replace it, or choose another --output_dir")
        for path in existing:
            shutil.rmtree(path, ignore_errors=True)
    options = {"clutter": cfg.clutter, "clutter_size": cfg.clutter_size}
    loaded = data.load_dataset("fashion-mnist-cluttered", cfg.data_dir, cfg.download, cfg.image_size, options)
    loaded = loaded.hold_out(cfg.validation)
    folders = class_folders(list(loaded.info.classes))
    for split, wsol_split in (("train", "train"), ("validation", "val"), ("test", "test")):
        write_split(output, wsol_split, *cluttered_split(loaded, split), folders)
    print(f"wrote {output}/{FOLDER}/ and {output}/metadata/{FOLDER}/: "
          f"python train.py --dataset=cub --data_dir={output}")
    return output


def main(argv: list[str] | None = None) -> None:
    export(cli.parse_hyperparameters(sys.modules[__name__], argv))


if __name__ == "__main__":
    cli.run(main)
