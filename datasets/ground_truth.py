"""Where the objects are: the GroundTruth of a batch of images (boxes, masks, ignore regions) and its box
conventions.

A box is (x0, y0, x1, y1) in pixels. This repo's datasets give exclusive ends (width = x1 - x0);
wsolevaluation's metadata gives inclusive ones (width = x1 - x0 + 1): `to_inclusive` and
`exclusive_boxes` convert, rows of -1 pad images with fewer boxes.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class GroundTruth:
    """The ground truth of N images, at the resolution their maps are scored at (H, W):

    boxes: int64 (N, M, 4), up to M boxes (x0, y0, x1, y1) per image; rows of -1 are padding (an
        image with fewer boxes: such a row overlaps no box). inclusive False: x1, y1 are the last pixel + 1 (this repo's
        cluttered set); True: x1, y1 are the last pixel itself and widths are x1 - x0 + 1, as
        wsolevaluation's metadata and IoU count them (CUB, ILSVRC).
    masks: bool (N, H, W) or None (no masks: no PxAP); ignore: bool (N, H, W) or None, pixels that
        PxAP leaves out (OpenImages' ignore regions).
    """

    boxes: np.ndarray
    masks: np.ndarray | None = None
    ignore: np.ndarray | None = None
    inclusive: bool = False


def has_boxes(truth: GroundTruth) -> bool:
    """Whether any image of truth has a true box (OpenImages' ground truth is masks only)."""
    boxes = as_boxes(truth.boxes)
    return bool((boxes[..., 2] >= boxes[..., 0]).any()) if boxes.size else False


def as_boxes(boxes: np.ndarray) -> np.ndarray:
    """True boxes as int64 (N, M, 4): one box per image (N, 4) becomes (N, 1, 4)."""
    boxes = np.asarray(boxes, dtype=np.int64)
    return boxes[:, None] if boxes.ndim == 2 else boxes


def to_inclusive(truth: GroundTruth) -> GroundTruth:
    """The same ground truth with inclusive box ends (x1 - 1, y1 - 1; padding stays padding)."""
    if truth.inclusive:
        return truth
    boxes = as_boxes(truth.boxes).copy()
    valid = boxes[..., 2] >= boxes[..., 0]
    boxes[..., 2:] -= valid[..., None]
    return GroundTruth(boxes, truth.masks, truth.ignore, inclusive=True)


def exclusive_boxes(truth: GroundTruth) -> np.ndarray:
    """truth's boxes as int64 (N, M, 4) with exclusive ends (x1 + 1, y1 + 1 when inclusive), padding kept."""
    boxes = as_boxes(truth.boxes).copy()
    if truth.inclusive:
        boxes[..., 2:] += (boxes[..., 2] >= boxes[..., 0])[..., None]
    return boxes
