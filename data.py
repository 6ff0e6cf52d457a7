"""The dataset registry: datasets by name, their splits loaded and fed to a model in batches.

`load_dataset(name, root)` returns a `LoadedDataset`: the train and test sets (yielding normalized
float images (C, H, W) and int labels), a `DatasetInfo` (class names, channels, image size,
normalization) that checkpoints store so a model can be used without the training script, and
`loader`, which feeds a split in batches: from one uint8 tensor on the device (`TensorLoader`, with
the augmentation applied to whole batches) where the dataset is held in memory, else image by image
through a DataLoader.

A dataset is one entry of `DATASETS`, a `DatasetSpec`: how to open a split, its size and
normalization, its augmentation (`ShiftFlip` or `ResizedCropFlip`), and `tensors`, how its splits
are held in memory (None: read image by image). A dataset with ground-truth boxes and masks has a
`ground_truth(index)` method, which `ground_truth` finds under the Subset and Relabeled wrappers.

Fashion-MNIST (the default) and MNIST are found offline where possible (utils/idx_files.py), the
cluttered Fashion-MNIST is made from Fashion-MNIST (datasets/cluttered.py), and image files are decoded by
utils/images.py.
"""

import copy
import dataclasses
import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import Dataset, DistributedSampler, Subset
from torchvision import transforms as T

from datasets import wsolevaluation
from datasets.augment import ResizedCropFlip, ShiftFlip, SquashCropFlip
from datasets.cluttered import CLUTTER_DEFAULTS, ClutteredFashionMNIST
from utils.cli import DatasetError, UserError
from utils.idx_files import open_mnist_like
from utils.images import read_image, read_user_image
from utils.loaders import TensorLoader, UserErrorLoader

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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
    """How to open one dataset: open(root, train, transform, download) -> torchvision dataset (or any
    Dataset yielding (transform(PIL image), label), with `classes`). Splits held in memory give
    tensors(split) -> (images uint8 (N, C, H, W), labels int64 (N,)), as stored (before any
    transform); others are read image by image and list their labels as `targets` (as ImageFolder
    does). A dataset with boxes and masks implements ground_truth(index) (see ground_truth)."""

    open: Callable[[Path, bool, Callable, bool], Dataset]
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: ShiftFlip | ResizedCropFlip | SquashCropFlip  # train-time augmentation
    expected: str  # where the files go under the data folder, and how to get them
    options: dict = dataclasses.field(default_factory=dict)  # extra settings of open() and their defaults
    generated: bool = False  # made at the asked image size (no resizing); open() gets it as `size`
    min_image_size: int = 1  # the smallest image size it can be made or resized to
    fixed_size: bool = True  # all its images are image_size x image_size (False: any size, resized as loaded)
    scored_size: int = 0  # its ground truth is given at this side only (wsolevaluation's 224), so images are read at it
    progressive_start: float = 1.0  # train.py's default --progressive_start for it (1: no progressive resizing)
    class_ordered: bool = False  # its splits list the images class by class (an ImageFolder): see LoadedDataset.pick
    tensors: Callable[[Dataset], tuple[torch.Tensor, torch.Tensor]] | None = None  # a split as stored in memory
    # its own validation split: open_validation(root, transform, download, **options), read as the test split is
    open_validation: Callable[..., Dataset] | None = None
    squash: bool = False  # evaluation resizes to size x size ignoring the aspect ratio (wsolevaluation), no center crop
    check_splits: Callable[[dict], None] | None = None  # checks the opened splits together (e.g. no image in two)


def open_cifar(dataset_class):
    def open_split(root: Path, train: bool, transform, download: bool) -> Dataset:
        return dataset_class(root, train=train, transform=transform, download=download)

    return open_split


def open_svhn(root: Path, train: bool, transform, download: bool) -> Dataset:
    dataset = torchvision.datasets.SVHN(root / "svhn", split="train" if train else "test", transform=transform,
                                        download=download)
    dataset.classes = [str(digit) for digit in range(10)]
    return dataset


def open_stl10(root: Path, train: bool, transform, download: bool) -> Dataset:
    return torchvision.datasets.STL10(root, split="train" if train else "test", transform=transform, download=download)


def open_folder(root: Path, train: bool, transform, download: bool) -> Dataset:
    """An ImageFolder tree: root/train/<class>/<image> and root/test/<class>/<image>."""
    split_dir = root / ("train" if train else "test")
    if not split_dir.is_dir():
        raise DatasetError(
            f"image folder {split_dir} not found; "
            f"the folder dataset needs {root}/train/<class>/ and {root}/test/<class>/"
        )
    try:
        dataset = VisibleImageFolder(split_dir, transform=transform, loader=read_image,
                                     is_valid_file=lambda path: visible_image(path, split_dir))
    except FileNotFoundError as error:
        raise DatasetError(f"image folder {split_dir} holds no images in class subfolders ({error})") from None
    if len(dataset.classes) < 2:
        raise DatasetError(f"image folder {split_dir} holds {len(dataset.classes)} class folder "
                           f"({', '.join(dataset.classes)}), and a classifier needs at least 2: put each class's "
                           f"images in a folder of its own under {split_dir}")
    return dataset


class VisibleImageFolder(torchvision.datasets.ImageFolder):
    """ImageFolder over what a file manager shows: class folders whose names start with "." (such as
    .ipynb_checkpoints) are no classes."""

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir()
                         and not entry.name.startswith("."))
        if not classes:
            raise FileNotFoundError(f"no class folder in {directory}")
        return classes, {name: label for label, name in enumerate(classes)}


def visible_image(path: str, root: Path) -> bool:
    """Whether path is an image file a file manager shows: an image extension, and no hidden file
    or folder (a name starting with ".", such as macOS's ._photo.jpg) on its way from root."""
    relative = Path(path).relative_to(root)
    return (torchvision.datasets.folder.has_file_allowed_extension(path, torchvision.datasets.folder.IMG_EXTENSIONS)
            and not any(part.startswith(".") for part in relative.parts))


def mnist_tensors(dataset: torchvision.datasets.MNIST) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST and Fashion-MNIST hold (N, H, W) and (N,) tensors."""
    return dataset.data[:, None], dataset.targets


def cifar_tensors(dataset: torchvision.datasets.CIFAR10) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 and CIFAR-100 hold (N, H, W, C) arrays and a list of labels."""
    return torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(dataset.targets)


def array_tensors(dataset: torchvision.datasets.SVHN | torchvision.datasets.STL10) -> tuple[torch.Tensor, torch.Tensor]:
    """SVHN and STL-10 hold (N, C, H, W) arrays and an array of labels."""
    return torch.from_numpy(dataset.data), torch.from_numpy(dataset.labels).long()


DATASETS = {
    "fashion-mnist": DatasetSpec(
        open=open_mnist_like(torchvision.datasets.FashionMNIST, "fashion-mnist"), tensors=mnist_tensors, channels=1,
        image_size=28,
        mean=(0.2860,), std=(0.3530,), augment=ShiftFlip(1 / 14, flip=True), progressive_start=0.7,
        expected="FashionMNIST/raw/ (the four .gz files); offline, `apt-get install dataset-fashion-mnist` "
        "puts them in /usr/share/datasets/fashion-mnist/, where they are found too",
    ),
    "fashion-mnist-cluttered": DatasetSpec(
        open=ClutteredFashionMNIST, tensors=ClutteredFashionMNIST.tensors, channels=1, image_size=64,
        mean=(0.1069,), std=(0.2587,), augment=ShiftFlip(0, flip=True),
        expected="FashionMNIST/raw/ or fashion-mnist/ (the four Fashion-MNIST .gz files, from which it is made); "
        "offline, `apt-get install dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist/",
        options=CLUTTER_DEFAULTS, generated=True, min_image_size=28,
    ),
    "mnist": DatasetSpec(
        open=open_mnist_like(torchvision.datasets.MNIST, "mnist"), tensors=mnist_tensors, channels=1, image_size=28,
        mean=(0.1307,), std=(0.3081,), augment=ShiftFlip(1 / 14, flip=False),
        expected="MNIST/raw/ (train-images-idx3-ubyte.gz and the three other original files)",
    ),
    "cifar10": DatasetSpec(
        open=open_cifar(torchvision.datasets.CIFAR10), tensors=cifar_tensors, channels=3, image_size=32,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), augment=ShiftFlip(1 / 8, flip=True),
        expected="cifar-10-batches-py/ (extract cifar-10-python.tar.gz there)",
    ),
    "cifar100": DatasetSpec(
        open=open_cifar(torchvision.datasets.CIFAR100), tensors=cifar_tensors, channels=3, image_size=32,
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), augment=ShiftFlip(1 / 8, flip=True),
        expected="cifar-100-python/ (extract cifar-100-python.tar.gz there)",
    ),
    "svhn": DatasetSpec(
        open=open_svhn, tensors=array_tensors, channels=3, image_size=32,
        mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970), augment=ShiftFlip(1 / 8, flip=False),
        expected="svhn/train_32x32.mat and svhn/test_32x32.mat",
    ),
    "stl10": DatasetSpec(
        open=open_stl10, tensors=array_tensors, channels=3, image_size=96,
        mean=(0.4467, 0.4398, 0.4066), std=(0.2603, 0.2566, 0.2713), augment=ShiftFlip(1 / 8, flip=True),
        expected="stl10_binary/ (extract stl10_binary.tar.gz there)",
    ),
    "folder": DatasetSpec(
        open=open_folder, channels=3, image_size=128, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        augment=ResizedCropFlip(), fixed_size=False, class_ordered=True,
        expected="train/<class>/<image> and test/<class>/<image> (your own images; pass the folder as --data_dir)",
    ),
    **{
        name: DatasetSpec(
            open=wsolevaluation.open_split(name), open_validation=wsolevaluation.open_validation(name),
            check_splits=wsolevaluation.check_splits, channels=3, image_size=224, mean=IMAGENET_MEAN,
            std=IMAGENET_STD, augment=SquashCropFlip(), fixed_size=False, squash=True,
            scored_size=wsolevaluation.SCORED_SIZE, options={"metadata_dir": ""}, expected=expected,
        )
        for name, expected in {
            "cub": "CUB/<class>/<image>.jpg (CUB-200-2011's images/ and CUBV2's, wsolevaluation's "
            "dataset/prepare_cub.sh; about 1.2 GB of disk) and wsolevaluation's metadata/CUB/ as "
            "--metadata_dir (default <data_dir>/metadata/CUB); memory: the metadata only",
            "ilsvrc": "ILSVRC/train/<wnid>/, ILSVRC/val2/<class>/ (ImageNetV2) and ILSVRC/val/ "
            "(wsolevaluation's dataset/prepare_imagenet.sh; about 140 GB of disk for train, 6.4 GB for val, "
            "1.2 GB for ImageNetV2) and wsolevaluation's metadata/ILSVRC/ as --metadata_dir (default "
            "<data_dir>/metadata/ILSVRC); memory: the metadata only (about 0.1 GB for 1.28 M training ids)",
            "openimages": "OpenImages/{train,val,test}/<class>/<id>.jpg with the masks beside them "
            "(wsolevaluation's dataset/prepare_openimages.sh: 37,319 images and their PNG masks, a few GB) "
            "and wsolevaluation's metadata/OpenImages/ as --metadata_dir (default <data_dir>/metadata/OpenImages); "
            "memory: the metadata only",
        }.items()
    },
}


def check_metadata_dir(name: str) -> None:
    """UserError when --metadata_dir is given for a dataset without wsolevaluation's metadata."""
    if "metadata_dir" not in DATASETS[name].options:
        raise UserError(f"--metadata_dir is the metadata folder of cub, ilsvrc and openimages, not of {name}: "
                        "drop it, or pass --dataset=cub|ilsvrc|openimages")


def trained_with_flips(name: str) -> bool:
    """Whether train.py mirrors dataset `name`'s training images (so that a mirror image is one the
    model knows: test-time flips apply)."""
    return DATASETS[name].augment.flip


class Relabeled(Dataset):
    """dataset with its labels replaced by labels (N,), int64."""

    def __init__(self, dataset: Dataset, labels: torch.Tensor):
        self.dataset, self.labels = dataset, labels

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index][0], int(self.labels[index])


def unwrap(dataset: Dataset) -> tuple[Dataset, torch.Tensor | None, torch.Tensor | None]:
    """(the dataset under a split's Subset and Relabeled wrappers, the indices int64 in it of the
    split's images (None: all, in order), the split's labels int64 where a Relabeled replaced them
    (None: the dataset's own))."""
    index = labels = None
    while isinstance(dataset, (Subset, Relabeled)):
        if isinstance(dataset, Relabeled):
            if labels is None:
                labels = dataset.labels if index is None else dataset.labels[index]
        else:
            inner = torch.as_tensor(list(dataset.indices), dtype=torch.long)
            index = inner if index is None else inner[index]
        dataset = dataset.dataset
    return dataset, index, labels


def ground_truth(dataset: Dataset, start: int, stop: int):
    """The datasets.ground_truth.GroundTruth (boxes int64 (N, M, 4), masks, ignore, inclusive) of images
    start..stop-1 of a split, passed through as the dataset under its Subset and Relabeled wrappers
    gives it (its ground_truth(indices) method, e.g. ClutteredFashionMNIST's), None for a dataset
    without one."""
    positions = np.arange(start, min(stop, len(dataset)))
    dataset, index, _ = unwrap(dataset)
    if not hasattr(dataset, "ground_truth"):
        return None
    return dataset.ground_truth(positions if index is None else index.numpy()[positions])


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


@dataclass
class LoadedDataset:
    """The two splits of a dataset, what a model needs to know of it, and how to feed it in batches."""

    train: Dataset
    test: Dataset
    info: DatasetInfo
    augment: ShiftFlip | ResizedCropFlip
    in_memory: bool  # both splits are tensors at the model's input size, fed by TensorLoader
    class_ordered: bool = False  # its splits list the images class by class (DatasetSpec.class_ordered)
    tensors: Callable[[Dataset], tuple[torch.Tensor, torch.Tensor]] | None = None  # DatasetSpec.tensors
    validation: Dataset | None = None  # training images held out by hold_out(), read as the test split is
    _on_device: dict = dataclasses.field(default_factory=dict, repr=False)

    def pick(self, dataset: Dataset, stored: torch.Tensor, seed: int) -> torch.Tensor:
        """Indices, sorted, of len(stored) images of a split, for hold_out and loader's limit: `stored`
        where the split's stored order is already random (the torchvision datasets: the published
        recipes' splits depend on it), or a stratified pick fixed by seed where it lists its images
        class by class (see stratified_pick)."""
        return stratified_pick(self.split_labels(dataset), len(stored), seed) if self.class_ordered else stored

    def split_tensors(self, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        """(images uint8 (N, C, H, W), labels int64 (N,)) of a split held in memory, or of a Subset or
        Relabeled of one, as stored (before any transform): read with DatasetSpec.tensors."""
        if self.tensors is None:
            raise TypeError(f"{self.info.name} is not held in memory; feed it with a DataLoader")
        dataset, index, labels = unwrap(dataset)
        images, own = self.tensors(dataset)
        if index is not None:
            images, own = images[index], own[index]
        return images, own if labels is None else labels

    def split_labels(self, dataset: Dataset) -> torch.Tensor:
        """The labels int64 (N,) of a split, or of a Subset or Relabeled of one, read without decoding
        its images: from DatasetSpec.tensors, or the `targets` of a dataset read image by image."""
        dataset, index, labels = unwrap(dataset)
        if labels is not None:
            return labels
        own = self.tensors(dataset)[1] if self.tensors else torch.as_tensor(dataset.targets, dtype=torch.long)
        return own if index is None else own[index]

    def hold_out(self, count: int, seed: int = 0) -> "LoadedDataset":
        """A copy whose "validation" split is `count` training images, unaugmented (read as the test
        split is), and whose train split is the others, both in their stored order: for choosing
        hyperparameters without looking at the test split. The held-out images are the last `count`
        ones, or on a class-ordered dataset a stratified pick fixed by seed (see pick). DatasetError
        if count does not fit."""
        total = len(self.train)
        if not 0 < count < total:
            raise DatasetError(f"--validation={count} must be between 1 and {total - 1}: the training set has {total} "
                               "images")
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
        labels = self.split_labels(self.train)
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
                images, labels = self.split_tensors(dataset)
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


def load_dataset(
    name: str, root: str | Path = "data", download: bool = True, image_size: int = 0, options: dict | None = None,
    read_as: DatasetInfo | None = None,
) -> LoadedDataset:
    """Train and test sets of a dataset by name; image_size 0 keeps the dataset's own size (a
    generated dataset is made at image_size). options override the dataset's own settings
    (DatasetSpec.options, e.g. {"clutter": 4}); unknown ones are an error. read_as: another
    dataset's description (a checkpoint's), whose channels and normalization the images are read
    with (evaluate_cam.py --dataset: the cluttered set exported by export_wsol.py, read through cub);
    the ground truth is then scored at the images' side.

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
    channels, mean, std = (spec.channels, spec.mean, spec.std) if read_as is None else (
        read_as.channels, read_as.mean, read_as.std)
    convert = [T.Grayscale(channels)] if channels != spec.channels else []  # exact for gray images stored as RGB
    normalize = [T.ToTensor(), T.Normalize(mean, std)]
    transforms = {
        "train": T.Compose(convert + ([T.Resize(size)] if resize and not spec.augment.resizes else [])
                           + spec.augment.transforms(size) + normalize),
        "test": T.Compose(convert + ([] if not resize else [T.Resize((size, size))] if spec.squash
                                     else [T.Resize(size), T.CenterCrop(size)]) + normalize),
    }
    extra = {"size": size, **settings} if spec.generated else settings
    if spec.scored_size and read_as is not None:
        extra = {**extra, "scored_size": size}
    splits = {}
    openers = {split: functools.partial(spec.open, root, split == "train", transform)
               for split, transform in transforms.items()}
    if spec.open_validation is not None:  # its own validation split, read as the test split is
        openers["validation"] = functools.partial(spec.open_validation, root, transforms["test"])
    for split, open_split in openers.items():
        try:
            splits[split] = open_split(download, **extra)
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001 -- missing, damaged or undownloadable files raise many types
            raise DatasetError(
                f"dataset {name!r} not found in {root}/, or damaged, and {failure(error, download)} "
                f"({' '.join(str(error).split())[:200] or type(error).__name__}); "
                f"put the files in {root}/{spec.expected}"
            ) from None
    if spec.check_splits is not None:
        spec.check_splits(splits)
    classes = tuple(splits["train"].classes)
    if tuple(splits["test"].classes) != classes:
        raise DatasetError(f"{root}/train and {root}/test must hold the same class folders")
    info = DatasetInfo(name, classes, channels, size, mean, std, settings)
    return LoadedDataset(splits["train"], splits["test"], info, spec.augment,
                         in_memory=spec.tensors is not None and not resize and read_as is None,
                         class_ordered=spec.class_ordered,
                         tensors=spec.tensors, validation=splits.get("validation"))


def failure(error: Exception, download: bool) -> str:
    """What went wrong in opening a dataset, for the message: a download that failed (torchvision
    raises an OSError, URLError included, or says so) or a file that could not be read."""
    if not download:
        return "download is off (--download=false)"
    if isinstance(error, OSError) or "download" in str(error).lower():
        return "could not be downloaded"
    return "could not be read"


def load_image(path: str | Path, info: DatasetInfo) -> tuple[torch.Tensor, Image.Image]:
    """A user's image file as the model expects it: (normalized tensor (C, S, S), the PIL image
    converted to the dataset's channels, resized and center-cropped to S = info.image_size)."""
    image = read_user_image(path, "L" if info.channels == 1 else "RGB")
    image = T.CenterCrop(info.image_size)(T.Resize(info.image_size)(image))
    return T.Compose([T.ToTensor(), T.Normalize(info.mean, info.std)])(image), image
