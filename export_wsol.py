"""Write the cluttered Fashion-MNIST as a WSOL benchmark in wsolevaluation's CUB or OpenImages layout.

    python export_wsol.py                                     # wsol_data/CUB/ and wsol_data/metadata/CUB/
    python train.py --dataset=cub --data_dir=wsol_data         # then train on it like any WSOL benchmark
    python export_wsol.py --layout=openimages --limit=1000     # masks: wsol_data/OpenImages/, first 1000 a split
    python evaluate_cam.py --dataset=cub --data_dir=wsol_data  # a cluttered checkpoint, scored through cub
    python export_wsol.py --help                              # every hyperparameter with its default

A checkpoint-free export of `fashion-mnist-cluttered`'s splits: the training canvases go to train,
the last --validation training canvases (held out as train.py --validation=N holds them out) to val,
and the test canvases to test. Each canvas is a lossless PNG. The cub layout writes it as
`<output_dir>/CUB/<NNN.class>/<split>_<n>.png` and its box, inclusive (the cluttered set's exclusive
x1, y1 minus 1); the openimages layout as `<output_dir>/OpenImages/<split>/<NNN.class>/<split>_<n>.png`
with its item mask `..._m<NNN.class>_0.png` (255 on the item) and an empty ignore mask `..._ignore.png`.
The metadata (`<output_dir>/metadata/<CUB|OpenImages>/<split>/` image_ids.txt, class_labels.txt,
image_sizes.txt, localization.txt) is written as wsolevaluation writes it. `write_split` is the layout
itself: it is how to make a WSOL dataset of your own images with boxes or masks.
"""

from utils import cli  # noqa: I001 -- first: a Ctrl-C while torch loads then ends in one line, not a traceback

if __name__ == "__main__":
    cli.quiet_interrupts()

import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import data
from datasets import wsolevaluation
from datasets.ground_truth import GroundTruth, to_inclusive
from utils import files

# --- hyperparameters: edit them here, or override them on the command line (--name=value) ---
# source
data_dir: str = "data"  # where Fashion-MNIST is found (and downloaded to) to make the cluttered set
download: bool = True  # download Fashion-MNIST if it is not on disk
# canvases
image_size: int = 64  # side of the canvases in pixels (at least 28)
clutter: int = 6  # crops of other items pasted on each canvas
clutter_size: int = 10  # side of those crops in pixels (at most 28)
validation: int = 5000  # the last N training canvases (as train.py --validation=N holds them out) become the val split
limit: int = 0  # write the first N canvases of each split only (0: all of them), for a quick trial
# output
output_dir: str = "wsol_data"  # writes <output_dir>/CUB/ (images) and <output_dir>/metadata/CUB/
    # (train.py --data_dir=<output_dir>)
layout: str = "cub"  # cub (boxes: --dataset=cub) | openimages (masks, scored by PxAP: --dataset=openimages)
overwrite: bool = False  # replace an earlier export in output_dir
# ------------------------------------------------------------------------------------------------

LAYOUTS = ("cub", "openimages")  # wsolevaluation.FOLDERS names each one's folder


MARK = "export_wsol.txt"  # in each folder an export writes: which layout; only such folders are replaced


def check_replaceable(output: Path, folder: str, overwrite: bool) -> None:
    """UserError when output holds an earlier export (folder/ or metadata/folder/) and --overwrite
    was not given, or when either holds anything but an export of this script (then it is never
    deleted)."""
    present = [path for path in (output / folder, output / "metadata" / folder) if path.exists()]
    if present and not overwrite:
        raise cli.UserError(f"{output} already holds an export ({folder}/ or metadata/{folder}/); "
                            f"pass --overwrite to replace it, or choose another --output_dir")
    for path in present:
        if not (path / MARK).is_file():
            raise cli.UserError(f"{path} is not an export of export_wsol.py (no {MARK} in it), so --overwrite "
                                "will not delete it; move it away, or choose another --output_dir")


def swap_in(staging: Path, output: Path, existing: list[Path]) -> None:
    """Put the export written whole in staging in place of the earlier one: each folder is renamed
    in (the earlier one renamed aside first, and deleted only once the new one is in place)."""
    for path in existing:
        new, aside = staging / path.relative_to(output), staging / f"earlier-{path.name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.rename(aside)
        new.rename(path)
        shutil.rmtree(aside, ignore_errors=True)


def class_folders(classes: list[str]) -> list[str]:
    """CUB-style class folder names, '001.T_shirt_top' for class 0 'T-shirt/top': numbered from 1, safe as paths."""
    return [f"{label + 1:03d}.{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_') or 'class'}"
            for label, name in enumerate(classes)]


def write_split(root: Path, layout: str, split: str, images: np.ndarray, labels: np.ndarray,
                truth: GroundTruth, folders: list[str]) -> None:
    """Write one split in wsolevaluation's layout ("cub" or "openimages") under root: the images,
    the masks of the openimages layout, and the metadata as root/metadata/<CUB|OpenImages>/<split>/.

    images uint8 (N, H, W) or (N, H, W, 3); labels int (N,); truth: the images' GroundTruth, its
    boxes int (N, M, 4) inclusive (x1, y1 the last pixel of the object; rows of -1 pad an image with
    fewer boxes: one line in localization.txt a box) for cub, its masks bool (N, H, W) for openimages
    (one mask a image, 255 on the object, and an empty ignore mask)."""
    folder = wsolevaluation.FOLDERS[layout]
    metadata = root / "metadata" / folder / split
    metadata.mkdir(parents=True, exist_ok=True)
    ids, label_lines, size_lines, localization_lines = [], [], [], []
    for number, (image, label) in enumerate(zip(images, labels)):
        class_folder = folders[int(label)]
        stem = f"{class_folder}/{split}_{number:06d}"
        stem = stem if layout == "cub" else f"{split}/{stem}"
        image_id = stem + ".png"
        save_png(root / folder / image_id, image)
        height, width = image.shape[:2]
        ids.append(image_id)
        label_lines.append(f"{image_id},{int(label)}")
        size_lines.append(f"{image_id},{width},{height}")
        if layout == "cub":
            localization_lines += [f"{image_id},{x0},{y0},{x1},{y1}"
                                   for x0, y0, x1, y1 in truth.boxes[number].tolist() if x1 >= x0]
        else:
            mask, ignore = f"{stem}_m{class_folder}_0.png", f"{stem}_ignore.png"
            save_png(root / folder / mask, np.uint8(truth.masks[number]) * 255)
            save_png(root / folder / ignore, np.zeros((height, width), dtype=np.uint8))
            localization_lines.append(f"{image_id},{mask},{ignore}")
    for name, lines in (("image_ids.txt", ids), ("class_labels.txt", label_lines),
                        ("image_sizes.txt", size_lines), ("localization.txt", localization_lines)):
        (metadata / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def save_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def cluttered_split(loaded: data.LoadedDataset, split: str, limit: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, GroundTruth]:
    """(images uint8 (N, S, S), labels int64 (N,), GroundTruth with inclusive boxes (N, 1, 4) and
    masks bool (N, S, S)) of the first `limit` canvases (0: all) of a split of the cluttered set."""
    dataset = getattr(loaded, split)
    count = min(limit or len(dataset), len(dataset))
    images, labels = loaded.split_tensors(dataset)
    truth = to_inclusive(data.ground_truth(dataset, 0, count))
    return images[:count, 0].numpy(), labels[:count].numpy(), truth


def export(cfg) -> Path:
    """Make the cluttered set as cfg says and write its three splits; returns the output folder."""
    cli.check_choice("layout", cfg.layout, LAYOUTS)
    cli.require([(cfg.limit >= 0, f"--limit must be >= 0, got {cfg.limit}"),
                 (cfg.validation >= 1, f"--validation must be at least 1 (wsolevaluation's val split chooses "
                                       f"every threshold), got {cfg.validation}")])
    folder = wsolevaluation.FOLDERS[cfg.layout]
    output = files.writable_folder(cfg.output_dir, "output_dir")
    existing = [output / folder, output / "metadata" / folder]
    check_replaceable(output, folder, cfg.overwrite)
    options = {"clutter": cfg.clutter, "clutter_size": cfg.clutter_size}
    loaded = data.load_dataset("fashion-mnist-cluttered", cfg.data_dir, cfg.download, cfg.image_size, options)
    loaded = loaded.hold_out(cfg.validation)
    folders = class_folders(list(loaded.info.classes))
    splits = {wsol_split: cluttered_split(loaded, split, cfg.limit)
              for split, wsol_split in (("train", "train"), ("validation", "val"), ("test", "test"))}
    missing = sorted(set(range(len(folders))) - set(splits["train"][1].tolist()))
    if missing:  # the benchmark's classes are those of its train split's class_labels.txt
        raise cli.UserError(f"--limit={cfg.limit} leaves class {folders[missing[0]]} out of the train split, and "
                            f"the export's classes are its train split's: pass a larger --limit (or 0: all)")
    staging = output / f".export_wsol-{os.getpid()}"  # the new export is written whole beside the old one
    try:
        for wsol_split, (images, labels, truth) in splits.items():
            write_split(staging, cfg.layout, wsol_split, images, labels, truth, folders)
        for path in existing:
            (staging / path.relative_to(output) / MARK).write_text(f"{cfg.layout}\n")
        swap_in(staging, output, existing)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {output}/{folder}/ and {output}/metadata/{folder}/: "
          f"python train.py --dataset={cfg.layout} --data_dir={output}")
    return output


def main(argv: list[str] | None = None) -> None:
    export(cli.parse_hyperparameters(sys.modules[__name__], argv))


if __name__ == "__main__":
    cli.run(main)
