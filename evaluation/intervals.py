"""How sure each number is: bootstrap intervals over images, paired differences, rank reliability.

- The percentile bootstrap (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13):
  `Resamples` draws B resamples of a group's N images with replacement, once, seeded; every method of
  the group is scored on the same resamples, so that a method's difference from the reference (the
  standard CAM) is a paired bootstrap over the same images. A statistic that is a sum over images is
  weights (B, N) @ per-image values; the localization evaluator scores its point estimates from those
  sums too, with weights of ones, so that the two cannot disagree. Below MIN_IMAGES images no interval
  is drawn: a resample of a handful of images says little about the next handful.
- Rank reliability (Tomsett et al., "Sanity Checks for Saliency Metrics", AAAI 2020, inter-rater
  reliability): each image is a rater ranking the methods by a metric's per-image scores, and
  Krippendorff's alpha (ordinal; the `krippendorff` package) says how consistently the images rank
  them: 1 every image ranks them alike, 0 no more alike than chance.
"""

from dataclasses import dataclass
from functools import cached_property

import krippendorff
import numpy as np
import scipy.stats

from utils import seeds

RESAMPLES = 1000  # bootstrap resamples of each group's images (evaluate_cam.py's --bootstrap equals it)
MIN_IMAGES = 20  # fewer images get no intervals: resampling 5 images calls a null difference real 16% of the time
LEVEL = 95  # % coverage of every interval


@dataclass(frozen=True)
class Resamples:
    """indices int32 (B, N): the images of each of B resamples of N images with replacement."""

    indices: np.ndarray

    @classmethod
    def draw(cls, count: int, resamples: int, seed: int) -> "Resamples":
        """B = resamples seeded draws of count images with replacement (count >= 1)."""
        generator = np.random.default_rng(seeds.mix(seed, count))
        return cls(generator.integers(0, count, size=(resamples, count), dtype=np.int32))

    @cached_property
    def weights(self) -> np.ndarray:
        """float32 (B, N): how many times each resample holds each image."""
        resamples, count = self.indices.shape
        offsets = self.indices + count * np.arange(resamples, dtype=np.int64)[:, None]
        return np.bincount(offsets.ravel(), minlength=resamples * count).reshape(resamples, count).astype(np.float32)

    def means(self, values: np.ndarray) -> np.ndarray:
        """The mean of per-image values (N,) or (N, K) in each resample: float64 (B,) or (B, K)."""
        values = np.asarray(values, dtype=np.float64)
        return (self.weights.astype(np.float64) @ values) / self.indices.shape[1]


def interval(samples: np.ndarray) -> list[float] | None:
    """The LEVEL% percentile interval [low, high] of a statistic's bootstrap samples (B,), those
    that are undefined (NaN) left out; None where none is defined."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return None
    tail = (100 - LEVEL) / 2
    return [float(bound) for bound in np.percentile(samples, [tail, 100 - tail])]


@dataclass
class Difference:
    """A method's score less the reference method's on the same images, with the LEVEL% paired
    bootstrap interval [low, high] of that difference (None: undefined in every resample)."""

    value: float
    interval: list[float] | None

    @property
    def covers_zero(self) -> bool:
        """No difference at LEVEL%: the interval holds 0 (or is undefined)."""
        return self.interval is None or self.interval[0] <= 0 <= self.interval[1]

    def scaled(self, factor: float) -> "Difference":
        """The difference in another unit (factor 100: fractions to %), or reversed (factor -1: the
        reference less the method), its interval kept in ascending order."""
        bounds = self.interval and sorted(factor * bound for bound in self.interval)
        return Difference(factor * self.value, bounds)


def summarize(points: dict[str, float | None], samples: dict[str, np.ndarray],
              reference: dict[str, np.ndarray] | None, reference_points: dict[str, float | None] | None
              ) -> tuple[dict[str, list[float] | None], dict[str, Difference]]:
    """One method's intervals {statistic: [low, high]} from its bootstrap samples {statistic: (B,)},
    and its paired differences from the reference method's samples and points on the same resamples
    (empty where reference is None: the method is the reference, or there is none). Statistics whose
    point is None (not measured) get neither."""
    names = [name for name, point in points.items() if point is not None]
    intervals = {name: interval(samples[name]) for name in names}
    if reference is None:
        return intervals, {}
    differences = {name: Difference(points[name] - reference_points[name], interval(samples[name] - reference[name]))
                   for name in names if reference_points.get(name) is not None}
    return intervals, differences


def rank_reliability(scores: np.ndarray) -> float | None:
    """Krippendorff's alpha (ordinal) of the ranks each image gives the methods by their per-image
    scores (N images, M methods) float: ties share their mean rank, and the direction of the metric
    does not matter (alpha is the same ranked either way). None where it is undefined: fewer than 2
    methods or 2 images, or every image ranks every method alike (ties throughout)."""
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[np.isfinite(scores).all(axis=1)]
    if scores.ndim != 2 or scores.shape[0] < 2 or scores.shape[1] < 2:
        return None
    ranks = scipy.stats.rankdata(scores, axis=1)
    if (ranks == ranks[0, 0]).all():
        return None
    return float(krippendorff.alpha(reliability_data=ranks, level_of_measurement="ordinal"))


def attach(records: dict, samples: dict[str, dict[str, np.ndarray]], reference: str | None) -> None:
    """Set each record's intervals and its difference_from_cam from its bootstrap samples {record
    key: {statistic: (B,)}}, all drawn on the same Resamples, the points read by record.statistic(name);
    the differences are from records[reference] (none for the reference itself, or without one)."""
    base = records.get(reference) if reference is not None else None
    base_points = {name: base.statistic(name) for name in samples[reference]} if base else None
    for key, record in records.items():
        points = {name: record.statistic(name) for name in samples[key]}
        paired = None if key == reference or base is None else samples[reference]
        record.intervals, record.difference_from_cam = summarize(points, samples[key], paired, base_points)
