"""torchvision datasets by name, found offline where possible, with per-dataset augmentation.

`load_dataset(name, root)` returns the train and test sets (yielding normalized float images
(C, H, W) and int labels) and a `DatasetInfo` (class names, channels, image size, normalization)
that checkpoints store so a model can be used without the training script.

Fashion-MNIST (the default) is looked for in root/FashionMNIST/raw/, root/fashion-mnist/ and
/usr/share/datasets/fashion-mnist/ (Debian's `dataset-fashion-mnist`), as the original .gz files,
before torchvision downloads it. MNIST likewise with root/mnist/ and /usr/share/datasets/mnist/.

`fashion-mnist-cluttered` is made from the real Fashion-MNIST splits: each item on a larger
canvas at a random position among crops of other items, with its ground-truth box and mask, for
measuring localization (see `make_cluttered` and `ClutteredFashionMNIST`).
"""

import copy
import dataclasses
import gzip
import math
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, default_collate
from torchvision import datasets
from torchvision import transforms as T

from utils.cli import UserError
from utils.files import atomic_output

IDX_PAIRS = (("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
IDX_FILES = [name for pair in IDX_PAIRS for name in pair]
# where a system package puts a dataset's .gz files, and the Debian package that does ("": none known)
SYSTEM_DIRS = {"fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"), "dataset-fashion-mnist"),
               "mnist": (Path("/usr/share/datasets/mnist"), "")}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class DatasetError(UserError):
    """A dataset that is unknown, missing offline, or malformed."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about its data; stored in checkpoints as a plain dict."""

    name: str
    classes: tuple[str, ...]
    channels: int
    image_size: int  # images are image_size x image_size
    mean: tuple[float, ...]  # per channel, of the [0, 1] pixel values
    std: tuple[float, ...]
    options: dict = dataclasses.field(default_factory=dict)  # how the dataset was made (the cluttered set's settings)

    @property
    def black(self) -> tuple[float, ...]:
        """The normalized value of a black pixel, per channel: what the training shifts uncover."""
        return tuple(-mean / std for mean, std in zip(self.mean, self.std))

    def as_dict(self) -> dict:
        values = dataclasses.asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}

    @classmethod
    def from_dict(cls, values: dict) -> "DatasetInfo":
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()})


@dataclass(frozen=True)
class DatasetSpec:
    """How to open one dataset: open(root, train, transform, download) -> torchvision dataset."""

    open: Callable[[Path, bool, Callable, bool], Dataset]
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: "ShiftFlip | ResizedCropFlip"  # train-time augmentation
    expected: str  # where the files go under the data folder, and how to get them
    options: dict = dataclasses.field(default_factory=dict)  # extra settings of open() and their defaults
    generated: bool = False  # made at the asked image size (no resizing); open() gets it as `size`
    min_image_size: int = 1  # the smallest image size it can be made or resized to
    fixed_size: bool = True  # all its images are image_size x image_size (False: any size, resized as loaded)
    progressive_start: float = 1.0  # train.py's default --progressive_start for it (1: no progressive resizing)
    class_ordered: bool = False  # its splits list the images class by class (an ImageFolder): see LoadedDataset.order


@dataclass
class LoadedDataset:
    """The two splits of a dataset, what a model needs to know of it, and how to feed it in batches."""

    train: Dataset
    test: Dataset
    info: DatasetInfo
    augment: "ShiftFlip | ResizedCropFlip"
    in_memory: bool  # both splits are tensors at the model's input size, fed by TensorLoader
    class_ordered: bool = False  # its splits list the images class by class (DatasetSpec.class_ordered)
    validation: Dataset | None = None  # training images held out by hold_out(), read as the test split is
    _on_device: dict = dataclasses.field(default_factory=dict, repr=False)

    def pick(self, dataset: Dataset, stored: torch.Tensor, seed: int) -> torch.Tensor:
        """Indices, sorted, of len(stored) images of a split, for hold_out and loader's limit: `stored`
        where the split's stored order is already random (the torchvision datasets: the published
        recipes' splits depend on it), or a stratified pick fixed by seed where it lists its images
        class by class (see stratified_pick)."""
        return stratified_pick(split_labels(dataset), len(stored), seed) if self.class_ordered else stored

    def hold_out(self, count: int, seed: int = 0) -> "LoadedDataset":
        """A copy whose "validation" split is `count` training images, unaugmented (read as the test
        split is), and whose train split is the others, both in their stored order: for choosing
        hyperparameters without looking at the test split. The held-out images are the last `count`
        ones, or on a class-ordered dataset a stratified pick fixed by seed (see pick). DatasetError
        if count does not fit."""
        total = len(self.train)
        if not 0 < count < total:
            raise DatasetError(f"--validation={count} must be between 1 and {total - 1}: the training set has {total} images")
        kept = torch.ones(total, dtype=torch.bool)
        kept[self.pick(self.train, torch.arange(total - count, total), seed)] = False
        unaugmented = copy.copy(self.train)
        unaugmented.transform = self.test.transform
        return dataclasses.replace(self, train=Subset(self.train, kept.nonzero()[:, 0].tolist()), _on_device={},
                                   validation=Subset(unaugmented, (~kept).nonzero()[:, 0].tolist()))

    def with_permuted_labels(self, seed: int) -> "LoadedDataset":
        """A copy whose training labels are a random permutation of the real ones, fixed by seed: the
        data randomization test of Adebayo et al. ("Sanity Checks for Saliency Maps", NeurIPS 2018).
        The images, the class counts and the validation and test splits stay as they were."""
        labels = split_labels(self.train)
        permuted = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
        return dataclasses.replace(self, train=Relabeled(self.train, permuted), _on_device={})

    def loader(self, split: str, batch_size: int, device: torch.device, generator: torch.Generator | None = None,
               limit: int = 0, num_workers: int = 0, memory_format: torch.memory_format = torch.contiguous_format,
               rank: int = 0, world_size: int = 1, seed: int = 0) -> Iterable:
        """Batches (normalized float images (B, C, H, W) on device, int64 labels (B,)) of split
        ("train", "validation" or "test"), only `limit` of its images if limit > 0: the first ones, or
        on a class-ordered dataset a stratified pick fixed by seed (see pick). With a generator the
        order is shuffled and the train split augmented, the draws all taken from generator;
        without, the images come in order, unaugmented. rank and world_size give each of world_size
        processes its own share of the images (see TensorLoader).

        In-memory datasets are held on device once and batched there (TensorLoader); others go
        through a UserErrorLoader with num_workers processes that decode and augment image by image.
        """
        dataset = getattr(self, split)
        if limit:
            dataset = Subset(dataset, self.pick(dataset, torch.arange(min(limit, len(dataset))), seed).tolist())
        if self.in_memory:
            if (split, limit, seed, device) not in self._on_device:
                images, labels = split_tensors(dataset)
                self._on_device[split, limit, seed, device] = (images.to(device), labels.to(device))
            images, labels = self._on_device[split, limit, seed, device]
            augment = self.augment if split == "train" and generator is not None else None
            return TensorLoader(images, labels, self.info.mean, self.info.std, batch_size, augment, generator,
                                memory_format, rank, world_size)
        sampler = None
        if world_size > 1:
            seed = int(torch.randint(2**62, (1,), generator=generator)) if generator is not None else 0
            sampler = DistributedSampler(dataset, world_size, rank, shuffle=generator is not None, seed=seed)
        return UserErrorLoader(dataset, batch_size, shuffle=generator is not None and sampler is None, sampler=sampler,
                               generator=generator, num_workers=num_workers, pin_memory=device.type == "cuda")


def stratified_pick(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Indices int64 (count,), sorted, of count of the images whose labels are labels int64 (N,),
    drawn much as scikit-learn's train_test_split(stratify=labels) draws a test split of that size, fixed
    by seed: each class gets its share of count rounded down, the images left over go one each to the
    classes with the largest remainders (ties in random order), so that each class has its share
    within one image, and within a class the images are drawn at random."""
    generator = torch.Generator().manual_seed(seed)
    counts = torch.bincount(labels)
    shares = counts.double() * count / len(labels)
    taken = shares.floor().long()
    tie_order = torch.randperm(len(counts), generator=generator)
    by_remainder = tie_order[torch.sort((shares - taken)[tie_order], descending=True, stable=True).indices]
    taken[by_remainder[: count - int(taken.sum())]] += 1
    shuffled = torch.randperm(len(labels), generator=generator)
    classes = labels[shuffled]
    by_class = torch.sort(classes, stable=True).indices
    rank = torch.empty_like(by_class)  # of each shuffled image within its class
    rank[by_class] = torch.arange(len(labels)) - (torch.cumsum(counts, 0) - counts)[classes[by_class]]
    return shuffled[rank < taken[classes]].sort().values


def split_labels(dataset: Dataset) -> torch.Tensor:
    """The labels int64 (N,) of a split, read without decoding its images: an ImageFolder, one of
    split_tensors' datasets, or a Subset or Relabeled of one."""
    if isinstance(dataset, Subset):
        return split_labels(dataset.dataset)[torch.as_tensor(list(dataset.indices), dtype=torch.long)]
    if isinstance(dataset, Relabeled):
        return dataset.labels
    if isinstance(dataset, datasets.DatasetFolder):
        return torch.tensor(dataset.targets, dtype=torch.long)
    return split_tensors(dataset)[1]


class ErrorsAsItems(Dataset):
    """dataset, except that a UserError raised in reading an item is returned as the item."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except UserError as error:
            return error


def collate_or_error(items: list):
    """The batch of items as the DataLoader's default makes it, or the first UserError among them."""
    errors = [item for item in items if isinstance(item, UserError)]
    return errors[0] if errors else default_collate(items)


class UserErrorLoader(DataLoader):
    """A DataLoader that raises a UserError met in reading the dataset as it was raised, one line,
    also when a worker process read the image: PyTorch re-raises a worker's exception with the
    worker's traceback folded into its message. The error travels as the batch instead
    (ErrorsAsItems, collate_or_error) and is raised here. Takes DataLoader's arguments but collate_fn."""

    def __init__(self, dataset: Dataset, *args, **kwargs):
        super().__init__(ErrorsAsItems(dataset), *args, collate_fn=collate_or_error, **kwargs)

    def __iter__(self) -> Iterator:
        for batch in super().__iter__():
            if isinstance(batch, UserError):
                raise batch
            yield batch


def idx_dims(head: bytes, length: int, ndim: int) -> tuple[int, ...]:
    """The dims of an IDX file of unsigned bytes with ndim dims (the (Fashion-)MNIST format), from its
    first 4 + 4 * ndim bytes and its length in bytes; ValueError saying what is wrong."""
    if len(head) < 4 or head[:3] != b"\x00\x00\x08" or head[3] != ndim:
        raise ValueError(f"not an IDX file of {ndim}-dimensional unsigned bytes (wrong header)")
    if len(head) < 4 + 4 * ndim:
        raise ValueError("its header is cut short")
    dims = struct.unpack(f">{ndim}I", head[4 : 4 + 4 * ndim])
    expected = 4 + 4 * ndim + math.prod(dims)
    if length != expected:
        raise ValueError(f"{length} bytes where its header promises {expected}: {'cut short' if length < expected else 'too long'}")
    return dims


def idx_pair_problem(images: tuple[bytes, int], labels: bytes, num_classes: int = 10) -> tuple[int, str]:
    """What is wrong with a pair of IDX files: images given as (first 16 bytes, length in bytes), labels
    whole. Returns (0 for the images file or 1 for the labels file, the reason), or (-1, "") if they are
    whole and agree: 28x28 images, as many labels as images, each below num_classes."""
    try:
        count, height, width = idx_dims(images[0], images[1], 3)
    except ValueError as error:
        return 0, str(error)
    if (height, width) != (28, 28):
        return 0, f"its images are {height}x{width}, not 28x28"
    try:
        (label_count,) = idx_dims(labels, len(labels), 1)
    except ValueError as error:
        return 1, str(error)
    if label_count != count:
        return 1, f"it holds {label_count} labels for the {count} images of its images file"
    if label_count and max(labels[8:]) >= num_classes:
        return 1, f"it holds a label of {max(labels[8:])}, where labels go from 0 to {num_classes - 1}"
    return -1, ""


def read_source(path: Path) -> bytes:
    """The bytes of an IDX file, decompressed if path ends in .gz; ValueError naming the file if they
    cannot be read whole (a gzip stream cut short, corrupted data, an unreadable file)."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as file:
            return file.read()
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path} is damaged ({str(error) or type(error).__name__})") from None


def read_pair(sources: list[Path]) -> tuple[list[bytes], tuple[int, str] | None]:
    """The contents of an IDX pair of files (images, labels) and None if they are whole and agree
    (idx_pair_problem), else (the contents read so far, (0 for the images file or 1 for the labels
    file, "PATH is damaged (why)"))."""
    contents = []
    for which, source in enumerate(sources):
        try:
            contents.append(read_source(source))
        except ValueError as error:
            return contents, (which, str(error))
    which, reason = idx_pair_problem((contents[0][:16], len(contents[0])), contents[1])
    return contents, ((which, f"{sources[which]} is damaged ({reason})") if which >= 0 else None)


def stage_idx_files(raw_dir: Path, search_dirs: list[Path], package: str = "") -> None:
    """Put the four extracted IDX files that torchvision's MNIST classes read into raw_dir, checked.

    Each pair (images, labels) already in raw_dir is kept if it passes idx_pair_problem; else it is
    staged again from the first folder holding a good pair, as NAME.gz or NAME (in raw_dir itself,
    where torchvision downloads them, only NAME.gz), each file written whole or not at all, and a
    damaged copy passed over for it is named in a printed warning with the copy used. A pair
    that cannot be staged is removed from raw_dir, so that it is never reused: then DatasetError
    names each damaged source file, or, if no folder holds a copy, the files are left for
    torchvision to download or to report missing. package: the Debian package that restores them.
    """
    for pair in IDX_PAIRS:
        staged = [raw_dir / name for name in pair]
        if all(path.is_file() for path in staged):
            with open(staged[0], "rb") as file:
                head = file.read(16)
            if idx_pair_problem((head, staged[0].stat().st_size), staged[1].read_bytes())[0] < 0:
                continue
        damaged = []  # (0 or 1: which file of the pair, "PATH is damaged (why)")
        for folder in [raw_dir, *search_dirs]:
            names = [[name + ".gz"] + ([name] if folder != raw_dir else []) for name in pair]
            sources = [next((folder / n for n in options if (folder / n).is_file()), None) for options in names]
            if None in sources:
                continue
            contents, problem = read_pair(sources)
            if problem:
                damaged.append(problem)
                continue
            raw_dir.mkdir(parents=True, exist_ok=True)
            for path, content in zip(staged, contents):
                with atomic_output(path) as temporary:
                    temporary.write_bytes(content)
            for which, reason in damaged:
                print(f"warning: {reason}; using {sources[which]}")
            break
        else:
            for path in staged:
                path.unlink(missing_ok=True)
            if damaged:
                reinstall = f" (`apt-get install --reinstall {package}` restores its files)" if package else ""
                raise DatasetError(f"{'; '.join(reason for _, reason in damaged)}; replace each with a good copy of "
                                   f"the original file, or delete it{reinstall}")


def open_mnist_like(dataset_class, name: str):
    def open_split(root: Path, train: bool, transform, download: bool) -> Dataset:
        system_dir, package = SYSTEM_DIRS[name]
        stage_idx_files(root / dataset_class.__name__ / "raw", [root / name, system_dir], package)
        return dataset_class(root, train=train, transform=transform, download=download)

    return open_split


def open_cifar(dataset_class):
    def open_split(root: Path, train: bool, transform, download: bool) -> Dataset:
        return dataset_class(root, train=train, transform=transform, download=download)

    return open_split


def open_svhn(root: Path, train: bool, transform, download: bool) -> Dataset:
    dataset = datasets.SVHN(root / "svhn", split="train" if train else "test", transform=transform, download=download)
    dataset.classes = [str(digit) for digit in range(10)]
    return dataset


def open_stl10(root: Path, train: bool, transform, download: bool) -> Dataset:
    return datasets.STL10(root, split="train" if train else "test", transform=transform, download=download)


def read_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """An image file as an 8-bit image in mode ("RGB" or "L"), converted faithfully from any mode
    and bit depth Pillow opens: turned upright as its EXIF orientation says; 16-bit pixels (and
    32-bit integer ones, as Pillow opens 16-bit PGM files) scaled from [0, 65535], float pixels
    from [0, 1]; transparent pixels composited over black; the first frame of an animation.
    DatasetError naming the file if it is not an image that Pillow reads whole, or has more
    pixels than Pillow's decompression-bomb limit allows."""
    try:
        with Image.open(path) as image:
            return eight_bit(ImageOps.exif_transpose(image)).convert(mode)
    except Image.DecompressionBombError as error:
        raise DatasetError(f"{path} is too large to read safely ({error}); use a smaller image") from None
    except Exception as error:  # noqa: BLE001 -- Pillow raises many types for broken or unknown files
        raise DatasetError(f"{path} is not a readable image ({str(error) or type(error).__name__}); "
                           f"replace or remove it") from None


def eight_bit(image: Image.Image) -> Image.Image:
    """image with 8-bit channels, its alpha (if any) composited over black: mode "L" or "RGB"."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        scale = 255.0 if image.mode == "F" else 255.0 / 65535
        pixels = np.asarray(image, dtype=np.float64) * scale
        return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("1", "L", "RGB"):
        return image
    if "A" in image.mode or "a" in image.mode or "transparency" in image.info:
        colored = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", colored.size, (0, 0, 0, 255)), colored).convert("RGB")
    return image.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, ...


def open_folder(root: Path, train: bool, transform, download: bool) -> Dataset:
    """An ImageFolder tree: root/train/<class>/<image> and root/test/<class>/<image>."""
    split_dir = root / ("train" if train else "test")
    if not split_dir.is_dir():
        raise DatasetError(
            f"image folder {split_dir} not found; "
            f"the folder dataset needs {root}/train/<class>/ and {root}/test/<class>/"
        )
    try:
        return datasets.ImageFolder(split_dir, transform=transform, loader=read_image)
    except FileNotFoundError as error:
        raise DatasetError(f"image folder {split_dir} holds no images in class subfolders ({error})") from None


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as file:
            fields = dict(line.split(":", 1) for line in file)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_memory(needed: int, what: str, fix: str) -> None:
    """DatasetError saying how much memory what needs, and the fix, if needed is over what is available."""
    available = available_memory()
    if available is not None and needed > available:
        raise DatasetError(f"the {what} need {needed / 2**30:.1f} GiB of memory, and {available / 2**30:.1f} GiB "
                           f"is available; {fix}")


CLUTTER_DEFAULTS = {"clutter": 6, "clutter_size": 10, "clutter_seed": 0}
CLUTTER_FORMAT = 3  # bump when make_cluttered changes, so that old caches are not reused


def paste_max(canvas: np.ndarray, patches: np.ndarray, top: np.ndarray, left: np.ndarray) -> None:
    """Paste patches (N, p, q) into canvas (N, S, S) in place, patch n with its top-left corner at
    (top[n], left[n]), keeping the brighter pixel where they overlap."""
    count, height, width = patches.shape
    rows = top[:, None, None] + np.arange(height)[None, :, None]
    cols = left[:, None, None] + np.arange(width)[None, None, :]
    index = np.arange(count)[:, None, None]
    canvas[index, rows, cols] = np.maximum(canvas[index, rows, cols], patches)


def make_cluttered(
    items: np.ndarray, size: int = 64, clutter: int = 6, clutter_size: int = 10, seed: int = 0
) -> dict[str, np.ndarray]:
    """Cluttered canvases, one per item, vectorized and deterministic from seed.

    items: uint8 (N, h, w), each pasted whole at a uniformly random position of a black size x size
    canvas, over `clutter` crops of clutter_size x clutter_size taken at random from other items and
    pasted at random positions (the brighter pixel wins where they overlap).
    Returns images uint8 (N, size, size); boxes int64 (N, 4), the tight box (x0, y0, x1, y1) of
    the item's non-zero pixels with exclusive ends (so width = x1 - x0); and masks bool (N, size,
    size), the item's non-zero pixels.
    """
    count, height, width = items.shape
    if size < max(height, width) or clutter_size > min(height, width):
        raise DatasetError(f"a canvas of {size} px cannot hold {height}x{width} items with {clutter_size} px clutter")
    rng = np.random.default_rng(seed)
    top, left = rng.integers(0, size - height + 1, size=count), rng.integers(0, size - width + 1, size=count)
    images = np.zeros((count, size, size), dtype=np.uint8)
    for _ in range(clutter):
        other = (np.arange(count) + rng.integers(1, max(count, 2), size=count)) % count  # never the item itself
        crop_top = rng.integers(0, height - clutter_size + 1, size=count)
        crop_left = rng.integers(0, width - clutter_size + 1, size=count)
        offsets = np.arange(clutter_size)
        crops = items[other[:, None, None], crop_top[:, None, None] + offsets[:, None], crop_left[:, None, None] + offsets]
        places = rng.integers(0, size - clutter_size + 1, size=(2, count))
        paste_max(images, crops, places[0], places[1])
    paste_max(images, items, top, left)
    ink = items > 0
    rows, cols = ink.any(axis=2), ink.any(axis=1)  # (N, h), (N, w)
    boxes = np.stack([
        left + cols.argmax(1), top + rows.argmax(1),
        left + width - cols[:, ::-1].argmax(1), top + height - rows[:, ::-1].argmax(1),
    ], axis=1).astype(np.int64)
    masks = np.zeros((count, size, size), dtype=bool)
    paste_max(masks, ink, top, left)
    return {"images": images, "boxes": boxes, "masks": masks}


class ClutteredFashionMNIST(Dataset):
    """Fashion-MNIST items on size x size canvases among clutter (see make_cluttered): the train
    split from the train items, the test split from the test items, one canvas per item.

    Yields (transform(PIL image), label). `images` uint8 (N, size, size), `targets` int64 (N,) and
    `boxes` int64 (N, 4) as (x0, y0, x1, y1) with exclusive ends are the whole split as tensors;
    the item masks are kept bit-packed and read with `ground_truth` (also through a Subset, such
    as the validation split that LoadedDataset.hold_out makes of the train canvases: its masks and
    boxes are those of held-out training items). Each split is cached in
    root/fashion-mnist-cluttered/ after it is first made.
    """

    def __init__(self, root: Path, train: bool, transform, download: bool, size: int = 64,
                 clutter: int = 6, clutter_size: int = 10, clutter_seed: int = 0):
        split = "train" if train else "test"
        cache = Path(root) / "fashion-mnist-cluttered" / (
            f"{split}-v{CLUTTER_FORMAT}-size{size}-clutter{clutter}x{clutter_size}-seed{clutter_seed}.pt"
        )
        arrays = None
        if cache.is_file():
            try:
                arrays = torch.load(cache, weights_only=True)
            except Exception:  # noqa: BLE001 -- a broken cache is made again
                arrays = None
        self.classes = list(datasets.FashionMNIST.classes)
        if arrays is None:  # made from the Fashion-MNIST items, read only on a cache miss
            source = open_mnist_like(datasets.FashionMNIST, "fashion-mnist")(Path(root), train, None, download)
            check_memory(len(source.data) * size * size * 2, f"{split} canvases of {size} px", "lower --image_size")
            made = make_cluttered(source.data.numpy(), size, clutter, clutter_size, seed=2 * clutter_seed + (not train))
            made["masks"] = np.packbits(made["masks"], axis=-1)  # 8 pixels a byte
            arrays = {key: torch.from_numpy(value) for key, value in made.items()}
            arrays["targets"] = source.targets.clone()
            try:
                with atomic_output(cache) as temporary, open(temporary, "wb") as file:
                    torch.save(arrays, file)
            except (OSError, UserError):
                pass  # a read-only or full data folder: the split is made again next time
        self.images, self.targets, self.boxes = arrays["images"], arrays["targets"], arrays["boxes"]
        self.packed_masks = arrays["masks"]  # uint8 (N, size, ceil(size / 8))
        self.transform = transform

    def ground_truth(self, index) -> tuple[np.ndarray, np.ndarray]:
        """(boxes int64 (N, 4), masks bool (N, size, size)) of the canvases at index (a slice or N indices)."""
        side = self.images.shape[-1]
        masks = np.unpackbits(self.packed_masks[index].numpy(), axis=-1, count=side).astype(bool)
        return self.boxes[index].numpy(), masks

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index].numpy(), mode="L")
        return (self.transform(image) if self.transform else image), int(self.targets[index])


@dataclass(frozen=True)
class ShiftFlip:
    """Train-time augmentation: a random shift by up to padding_fraction of the image side (the
    uncovered border black), then, with flip, a horizontal flip half of the time. `transforms` is
    it for PIL images one at a time, `batch` the same on a whole uint8 batch at once."""

    padding_fraction: float
    flip: bool
    resizes = False  # its transforms keep the image size

    @property
    def shifts(self) -> bool:
        """Whether it shifts images (then test-time shifts apply; see training.evaluate)."""
        return self.padding_fraction > 0

    def transforms(self, size: int) -> list:
        shift = [T.RandomCrop(size, padding=padding)] if (padding := round(size * self.padding_fraction)) else []
        return shift + ([T.RandomHorizontalFlip()] if self.flip else [])

    def batch(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """images uint8 (B, C, H, W) with H == W -> augmented uint8 (B, C, H, W); the random draws
        come from generator (a CPU one), so they do not depend on the device."""
        count, _, height, width = images.shape
        if padding := round(height * self.padding_fraction):
            offsets = torch.randint(0, 2 * padding + 1, (2, count, 1), generator=generator).to(images.device)
            rows = offsets[0] + torch.arange(height, device=images.device)  # (B, H) rows of the padded batch
            cols = offsets[1] + torch.arange(width, device=images.device)
            padded = F.pad(images, (padding,) * 4)
            index = torch.arange(count, device=images.device)[:, None, None]
            images = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        if self.flip:
            flips = (torch.rand(count, generator=generator) < 0.5).to(images.device)
            images = torch.where(flips[:, None, None, None], images.flip(3), images)
        return images


def trained_with_flips(name: str) -> bool:
    """Whether train.py mirrors dataset `name`'s training images (so that a mirror image is one the
    model knows: test-time flips apply)."""
    return DATASETS[name].augment.flip


def ground_truth(dataset: Dataset, start: int, stop: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(boxes int64 (N, 4), masks bool (N, H, W)) of images start..stop-1 of a split with boxes (the
    cluttered set, or a Subset of it), None for a split without them."""
    index = np.arange(start, min(stop, len(dataset)))
    while isinstance(dataset, Subset):
        index, dataset = np.asarray(dataset.indices)[index], dataset.dataset
    return dataset.ground_truth(index) if isinstance(dataset, ClutteredFashionMNIST) else None


class Relabeled(Dataset):
    """dataset with its labels replaced by labels (N,), int64."""

    def __init__(self, dataset: Dataset, labels: torch.Tensor):
        self.dataset, self.labels = dataset, labels

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index][0], int(self.labels[index])


def split_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N, C, H, W), labels int64 (N,)) of a split torchvision holds in memory, as
    stored (before any transform): MNIST-like, CIFAR, SVHN, STL10, the cluttered set, or a Subset or
    Relabeled of one."""
    if isinstance(dataset, Subset):
        images, labels = split_tensors(dataset.dataset)
        index = torch.as_tensor(list(dataset.indices), dtype=torch.long)
        return images[index], labels[index]
    if isinstance(dataset, Relabeled):
        return split_tensors(dataset.dataset)[0], dataset.labels
    if isinstance(dataset, ClutteredFashionMNIST):
        return dataset.images[:, None], dataset.targets
    if isinstance(dataset, datasets.MNIST):
        return dataset.data[:, None], dataset.targets
    if isinstance(dataset, datasets.CIFAR10):  # and CIFAR100: (N, H, W, C) arrays and a list of labels
        return torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(dataset.targets)
    if isinstance(dataset, (datasets.SVHN, datasets.STL10)):  # (N, C, H, W) arrays
        return torch.from_numpy(dataset.data), torch.from_numpy(dataset.labels).long()
    raise TypeError(f"{type(dataset).__name__} is not held in memory; feed it with a DataLoader")


class TensorLoader:
    """Batches of a split held as one uint8 tensor, with no per-image Python work: each batch is
    gathered by index, augmented as a whole (ShiftFlip.batch) and normalized on the images' device.

    images uint8 (N, C, H, W) and labels int64 (N,), on the device the batches should be on.
    Yields (float images (B, C, H, W), (pixel / 255 - mean) / std in memory_format, labels (B,)).
    With a generator the order is a random permutation and augment (if any) is applied; without,
    the images come in order. With world_size > 1, process `rank` takes every world_size-th image
    of that order; shuffled orders are first extended by their own start to a multiple of
    world_size, so that every process takes the same number of steps (as DistributedSampler does).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                 batch_size: int, augment: "ShiftFlip | None" = None, generator: torch.Generator | None = None,
                 memory_format: torch.memory_format = torch.contiguous_format, rank: int = 0, world_size: int = 1):
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.augment, self.generator, self.memory_format = augment, generator, memory_format
        self.mean = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
        count = len(labels)
        if generator is None:
            order = torch.arange(count)
        else:
            order = torch.randperm(count, generator=generator)
            order = torch.cat([order, order[: -count % world_size]]) if count % world_size else order
            if world_size > 1:  # the same order everywhere, but each process its own augmentation
                seed = int(torch.randint(2**62, (1,), generator=generator))
                self.generator = torch.Generator().manual_seed(seed + rank)
        self.order = order[rank::world_size].to(images.device)

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.order), self.batch_size):
            index = self.order[start : start + self.batch_size]
            images = self.images[index]
            if self.augment is not None and self.generator is not None:
                images = self.augment.batch(images, self.generator)
            images = (images.float().div_(255).sub_(self.mean).div_(self.std)).contiguous(memory_format=self.memory_format)
            yield images, self.labels[index]


@dataclass(frozen=True)
class ResizedCropFlip:
    """Train-time augmentation of photos: a random crop of 35-100% of the area, resized, and with
    flip a horizontal flip half of the time."""

    flip: bool = True
    resizes = True  # its random crop is resized to the image size: no resizing before it
    shifts = False  # no test-time shifts: its crops move and rescale the photo far more than a pixel

    def transforms(self, size: int) -> list:
        return [T.RandomResizedCrop(size, scale=(0.35, 1.0))] + ([T.RandomHorizontalFlip()] if self.flip else [])


DATASETS = {
    "fashion-mnist": DatasetSpec(
        open=open_mnist_like(datasets.FashionMNIST, "fashion-mnist"), channels=1, image_size=28,
        mean=(0.2860,), std=(0.3530,), augment=ShiftFlip(1 / 14, flip=True), progressive_start=0.7,
        expected="FashionMNIST/raw/ (the four .gz files); offline, `apt-get install dataset-fashion-mnist` "
        "puts them in /usr/share/datasets/fashion-mnist/, where they are found too",
    ),
    "fashion-mnist-cluttered": DatasetSpec(
        open=ClutteredFashionMNIST, channels=1, image_size=64,
        mean=(0.1069,), std=(0.2587,), augment=ShiftFlip(0, flip=True),
        expected="FashionMNIST/raw/ or fashion-mnist/ (the four Fashion-MNIST .gz files, from which it is made); "
        "offline, `apt-get install dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist/",
        options=CLUTTER_DEFAULTS, generated=True, min_image_size=28,
    ),
    "mnist": DatasetSpec(
        open=open_mnist_like(datasets.MNIST, "mnist"), channels=1, image_size=28,
        mean=(0.1307,), std=(0.3081,), augment=ShiftFlip(1 / 14, flip=False),
        expected="MNIST/raw/ (train-images-idx3-ubyte.gz and the three other original files)",
    ),
    "cifar10": DatasetSpec(
        open=open_cifar(datasets.CIFAR10), channels=3, image_size=32,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), augment=ShiftFlip(1 / 8, flip=True),
        expected="cifar-10-batches-py/ (extract cifar-10-python.tar.gz there)",
    ),
    "cifar100": DatasetSpec(
        open=open_cifar(datasets.CIFAR100), channels=3, image_size=32,
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), augment=ShiftFlip(1 / 8, flip=True),
        expected="cifar-100-python/ (extract cifar-100-python.tar.gz there)",
    ),
    "svhn": DatasetSpec(
        open=open_svhn, channels=3, image_size=32,
        mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970), augment=ShiftFlip(1 / 8, flip=False),
        expected="svhn/train_32x32.mat and svhn/test_32x32.mat",
    ),
    "stl10": DatasetSpec(
        open=open_stl10, channels=3, image_size=96,
        mean=(0.4467, 0.4398, 0.4066), std=(0.2603, 0.2566, 0.2713), augment=ShiftFlip(1 / 8, flip=True),
        expected="stl10_binary/ (extract stl10_binary.tar.gz there)",
    ),
    "folder": DatasetSpec(
        open=open_folder, channels=3, image_size=128, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        augment=ResizedCropFlip(), fixed_size=False, class_ordered=True,
        expected="train/<class>/<image> and test/<class>/<image> (your own images; pass the folder as --data_dir)",
    ),
}


def load_dataset(
    name: str, root: str | Path = "data", download: bool = True, image_size: int = 0, options: dict | None = None
) -> LoadedDataset:
    """Train and test sets of a dataset by name; image_size 0 keeps the dataset's own size (a
    generated dataset is made at image_size). options override the dataset's own settings
    (DatasetSpec.options, e.g. {"clutter": 4}); unknown ones are an error.

    Raises DatasetError if the name is unknown or the files are neither in root nor downloadable.
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    spec, root = DATASETS[name], Path(root)
    unknown = set(options or {}) - set(spec.options)
    if unknown:
        raise DatasetError(f"dataset {name!r} has no setting {', '.join(sorted(unknown))}")
    settings = {**spec.options, **(options or {})}
    size = image_size or spec.image_size
    resize = not spec.generated and (size != spec.image_size or not spec.fixed_size)
    normalize = [T.ToTensor(), T.Normalize(spec.mean, spec.std)]
    transforms = {
        "train": T.Compose(([T.Resize(size)] if resize and not spec.augment.resizes else [])
                           + spec.augment.transforms(size) + normalize),
        "test": T.Compose(([T.Resize(size), T.CenterCrop(size)] if resize else []) + normalize),
    }
    extra = {"size": size, **settings} if spec.generated else settings
    splits = {}
    for split, transform in transforms.items():
        try:
            splits[split] = spec.open(root, split == "train", transform, download, **extra)
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001 -- missing, damaged or undownloadable files raise many types
            raise DatasetError(
                f"dataset {name!r} not found in {root}/, or damaged, and {failure(error, download)} "
                f"({' '.join(str(error).split())[:200] or type(error).__name__}); put the files in {root}/{spec.expected}"
            ) from None
    classes = tuple(splits["train"].classes)
    if tuple(splits["test"].classes) != classes:
        raise DatasetError(f"{root}/train and {root}/test must hold the same class folders")
    info = DatasetInfo(name, classes, spec.channels, size, spec.mean, spec.std, settings)
    return LoadedDataset(splits["train"], splits["test"], info, spec.augment, in_memory=not resize,
                         class_ordered=spec.class_ordered)


def failure(error: Exception, download: bool) -> str:
    """What went wrong in opening a dataset, for the message: a download that failed (torchvision
    raises an OSError, URLError included, or says so) or a file that could not be read."""
    if not download:
        return "download is off (--download=false)"
    if isinstance(error, OSError) or "download" in str(error).lower():
        return "could not be downloaded"
    return "could not be read"


def read_user_image(path: str | Path, mode: str) -> Image.Image:
    """The image file a user named with --image, read as read_image does; UserError for a folder or
    a missing file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--image={path} is a folder; pass one image file as --image=PATH")
    if not path.is_file():
        raise UserError(f"image {path} not found; pass an existing image file as --image=PATH")
    return read_image(path, mode)


def load_image(path: str | Path, info: DatasetInfo) -> tuple[torch.Tensor, Image.Image]:
    """A user's image file as the model expects it: (normalized tensor (C, S, S), the PIL image
    converted to the dataset's channels, resized and center-cropped to S = info.image_size)."""
    image = read_user_image(path, "L" if info.channels == 1 else "RGB")
    image = T.CenterCrop(info.image_size)(T.Resize(info.image_size)(image))
    return T.Compose([T.ToTensor(), T.Normalize(info.mean, info.std)])(image), image
