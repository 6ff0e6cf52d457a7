"""The report's groups run over a split: localization, faithfulness and sanity, each into its record.

Every group reads the same `Split` (a dataset's split fed in batches) and the methods chosen from the
registry; each returns its record of evaluation/results.py. `localization_group` measures the boxes
and pixels of each method's map of the true class, with its operating threshold chosen on the
validation split when the run held one out (Choe et al., CVPR 2020); `explain` measures the
faithfulness and sanity of the maps of the class the model predicts; `gallery` draws report.html's
images. None of them reads a script's flags: each takes the settings it uses.
"""

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import data
from datasets.ground_truth import GroundTruth, exclusive_boxes, to_inclusive
from evaluation import faithfulness, figures, heatmaps, html_page, intervals, localization, registry, results, sanity
from utils import devices, drawing, seeds


@dataclass(frozen=True)
class Split:
    """The images the groups read: `name` ("test" or "validation") of a loaded dataset and its
    validation split, the first `limit` images of each (0: all), in batches of batch_size on device;
    the ground truth scored as inclusive boxes when inclusive_boxes (wsolevaluation's convention)."""

    loaded: data.LoadedDataset
    name: str
    device: torch.device
    batch_size: int
    channels_last: bool
    limit: int = 0
    inclusive_boxes: bool = False

    def dataset(self, split: str | None = None):
        return getattr(self.loaded, split or self.name)

    def count(self, *limits: int, split: str | None = None) -> int:
        """How many of the split's first images a group takes: all, or the smallest limit set (0: none)."""
        return min([len(self.dataset(split)), *(limit for limit in (self.limit, *limits) if limit)])

    def batches(self, count: int, split: str | None = None):
        """(index of the batch's first image, images (in the channels_last layout), labels) over the
        first count images of the split, on device."""
        layout = devices.memory_format(self.channels_last)
        loader = self.loaded.loader(split or self.name, self.batch_size, self.device, limit=count)
        for start, (images, labels) in zip(range(0, count, self.batch_size), loader):
            yield start, images.to(self.device, memory_format=layout), labels.to(self.device)

    def truth(self, start: int, stop: int, split: str | None = None) -> GroundTruth:
        """The ground truth of images start..stop - 1 as the localization group scores it."""
        truth = data.ground_truth(self.dataset(split), start, stop)
        return to_inclusive(truth) if self.inclusive_boxes else truth


def timed(make):
    """(make()'s tensors, the seconds it took), brought to the CPU, so that a GPU's queue is waited for."""
    started = time.perf_counter()
    made = [tensor.cpu() for tensor in make()]
    return made, time.perf_counter() - started


def operating_thresholds(net, split: Split, measured: list[registry.Method], thresholds: np.ndarray,
                         cam_threshold: float, seed: int) -> dict[str, float | None]:
    """{method key: its best box threshold (MaxBoxAcc's, IoU 0.5) on the validation split, None
    without boxes}, from the maps of the true class alone: this split gives the operating points,
    nothing else (no classification, timing or ReLU(CAM) check)."""
    evaluators = {method.key: localization.LocalizationEvaluator(thresholds, cam_threshold) for method in measured}
    for start, images, labels in split.batches(split.count(split="validation"), "validation"):
        truth = split.truth(start, start + len(labels), "validation")
        for method in measured:
            maps = method.maps(net, images, labels, seeds.mix(seed, start)).cpu().numpy()
            evaluators[method.key].accumulate(maps, truth, np.zeros(len(labels), dtype=bool))  # no top-1 read
    return {key: evaluator.compute()["max_box_acc_threshold"] for key, evaluator in evaluators.items()}


def example_images(net, info: data.DatasetInfo, method: registry.Method, images: torch.Tensor, labels: torch.Tensor,
                   own: torch.Tensor, truth: GroundTruth, picked: list[int], start: int, seed: int
                   ) -> list[figures.Example]:
    """The examples figure's images at positions `picked` of a batch whose first image is image
    `start` of the split (own: the model's logits of the batch), each with method's map of the class
    it predicts (no box yet)."""
    if not picked:
        return []
    boxes = exclusive_boxes(truth)
    predicted = method.classify(net, images[picked], own[picked]).argmax(1)
    heat = method.maps(net, images[picked], predicted, seed).cpu().numpy()
    return [figures.Example(start + b, drawing.to_rgb_image(images[b], info.mean, info.std), heat[i], boxes[b],
                            info.classes[int(labels[b])], info.classes[int(predicted[i])])
            for i, b in enumerate(picked)]


def measure(net, split: Split, chosen: list[registry.Method], thresholds: np.ndarray, cam_threshold: float,
            shown: list[int], seed: int, heatmaps_folder: Path | None):
    """The localization group's pass over the split: ({method key: its result, operating point not
    yet chosen}, the examples figure's images (those at indices `shown`), images measured, {method
    key: seconds of its maps calls}, seconds of a plain forward pass of the same batches). Each method
    maps the true class; its top-1 classification comes from its logits (Method.classify, or with its
    maps from Method.logits_and_maps), and its maps are compared with ReLU(CAM)'s
    (registry.logits_and_relu_cam: LocalizationResult.equals_cam_max_diff); the evaluators, with
    each image's records, come after the results. heatmaps_folder: where the standard CAM's maps are
    saved for wsolevaluation (None: nowhere)."""
    count = split.count()
    measured = [method for method in chosen if method.runs_in("localization")]
    evaluators = {method.key: localization.LocalizationEvaluator(thresholds, cam_threshold) for method in measured}
    hits, examples, forward_seconds = dict.fromkeys(evaluators, 0), [], 0.0
    differences, seconds = dict.fromkeys(evaluators, 0.0), dict.fromkeys(evaluators, 0.0)
    for start, images, labels in split.batches(count):
        truth = split.truth(start, start + len(labels))
        own, relu_cam = registry.logits_and_relu_cam(net, images, labels)
        relu_cam, batch_seed = relu_cam.cpu(), seeds.mix(seed, start)
        with torch.no_grad():
            forward_seconds += timed(lambda: [net(images)])[1]
        for method in measured:
            if method.logits_and_maps:  # its logits come from the pass that makes its maps: timed together
                (logits, maps), took = timed(lambda: method.logits_and_maps(net, images, labels, batch_seed))
            else:
                logits = method.classify(net, images, own)
                (maps,), took = timed(lambda: [method.maps(net, images, labels, batch_seed)])
            correct = (logits.argmax(1).cpu() == labels.cpu()).numpy()
            seconds[method.key] += took
            differences[method.key] = max(differences[method.key], float((maps - relu_cam).abs().max()))
            maps = maps.numpy()
            evaluators[method.key].accumulate(maps, truth, correct)
            hits[method.key] += int(correct.sum())
            if heatmaps_folder and method.key == registry.CAM.key:  # the standard CAM of the true class
                heatmaps.write(heatmaps_folder, maps, heatmaps.image_ids(split.dataset(), split.name, start,
                                                                         start + len(labels)))
        picked = [index - start for index in shown if start <= index < start + len(labels)]
        examples += example_images(net, split.loaded.info, registry.examples_method(chosen), images, labels, own,
                                   truth, picked, start, batch_seed)
    located = {key: results.LocalizationResult(classification_top1=100 * hits[key] / count, **evaluator.compute(),
                                               equals_cam_max_diff=differences[key])
               for key, evaluator in evaluators.items()}
    return located, evaluators, examples, count, seconds, forward_seconds


def localization_group(net, split: Split, chosen: list[registry.Method], has_validation: bool, threshold_step: float,
                       cam_threshold: float, examples: int, seed: int, resamples: int,
                       heatmaps_folder: Path | None = None) -> tuple[results.LocalizationGroup, list[figures.Example]]:
    """The localization group: its record, and the examples figure's images (`examples` of them,
    drawn by seed) with the boxes of their maps at the operating threshold. Each method's operating
    threshold is its best box threshold on the validation split when the run held one out (else
    cam_threshold). resamples: the bootstrap's (intervals.Resamples, drawn by seed; 0: no intervals)."""
    started = time.perf_counter()
    shown_count = split.count()
    shown = sorted(random.Random(seed).sample(range(shown_count), min(examples, shown_count)))
    thresholds = localization.threshold_sweep(threshold_step)
    measured, evaluators, drawn, count, seconds, forward_seconds = measure(
        net, split, chosen, thresholds, cam_threshold, shown, seed, heatmaps_folder)
    boxed = any(result.max_box_acc is not None for result in measured.values())  # OpenImages' masks: no box
    located = [method for method in chosen if method.key in measured]
    best_thresholds = (operating_thresholds(net, split, located, thresholds, cam_threshold, seed)
                       if has_validation and boxed and split.name != "validation"
                       else {key: result.max_box_acc_threshold for key, result in measured.items()})
    for key, result in measured.items():
        result.operating = (  # without a validation split: exactly at cam_threshold, which need not lie on the sweep
            None if result.max_box_acc is None  # no boxes (OpenImages): no box at any threshold to score
            else results.OperatingPoint(**localization.at_threshold({"curves": result.curves}, best_thresholds[key]))
            if has_validation else results.OperatingPoint(cam_threshold, result.top1_loc, result.gt_known_loc))
    bootstrap_started = time.perf_counter()
    resamples = resamples if count >= intervals.MIN_IMAGES else 0  # too few images for an interval
    if resamples:
        localization_intervals(evaluators, measured, has_validation, intervals.Resamples.draw(count, resamples, seed))
    bootstrap_seconds = time.perf_counter() - bootstrap_started
    operating = measured[registry.examples_method(chosen).key].operating
    for example in drawn:
        example.box = None if operating is None else localization.boxes_from_maps(example.heat[None],
                                                                                  operating.threshold)[0]
    record = results.LocalizationGroup(
        count, has_validation, cam_threshold, threshold_step,
        1000 * forward_seconds / count, round(time.perf_counter() - started, 1), measured,
        {key: results.Cost(1000 * seconds[key] / count, seconds[key] / forward_seconds) for key in measured},
        resamples, round(bootstrap_seconds, 2))
    return record, drawn


def localization_intervals(evaluators: dict[str, localization.LocalizationEvaluator],
                           measured: dict[str, results.LocalizationResult], on_validation: bool,
                           resamples: intervals.Resamples) -> None:
    """Each result's bootstrap intervals and paired differences from the standard CAM's, over the
    same resamples of the images: every statistic of the table, the operating point's at its
    threshold (chosen on validation, so held fixed; else cam_threshold's: top1_loc and gt_known_loc)."""
    samples = {}
    for key, evaluator in evaluators.items():
        scores, result = evaluator.statistics(resamples.weights), measured[key]
        samples[key] = {name: scores[name] for name in LOCALIZATION_STATISTICS}
        if result.operating and on_validation:
            index = int(np.abs(np.asarray(result.curves["thresholds"]) - result.operating.threshold).argmin())
            samples[key] |= {"operating.top1_loc": scores["curve.top1_loc"][:, index],
                             "operating.gt_known_loc": scores["curve.box_acc_largest_iou0.5"][:, index]}
        elif result.operating:
            samples[key] |= {"operating.top1_loc": scores["top1_loc"], "operating.gt_known_loc": scores["gt_known_loc"]}
    intervals.attach(measured, samples, registry.CAM.key)


LOCALIZATION_STATISTICS = ("classification_top1", "top1_loc", "gt_known_loc", "max_box_acc", "max_box_acc_v2",
                           *(f"max_box_acc_v2_by_iou.{iou}" for iou in localization.IOU_THRESHOLDS), "pxap")


@dataclass(frozen=True)
class ExplainSettings:
    """What the faithfulness and sanity groups read: the images (the first `images`, within the
    split's limit; 0: all), deletion and insertion's steps and baseline, ROAD's images, the
    pointing game's tolerance, the cascade's random draws, the box threshold of CAM's IoU when the
    localization group gave none, the seed of every random draw, and the bootstrap's resamples
    (0: no intervals)."""

    images: int
    steps: int
    baseline: str
    road_images: int
    tolerance: float
    sanity_seeds: int
    cam_threshold: float
    seed: int
    resamples: int = 0


def explain(net, scorer, split: Split, chosen: list[registry.Method], groups: list[str], settings: ExplainSettings,
            random_labels_net=None, located: results.LocalizationGroup | None = None
            ) -> tuple[results.FaithfulnessGroup | None, results.SanityGroup | None, dict]:
    """The faithfulness and sanity groups of `groups`, on the first settings.images images of the
    split: each method maps the class the model predicts (the decision); pointing scores are against
    the item. The class probabilities that the faithfulness scores read come from scorer, net with
    its batch norms folded (model.folded_batch_norms); the maps come from net itself: the sanity
    cascade re-initializes its batch norms, and the pixel order of ROAD and the curves can turn on
    float rounding where a map's values tie (docs/methods.md). located: the localization group's
    record, whose operating threshold CAM's IoU uses. Returns (the faithfulness record, the sanity
    record, each None where its group is not in groups, and the cascade figure's maps {stage: {method
    key: maps (shown, H, W)}}, empty without the sanity group)."""
    count = split.count(settings.images)
    faithful = [method for method in chosen if "faithfulness" in groups and method.runs_in("faithfulness")]
    info = split.loaded.info
    evaluators = {method.key: faithfulness.FaithfulnessEvaluator(
        settings.steps, settings.baseline, info.mean, info.std, settings.tolerance, settings.road_images, settings.seed)
        for method in faithful}
    checks = sanity.SanityEvaluator(
        {method.key: method for method in chosen if "sanity" in groups and method.runs_in("sanity")}, settings.seed,
        settings.sanity_seeds)
    cam_maps, boxes_seen, started, sanity_seconds = [], [], time.perf_counter(), 0.0
    for start, images, _ in split.batches(count):
        with torch.no_grad():
            logits = scorer(images)  # the probabilities of every faithfulness score come from the folded copy
        predicted = logits.argmax(1)
        truth = data.ground_truth(split.dataset(), start, start + len(images))
        boxes_seen.append(exclusive_boxes(truth))
        ends = next(iter(evaluators.values())).unmasked(  # the same for every method: computed once
            scorer, images, predicted, faithfulness.probabilities_of(logits, predicted)) if evaluators else None
        for method in faithful:
            maps = method.maps(net, images, predicted, seeds.mix(settings.seed, start)).cpu().numpy()
            evaluators[method.key].accumulate(scorer, images, predicted, maps, truth, ends)
            cam_maps += [maps] if method.key == registry.CAM.key else []
        if checks.methods:
            sanity_started = time.perf_counter()
            checks.accumulate(net, images, predicted, random_labels_net)
            sanity_seconds += time.perf_counter() - sanity_started
    sane = results.SanityGroup(count, settings.sanity_seeds, round(sanity_seconds, 1), {
        key: results.SanityResult.from_stages(stages) for key, stages in checks.compute().items()
    }) if "sanity" in groups else None
    if "faithfulness" not in groups:
        return None, sane, checks.examples
    scores = {key: results.FaithfulnessResult(**evaluator.compute()) for key, evaluator in evaluators.items()}
    cam = located.scores.get(registry.CAM.key) if located else None
    threshold = cam.operating.threshold if cam and cam.operating else settings.cam_threshold
    bootstrap_started = time.perf_counter()
    resamples = (intervals.Resamples.draw(count, settings.resamples, settings.seed)
                 if settings.resamples and count >= intervals.MIN_IMAGES else None)
    road_count = min(settings.road_images, count)
    correlation, correlation_interval = cam_iou_vs_deletion(
        np.concatenate(cam_maps), np.concatenate(boxes_seen), threshold, scores[registry.CAM.key],
        resamples) if cam_maps else (None, None)
    if resamples:
        road = (intervals.Resamples.draw(road_count, settings.resamples, settings.seed)
                if road_count >= intervals.MIN_IMAGES else None)  # ROAD's images: too few for an interval
        faithfulness_intervals(scores, resamples, road)
    scored = set.intersection(*(set(result.per_image) for result in scores.values())) if scores else set()
    reliability = {name: intervals.rank_reliability(np.stack([result.per_image[name] for result in scores.values()], 1))
                   for name in faithfulness.SCORES + faithfulness.ROAD_SCORES if name in scored}
    bootstrap_seconds = time.perf_counter() - bootstrap_started
    faithful_record = results.FaithfulnessGroup(
        count, settings.steps, settings.baseline, min(settings.road_images, count), settings.tolerance, correlation,
        round(time.perf_counter() - started - sanity_seconds, 1), scores, correlation_interval, reliability,
        settings.resamples if resamples else 0, round(bootstrap_seconds, 2))
    return faithful_record, sane, checks.examples


def faithfulness_intervals(scores: dict[str, results.FaithfulnessResult], resamples: intervals.Resamples,
                           road_resamples: intervals.Resamples | None) -> None:
    """Each result's bootstrap intervals and paired differences from the standard CAM's: every score
    the mean of its per-image scores over the same resamples of the images (ROAD's, of ROAD's images)."""
    samples = {key: {name: (road_resamples if name in faithfulness.ROAD_SCORES else resamples).means(values)
                     for name, values in result.per_image.items()
                     if name not in faithfulness.ROAD_SCORES or road_resamples}
               for key, result in scores.items()}
    intervals.attach(scores, samples, registry.CAM.key)


def cam_iou_vs_deletion(cam_maps: np.ndarray, boxes: np.ndarray, threshold: float, cam: results.FaithfulnessResult,
                        resamples: intervals.Resamples | None) -> tuple[float | None, list[float] | None]:
    """The Spearman correlation across images of the standard CAM's box IoU at threshold with its
    deletion AUC, and its bootstrap interval over resamples of those images (None: no resamples);
    None without true boxes (OpenImages' masks) or where it is undefined."""
    if not (boxes[..., 2] >= boxes[..., 0]).any():
        return None, None
    ious = localization.best_iou(localization.boxes_from_maps(cam_maps, threshold), boxes)
    deletion = np.asarray(cam.per_image["deletion_auc"])
    correlation = float(sanity.spearman_correlation(ious[None], deletion[None])[0])
    spread = intervals.interval(sanity.spearman_correlation(ious[resamples.indices], deletion[resamples.indices])
                                ) if resamples else None
    return (correlation, spread) if np.isfinite(correlation) else (None, None)  # undefined: all IoUs or AUCs equal


def gallery(net, split: Split, chosen: list[registry.Method], count: int, pool: int, seed: int, cam_threshold: float,
            located: results.LocalizationGroup | None, faithful: results.FaithfulnessGroup | None
            ) -> list[html_page.GalleryImage]:
    """report.html's gallery: `count` images drawn at random (fixed by seed) from the first `pool`
    of the split, each with every method's map of the predicted class over it, the true boxes (red)
    and the method's box at its operating threshold (green; cam_threshold where it has none), and
    per method that box's IoU and, where faithfulness ran, the image's deletion AUC."""
    picked = sorted(random.Random(seed).sample(range(pool), min(count, pool)))
    if not picked:
        return []
    dataset, info = split.dataset(), split.loaded.info
    items = [dataset[index] for index in picked]  # (image (C, H, W), label)
    images = torch.stack([image for image, _ in items]).to(split.device)
    boxes = [exclusive_boxes(split.truth(index, index + 1))[0] for index in picked]
    predicted = registry.model_logits(net, images).argmax(1)
    shown = [html_page.GalleryImage(index, info.classes[int(label)], info.classes[int(guess)], {}, {}, {})
             for index, (_, label), guess in zip(picked, items, predicted)]
    pictures = [drawing.to_rgb_image(image, info.mean, info.std) for image in images]  # once per image
    scored = [bool((image_boxes[:, 2] >= image_boxes[:, 0]).any()) for image_boxes in boxes]  # masks only: no box
    for method in chosen:
        scores = located and located.scores.get(method.key)
        operating = scores and scores.operating
        maps = method.maps(net, images, predicted, seeds.mix(seed, 0)).cpu().numpy()
        drawn = localization.boxes_from_maps(maps, operating.threshold if operating else cam_threshold)
        faithful_scores = faithful and faithful.scores.get(method.key)
        deletion = faithful_scores.per_image["deletion_auc"] if faithful_scores else []
        for n, image in enumerate(shown):
            image.overlays[method.name] = drawing.png_bytes(figures.boxed_overlay(
                pictures[n], maps[n], boxes[n], drawn[n] if scored[n] else None, scale=2))
            image.iou[method.name] = (float(localization.best_iou(drawn[n][None], boxes[n][None])[0])
                                      if scored[n] else None)
            image.deletion_auc[method.name] = float(deletion[image.index]) if image.index < len(deletion) else None
    return shown
