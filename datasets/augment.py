"""Training augmentations, each for whole uint8 batches on the device (`batch`) and as torchvision
transforms for datasets read image by image (`transforms`): shifts and flips, random resized crops.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision import transforms as T


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
        """Whether it shifts images (then test-time shifts apply; see training.metrics.evaluate)."""
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


@dataclass(frozen=True)
class ResizedCropFlip:
    """Train-time augmentation of photos: a random crop of 35-100% of the area, resized, and with
    flip a horizontal flip half of the time."""

    flip: bool = True
    resizes = True  # its random crop is resized to the image size: no resizing before it
    shifts = False  # no test-time shifts: its crops move and rescale the photo far more than a pixel

    def transforms(self, size: int) -> list:
        return [T.RandomResizedCrop(size, scale=(0.35, 1.0))] + ([T.RandomHorizontalFlip()] if self.flip else [])


@dataclass(frozen=True)
class SquashCropFlip:
    """Train-time augmentation of wsolevaluation's recipe (its data_loaders.py): the photo resized to
    a square of `resize` / 224 of the image size, ignoring its aspect ratio (256 for 224), a random
    crop of the image size, and a horizontal flip half of the time."""

    resize: int = 256
    crop: int = 224
    flip: bool = True
    resizes = True  # it resizes the photo itself: no resizing before it
    shifts = False

    def transforms(self, size: int) -> list:
        side = round(size * self.resize / self.crop)
        return [T.Resize((side, side)), T.RandomCrop(size)] + ([T.RandomHorizontalFlip()] if self.flip else [])
