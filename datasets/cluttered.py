"""The cluttered Fashion-MNIST: items among clutter on a canvas, with exact boxes and masks.

`fashion-mnist-cluttered` (data.DATASETS) is made from the real Fashion-MNIST splits: each item on a
larger canvas at a random position among crops of other items (`make_cluttered`), with its
ground-truth box and mask, for measuring localization (`ClutteredFashionMNIST.ground_truth`).
"""

from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import Dataset

from datasets.ground_truth import GroundTruth
from utils.cli import DatasetError, UserError
from utils.files import atomic_output
from utils.idx_files import open_mnist_like
from utils.memory import check_memory

CLUTTER_DEFAULTS = {"clutter": 6, "clutter_size": 10, "clutter_seed": 0}  # the dataset's settings (DatasetSpec.options)
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
    items: np.ndarray, size: int = 64, clutter: int = CLUTTER_DEFAULTS["clutter"],
    clutter_size: int = CLUTTER_DEFAULTS["clutter_size"], seed: int = 0
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
        crops = items[other[:, None, None], crop_top[:, None, None] + offsets[:, None],
                      crop_left[:, None, None] + offsets]
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
                 clutter: int = CLUTTER_DEFAULTS["clutter"], clutter_size: int = CLUTTER_DEFAULTS["clutter_size"],
                 clutter_seed: int = CLUTTER_DEFAULTS["clutter_seed"]):
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
        self.classes = list(torchvision.datasets.FashionMNIST.classes)
        if arrays is None:  # made from the Fashion-MNIST items, read only on a cache miss
            open_items = open_mnist_like(torchvision.datasets.FashionMNIST, "fashion-mnist")
            source = open_items(Path(root), train, None, download)
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

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(images uint8 (N, 1, size, size), labels int64 (N,)): the split as stored (DatasetSpec.tensors)."""
        return self.images[:, None], self.targets

    def ground_truth(self, index) -> GroundTruth:
        """The canvases at index (a slice or N indices): boxes int64 (N, 1, 4) with exclusive ends,
        masks bool (N, size, size), nothing ignored."""
        side = self.images.shape[-1]
        masks = np.unpackbits(self.packed_masks[index].numpy(), axis=-1, count=side).astype(bool)
        return GroundTruth(self.boxes[index].numpy().astype(np.int64)[:, None], masks)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index].numpy(), mode="L")
        return (self.transform(image) if self.transform else image), int(self.targets[index])
