"""Feeding a split in batches: from one uint8 tensor on the device (`TensorLoader`), or through a
DataLoader whose UserErrors arrive as one line (`UserErrorLoader`).
"""

import math
from collections.abc import Iterator
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from utils.cli import UserError


class BatchAugment(Protocol):
    """An augmentation of whole uint8 batches (B, C, H, W) on their device (datasets.augment.ShiftFlip)."""

    def batch(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...


class TensorLoader:
    """Batches of a split held as one uint8 tensor, with no per-image Python work: each batch is
    gathered by index, augmented as a whole (augment.batch) and normalized on the images' device.

    images uint8 (N, C, H, W) and labels int64 (N,), on the device the batches should be on.
    Yields (float images (B, C, H, W), (pixel / 255 - mean) / std in memory_format, labels (B,)).
    With a generator the order is a random permutation and augment (if any) is applied; without,
    the images come in order. With world_size > 1, process `rank` takes every world_size-th image
    of that order; shuffled orders are first extended by their own start to a multiple of
    world_size, so that every process takes the same number of steps (as DistributedSampler does).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                 batch_size: int, augment: "BatchAugment | None" = None, generator: torch.Generator | None = None,
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
            images = images.float().div_(255).sub_(self.mean).div_(self.std)
            images = images.contiguous(memory_format=self.memory_format)
            yield images, self.labels[index]


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
