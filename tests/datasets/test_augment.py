"""datasets/augment.py: shifts and flips of whole uint8 batches."""

import torch

from datasets import augment


def test_shift_flip_moves_each_image_within_its_padding_and_mirrors_half():
    images = torch.zeros(2000, 1, 28, 28, dtype=torch.uint8)
    images[:, 0, 10, 6] = 255  # one bright pixel at row 10, column 6
    shifted = augment.ShiftFlip(1 / 14, flip=False).batch(images, torch.Generator().manual_seed(0))
    rows, cols = torch.nonzero(shifted[:, 0], as_tuple=True)[1:]
    assert len(rows) == 2000  # the pixel stays in every image (a shift of at most 2 px)
    assert set(rows.tolist()) == set(range(8, 13)) and set(cols.tolist()) == set(range(4, 9))
    flipped = augment.ShiftFlip(0, flip=True).batch(images, torch.Generator().manual_seed(0))
    cols = torch.nonzero(flipped[:, 0], as_tuple=True)[2]
    assert set(cols.tolist()) == {6, 21} and 900 < (cols == 21).sum() < 1100  # 27 - 6 = 21: mirrored
    assert torch.equal(flipped, augment.ShiftFlip(0, flip=True).batch(images, torch.Generator().manual_seed(0)))
