"""wsolevaluation's datasets: CUB, ILSVRC and OpenImages read from its metadata layout.

The field's WSOL benchmarks (Choe et al., "Evaluating Weakly Supervised Object Localization
Methods Right", CVPR 2020; github.com/clovaai/wsolevaluation) come as image folders and a metadata
folder `metadata/<NAME>/<split>/` per split (train, val, test), NAME one of CUB, ILSVRC, OpenImages:

- image_ids.txt: one image id a line, its path relative to `<data_dir>/<NAME>/`;
- class_labels.txt: `id,label`; image_sizes.txt: `id,width,height`;
- localization.txt: CUB and ILSVRC `id,x0,y0,x1,y1`, one line per box, x1 and y1 the last pixel
  itself (inclusive); OpenImages `id,mask_path,ignore_path`, one line per instance mask, the paths
  relative to `<data_dir>/OpenImages/`, the ignore path given on an image's first line (may be empty).

`WSOLSplit` is one split: only the metadata is held (ids, labels, sizes, boxes or mask paths), and an
image file is opened when __getitem__ asks for it, so that DataLoader workers stream them. Its
`ground_truth(index)` gives a `datasets.ground_truth.GroundTruth` at 224 x 224, as wsolevaluation's
evaluator scores (`_RESIZE_LENGTH` in its evaluation.py; evaluate_cam.py --dataset may read them at
another size, and then scores there): boxes rescaled by its `resize_bbox`,
masks read and resized by its `load_mask_image` / `get_mask`. data.DATASETS opens the train and
test splits with `open_split(name)`, the val split with `open_validation(name)`, and checks the
three together with `check_splits`.
"""

import functools
import os
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from torch.utils.data import Dataset

from datasets.ground_truth import GroundTruth
from utils.cli import DatasetError
from utils.images import read_image

SCORED_SIZE = 224  # wsolevaluation's evaluation.py _RESIZE_LENGTH: boxes and masks are scored at 224 x 224
FOLDERS = {"cub": "CUB", "ilsvrc": "ILSVRC", "openimages": "OpenImages"}  # --dataset -> wsolevaluation's name
WITH_MASKS = {"openimages"}  # localization.txt lists masks; the others list boxes
# how each benchmark's image ids are laid out, per split (CUB: <class>/<file>, never under a split folder)
ID_LAYOUTS = {
    "ilsvrc": {"train": r"train/n\d{8}/[^/]+$", "val": r"val2/[^/]+/[^/]+$", "test": r"val/[^/]+$"},
    "openimages": {split: split + r"/[^/]+/[^/]+$" for split in ("train", "val", "test")},
}
SPLIT_NAMED = ("train/", "val/", "val2/", "test/")


def metadata_folder(root: Path, name: str, metadata_dir: str) -> Path:
    """The folder holding train/, val/ and test/ of dataset `name`'s metadata: metadata_dir itself,
    or its <NAME>/ subfolder (wsolevaluation's metadata/ folder passed whole); "": <root>/metadata/<NAME>."""
    folder = FOLDERS[name]
    base = Path(metadata_dir) if metadata_dir else Path(root) / "metadata"
    if (base / folder / "train").is_dir() or not metadata_dir:
        return base / folder
    return base


def read_lines(path: Path, fields: int, what: str, integers: tuple[int, ...] = (),
               check: Callable[[list], str | None] | None = None) -> list[list]:
    """The comma-separated lines of a metadata file, each split into `fields` fields (blank lines
    skipped), the fields at `integers` made ints; DatasetError naming the file and the line if one
    has another count, a field there that is not a whole number, or a fault that check(row) names."""
    rows = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            row = line.split(",")
            if len(row) != fields:
                raise DatasetError(f"{path} line {number} has {len(row)} fields, not {fields} ({what}): "
                                   f"{line[:120]!r}; is it the metadata of another dataset? use wsolevaluation's "
                                   "metadata/<NAME>/ layout")
            for position in integers:
                if not re.fullmatch(r"-?\d+", row[position].strip()):
                    raise DatasetError(f"{path} line {number}: {row[position][:40]!r} is not a whole number "
                                       f"({what}): {line[:120]!r}; fix that line")
                row[position] = int(row[position])
            fault = check(row) if check else None
            if fault:
                raise DatasetError(f"{path} line {number}: {fault}: {line[:120]!r}; fix that line")
            rows.append(row)
    return rows


def unsafe_path(text: str) -> str | None:
    """Why a path from the metadata may not be read (absolute, or climbing out of the data root with
    ..), or None when it stays inside."""
    path = PurePosixPath(text.replace("\\", "/"))
    if path.is_absolute() or re.match(r"^[A-Za-z]:", text):
        return f"{text[:80]!r} is an absolute path; ids and mask paths are relative to the data folder"
    if ".." in path.parts:
        return f"{text[:80]!r} climbs out of the data folder (..); ids and mask paths stay inside it"
    return None


def box_fault(row: list, sizes: dict[str, list[int]]) -> str | None:
    """What is wrong with a box line (id, x0, y0, x1, y1), inclusive ends, in an image of sizes[id]
    (width, height), or None."""
    x0, y0, x1, y1 = row[1:]
    width, height = sizes.get(row[0], (x1, y1))
    if min(x0, y0) < 0:
        return "a box with a negative coordinate"
    if x1 < x0 or y1 < y0:
        return "a box whose end comes before its start (x1 < x0 or y1 < y0)"
    if x1 > width or y1 > height:
        return f"a box that reaches beyond its image's size in image_sizes.txt ({width}x{height})"
    return None


def metadata_file(folder: Path, split: str, name: str) -> Path:
    path = folder / split / name
    if not path.is_file():
        raise DatasetError(f"metadata file {path} not found; pass --metadata_dir=FOLDER holding wsolevaluation's "
                           f"metadata/<CUB|ILSVRC|OpenImages>/ (train/, val/ and test/, each with {name})")
    return path


def check_layout(name: str, split: str, ids: list[str], folder: Path) -> None:
    """DatasetError if the ids of a split are laid out as another benchmark's (its metadata was passed
    for the wrong --dataset): ILSVRC and OpenImages ids start with their split's folder, CUB's with a class folder."""
    if not ids:
        return
    if name in ID_LAYOUTS:
        layout = re.compile(ID_LAYOUTS[name][split])
        wrong = next((image_id for image_id in ids if not layout.match(image_id)), None)
        expected = f"are laid out as {ID_LAYOUTS[name][split]}"
    else:
        wrong = next((image_id for image_id in ids if image_id.startswith(SPLIT_NAMED)), None)
        expected = "start with a class folder (not train/, val/, val2/ or test/)"
    if wrong is not None:
        raise DatasetError(f"{folder}/{split}/image_ids.txt lists {wrong!r}, but {FOLDERS[name]}'s {split} ids "
                           f"{expected}: it is another dataset's metadata; pass "
                           f"--metadata_dir=.../metadata/{FOLDERS[name]}")


class WSOLSplit(Dataset):
    """One split of a wsolevaluation benchmark, read from its metadata; images opened on demand.

    Yields (transform(RGB PIL image), label). `targets` int64 (N,) are the labels, `sizes` int64
    (N, 2) the images' (width, height) from image_sizes.txt, `classes` the class names. With
    localization (val and test): `boxes` int64 (N, M, 4) of (x0, y0, x1, y1) inclusive in the
    image's own pixels, rows of -1 padding an image with fewer than M boxes (CUB, ILSVRC); or, for
    OpenImages, `mask_paths` (per image a tuple of instance mask paths) and `ignore_paths`.
    Image ids are held as one numpy bytes array (no Python object per image, so that DataLoader
    workers do not copy them on access).
    """

    def __init__(self, root: Path, name: str, split: str, transform, metadata_dir: str = "",
                 localization: bool = True, scored_size: int = SCORED_SIZE):
        self.name, self.split, self.transform, self.scored_size = name, split, transform, scored_size
        self.image_root = Path(root) / FOLDERS[name]
        folder = metadata_folder(root, name, metadata_dir)
        self.metadata = folder / split
        ids = [row[0] for row in read_lines(metadata_file(folder, split, "image_ids.txt"), 1, "id",
                                            check=lambda row: unsafe_path(row[0]))]
        if not ids:
            raise DatasetError(f"{folder}/{split}/image_ids.txt lists no images; use wsolevaluation's metadata files")
        check_layout(name, split, ids, folder)
        self.ids = np.array([image_id.encode() for image_id in ids])
        labels = dict(read_lines(metadata_file(folder, split, "class_labels.txt"), 2, "id,label", (1,)))
        sizes = {row[0]: row[1:] for row in read_lines(metadata_file(folder, split, "image_sizes.txt"), 3, "id,w,h",
                                                       (1, 2), lambda row: min(row[1:]) <= 0 and "a size not above 0")}
        missing = next((image_id for image_id in ids if image_id not in labels or image_id not in sizes), None)
        if missing is not None:
            raise DatasetError(f"image {missing!r} of {folder}/{split}/image_ids.txt has no line in class_labels.txt "
                               f"or image_sizes.txt; use the three files of one wsolevaluation split together")
        self.targets = np.array([int(labels[image_id]) for image_id in ids], dtype=np.int64)
        self.sizes = np.array([sizes[image_id] for image_id in ids], dtype=np.int64)
        self.classes = class_names(folder, name)
        if self.targets.min() < 0 or self.targets.max() >= len(self.classes):
            raise DatasetError(f"{folder}/{split}/class_labels.txt has labels outside the train split's "
                               f"0..{len(self.classes) - 1}; use the metadata of one dataset for all splits")
        self.boxes = self.mask_paths = self.ignore_paths = None
        if localization:
            self.read_localization(folder, split, ids, sizes)

    def read_localization(self, folder: Path, split: str, ids: list[str], sizes: dict[str, list[int]]) -> None:
        """Read localization.txt: the boxes (CUB, ILSVRC) or mask paths (OpenImages) of every image,
        sizes: {id: [width, height]} as image_sizes.txt gives them."""
        path = folder / split / "localization.txt"
        if not path.is_file() or path.stat().st_size == 0:
            raise DatasetError(f"{path} is {'empty' if path.is_file() else 'missing'}: the {split} split needs its "
                               f"{'masks' if self.name in WITH_MASKS else 'boxes'} to score localization; use "
                               f"wsolevaluation's metadata/{FOLDERS[self.name]}/{split}/localization.txt")
        masks = self.name in WITH_MASKS
        rows = (read_lines(path, 3, "id,mask_path,ignore_path", check=lambda row: unsafe_path(row[1])
                           or (row[2] and unsafe_path(row[2]))) if masks
                else read_lines(path, 5, "id,x0,y0,x1,y1", (1, 2, 3, 4), lambda row: box_fault(row, sizes)))
        found: dict[str, list] = {}
        ignore: dict[str, str] = {}
        for row in rows:
            if masks:
                found.setdefault(row[0], []).append(row[1])
                ignore.setdefault(row[0], row[2])
            else:
                found.setdefault(row[0], []).append(row[1:])
        missing = next((image_id for image_id in ids if image_id not in found), None)
        if missing is not None:
            raise DatasetError(f"image {missing!r} of the {split} split has no {'mask' if masks else 'box'} in {path}; "
                               f"every {split} image needs one (use wsolevaluation's localization.txt)")
        if masks:
            self.mask_paths = [tuple(found[image_id]) for image_id in ids]
            self.ignore_paths = [ignore[image_id] for image_id in ids]
        else:
            most = max(len(found[image_id]) for image_id in ids)
            self.boxes = np.full((len(ids), most, 4), -1, dtype=np.int64)
            for position, image_id in enumerate(ids):
                self.boxes[position, : len(found[image_id])] = found[image_id]

    def image_id(self, index: int) -> str:
        return self.ids[index].decode()

    def image_ids(self, index) -> list[str]:
        """The metadata's image ids of the images at index (N indices): evaluate_cam.py --save_heatmaps
        names each heat map by its id, as wsolevaluation's evaluator looks it up."""
        return [self.image_id(int(position)) for position in np.asarray(index, dtype=np.int64)]

    def image_path(self, index: int) -> Path:
        """The image file of image `index`; DatasetError naming it and the root if it is missing."""
        path = self.image_root / self.image_id(index)
        if not path.is_file():
            raise DatasetError(f"image {self.image_id(index)} not found under {self.image_root}; put the "
                               f"{FOLDERS[self.name]} images there (--data_dir is the folder holding "
                               f"{FOLDERS[self.name]}/)")
        return path

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = read_image(self.image_path(index), "RGB")
        if image.size != tuple(self.sizes[index]):  # the boxes are scaled by the stated size
            raise DatasetError(f"{self.metadata}/image_sizes.txt says {self.image_id(index)} is "
                               f"{self.sizes[index][0]}x{self.sizes[index][1]}, but the file is "
                               f"{image.size[0]}x{image.size[1]}; fix that line")
        return (self.transform(image) if self.transform else image), int(self.targets[index])

    def ground_truth(self, index) -> GroundTruth:
        """The datasets.ground_truth.GroundTruth of the images at index (a slice or N indices), at S x S, S the
        scored size (224, wsolevaluation's; the images' side when evaluate_cam.py --dataset reads them
        at another): CUB, ILSVRC: boxes int64 (N, M, 4) inclusive, rescaled as wsolevaluation's
        resize_bbox does (each coordinate times S / the image side, truncated), rows of -1 for
        padding, masks None; OpenImages: boxes (N, 0, 4), masks bool (N, S, S) the union of the
        instance masks and ignore bool (N, S, S) the ignore region minus them, as its get_mask reads them."""
        positions = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index, dtype=np.int64)
        if self.boxes is None and self.mask_paths is None:
            raise DatasetError(f"the {self.split} split of {self.name} has no boxes or masks (training labels only); "
                               f"score localization on the validation or test split")
        if self.boxes is not None:
            return GroundTruth(boxes=rescale_boxes(self.boxes[positions], self.sizes[positions], self.scored_size),
                               inclusive=True)
        masks = np.zeros((len(positions), self.scored_size, self.scored_size), dtype=bool)
        ignore = np.zeros_like(masks)
        for row, position in enumerate(positions):
            masks[row], ignore[row] = self.read_masks(int(position))
        return GroundTruth(boxes=np.zeros((len(positions), 0, 4), dtype=np.int64), masks=masks, ignore=ignore,
                           inclusive=True)

    def read_masks(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """(foreground, ignore) bool (S, S) of one OpenImages image, as wsolevaluation's get_mask
        makes them: each mask read as grayscale, resized by nearest neighbour (cv2.INTER_NEAREST) to
        S x S (the scored size) and thresholded at 0.5; foreground the union; ignore the ignore mask minus the
        foreground (none where the ignore path is empty)."""
        width, height = self.sizes[position]
        union = np.zeros((self.scored_size, self.scored_size), dtype=bool)
        for mask_path in self.mask_paths[position]:
            union |= self.read_mask(mask_path, width, height) > 0.5
        ignore_path = self.ignore_paths[position]
        ignore = self.read_mask(ignore_path, width, height) > 0.5 if ignore_path else np.zeros_like(union)
        return union, ignore & ~union

    def read_mask(self, mask_path: str, width: int, height: int) -> np.ndarray:
        """A mask file float32 (S, S), resized as wsolevaluation's load_mask_image does; DatasetError
        if it is missing, unreadable, not 8-bit, or not of its image's size. A 16-bit mask is refused:
        wsolevaluation's cv2.imread(IMREAD_GRAYSCALE) keeps its high byte, so that 0/1 reads as empty.
        (IMREAD_ANYDEPTH reads an 8-bit file as IMREAD_GRAYSCALE alone does, and shows a deeper one.)"""
        path = self.image_root / mask_path
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH) if path.is_file() else None
        if mask is None:
            raise DatasetError(f"mask {mask_path} not found or unreadable under {self.image_root}; put the OpenImages "
                               f"masks beside their images (wsolevaluation's OpenImages_annotations.zip)")
        if mask.dtype != np.uint8:
            raise DatasetError(f"mask {path} has {mask.dtype} pixels, and wsolevaluation reads masks as 8-bit (a "
                               f"16-bit mask of 0/1 reads as empty there); save it as an 8-bit PNG of 0 and 255")
        if mask.shape != (height, width):
            raise DatasetError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but its image is {width}x{height} "
                               f"(image_sizes.txt); use the masks and metadata of the same OpenImages release")
        return cv2.resize(np.float32(mask), (self.scored_size, self.scored_size), interpolation=cv2.INTER_NEAREST)


def rescale_boxes(boxes: np.ndarray, sizes: np.ndarray, length: int = SCORED_SIZE) -> np.ndarray:
    """boxes int64 (N, M, 4) inclusive (x0, y0, x1, y1) in images of sizes int64 (N, 2) (width,
    height) -> the same at length x length, as wsolevaluation's evaluation.py resize_bbox does:
    every coordinate, x1 and y1 too, times length / the side, truncated toward zero (int()). Rows
    of -1 (padding) stay -1."""
    scale = length / sizes.astype(np.float64)  # (N, 2): x and y factors, as float(new) / float(old)
    factors = np.concatenate([scale, scale], axis=1)[:, None, :]  # (N, 1, 4)
    scaled = np.trunc(boxes * factors).astype(np.int64)
    return np.where(boxes < 0, -1, scaled)


def class_names(folder: Path, name: str) -> list[str]:
    """The class names of a benchmark, label by label, from its train split's metadata: the folder of
    the first image of each label ('001.Black_footed_Albatross' -> 'Black_footed_Albatross'; ILSVRC
    wnids; OpenImages' class ids), or the label itself where no train image names one."""
    labels, ids = folder / "train" / "class_labels.txt", folder / "train" / "image_ids.txt"
    if not labels.is_file() or not ids.is_file():
        metadata_file(folder, "train", "class_labels.txt" if not labels.is_file() else "image_ids.txt")
    return cached_class_names(str(labels), labels.stat().st_mtime_ns, labels.stat().st_size)


@functools.lru_cache(maxsize=8)
def cached_class_names(labels_path: str, mtime: int, size: int) -> list[str]:
    """class_names of one class_labels.txt, read once per version of the file (the three splits ask)."""
    first: dict[int, str] = {}
    for image_id, label in read_lines(Path(labels_path), 2, "id,label", (1,)):
        first.setdefault(int(label), image_id)
    if not first or min(first) < 0:
        raise DatasetError(f"{labels_path} has no labels or negative ones; use wsolevaluation's class_labels.txt")
    names = [str(label) for label in range(max(first) + 1)]
    for label, image_id in first.items():
        parent = os.path.basename(os.path.dirname(image_id))
        if parent:
            names[label] = re.sub(r"^\d+\.", "", parent) or parent
    return names


def check_splits(splits: dict[str, WSOLSplit]) -> None:
    """The opened splits (train, validation, test) checked together (DatasetSpec.check_splits), once
    all their metadata is read: DatasetError naming an image id listed in two of them, or the first
    image of one that is not under the image root (a wrong --data_dir fails at load time, not in the
    first batch; a stat, no image is read)."""
    seen: dict[bytes, str] = {}
    for split_name, split in splits.items():
        ids = split.ids.tolist()
        shared = next((image_id for image_id in ids if image_id in seen), None)
        if shared is not None:
            raise DatasetError(f"image {shared.decode()} is in both the {seen[shared]} and {split_name} splits of "
                               f"{split.metadata.parent}; each image must be in one split only (fix image_ids.txt)")
        seen.update(dict.fromkeys(ids, split_name))
    for split in splits.values():
        split.image_path(0)


def open_split(name: str):
    """open(root, train, transform, download, metadata_dir="", scored_size=224) of benchmark `name`'s
    train or test split (DatasetSpec.open); the train split reads no localization.txt."""
    def open_train_or_test(root: Path, train: bool, transform, download: bool, metadata_dir: str = "",
                           scored_size: int = SCORED_SIZE) -> WSOLSplit:
        return WSOLSplit(root, name, "train" if train else "test", transform, metadata_dir, localization=not train,
                         scored_size=scored_size)
    return open_train_or_test


def open_validation(name: str):
    """open(root, transform, download, metadata_dir="", scored_size=224) of benchmark `name`'s val
    split (DatasetSpec.open_validation)."""
    def open_val(root: Path, transform, download: bool, metadata_dir: str = "", scored_size: int = SCORED_SIZE
                 ) -> WSOLSplit:
        return WSOLSplit(root, name, "val", transform, metadata_dir, scored_size=scored_size)
    return open_val
