"""What an evaluation measured: typed records, one per method and group, and the report holding them.

evaluation/group_runs.py builds them from the evaluators (localization.LocalizationEvaluator,
faithfulness.FaithfulnessEvaluator, sanity.SanityEvaluator), one record per group; evaluate_cam.py
builds the Report once every group has run. The tables (evaluation/tables.py) and figures read them
and format numbers only there. `Report.as_json()` is localization.json.
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from evaluation import localization, sanity
from evaluation.intervals import Difference
from evaluation.registry import Method

GROUPS = ("localization", "faithfulness", "sanity")  # evaluate_cam.py's groups, each a record in the Report


@dataclass
class OperatingPoint:
    """Top-1 and GT-known loc (in %) at a method's operating threshold."""

    threshold: float
    top1_loc: float
    gt_known_loc: float


@dataclass
class LocalizationResult:
    """One method's localization scores in % (LocalizationEvaluator.compute()'s: top1_loc and
    gt_known_loc at --cam_threshold, the others over the threshold sweep, and the curves behind
    them), its top-1 classification accuracy, and its operating point (once chosen; None, as every
    box metric, where the ground truth has masks only: OpenImages)."""

    images: int
    classification_top1: float
    top1_loc: float | None
    gt_known_loc: float | None
    max_box_acc: float | None
    max_box_acc_threshold: float | None
    max_box_acc_v2: float | None
    max_box_acc_v2_by_iou: dict[str, float]
    pxap: float | None  # None: the ground truth has no masks, or no mask pixel
    mask_pixels: int | None  # the mask pixels PxAP scored (None: no masks)
    curves: dict[str, list[float]]
    operating: OperatingPoint | None = None
    box_convention: str = localization.BOX_CONVENTIONS[False]  # which boxes and IoU (LocalizationEvaluator)
    equals_cam_max_diff: float | None = None  # max |its maps - ReLU(CAM)'s| (registry.relu_cam) over the images
    intervals: dict[str, list[float] | None] = field(default_factory=dict)  # bootstrap intervals, by statistic
    difference_from_cam: dict[str, Difference] = field(default_factory=dict)  # paired, by statistic

    def statistic(self, name: str) -> float | None:
        """A statistic of the intervals by name: a field ("max_box_acc_v2"), "max_box_acc_v2_by_iou.0.5"
        or "operating.top1_loc"."""
        group, _, part = name.partition(".")
        if group == "max_box_acc_v2_by_iou":
            return self.max_box_acc_v2_by_iou.get(part)
        if group == "operating":
            return self.operating and getattr(self.operating, part)
        return getattr(self, name)


@dataclass
class FaithfulnessResult:
    """One method's faithfulness and pointing scores (FaithfulnessEvaluator.compute()'s): deletion
    and insertion AUC in [0, 1], average drop and increase in %, pointing games in %, the mean
    curves, every score per image, and ROAD's mean probabilities per percentage (when ROAD ran)."""

    images: int
    deletion_auc: float
    insertion_auc: float
    average_drop: float
    increase: float
    pointing_game: float
    energy_pointing_game: float
    curves: dict[str, list[float]]
    per_image: dict[str, list[float]]
    road: dict[str, list] | None = None
    intervals: dict[str, list[float] | None] = field(default_factory=dict)  # bootstrap intervals, by statistic
    difference_from_cam: dict[str, Difference] = field(default_factory=dict)  # paired, by statistic

    def road_mean(self, order: str) -> float | None:
        """ROAD's class probability for order "morf" | "lerf", averaged over the percentages."""
        return float(np.mean(self.road[order])) if self.road else None

    def statistic(self, name: str) -> float | None:
        """A statistic of the intervals by name: a field ("deletion_auc"), or "road_morf" | "road_lerf"."""
        return self.road_mean(name.removeprefix("road_")) if name.startswith("road_") else getattr(self, name)


@dataclass
class Similarities:
    """Adebayo et al.'s scores of maps against the trained model's (sanity.similarities): the
    means over the images, averaged over the random draws of the cascade (SanityEvaluator's seeds),
    and the standard deviation of the per-draw means across the draws (None from a single draw: the
    trained stage, the random-labels model, or --sanity_seeds=1)."""

    spearman: float | None  # None: undefined, every map compared was constant
    spearman_abs: float | None
    ssim: float
    spearman_std: float | None = None
    spearman_abs_std: float | None = None
    ssim_std: float | None = None


@dataclass
class SanityResult:
    """One method's sanity checks: the similarities after each stage of the cascading
    randomization ("trained", "fc", then each conv from the top), and of the random-labels model's
    maps (when one was given)."""

    cascade: dict[str, Similarities]
    random_labels: Similarities | None = None

    @classmethod
    def from_stages(cls, stages: dict[str, dict[str, float]]) -> "SanityResult":
        """From one method's entry of SanityEvaluator.compute()."""
        cascade = {stage: Similarities(**scores) for stage, scores in stages.items()
                   if stage != sanity.RANDOM_LABELS}
        other = stages.get(sanity.RANDOM_LABELS)
        return cls(cascade, Similarities(**other) if other else None)

    @property
    def last_stage(self) -> Similarities:
        """The similarities once every stage is re-initialized."""
        return list(self.cascade.values())[-1]

    @property
    def passes_cascade(self) -> bool | None:
        """Adebayo et al.'s cascading randomization passed: once every stage is re-initialized, the
        maps are uncorrelated in rank with the trained ones in every draw, read as |mean Spearman| +
        2 sd over the draws below sanity.UNCORRELATED (one draw: its |Spearman| alone). None where
        that is undefined: the trained or the randomized maps are constant (a map that does not
        change with the image cannot pass)."""
        last = self.last_stage
        if last.spearman is None:
            return None
        return abs(last.spearman) + 2 * (last.spearman_std or 0.0) < sanity.UNCORRELATED


@dataclass
class Cost:
    """What one method's maps cost in the localization group's run: milliseconds per image of its
    maps calls (with its own logits where the same pass gives them: Method.logits_and_maps) at the
    report's batch size, and their time over that of a plain forward pass of the same batches; both
    on the model with its batch norms folded (model.folded_batch_norms), as the group runs it."""

    ms_per_image: float
    over_forward: float


@dataclass
class MethodResult:
    """What one method scored in each group that measured it (None: not run, or not applicable),
    and what its maps cost (timed in the localization group): a view of the report's group records."""

    method: Method
    localization: LocalizationResult | None = None
    faithfulness: FaithfulnessResult | None = None
    sanity: SanityResult | None = None
    cost: Cost | None = None

    def groups(self) -> list[str]:
        """The groups that measured the method."""
        return [group for group in GROUPS if getattr(self, group) is not None]

    def as_json(self) -> dict:
        info = {"name": self.method.name, "layer": self.method.layer, "uses_weights": self.method.uses_weights,
                "library": self.method.library}
        measured = {group: asdict(getattr(self, group)) for group in self.groups()}
        return {**info, **measured, **({"cost": asdict(self.cost)} if self.cost else {})}


@dataclass
class LocalizationGroup:
    """The localization group's run: on how many images, whether the operating thresholds were chosen
    on the validation split (else each is cam_threshold), the sweep's step, a plain forward pass's
    time (the Cost unit, BN folded) and the group's seconds; each method's scores and cost by key; the
    bootstrap's resamples and seconds."""

    images: int
    on_validation: bool
    cam_threshold: float
    threshold_step: float
    forward_ms_per_image: float
    seconds: float
    scores: dict[str, LocalizationResult]
    costs: dict[str, Cost]
    resamples: int = 0  # the bootstrap's resamples of the images (0: no intervals)
    bootstrap_seconds: float = 0.0  # the intervals' share of seconds

    def thresholds_chosen_on(self) -> str:
        """How the operating thresholds were chosen, as localization.json and the table say it."""
        return "validation" if self.on_validation else f"--cam_threshold={self.cam_threshold}"


@dataclass
class FaithfulnessGroup:
    """The faithfulness group's run: the images explained, deletion and insertion's steps and
    baseline, ROAD's images, the pointing game's tolerance, the Spearman correlation across images
    of the standard CAM's box IoU with its deletion AUC (None without boxes or CAM), its seconds (the
    explained images' loading included); each method's scores by key; that correlation's bootstrap
    interval, how consistently the images rank the methods by each per-image score (Krippendorff's
    alpha: intervals.rank_reliability), the bootstrap's resamples and seconds."""

    images: int
    steps: int
    baseline: str
    road_images: int
    tolerance: float
    cam_iou_vs_deletion_spearman: float | None
    seconds: float
    scores: dict[str, FaithfulnessResult]
    cam_iou_vs_deletion_interval: list[float] | None = None
    reliability: dict[str, float | None] = field(default_factory=dict)  # Krippendorff's alpha of each score's ranks
    resamples: int = 0  # the bootstrap's resamples of the images (0: no intervals)
    bootstrap_seconds: float = 0.0  # the intervals' and the reliability's share of seconds


@dataclass
class SanityGroup:
    """The sanity group's run: the images explained, the cascade's random draws, its seconds; each
    method's checks by key."""

    images: int
    seeds: int
    seconds: float
    scores: dict[str, SanityResult]


@dataclass
class Report:
    """An evaluation, built once when every group has run: what was evaluated, the methods chosen (in
    the registry's order), one record per group that ran (None where it did not), and the files written."""

    checkpoint: str
    dataset: dict
    split: str
    groups: list[str]  # as --groups named them, in that order
    chosen: list[Method]
    batch_size: int  # images per batch in every group
    cam_batch_size: int | None  # copies per forward pass of the methods that batch them (None: none chosen)
    localization: LocalizationGroup | None
    faithfulness: FaithfulnessGroup | None
    sanity: SanityGroup | None
    seconds: float
    files: list[str] = field(default_factory=list)

    @property
    def methods(self) -> dict[str, MethodResult]:
        """Each chosen method's results across the groups, by key, in the registry's order."""
        return {method.key: MethodResult(
            method, *(group and group.scores.get(method.key) for group in self.group_records()),
            self.localization and self.localization.costs.get(method.key)) for method in self.chosen}

    def group_records(self) -> tuple:
        """(localization, faithfulness, sanity): the group records, None where a group did not run."""
        return self.localization, self.faithfulness, self.sanity

    @property
    def explained_images(self) -> int | None:
        """The images the faithfulness and sanity groups explained (None: neither ran)."""
        explained = self.faithfulness or self.sanity
        return explained.images if explained else None

    def measured(self, group: str | None = None) -> list[MethodResult]:
        """The results of the methods that group (None: any group) measured, in the registry's order."""
        return [result for result in self.methods.values() if (group in result.groups() if group else result.groups())]

    def as_json(self) -> dict:
        """The report as localization.json holds it: what was evaluated, each group's settings and
        seconds as top-level fields, and the methods measured, by key, each with its name and its
        groups' records (fields that do not apply are left out)."""
        located, faithful, sane = self.group_records()
        content = {
            "checkpoint": self.checkpoint, "dataset": self.dataset, "split": self.split, "groups": self.groups,
            "methods": {result.method.key: result.as_json() for result in self.measured()},
            "batch_size": self.batch_size, "cam_batch_size": self.cam_batch_size,
        }
        if located:
            content |= {"images": located.images, "thresholds_chosen_on": located.thresholds_chosen_on(),
                        "threshold_step": located.threshold_step,
                        "forward_ms_per_image": located.forward_ms_per_image,
                        "bootstrap_resamples": located.resamples, "seconds_localization_bootstrap":
                        located.bootstrap_seconds, "seconds_localization": located.seconds}
        content["explained_images"] = self.explained_images
        if faithful:
            content |= {"steps": faithful.steps, "baseline": faithful.baseline, "road_images": faithful.road_images,
                        "tolerance": faithful.tolerance,
                        "cam_iou_vs_deletion_spearman": faithful.cam_iou_vs_deletion_spearman,
                        "cam_iou_vs_deletion_interval": faithful.cam_iou_vs_deletion_interval,
                        "rank_reliability": faithful.reliability, "bootstrap_resamples": faithful.resamples,
                        "seconds_faithfulness_bootstrap": faithful.bootstrap_seconds,
                        "seconds_faithfulness": faithful.seconds}
        if sane:
            content |= {"sanity_seeds": sane.seeds, "seconds_sanity": sane.seconds}
        content |= {"seconds": self.seconds, "files": self.files}
        return {name: value for name, value in content.items() if value is not None}
