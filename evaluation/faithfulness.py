"""Does the map explain the model? Faithfulness metrics of saliency maps, batched.

Conventions: images are normalized float (N, C, H, W) as the model takes them; a map is float
(N, H, W) at the image's resolution; `classes` are int64 (N,), the class each map explains. Every
function is deterministic (random draws come from an explicit seed or generator).

- Deletion and insertion (Petsiuk et al., "RISE", BMVC 2018): `removal_curves`, `trapezoid_auc`.
- ROAD, removal with noisy linear imputation (Rong et al., ICML 2022): `road_scores`.
- Average drop and increase in confidence (Chattopadhay et al., "Grad-CAM++", WACV 2018): `confidence_change`.
- Pointing game (Zhang et al., ECCV 2016) and its energy-based form (Wang et al., "Score-CAM",
  CVPR-W 2020): `pointing_hits`, `box_energy`.
The sanity checks are evaluation/sanity.py's. `FaithfulnessEvaluator` accumulates the per-image
scores over batches, wsolevaluation style.
"""

import math
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.linalg
import threadpoolctl
import torch
import torch.nn.functional as F
from torch import nn

from datasets.ground_truth import as_boxes, exclusive_boxes, has_boxes
from utils import seeds

BASELINES = ("blur", "black", "mean")  # what deleted pixels become, and what insertion starts from
STEPS = 16  # deletion and insertion: steps from 0% to 100% of the pixels (the scripts' --steps equals it)
ROAD_PERCENTAGES = (10, 30, 50, 70, 90)  # % of the pixels ROAD removes
ROAD_NOISE = 0.01  # ROAD's imputation noise: its standard deviation, in units of the normalized image
SCORES = ("deletion_auc", "insertion_auc", "average_drop", "increase", "pointing_game", "energy_pointing_game")
ROAD_SCORES = ("road_morf", "road_lerf")  # FaithfulnessEvaluator's per-image scores: these on ROAD's images alone
BLUR_SIGMA, BLUR_SIDE = 5, 224  # the blur baseline: RISE's Gaussian, sigma 5 px on 224 px images, scaled to the side


def trapezoid_auc(curves: torch.Tensor) -> torch.Tensor:
    """Area under curves (N, K + 1) sampled at K + 1 equally spaced points of [0, 1], by the
    trapezoid rule: (N,)."""
    steps = curves.shape[1] - 1
    return (curves[:, :-1] + curves[:, 1:]).sum(dim=1) / (2 * steps)


def pixel_ranks(maps: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The rank of each pixel of maps (N, H, W) by decreasing value (0: the highest): int64 (N, H * W).
    Equal values are ranked in a uniformly random order, a permutation per map drawn from seed, never
    by their position: a map says nothing about the order of pixels it scores alike, so every order it
    allows is equally likely, and the ordered metrics are their expectation (a constant map then
    scores as the random map does). In raster order, the top rows of a plateau went first, and which
    side of a plateau a nearly equal value fell on turned on float rounding."""
    flat = maps.flatten(1)
    generator = torch.Generator().manual_seed(seeds.mix(seed))
    shuffled = torch.rand(flat.shape, generator=generator).argsort(dim=1).to(maps.device)  # (N, P) permutations
    order = shuffled.gather(1, flat.gather(1, shuffled).argsort(dim=1, descending=True, stable=True))
    return torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=maps.device).expand_as(order))


def blurred(images: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur of images (N, C, H, W), RISE's insertion start: their kernel (sigma 5 px on
    224 px images) scaled to the image side."""
    sigma = BLUR_SIGMA * images.shape[-1] / BLUR_SIDE
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def baseline_images(images: torch.Tensor, baseline: str, mean: list[float], std: list[float]) -> torch.Tensor:
    """What removed pixels become, normalized as images (N, C, H, W) are: "blur" a blurred copy,
    "black" zeros in pixel space, "mean" the dataset mean (zeros once normalized)."""
    if baseline == "blur":
        return blurred(images)
    if baseline == "black":
        shift = -torch.tensor(mean, device=images.device) / torch.tensor(std, device=images.device)
        return shift.view(1, -1, 1, 1).expand_as(images).to(images.dtype)
    if baseline == "mean":
        return torch.zeros_like(images)
    raise ValueError(f"unknown baseline {baseline!r}; choose one of {BASELINES}")


@dataclass(frozen=True)
class Unmasked:
    """What every method's faithfulness scores of a batch share, whatever its maps: the baseline
    images (N, C, H, W) (baseline_images), and the class probability (N,) of the images and of the
    baseline: the ends of every deletion and insertion curve."""

    baseline: torch.Tensor
    probability: torch.Tensor
    baseline_probability: torch.Tensor


def unmasked(net: nn.Module, images: torch.Tensor, classes: torch.Tensor, baseline: torch.Tensor,
             probability: torch.Tensor | None = None) -> Unmasked:
    """The Unmasked of a batch: images (N, C, H, W), the classes (N,) explained, the baseline
    images; probability: the images' class probabilities (N,), when they are at hand."""
    if probability is None:
        probability = class_probabilities(net, images, classes)
    return Unmasked(baseline, probability, class_probabilities(net, baseline, classes))


def probabilities_of(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The softmax probability of each image's class from its logits (N, num_classes): (N,) in [0, 1]."""
    return logits.float().softmax(dim=1).gather(1, classes[:, None])[:, 0]


@torch.no_grad()
def class_probabilities(net: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The softmax probability of each image's class: (N,) in [0, 1]."""
    return probabilities_of(net(images), classes)


@torch.no_grad()
def removal_curves(net: nn.Module, images: torch.Tensor, classes: torch.Tensor, maps: torch.Tensor, steps: int,
                   baseline: torch.Tensor, insertion: bool = False, ends: Unmasked | None = None,
                   order_seed: int = 0) -> torch.Tensor:
    """RISE's deletion (or insertion) curve of each image: the pixels ordered by decreasing map
    value are replaced by the baseline's (or, for insertion, revealed over it) in `steps` equal
    steps, and the class probability is read after each. baseline: images (N, C, H, W) from
    baseline_images. ends: the class probabilities of the images and of the baseline (unmasked),
    which are the curve's two ends whatever the map, when they are at hand. order_seed: the random
    order of equal map values (pixel_ranks). Returns (N, steps + 1) in [0, 1], from 0% to 100% of
    the pixels."""
    ends = ends or unmasked(net, images, classes, baseline)
    ranks = pixel_ranks(maps, order_seed).view(len(maps), 1, *maps.shape[1:])
    pixels = ranks[0].numel()
    curve = [ends.baseline_probability if insertion else ends.probability]
    for step in range(1, steps):
        changed = ranks < round(step * pixels / steps)
        shown = torch.where(changed, images, baseline) if insertion else torch.where(changed, baseline, images)
        curve.append(class_probabilities(net, shown, classes))
    curve.append(ends.probability if insertion else ends.baseline_probability)
    return torch.stack(curve, dim=1)


def imputation_system(removed: np.ndarray, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROAD's noisy linear imputation as a linear system, for one bool mask (H, W) of removed pixels
    of an image flat (C, H * W): each removed pixel is the weighted mean of its 8 neighbours
    (weight 1/6 for the 4 direct ones and 1/12 for the diagonals, renormalized at the border),
    where neighbours that are removed are unknowns too. A is symmetric positive definite and, with
    the unknowns in raster order, banded (no two neighbours are more than W + 1 unknowns apart).
    Returns (A's lower band (D + 1, M) as scipy.linalg.solveh_banded takes it, the right-hand
    sides (M, C), the index of each removed pixel (M,)), so that the imputed values v (M, C)
    solve A v = rhs."""
    height, width = removed.shape
    unknown = np.flatnonzero(removed)
    position = -np.ones(height * width, dtype=np.int64)
    position[unknown] = np.arange(len(unknown))
    rows, cols = np.divmod(unknown, width)
    total, rhs, below = np.zeros(len(unknown)), np.zeros((len(unknown), flat.shape[0])), []
    for dy, dx in ((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)):
        weight = 1 / 6 if dy == 0 or dx == 0 else 1 / 12
        y, x = rows + dy, cols + dx
        index = np.flatnonzero((y >= 0) & (y < height) & (x >= 0) & (x < width))
        other = y[index] * width + x[index]
        total[index] += weight
        neighbour = position[other]
        known = neighbour < 0
        rhs[index[known]] += weight * flat[:, other[known]].T
        lower = ~known & (neighbour < index)  # the matrix is symmetric: its entries below the diagonal only
        below.append((index[lower], neighbour[lower], weight))
    band = np.zeros((1 + max((int((i - j).max()) for i, j, _ in below if len(i)), default=0), len(unknown)))
    band[0] = total
    for i, j, weight in below:
        band[i - j, j] -= weight
    return band, rhs, unknown


def road_impute(images: torch.Tensor, removed: torch.Tensor, generator: torch.Generator,
                noise: float = ROAD_NOISE) -> torch.Tensor:
    """images (N, C, H, W) with the pixels of removed (N, H, W) (bool) replaced by ROAD's noisy
    linear imputation (see imputation_system) plus Gaussian noise of std `noise`. The solves run
    with one BLAS thread: more made these small banded solves slower, and the torch work between
    them too (docs/performance.md)."""
    out = images.detach().cpu().to(torch.float64, memory_format=torch.contiguous_format, copy=True)
    draws = torch.randn(out.shape, generator=generator, dtype=torch.float64) * noise
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        for n, mask in enumerate(removed.cpu().numpy()):
            if not mask.any():
                continue
            flat = out[n].flatten(1).numpy()  # (C, H * W)
            band, rhs, unknown = imputation_system(mask, flat)
            # (M, C): a banded Cholesky solve, cheaper than a sparse LU
            values = scipy.linalg.solveh_banded(band, rhs, lower=True)
            flat[:, unknown] = values.T + draws[n].flatten(1)[:, unknown].numpy()
    return out.to(images.dtype).to(images.device)


def road_scores(net: nn.Module, images: torch.Tensor, classes: torch.Tensor, maps: torch.Tensor,
                percentages=ROAD_PERCENTAGES, seed: int = 0, order_seed: int = 0) -> dict[str, torch.Tensor]:
    """ROAD (Rong et al., ICML 2022): the class probability after the p% most relevant pixels
    (MoRF: lower is more faithful) or least relevant pixels (LeRF: higher is more faithful) are
    removed by noisy linear imputation, for each p of percentages: {"morf", "lerf"} -> (N, P).
    seed: the imputation noise's, any int; order_seed: the random order of equal map values."""
    ranks = pixel_ranks(maps, order_seed)
    pixels = ranks.shape[1]
    scores = {"morf": [], "lerf": []}
    for p in percentages:
        count = round(p * pixels / 100)
        for order, removed in (("morf", ranks < count), ("lerf", ranks >= pixels - count)):
            generator = torch.Generator().manual_seed(seeds.mix(seed, p))
            imputed = road_impute(images, removed.view(len(maps), *maps.shape[1:]), generator)
            scores[order].append(class_probabilities(net, imputed, classes))
    return {order: torch.stack(values, dim=1) for order, values in scores.items()}


@torch.no_grad()
def confidence_change(net: nn.Module, images: torch.Tensor, classes: torch.Tensor, maps: torch.Tensor,
                      mean: list[float], std: list[float], original: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM++'s test: the image times its map (in pixel space; maps in [0, 1]) is fed to the
    model. Returns (drop (N,) = max(0, y - o) / y in [0, 1], increase bool (N,) = o > y), y the class
    probability on the image (original, when it is at hand) and o on the masked one. Average drop
    and increase are their means."""
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    masked = ((images * std_t + mean_t) * maps[:, None] - mean_t) / std_t
    original = class_probabilities(net, images, classes) if original is None else original
    explained = class_probabilities(net, masked, classes)
    return (original - explained).clamp_min(0) / original.clamp_min(1e-12), explained > original


def pointing_hits(maps: np.ndarray, masks: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
    """Pointing game (Zhang et al., ECCV 2016): bool (N,), whether each map's maximum (the first in
    raster order) lies within `tolerance` pixels (Euclidean) of its object mask (N, H, W)."""
    count, _, width = maps.shape
    peaks = maps.reshape(count, -1).argmax(axis=1)
    rows, cols = np.divmod(peaks, width)
    hits = np.zeros(count, dtype=bool)
    for n, mask in enumerate(np.asarray(masks, dtype=bool)):
        if tolerance <= 0:
            hits[n] = mask[rows[n], cols[n]]
        elif mask.any():
            distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            hits[n] = distance[rows[n], cols[n]] <= tolerance
    return hits


def box_masks(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """bool (N, H, W): the union of each image's boxes (N, M, 4), exclusive ends, padding rows skipped."""
    masks = np.zeros((len(boxes), *shape), dtype=bool)
    for n, image_boxes in enumerate(as_boxes(boxes)):
        for x0, y0, x1, y1 in image_boxes:
            if x1 > x0:  # not a padding row
                masks[n, y0:y1, x0:x1] = True
    return masks


def box_energy(maps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Energy-based pointing game (Wang et al., Score-CAM, CVPR-W 2020): the share of each map's
    positive part that lies inside its box (x0, y0, x1, y1), exclusive ends, boxes (N, 4), or inside
    the union of its boxes, (N, M, 4) with padding rows x1 < x0: (N,) in [0, 1] (0 for a map with
    no positive value)."""
    return energy_inside(maps, box_masks(np.asarray(boxes), maps.shape[1:]))


def energy_inside(maps: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """The share of each map's positive part (maps float (N, H, W)) inside its region (bool (N, H, W)):
    (N,) in [0, 1], 0 for a map with no positive value."""
    positive = np.clip(maps, 0, None)
    inside = (positive * regions).reshape(len(maps), -1).sum(axis=1)
    total = positive.reshape(len(maps), -1).sum(axis=1)
    return np.divide(inside, total, out=np.zeros(len(maps)), where=total > 0)


class FaithfulnessEvaluator:
    """Faithfulness and pointing scores of one method's maps, accumulated over batches.

    accumulate(net, images, classes, maps, truth) for each batch, then compute() for the
    means: deletion and insertion AUC (in [0, 1]), ROAD MoRF / LeRF probabilities per percentage
    (on the first `road_images` images accumulated), average drop (in %) and increase (% of
    images), pointing game (% of hits) and energy pointing game (mean share, in %); and the per-image
    scores and mean curves behind them.
    maps: float (N, H, W) in [0, 1]; masks bool (N, H, W); boxes int (N, 4)."""

    def __init__(self, steps: int, baseline: str, mean: list[float], std: list[float], tolerance: float = 0.0,
                 road_images: int = 0, seed: int = 0):
        self.steps, self.baseline, self.mean, self.std = steps, baseline, mean, std
        self.tolerance, self.road_images, self.seed = tolerance, road_images, seed
        self.parts: dict[str, list] = {}
        self.seen = 0

    def add(self, name: str, values) -> None:
        values = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        self.parts.setdefault(name, []).append(values)

    def unmasked(self, net, images, classes, probability: torch.Tensor | None = None) -> Unmasked:
        """This evaluator's Unmasked of a batch (see unmasked): one for all the methods' evaluators
        of the same settings."""
        return unmasked(net, images, classes, baseline_images(images, self.baseline, self.mean, self.std), probability)

    def accumulate(self, net, images, classes, maps, truth, ends: Unmasked | None = None) -> None:
        """truth: the images' GroundTruth; the pointing game uses its masks (the union
        of its boxes when it has none), the energy game its boxes. ends: self.unmasked(net, images,
        classes), when the batch's is at hand (the same scores, two forward passes fewer)."""
        boxes = exclusive_boxes(truth)
        masks = truth.masks if truth.masks is not None else box_masks(boxes, maps.shape[1:])
        maps_t = torch.as_tensor(np.ascontiguousarray(maps), device=images.device, dtype=images.dtype)
        ends = ends or self.unmasked(net, images, classes)
        order_seed = seeds.mix(self.seed, self.seen)  # each batch's own orders of tied pixels, one per image
        for name in ("deletion", "insertion"):
            self.add(name, removal_curves(net, images, classes, maps_t, self.steps, ends.baseline,
                                          insertion=name == "insertion", ends=ends, order_seed=order_seed))
        drop, increase = confidence_change(net, images, classes, maps_t, self.mean, self.std, ends.probability)
        self.add("drop", drop)
        self.add("increase", increase)
        self.add("pointing", pointing_hits(np.asarray(maps), masks, self.tolerance))
        inside = box_masks(boxes, maps.shape[1:]) if has_boxes(truth) else masks  # OpenImages: masks
        self.add("energy", energy_inside(np.asarray(maps), inside))
        road = slice(0, max(0, min(len(images), self.road_images - self.seen)))  # ROAD's solves are costly
        if road.stop:
            for order, values in road_scores(net, images[road], classes[road], maps_t[road], seed=self.seed,
                                             order_seed=order_seed).items():
                self.add(f"road_{order}", values)
        self.seen += len(images)

    def compute(self) -> dict:
        """The means, the mean curves, and each image's scores ("per_image": deletion_auc,
        insertion_auc, average_drop, increase, pointing_game, energy_pointing_game, and road_morf,
        road_lerf for ROAD's images, each image's probability averaged over the percentages), of which
        every score is the mean."""
        parts = {name: np.concatenate(values) for name, values in self.parts.items()}
        if not parts:
            raise ValueError("no images accumulated")
        per_image = {
            "deletion_auc": trapezoid_auc(torch.from_numpy(parts["deletion"])).numpy(),
            "insertion_auc": trapezoid_auc(torch.from_numpy(parts["insertion"])).numpy(),
            "average_drop": 100 * parts["drop"], "increase": 100 * parts["increase"].astype(np.float64),
            "pointing_game": 100 * parts["pointing"].astype(np.float64), "energy_pointing_game": 100 * parts["energy"],
            **{name: parts[name].mean(1) for name in ROAD_SCORES if name in parts},
        }
        result = {
            "images": len(per_image["deletion_auc"]), **{name: float(per_image[name].mean()) for name in SCORES},
            "curves": {name: parts[name].mean(0).tolist() for name in ("deletion", "insertion")},
            "per_image": {name: values.tolist() for name, values in per_image.items()},
        }
        if "road_morf" in parts:
            result["road"] = {"percentages": list(ROAD_PERCENTAGES),
                              **{order: parts[f"road_{order}"].mean(0).tolist() for order in ("morf", "lerf")}}
        return result
