"""Do the maps depend on the model? Adebayo et al.'s sanity checks ("Sanity Checks for Saliency Maps",
NeurIPS 2018), batched.

The cascading model-parameter randomization (`cascading_randomization`) re-initializes the model's
stages from the top; the maps after each stage are compared with the trained model's by Spearman rank
correlation (of the maps and of their absolute values) and SSIM (Wang et al., IEEE TIP 2004).
`SanityEvaluator` accumulates them over batches and random draws, and the maps of a model trained on
permuted labels (the data randomization test). A method that passes changes: similarities near 0
once the weights are random.
"""

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import torch
from torch import nn

from evaluation import map_reading
from utils import seeds

CASCADE_SHOWN = 4  # the sanity checks keep the maps of the first 4 images at each stage, for the cascade figure
RANDOM_LABELS = "random labels"  # the sanity checks' name for the model trained on permuted labels
SSIM_SIGMA = 1.5  # SSIM's Gaussian window (Wang et al. 2004), as the sanity checks compare maps
UNCORRELATED = 0.2  # a method passes the cascade when |Spearman| + 2 sd over its draws stays below this at the end


def spearman_correlation(maps: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Spearman rank correlation over the pixels of each pair of maps (N, H, W): (N,) in [-1, 1]
    (ties share their mean rank; NaN, undefined, where a map is constant, as scipy's spearmanr)."""
    return rank_correlation(centered_ranks(maps), centered_ranks(others))


def centered_ranks(maps: np.ndarray) -> np.ndarray:
    """The ranks of each map's pixels (N, H, W), ties sharing their mean rank (scipy's rankdata),
    less their mean: float64 (N, H * W); NaN throughout a map holding a NaN, as rankdata gives. One
    torch sort of the whole batch, not rankdata per map."""
    pixels = math.prod(maps.shape[1:])
    values, order = torch.from_numpy(np.ascontiguousarray(maps.reshape(len(maps), pixels))).sort(dim=1)
    position = torch.arange(pixels, dtype=torch.int32).expand_as(values)  # int32: half the memory traffic of int64
    changes = values[:, 1:] != values[:, :-1]  # a run of equal values ends between these positions
    edge = torch.ones(len(values), 1, dtype=torch.bool)
    first = torch.where(torch.cat([edge, changes], 1), position, 0).cummax(1).values  # where each one's run starts
    last = torch.where(torch.cat([changes, edge], 1), position, pixels).flip(1).cummin(1).values.flip(1)
    centered = (first + last - (pixels - 1)).double() / 2  # the run's mean rank (from 1) less (pixels + 1) / 2
    centered[values.isnan().any(1)] = math.nan
    return torch.empty_like(centered).scatter_(1, order, centered).numpy()


def rank_correlation(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of centered_ranks (N, P): (N,), NaN (undefined) where a
    row is constant."""
    norms = np.sqrt((first**2).sum(1) * (second**2).sum(1))
    return np.divide((first * second).sum(1), norms, out=np.full(len(first), np.nan), where=norms > 0)


def ssim(maps: np.ndarray, others: np.ndarray, sigma: float = SSIM_SIGMA, data_range: float = 1.0,
         moments: tuple[np.ndarray, np.ndarray] | None = None,
         other_moments: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Structural similarity (Wang et al., IEEE TIP 2004) of each pair of maps (N, H, W) in
    [0, data_range], with the paper's Gaussian window (sigma 1.5) and constants K1 = 0.01,
    K2 = 0.03: the mean SSIM over the pixels, (N,) in [-1, 1]. moments, other_moments:
    local_moments(maps, sigma) and local_moments(others, sigma) with the same sigma, when at hand."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, var_x = local_moments(maps, sigma) if moments is None else moments
    mu_y, var_y = local_moments(others, sigma) if other_moments is None else other_moments
    covariance = gaussian_smooth(maps * others, sigma) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + c1) * (2 * covariance + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return index.reshape(len(maps), -1).mean(axis=1)


def gaussian_smooth(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Each map (N, H, W) blurred by SSIM's Gaussian window (OpenCV's, mirrored border): float64 (N, H, W)."""
    return np.stack([cv2.GaussianBlur(one.astype(np.float64, copy=False), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
                     for one in maps])


def local_moments(maps: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """SSIM's local mean and variance of each map (N, H, W) under its Gaussian window: two float64 (N, H, W)."""
    mean = gaussian_smooth(maps, sigma)
    return mean, gaussian_smooth(maps * maps, sigma) - mean**2


def randomization_stages(net: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """The stages of Adebayo et al.'s cascade, from the top: ("fc", [fc]), then each conv of the
    features with the batch norms that follow it, from the last conv to the first."""
    stages, current = [], None
    for name, module in net.features.named_modules():
        if isinstance(module, nn.Conv2d):
            current = (f"features.{name}", [module])
            stages.append(current)
        elif isinstance(module, nn.BatchNorm2d) and current is not None:
            current[1].append(module)
    return [("fc", [net.fc]), *reversed(stages)]


def cascading_randomization(net: nn.Module, maps_of, seed: int = 0) -> list[tuple[str, object]]:
    """Adebayo et al.'s cascading model-parameter randomization: re-initialize the stages of
    randomization_stages(net) one after another, from the top, each with PyTorch's default
    initialization (batch norms reset to weight 1, bias 0 and running mean 0, variance 1), and call
    maps_of(model) after each. Returns [(stage name, maps after it), ...], made on a copy in eval
    mode: net itself is left as it was, and its own maps_of(net) are the trained ones the stages are
    compared with. seed: any int (taken modulo 2**64, as torch needs); one seed, one random draw."""
    randomized = copy.deepcopy(net).eval()
    results = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds.mix(seed))
        for name, modules in randomization_stages(randomized):
            for module in modules:
                module.reset_parameters()
                if isinstance(module, nn.BatchNorm2d):
                    module.reset_running_stats()
            results.append((name, maps_of(randomized)))
    return results


@dataclass(frozen=True)
class Reference:
    """The maps (N, H, W) that similarities compares others with, and what it reads of them, computed
    once: a trained model's maps, compared with those of every stage of every draw."""

    maps: torch.Tensor
    ranks: np.ndarray  # centered_ranks of the maps (N, H * W)
    abs_ranks: np.ndarray  # centered_ranks of their absolute values
    normalized: np.ndarray  # the min-max normalized maps, float64 (N, H, W)
    moments: tuple[np.ndarray, np.ndarray]  # local_moments of the normalized maps, as ssim reads them

    @classmethod
    def of(cls, maps: torch.Tensor) -> "Reference":
        values = maps.cpu().double().numpy()
        normalized = map_reading.normalize_maps(maps).cpu().double().numpy()
        return cls(maps, *ranks_and_abs_ranks(values), normalized, local_moments(normalized, SSIM_SIGMA))


def ranks_and_abs_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """centered_ranks of maps (N, H, W) and of their absolute values: the same array, ranked once,
    where no value is negative (ReLU-ed maps)."""
    ranks = centered_ranks(values)
    return ranks, ranks if (values >= 0).all() else centered_ranks(np.abs(values))


def similarities(maps: torch.Tensor, references: torch.Tensor | Reference) -> dict[str, np.ndarray]:
    """Adebayo et al.'s scores of maps (N, H, W) against references (N, H, W), or their Reference:
    Spearman rank correlation of the maps and of their absolute values, and SSIM of the min-max
    normalized maps; each (N,)."""
    reference = references if isinstance(references, Reference) else Reference.of(references)
    own = Reference.of(maps)  # the same ranks, normalized maps and SSIM moments, of these maps
    return {"spearman": rank_correlation(own.ranks, reference.ranks),
            "spearman_abs": rank_correlation(own.abs_ranks, reference.abs_ranks),
            "ssim": ssim(own.normalized, reference.normalized, moments=own.moments, other_moments=reference.moments)}


class Explained(Protocol):
    """What the sanity checks need of a method (registry.Method has it): raw(net, images, classes),
    its unnormalized maps (N, H, W) of classes (N,), and whether they depend on the model's weights."""

    raw: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    uses_weights: bool


class SanityEvaluator:
    """Adebayo et al.'s sanity checks of methods {name: Explained}, accumulated over batches of a
    model in eval mode.

    accumulate(net, images, classes, random_labels_net) for each batch, then compute(): for each
    method, the mean similarities (see similarities) of its maps after each stage of the cascading
    randomization to its trained maps, over `draws` random draws of the cascade (draw d seeded with
    seeds.mix(seed, d), the same for every batch: one randomized model per draw), and (given a model
    trained on permuted labels) of that model's maps to them. The maps of a method that does not use
    the weights are made once: every stage has them. `examples` keeps the first `shown` images' maps
    at each stage of the first draw, for the cascade figure. A method that passes changes:
    similarities near 0 once the weights are random."""

    def __init__(self, methods: dict[str, Explained], seed: int = 0, draws: int = 1, shown: int = CASCADE_SHOWN):
        self.methods, self.seed, self.draws, self.shown = methods, seed, draws, shown
        self.scores: dict[tuple[str, str], dict[int, dict[str, list]]] = {}  # (method, stage): draw: score: arrays
        self.examples: dict[str, dict[str, np.ndarray]] = {}

    def maps(self, model: nn.Module, images: torch.Tensor, classes: torch.Tensor, fixed: dict) -> dict:
        """{name: raw maps (N, H, W)} of each method on model, those of the methods in fixed as given there."""
        return {name: fixed[name] if name in fixed else method.raw(model, images, classes)
                for name, method in self.methods.items()}

    def record(self, stage: str, draw: int, maps: dict, trained: dict[str, Reference], unchanged: dict) -> None:
        """Score each method's maps at a stage of a draw against its trained maps (their Reference);
        unchanged caches the scores of maps equal to the trained ones (the trained stage; every stage
        of a fixed map)."""
        for method, method_maps in maps.items():
            if torch.equal(method_maps, trained[method].maps):
                if method not in unchanged:
                    unchanged[method] = similarities(method_maps, trained[method])
                values = unchanged[method]
            else:
                values = similarities(method_maps, trained[method])
            entry = self.scores.setdefault((method, stage), {}).setdefault(draw, {})
            for name, array in values.items():
                entry.setdefault(name, []).append(array)
            keep = self.shown - len(self.examples.get(stage, {}).get(method, []))
            if draw == 0 and stage != RANDOM_LABELS and keep > 0:
                kept = self.examples.setdefault(stage, {})
                kept[method] = np.concatenate([kept.get(method, np.zeros((0, *method_maps.shape[1:]))),
                                               method_maps[:keep].cpu().numpy()])

    def accumulate(self, net, images: torch.Tensor, classes: torch.Tensor, random_labels_net=None) -> None:
        fixed = {name: method.raw(net, images, classes) for name, method in self.methods.items()
                 if not method.uses_weights}
        maps = self.maps(net, images, classes, fixed)
        trained, unchanged = {name: Reference.of(method_maps) for name, method_maps in maps.items()}, {}
        self.record("trained", 0, maps, trained, unchanged)
        for draw in range(self.draws):
            stages = cascading_randomization(net, lambda model: self.maps(model, images, classes, fixed),
                                             seeds.mix(self.seed, draw))
            for stage, stage_maps in stages:
                self.record(stage, draw, stage_maps, trained, unchanged)
        if random_labels_net is not None:
            self.record(RANDOM_LABELS, 0, self.maps(random_labels_net, images, classes, fixed), trained, unchanged)

    def compute(self) -> dict:
        """{method: {stage: {"spearman", "spearman_abs", "ssim"}: the means over the images where the
        score is defined (a Spearman correlation with a constant map is not), averaged over the draws,
        None where no image has it; each with "_std": the standard deviation of the per-draw means
        (None from one draw, or where undefined)}}, stages in cascade order."""
        result: dict[str, dict] = {}
        for (method, stage), by_draw in self.scores.items():
            scores = {}
            for name in next(iter(by_draw.values())):
                values = [np.concatenate(entry[name]) for entry in by_draw.values()]
                defined = all(np.isfinite(draw).any() for draw in values)
                means = np.array([np.nanmean(draw) for draw in values]) if defined else None
                scores[name] = float(means.mean()) if defined else None
                scores[f"{name}_std"] = float(means.std(ddof=1)) if defined and len(means) > 1 else None
            result.setdefault(method, {})[stage] = scores
        return result
