"""Does the map land on the object? The localization report of a checkpoint, on its test (or validation) split.

    python evaluate_cam.py                                    # checkpoints/last.pt
    python evaluate_cam.py --checkpoint=PATH --limit=1000     # the first 1000 images only
    python evaluate_cam.py --split=validation                 # choose a reading (--normalization ...) here
    python evaluate_cam.py --help                             # every hyperparameter with its default

The checkpoint's dataset must carry ground-truth boxes and masks (fashion-mnist-cluttered, cub,
ilsvrc, openimages), or --dataset names another with the checkpoint's classes (export_wsol.py's
folder read through cub or openimages scores as the built-in set does with --inclusive_boxes). For
each method --methods picks from methods.py's registry (CAM read the standard way, raw, min-max: the
published tables' row; CAM read as --normalization / --percentile / --flip_maps say; pytorch-grad-cam's
CAM family on the same model; a centered Gaussian baseline) that localization applies to, it measures
top-1 and GT-known localization accuracy, MaxBoxAcc, MaxBoxAccV2 and PxAP (see localization.py), what
its maps cost against a plain forward pass, and how far they are from ReLU(CAM)'s (on a GAP network
Grad-CAM, HiResCAM, XGrad-CAM and ShapleyCAM give its maps). Following Choe et al. (CVPR 2020),
when the checkpoint was trained with a --validation split, the operating threshold of top-1 and
GT-known loc is each method's best box threshold on that split (box-labelled canvases of held-out
training items), never one chosen on the test split; otherwise it is --cam_threshold.

Writes to outputs/: localization.md (the table), localization.json (the numbers and the curves),
localization_examples.png (images with their maps, the predicted box in green and the true one in
red) and localization_thresholds.png (box accuracy against the threshold, pixel precision-recall);
faithfulness_curves.png for that group, sanity_cascade.png and sanity_curves.png for the sanity
checks (drawing.py draws them). The .md
and .json list the files written; a figure of an earlier run that this run does not draw is deleted,
so none passes for this run's. The numbers are results.py's records; methods get their display names
only in the tables and figures.
"""

from utils import cli  # noqa: I001 -- first: a Ctrl-C while torch loads then ends in one line, not a traceback

if __name__ == "__main__":
    cli.quiet_interrupts()

import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

import data
import model as models
from datasets.ground_truth import GroundTruth, exclusive_boxes, to_inclusive
from evaluation import faithfulness, figures, html_page, localization, map_reading, registry, results, sanity
from utils import checkpoints, devices, drawing, files, seeds

# --- hyperparameters: edit them here, or override them on the command line (--name=value) ---
checkpoint: str = "checkpoints/last.pt"  # a checkpoint trained on fashion-mnist-cluttered (the last one, as Choe et al. report)
split: str = "test"  # test | validation (the held-out training canvases of a run trained with --validation)
normalization: str = map_reading.RECIPE_READING.normalization  # the read CAM row: minmax | max | ivr (map_reading.normalize_maps)
percentile: float = map_reading.RECIPE_READING.percentile  # ivr: the quantile of each map subtracted before scaling, in [0, 1)
flip_maps: bool = map_reading.RECIPE_READING.flip  # the read CAM row: average in the CAMs of the mirror image, mirrored back
dataset: str = ""  # "": the checkpoint's; or one with boxes and its classes, read with its channels, size and normalization (cub on an export_wsol.py folder)
data_dir: str = ""  # where the test set is found; "": the data_dir the checkpoint was trained with
metadata_dir: str = ""  # cub | ilsvrc | openimages: wsolevaluation's metadata/<NAME>/ ("": the checkpoint's, or <data_dir>/metadata/<NAME>)
download: bool = True  # download the source dataset if it is not on disk
batch_size: int = 250  # images per batch
methods: str = "cam,cam_read,grad_cam,center,random,edge"  # which methods every group runs: keys of methods.py's registry (comma-separated), or all (the CAM family: pytorch-grad-cam's 14; several times slower); the default keeps the report's time as it was
cam_batch_size: int = registry.CAM_BATCH_SIZE  # score_cam and ablation_cam: masked or ablated copies of an image per forward pass (speed and memory only)
limit: int = 0  # evaluate the first N images of each split only, in every group (0: all of them)
cam_threshold: float = localization.CAM_THRESHOLD  # box threshold of top-1 and GT-known loc when the run has no validation split
threshold_step: float = localization.THRESHOLD_STEP  # step of the threshold sweep (0 to 1) of MaxBoxAcc, MaxBoxAccV2 and PxAP
examples: int = 16  # images shown in localization_examples.png
gallery: int = 36  # report.html: images of its gallery, each with every method's map, box, IoU and deletion AUC (0: none)
groups: str = "localization,faithfulness,sanity"  # which reports to make (comma-separated): localization | faithfulness | sanity
explained: int = 1000  # faithfulness and sanity: the first N images of the split, within --limit (0: all of them)
steps: int = faithfulness.STEPS  # deletion and insertion: steps from 0% to 100% of the pixels (at least 2)
baseline: str = "blur"  # deletion and insertion: what removed pixels become: blur | black | mean
road_images: int = 100  # ROAD on the first N explained images (0: none; it solves a linear system per image and step)
tolerance: float = 0.0  # pointing game: pixels the map's peak may lie from the object
random_labels_checkpoint: str = ""  # sanity: a run trained with --permute_labels, for the data randomization test
sanity_seeds: int = 3  # sanity: random draws of the cascading randomization, each re-initializing every stage anew (mean and spread reported)
seed: int = 0  # which test images the examples figure shows, the random map, ROAD's noise and the cascade (any int)
output_dir: str = "outputs"  # where the report is written
device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
channels_last: bool = True  # NHWC memory layout for the model and its images (1.6x faster maps on a 2-core CPU; the same numbers up to float rounding)
inclusive_boxes: bool = False  # localization: score exclusive-end ground truth (the cluttered set's) as inclusive boxes, as wsolevaluation would (x1 - 1, y1 - 1; its boxes and +1 IoU)
save_heatmaps: str = ""  # localization: write each image's standard CAM of its true class (min-max, float64) as DIR/<image id>.npy, for wsolevaluation's evaluate_wsol
# ------------------------------------------------------------------------------------------------

SPLITS = ("test", "validation")
GROUPS = results.GROUPS  # localization | faithfulness | sanity
FLAG_GROUPS = {  # the flags that only some groups use (the others apply to every group): the groups using each
    "threshold_step": ("localization",), "examples": ("localization",),
    "cam_threshold": ("localization", "faithfulness"), "normalization": ("localization", "faithfulness"),
    "percentile": ("localization", "faithfulness"), "flip_maps": ("localization", "faithfulness"),
    "explained": ("faithfulness", "sanity"), "steps": ("faithfulness",), "baseline": ("faithfulness",),
    "road_images": ("faithfulness",), "tolerance": ("faithfulness",), "random_labels_checkpoint": ("sanity",),
    "sanity_seeds": ("sanity",),
    "inclusive_boxes": ("localization",), "save_heatmaps": ("localization",),
}


def validate(cfg, given: set[str] = frozenset()) -> None:
    """UserError for a bad value, or for a flag set on the command line (given) that only groups
    left out of --groups use."""
    checks = [
        (cfg.batch_size >= 1, f"--batch_size must be at least 1, got {cfg.batch_size}"),
        (cfg.limit >= 0, f"--limit must be >= 0, got {cfg.limit}"),
        (0 <= cfg.cam_threshold < 1, f"--cam_threshold must be in [0, 1), got {cfg.cam_threshold}"),
        (0 <= cfg.percentile < 1, f"--percentile must be in [0, 1), got {cfg.percentile}"),
        (0 < cfg.threshold_step <= 0.5, f"--threshold_step must be in (0, 0.5], got {cfg.threshold_step}"),
        (cfg.examples >= 0, f"--examples must be >= 0, got {cfg.examples}"),
        (cfg.explained >= 0, f"--explained must be >= 0, got {cfg.explained}"),
        (cfg.steps >= 2, f"--steps must be at least 2 (with 1, deletion and insertion both average the image's "
                         f"and the baseline's probability, whatever the map), got {cfg.steps}"),
        (cfg.road_images >= 0, f"--road_images must be >= 0, got {cfg.road_images}"),
        (cfg.tolerance >= 0, f"--tolerance must be >= 0, got {cfg.tolerance}"),
        (cfg.sanity_seeds >= 1, f"--sanity_seeds must be at least 1, got {cfg.sanity_seeds}"),
        (cfg.cam_batch_size >= 1, f"--cam_batch_size must be at least 1, got {cfg.cam_batch_size}"),
    ]
    cli.require(checks)
    registry.parse_keys(cfg.methods)
    cli.check_choice("split", cfg.split, SPLITS)
    if cfg.dataset:
        cli.check_choice("dataset", cfg.dataset, data.DATASETS)
    cli.check_choice("normalization", cfg.normalization, map_reading.NORMALIZATIONS)
    cli.check_choice("baseline", cfg.baseline, faithfulness.BASELINES)
    groups = chosen_groups(cfg)
    if not groups:
        raise cli.UserError(f"--groups={cfg.groups!r} names no group; choose one or more of: {', '.join(GROUPS)} "
                            "(comma-separated)")
    for group in groups:
        cli.check_choice("groups", group, GROUPS)
    for name, users in FLAG_GROUPS.items():
        if name in given and not set(users) & set(groups):
            raise cli.UserError(f"--{name} is used by the {' and '.join(users)} group{'s' * (len(users) > 1)}, "
                                f"which --groups={cfg.groups} leaves out: add {' or '.join(users)} to --groups, "
                                f"or drop --{name}")


def check_methods(cfg, given: set[str], groups: list[str], chosen: list[registry.Method]) -> None:
    """UserError when a group of --groups measures none of the --methods chosen, when --save_heatmaps
    has no standard CAM to write, or when --cam_batch_size is given and no chosen method batches."""
    for group in groups:
        if not any(method.runs_in(group) for method in chosen):
            runs = [method.key for method in registry.for_reading(map_reading.RECIPE_READING) if method.runs_in(group)]
            raise cli.UserError(f"--methods={cfg.methods} names no method that the {group} group measures; add one of: "
                                f"{', '.join(runs)}, or leave {group} out of --groups")
    if cfg.save_heatmaps and registry.CAM not in chosen:
        raise cli.UserError(f"--save_heatmaps writes the standard CAM's maps, which --methods={cfg.methods} leaves out: "
                            f"add {registry.CAM.key} to --methods, or drop --save_heatmaps")
    if "cam_batch_size" in given and not any(method.batch_size for method in chosen):
        batched = [key for key, (_, kind, _) in registry.LIBRARY.items() if kind in registry.BATCHED]
        raise cli.UserError(f"--cam_batch_size is used by {' and '.join(batched)}, which --methods={cfg.methods} leaves "
                            "out: add one of them to --methods, or drop --cam_batch_size")


def chosen_groups(cfg) -> list[str]:
    """The groups of cfg.groups, each once, in the order given."""
    return list(dict.fromkeys(group.strip() for group in cfg.groups.split(",") if group.strip()))


def first_images(size: int, *limits: int) -> int:
    """How many of a split's first images a run takes: size, or the smallest of the limits set (0: none)."""
    return min([size, *(limit for limit in limits if limit)])


def same_weights(net, other) -> bool:
    """Whether two models hold the same state_dict: the same names with equal tensors."""
    mine, theirs = net.state_dict(), other.state_dict()
    return mine.keys() == theirs.keys() and all(torch.equal(mine[name], theirs[name]) for name in mine)


def batches(loaded: data.LoadedDataset, split: str, cfg, device, count: int):
    """(index of the batch's first image, images (in --channels_last's layout), labels) over the first
    count images of split, on device."""
    for start, (images, labels) in zip(range(0, count, cfg.batch_size),
                                       loaded.loader(split, cfg.batch_size, device, limit=count)):
        yield start, images.to(device, memory_format=devices.memory_format(cfg.channels_last)), labels.to(device)


def image_ids(dataset, split: str, start: int, stop: int) -> list[str]:
    """The ids of images start..stop-1 of a split: the dataset's image_ids(indices) under its Subset
    and Relabeled wrappers (e.g. wsolevaluation's relative paths), else "<split>/<index:06d>" with
    the image's index in the dataset underneath (the cluttered set)."""
    positions = np.arange(start, min(stop, len(dataset)))
    base, index, _ = data.unwrap(dataset)
    indices = positions if index is None else index.numpy()[positions]
    if hasattr(base, "image_ids"):
        return list(base.image_ids(indices))
    return [f"{split}/{int(i):06d}" for i in indices]


HEATMAPS_MARK = "heatmaps_run.json"  # in a --save_heatmaps folder: which run wrote its .npy files


def heatmaps_folder(cfg) -> Path | None:
    """The --save_heatmaps folder, created; refused when it holds .npy files of another run (another
    checkpoint, --split or --limit, or no mark of ours)."""
    if not cfg.save_heatmaps:
        return None
    folder = Path(cfg.save_heatmaps)
    run = {"checkpoint": str(Path(cfg.checkpoint).resolve()), "split": cfg.split, "limit": cfg.limit}
    mark = folder / HEATMAPS_MARK
    if folder.is_dir() and next(folder.rglob("*.npy"), None) is not None:
        if not mark.is_file() or json.loads(mark.read_text()) != run:
            raise cli.UserError(f"--save_heatmaps: {folder} holds .npy heat maps of another run (or of unknown "
                                "origin); pass an empty or new folder, or delete them")
    folder.mkdir(parents=True, exist_ok=True)
    mark.write_text(json.dumps(run))
    return folder


def write_heatmaps(folder: Path, cam_maps: np.ndarray, ids: list[str]) -> None:
    """The maps wsolevaluation is given: cam_maps (N, H, W), the true class's CAM, standard reading
    (raw, min-max), at the scored resolution, as float64 in [0, 1] in folder/<id without extension>.npy."""
    for image_id, one in zip(ids, cam_maps.astype(np.float64)):
        path = folder / (str(Path(image_id).with_suffix("")) + ".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.clip(one, 0.0, 1.0))


def example_images(net, info: data.DatasetInfo, method: registry.Method, images: torch.Tensor, labels: torch.Tensor,
                   own: torch.Tensor, boxes: np.ndarray, picked: list[int], start: int, seed: int
                   ) -> list[figures.Example]:
    """The examples figure's images at positions `picked` of a batch whose first image is image
    `start` of the split (own: the model's logits of the batch), each with method's map of the class
    it predicts (no box yet)."""
    if not picked:
        return []
    predicted = method.classify(net, images[picked], own[picked]).argmax(1)
    heat = method.maps(net, images[picked], predicted, seed).cpu().numpy()
    return [figures.Example(start + b, drawing.to_rgb_image(images[b], info.mean, info.std), heat[i], boxes[b],
                            info.classes[int(labels[b])], info.classes[int(predicted[i])])
            for i, b in enumerate(picked)]


def gallery_images(report: results.Report, net, loaded: data.LoadedDataset, cfg, device,
                   chosen: list[registry.Method]) -> list[html_page.GalleryImage]:
    """report.html's gallery: cfg.gallery images drawn at random (fixed by --seed) from those the
    report explained (or localized), each with every method's map of the predicted class over it,
    the true boxes (red) and the method's box at its operating threshold (green; --cam_threshold
    where it has none), and per method that box's IoU and, where faithfulness ran, the image's
    deletion AUC."""
    dataset = getattr(loaded, cfg.split)
    pool = report.explained_images or report.images or 0
    picked = sorted(random.Random(cfg.seed).sample(range(pool), min(cfg.gallery, pool)))
    if not picked:
        return []
    items = [dataset[index] for index in picked]  # (image (C, H, W), label)
    images = torch.stack([image for image, _ in items]).to(device)
    truths = [data.ground_truth(dataset, index, index + 1) for index in picked]
    boxes = [exclusive_boxes(to_inclusive(truth) if cfg.inclusive_boxes else truth)[0]
             for truth in truths]
    labels = [int(label) for _, label in items]
    predicted = registry.model_logits(net, images).argmax(1)
    gallery = [html_page.GalleryImage(index, loaded.info.classes[label], loaded.info.classes[int(guess)], {}, {}, {})
               for index, label, guess in zip(picked, labels, predicted)]
    pictures = [drawing.to_rgb_image(image, loaded.info.mean, loaded.info.std) for image in images]  # once per image
    scored = [bool((image_boxes[:, 2] >= image_boxes[:, 0]).any()) for image_boxes in boxes]  # masks only: no box
    for method in chosen:
        result = report.methods[method.key]
        operating = result.localization and result.localization.operating
        maps = method.maps(net, images, predicted, seeds.mix(cfg.seed, 0)).cpu().numpy()
        drawn = localization.boxes_from_maps(maps, operating.threshold if operating else cfg.cam_threshold)
        deletion = result.faithfulness.per_image["deletion_auc"] if result.faithfulness else []
        for n, image in enumerate(gallery):
            image.overlays[method.name] = drawing.png_bytes(figures.boxed_overlay(
                pictures[n], maps[n], boxes[n], drawn[n] if scored[n] else None, scale=2))
            image.iou[method.name] = float(localization.best_iou(drawn[n][None], boxes[n][None])[0]) if scored[n] else None
            image.deletion_auc[method.name] = float(deletion[image.index]) if image.index < len(deletion) else None
    return gallery


def timed(make):
    """(make()'s tensors, the seconds it took), brought to the CPU, so that a GPU's queue is waited for."""
    started = time.perf_counter()
    result = [tensor.cpu() for tensor in make()]
    return result, time.perf_counter() - started


def scored_truth(dataset, start: int, stop: int, cfg) -> GroundTruth:
    """The ground truth of images start..stop - 1 as the localization group scores it (inclusive
    boxes with --inclusive_boxes)."""
    truth = data.ground_truth(dataset, start, stop)
    return to_inclusive(truth) if cfg.inclusive_boxes else truth


def operating_thresholds(net, loaded: data.LoadedDataset, cfg, device, measured: list[registry.Method]
                         ) -> dict[str, float | None]:
    """{method key: its best box threshold (MaxBoxAcc's, IoU 0.5) on the validation split, None
    without boxes}, from the maps of the true class alone: this split gives the operating points,
    nothing else (no classification, timing or ReLU(CAM) check)."""
    dataset = loaded.validation
    count = first_images(len(dataset), cfg.limit)
    thresholds = localization.threshold_sweep(cfg.threshold_step)
    evaluators = {method.key: localization.LocalizationEvaluator(thresholds, cfg.cam_threshold) for method in measured}
    for start, images, labels in batches(loaded, "validation", cfg, device, count):
        truth = scored_truth(dataset, start, start + len(labels), cfg)
        for method in measured:
            maps = method.maps(net, images, labels, seeds.mix(cfg.seed, start)).cpu().numpy()
            evaluators[method.key].accumulate(maps, truth, np.zeros(len(labels), dtype=bool))  # no top-1 read
    return {key: evaluator.compute()["max_box_acc_threshold"] for key, evaluator in evaluators.items()}


def measure(net, loaded: data.LoadedDataset, cfg, device, chosen: list[registry.Method], shown: list[int]
            ) -> tuple[dict[str, results.LocalizationResult], list[figures.Example], int, dict[str, float], float]:
    """The localization group on the --split: ({method key: its result, operating point not yet
    chosen}, the examples figure's images (those at indices `shown`), images measured, {method key:
    seconds of its maps calls}, seconds of a plain forward pass of the same batches). Each method
    maps the true class; its top-1 classification comes from its logits (Method.classify, or with its
    maps from Method.logits_and_maps), and its maps are compared with ReLU(CAM)'s
    (registry.logits_and_relu_cam: LocalizationResult.equals_cam_max_diff)."""
    dataset = getattr(loaded, cfg.split)
    count = first_images(len(dataset), cfg.limit)
    thresholds = localization.threshold_sweep(cfg.threshold_step)
    measured = [method for method in chosen if method.runs_in("localization")]
    evaluators = {method.key: localization.LocalizationEvaluator(thresholds, cfg.cam_threshold) for method in measured}
    hits, examples, forward_seconds = dict.fromkeys(evaluators, 0), [], 0.0
    differences, seconds = dict.fromkeys(evaluators, 0.0), dict.fromkeys(evaluators, 0.0)
    heatmaps = heatmaps_folder(cfg)
    for start, images, labels in batches(loaded, cfg.split, cfg, device, count):
        truth = scored_truth(dataset, start, start + len(labels), cfg)
        boxes = exclusive_boxes(truth)
        own, relu_cam = registry.logits_and_relu_cam(net, images, labels)
        relu_cam, seed = relu_cam.cpu(), seeds.mix(cfg.seed, start)
        with torch.no_grad():
            forward_seconds += timed(lambda: [net(images)])[1]
        for method in measured:
            if method.logits_and_maps:  # its logits come from the pass that makes its maps: timed together
                (logits, maps), took = timed(lambda: method.logits_and_maps(net, images, labels, seed))
            else:
                logits = method.classify(net, images, own)
                (maps,), took = timed(lambda: [method.maps(net, images, labels, seed)])
            correct = (logits.argmax(1).cpu() == labels.cpu()).numpy()
            seconds[method.key] += took
            differences[method.key] = max(differences[method.key], float((maps - relu_cam).abs().max()))
            maps = maps.numpy()
            evaluators[method.key].accumulate(maps, truth, correct)
            hits[method.key] += int(correct.sum())
            if heatmaps and method.key == registry.CAM.key:  # the standard CAM of the true class, as computed
                write_heatmaps(heatmaps, maps, image_ids(dataset, cfg.split, start, start + len(labels)))
        picked = [index - start for index in shown if start <= index < start + len(labels)]
        examples += example_images(net, loaded.info, registry.examples_method(chosen), images, labels, own, boxes,
                                   picked, start, seed)
    located = {key: results.LocalizationResult(classification_top1=100 * hits[key] / count, **evaluator.compute(),
                                               equals_cam_max_diff=differences[key])
               for key, evaluator in evaluators.items()}
    return located, examples, count, seconds, forward_seconds


def localize(report: results.Report, net, loaded: data.LoadedDataset, cfg, device, chosen: list[registry.Method],
             has_validation: bool) -> list[figures.Example]:
    """The localization group, into report: each method's operating threshold is its best box
    threshold on the validation split when the run held one out (else --cam_threshold). Returns the
    examples figure's images, with the boxes of their maps at that threshold."""
    shown_count = first_images(len(getattr(loaded, cfg.split)), cfg.limit)
    shown = sorted(random.Random(cfg.seed).sample(range(shown_count), min(cfg.examples, shown_count)))
    measured, examples, count, seconds, forward_seconds = measure(net, loaded, cfg, device, chosen, shown)
    boxed = any(result.max_box_acc is not None for result in measured.values())  # OpenImages' masks: no box
    located = [method for method in chosen if method.key in measured]
    best_thresholds = (operating_thresholds(net, loaded, cfg, device, located)
                       if has_validation and boxed and cfg.split != "validation"
                       else {key: result.max_box_acc_threshold for key, result in measured.items()})
    for key, result in measured.items():
        best = best_thresholds[key]
        result.operating = (  # without a validation split: exactly at --cam_threshold, which need not lie on the sweep
            None if result.max_box_acc is None  # no boxes (OpenImages): no box at any threshold to score
            else results.OperatingPoint(**localization.at_threshold({"curves": result.curves}, best)) if has_validation
            else results.OperatingPoint(cfg.cam_threshold, result.top1_loc, result.gt_known_loc))
        report.methods[key].localization = result
        report.methods[key].cost = results.Cost(1000 * seconds[key] / count, seconds[key] / forward_seconds)
    report.forward_ms_per_image = 1000 * forward_seconds / count
    operating = measured[registry.examples_method(chosen).key].operating
    for example in examples:
        example.box = None if operating is None else localization.boxes_from_maps(example.heat[None], operating.threshold)[0]
    report.images, report.threshold_step = count, cfg.threshold_step
    report.thresholds_chosen_on = "validation" if has_validation else f"--cam_threshold={cfg.cam_threshold}"
    return examples


def explain(report: results.Report, net, scorer, loaded: data.LoadedDataset, cfg, device,
            chosen: list[registry.Method], random_labels_net) -> dict:
    """The faithfulness and sanity groups of report.groups, into report, on the first cfg.explained
    images of the split (within cfg.limit): each method maps the class the model predicts (the
    decision); pointing scores are against the item. The class probabilities that the faithfulness
    scores read come from scorer, net with its batch norms folded (models.folded_batch_norms); the
    maps come from net itself: the sanity cascade re-initializes its batch norms, and the pixel order
    of ROAD and the curves can turn on float rounding where a map's values tie (docs/performance.md).
    Returns the cascade figure's maps, {stage: {method key: maps (shown, H, W)}} (empty without the
    sanity group)."""
    dataset = getattr(loaded, cfg.split)
    count = first_images(len(dataset), cfg.explained, cfg.limit)
    faithful = [method for method in chosen if "faithfulness" in report.groups and method.runs_in("faithfulness")]
    evaluators = {method.key: faithfulness.FaithfulnessEvaluator(
        cfg.steps, cfg.baseline, loaded.info.mean, loaded.info.std, cfg.tolerance, cfg.road_images, cfg.seed)
        for method in faithful}
    sanity_evaluator = sanity.SanityEvaluator(
        {method.key: method for method in chosen if "sanity" in report.groups and method.runs_in("sanity")}, cfg.seed,
        cfg.sanity_seeds)
    cam_maps, boxes_seen, started, sanity_seconds = [], [], time.perf_counter(), 0.0
    for start, images, _ in batches(loaded, cfg.split, cfg, device, count):
        with torch.no_grad():
            logits = scorer(images)  # the probabilities of every faithfulness score come from the folded copy
        predicted = logits.argmax(1)
        truth = data.ground_truth(dataset, start, start + len(images))
        boxes_seen.append(exclusive_boxes(truth))
        ends = next(iter(evaluators.values())).unmasked(  # the same for every method: computed once
            scorer, images, predicted, faithfulness.probabilities_of(logits, predicted)) if evaluators else None
        for method in faithful:
            maps = method.maps(net, images, predicted, seeds.mix(cfg.seed, start)).cpu().numpy()
            evaluators[method.key].accumulate(scorer, images, predicted, maps, truth, ends)
            cam_maps += [maps] if method.key == registry.CAM.key else []
        if sanity_evaluator.methods:
            sanity_started = time.perf_counter()
            sanity_evaluator.accumulate(net, images, predicted, random_labels_net)
            sanity_seconds += time.perf_counter() - sanity_started
    report.explained_images = count
    for key, evaluator in evaluators.items():
        report.methods[key].faithfulness = results.FaithfulnessResult(**evaluator.compute())
    for key, stages in sanity_evaluator.compute().items():
        report.methods[key].sanity = results.SanityResult.from_stages(stages)
    if "sanity" in report.groups:
        report.sanity_seeds, report.seconds_sanity = cfg.sanity_seeds, round(sanity_seconds, 1)
    if "faithfulness" in report.groups:
        report.steps, report.baseline, report.tolerance = cfg.steps, cfg.baseline, cfg.tolerance
        report.road_images = min(cfg.road_images, count)
        report.cam_iou_vs_deletion_spearman = cam_iou_vs_deletion(
            report, np.concatenate(cam_maps), np.concatenate(boxes_seen), cfg.cam_threshold) if cam_maps else None
        report.seconds_faithfulness = round(time.perf_counter() - started - sanity_seconds, 1)
    return sanity_evaluator.examples


def cam_iou_vs_deletion(report: results.Report, cam_maps: np.ndarray, boxes: np.ndarray, cam_threshold: float
                        ) -> float | None:
    """The Spearman correlation across images of the standard CAM's box IoU (at its operating
    threshold; --cam_threshold without the localization group) with its deletion AUC."""
    cam = report.methods[registry.CAM.key]
    if not (boxes[..., 2] >= boxes[..., 0]).any():
        return None  # no true boxes (OpenImages' masks): no box IoU to correlate
    threshold = cam.localization.operating.threshold if cam.localization else cam_threshold
    ious = localization.best_iou(localization.boxes_from_maps(cam_maps, threshold), boxes)
    deletion = np.asarray(cam.faithfulness.per_image["deletion_auc"])
    return float(sanity.spearman_correlation(ious[None], deletion[None])[0])


def random_labels_model(cfg, net, checkpoint: dict, device):
    """The --random_labels_checkpoint model (None when not given), checked to be trained on
    permuted labels of the same data, and not to be the model itself."""
    if not cfg.random_labels_checkpoint:
        return None
    random_labels_net, other = models.load_checkpoint(cfg.random_labels_checkpoint, device,
                                                      checkpoints.TRAINING_METADATA)
    if not other["hyperparameters"].get("permute_labels"):
        raise cli.UserError(f"--random_labels_checkpoint: {cfg.random_labels_checkpoint} was not trained with "
                            "--permute_labels; train one with `python train.py --permute_labels ...`")
    if other["dataset"] != checkpoint["dataset"]:
        raise cli.UserError(f"--random_labels_checkpoint: {cfg.random_labels_checkpoint} was trained on other data "
                            f"than {cfg.checkpoint}; train it with the same --dataset and settings")
    if same_weights(net, random_labels_net):
        raise cli.UserError(f"--random_labels_checkpoint: {cfg.random_labels_checkpoint} holds the same weights as "
                            f"--checkpoint {cfg.checkpoint}, so the test would compare the model with itself; pass "
                            "another run, trained with `python train.py --permute_labels ...`")
    return random_labels_net


def load_splits(cfg, checkpoint: dict) -> tuple[data.DatasetInfo, data.LoadedDataset, bool]:
    """The checkpoint's dataset, or --dataset read as the checkpoint reads images: (the checkpoint's
    description, the splits, whether they hold a validation split: held out of the training images
    as train.py held it out, or the dataset's own, as cub's); refused when it has no ground-truth boxes."""
    info = data.DatasetInfo.from_dict(checkpoint["dataset"])
    name = cfg.dataset or info.name
    own = name == info.name
    options = dict(info.options) if own else {}
    if cfg.metadata_dir:
        if "metadata_dir" not in data.DATASETS[name].options:
            raise cli.UserError(f"--metadata_dir is the metadata folder of cub, ilsvrc and openimages, not of {name}: "
                                "drop it, or pass --dataset=cub|ilsvrc|openimages")
        options["metadata_dir"] = cfg.metadata_dir
    loaded = data.load_dataset(name, cfg.data_dir or checkpoint["hyperparameters"]["data_dir"], cfg.download,
                               info.image_size, options, read_as=None if own else info)
    if not own and len(loaded.info.classes) != len(info.classes):
        raise cli.UserError(f"--dataset={name} in {cfg.data_dir} has {len(loaded.info.classes)} classes and "
                            f"{cfg.checkpoint} was trained on {len(info.classes)} ({info.name}); pass a dataset "
                            "with the checkpoint's classes in its label order (export_wsol.py writes the cluttered set's)")
    if data.ground_truth(loaded.test, 0, 1) is None:
        where = f"{cfg.checkpoint} was trained on {name}, whose" if own else f"--dataset={name}: its"
        raise cli.UserError(
            f"{where} test set has no ground-truth boxes; evaluate a checkpoint trained with "
            "--dataset=fashion-mnist-cluttered, cub, ilsvrc or openimages, or pass --dataset with boxes"
        )
    held_out = checkpoint["hyperparameters"].get("validation", 0) if own else 0
    if held_out:
        loaded = loaded.hold_out(held_out, seeds.mix(checkpoint["hyperparameters"]["seed"]))  # as train.py held it out
    elif loaded.validation is None and cfg.split == "validation":
        raise cli.UserError(f"{cfg.checkpoint} was trained without a validation split; train with --validation=N "
                            "(for example 5000) to evaluate on held-out training canvases")
    return info, loaded, bool(held_out) or loaded.validation is not None  # held out, or the dataset's own (cub's)


def evaluate(cfg, given: set[str] = frozenset()) -> results.Report:
    """Compute the report cfg asks for, write it, and return it (localization.json is its
    as_json()). given: the hyperparameters set on the command line (cli.given_names), refused when
    no group run uses them. The localization group, the gallery and the faithfulness scores' class
    probabilities run the model with its batch norms folded into its convolutions
    (models.folded_batch_norms): the same logits and maps up to float rounding, 1.2x sooner on a CPU."""
    validate(cfg, given)
    groups = chosen_groups(cfg)
    device = devices.pick_device(cfg.device)
    net, checkpoint = models.load_checkpoint(cfg.checkpoint, device, checkpoints.TRAINING_METADATA)
    if note := checkpoints.selection_note(cfg.checkpoint, checkpoint):
        print(note)
    random_labels_net = random_labels_model(cfg, net, checkpoint, device)
    for model in (net, random_labels_net):
        if model is not None:
            model.to(memory_format=devices.memory_format(cfg.channels_last))
    folded = models.folded_batch_norms(net).to(memory_format=devices.memory_format(cfg.channels_last))
    info, loaded, has_validation = load_splits(cfg, checkpoint)
    reading = map_reading.MapReading(cfg.normalization, cfg.percentile,
                                      cfg.flip_maps and data.trained_with_flips(info.name))
    chosen = registry.choose(registry.parse_keys(cfg.methods), reading, cfg.cam_batch_size)
    check_methods(cfg, given, groups, chosen)
    output_dir = files.writable_folder(cfg.output_dir, "output_dir")
    print(f"evaluating {cfg.checkpoint} on {loaded.info.name}'s {cfg.split} split on {device}: {', '.join(groups)}"
          + ("; operating thresholds chosen on its validation split" if has_validation and "localization" in groups else ""))
    started = time.perf_counter()
    report = results.Report(str(cfg.checkpoint), loaded.info.as_dict(), cfg.split, groups,
                            {method.key: results.MethodResult(method) for method in chosen}, cfg.batch_size,
                            cfg.cam_batch_size if any(method.batch_size for method in chosen) else None)
    examples, cascade = [], {}
    if "localization" in groups:
        examples = localize(report, folded, loaded, cfg, device, chosen, has_validation)
        report.seconds_localization = round(time.perf_counter() - started, 1)
    if "faithfulness" in groups or "sanity" in groups:
        cascade = explain(report, net, folded, loaded, cfg, device, chosen, random_labels_net)
    gallery = gallery_images(report, folded, loaded, cfg, device, chosen) if cfg.gallery else []
    report.seconds = round(time.perf_counter() - started, 1)
    write_report(report, examples, cascade, gallery, output_dir)
    return report


# --- the report's tables and figures: here the methods get their display names ---

def markdown_table(report: results.Report) -> str:
    """The localization metrics as a markdown table, a row per method."""
    lines = [
        "| method | top-1 cls | threshold | top-1 loc | GT-known loc | MaxBoxAcc | MaxBoxAccV2 | (IoU 0.3 / 0.5 / 0.7) | PxAP |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    def cell(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    for result in report.measured("localization"):
        scores, operating = result.localization, result.localization.operating
        threshold, top1_loc, gt_known_loc = (  # no operating point: the ground truth has masks only
            (operating.threshold, operating.top1_loc, operating.gt_known_loc) if operating else (None, None, None))
        by_iou = " / ".join(f"{value:.1f}" for value in scores.max_box_acc_v2_by_iou.values()) or "—"
        lines.append(" | ".join([
            f"| {result.method.name}", cell(scores.classification_top1), cell(threshold),
            cell(top1_loc), cell(gt_known_loc), cell(scores.max_box_acc),
            cell(scores.max_box_acc_v2), by_iou, cell(scores.pxap)]) + " |")
    conventions = sorted({result.localization.box_convention for result in report.measured("localization")})
    return "\n".join(lines) + "\n" + "".join(f"\nBoxes: {convention}.\n" for convention in conventions)


def same_maps_note(report: results.Report) -> str:
    """The line under the localization table: which methods gave the maps of ReLU(CAM), min-max
    normalized (registry.relu_cam), on every image, and how far the others' are from them."""
    located = report.measured("localization")
    same = [result for result in located if result.localization.equals_cam_max_diff <= registry.SAME_MAPS_TOLERANCE]
    others = sorted((result for result in located if result not in same),
                    key=lambda result: result.localization.equals_cam_max_diff)  # the closest first
    parts = []
    if same:
        parts.append(f"{', '.join(result.method.name for result in same)}: the same maps as ReLU(CAM), min-max "
                     f"normalized, on all {report.images} images (max |diff| "
                     f"{max(result.localization.equals_cam_max_diff for result in same):.0e})")
    if others:
        closest = others[0].localization.equals_cam_max_diff
        parts.append(f"the others' maps differ from those by a max |diff| of {closest:.2f} ({others[0].method.name}) "
                     "or more" if same else f"No method gives the maps of ReLU(CAM), min-max normalized: the closest "
                     f"differs from them by a max |diff| of {closest:.2f} ({others[0].method.name})")
    return "; ".join(parts) + "."


def percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


SUMMARY_COLUMNS = (  # the summary's columns after the method: (header, how a MethodResult gives its value)
    ("MaxBoxAccV2 ↑", lambda r: r.localization and r.localization.max_box_acc_v2),
    ("PxAP ↑", lambda r: r.localization and r.localization.pxap),
    ("pointing game ↑", lambda r: r.faithfulness and r.faithfulness.pointing_game),
    ("energy pointing ↑", lambda r: r.faithfulness and r.faithfulness.energy_pointing_game),
    ("deletion AUC ↓", lambda r: r.faithfulness and 100 * r.faithfulness.deletion_auc),
    ("insertion AUC ↑", lambda r: r.faithfulness and 100 * r.faithfulness.insertion_auc),
    ("ROAD MoRF ↓", lambda r: r.faithfulness and percent(r.faithfulness.road_mean("morf"))),
    ("ROAD LeRF ↑", lambda r: r.faithfulness and percent(r.faithfulness.road_mean("lerf"))),
    ("average drop ↓", lambda r: r.faithfulness and r.faithfulness.average_drop),
    ("increase ↑", lambda r: r.faithfulness and r.faithfulness.increase),
    ("cascade: Spearman ↓", lambda r: r.sanity and r.sanity.last_stage.spearman),
    ("± sd", lambda r: r.sanity and r.sanity.last_stage.spearman_std),
    ("cascade: SSIM ↓", lambda r: r.sanity and r.sanity.last_stage.ssim),
    ("± sd", lambda r: r.sanity and r.sanity.last_stage.ssim_std),
    ("random labels: Spearman ↓", lambda r: r.sanity and r.sanity.random_labels and r.sanity.random_labels.spearman),
    ("ms / image", lambda r: r.cost and r.cost.ms_per_image),
    ("× forward", lambda r: r.cost and r.cost.over_forward),
)
SPREAD = "± sd"  # a column that the markdown table writes after the one before it (mean ± sd)


def summary_rows(report: results.Report) -> tuple[list[str], list[list]]:
    """(header, rows): one row per method measured, its name then the SUMMARY_COLUMNS values (float,
    or None where a group was not run or does not apply); report.html's sortable table."""
    header = ["method"] + [title for title, _ in SUMMARY_COLUMNS]
    rows = []
    for result in report.measured():
        values = [value(result) for _, value in SUMMARY_COLUMNS]
        rows.append([result.method.name] + [None if value is None else float(value) for value in values])
    return header, rows


def summary_table(report: results.Report) -> str:
    """summary_rows as markdown: the sanity scores as mean ± standard deviation over the cascade's
    draws, — where a group was not run or does not apply."""
    header, rows = summary_rows(report)
    digits = {"cascade: Spearman ↓": 2, "cascade: SSIM ↓": 2, "random labels: Spearman ↓": 2, "ms / image": 2}

    def cell(title: str, value: float | None) -> str:
        return "—" if value is None else f"{value:.{digits.get(title, 1)}f}"

    shown = [i for i, title in enumerate(header) if title != SPREAD]
    lines = ["| " + " | ".join(header[i] for i in shown) + " |", "|---" + "|---:" * (len(shown) - 1) + "|"]
    for row in rows:
        cells = [row[0]]
        for i in shown[1:]:
            spread = i + 1 < len(header) and header[i + 1] == SPREAD and row[i + 1] is not None
            cells.append(cell(header[i], row[i]) + (f" ± {row[i + 1]:.2f}" if spread else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def explained_note(report: results.Report) -> str:
    """The paragraph above the summary table: which images the faithfulness and sanity groups that
    ran were measured on, and how."""
    groups = report.groups
    how = []
    if "faithfulness" in groups:
        road = (f"ROAD: mean class probability in % over {faithfulness.ROAD_PERCENTAGES}% removed, on the first "
                f"{report.road_images} images" if report.road_images else "no ROAD (--road_images=0)")
        how.append(f"deletion and insertion AUC in % of probability, {report.steps} steps, {report.baseline} "
                   f"baseline; {road}; pointing game within {report.tolerance:g} px of the object")
    if "sanity" in groups:
        how.append(f"cascade: after the last stage, the first conv re-initialized; mean ± standard deviation over "
                   f"{report.sanity_seeds} random draw{'s' * (report.sanity_seeds > 1)}")
    note = ("All methods side by side: " + ("localization on the images above; " if "localization" in groups else "")
            + " and ".join(group for group in ("faithfulness", "sanity") if group in groups)
            + f" on the first {report.explained_images} {report.split} images, maps of the predicted class ("
            + "; ".join(how) + ").")
    sanity = report.measured("sanity")
    if sanity:
        verdicts = {verdict: [result.method.name for result in sanity if result.sanity.passes_cascade == verdict]
                    for verdict in (True, False)}
        note += (f" Passes the cascading randomization (after the last stage, |Spearman| + 2 sd below "
                 f"{sanity.UNCORRELATED:g}): {', '.join(verdicts[True]) or 'none'}; fails: "
                 f"{', '.join(verdicts[False]) or 'none'}.")
    if report.cam_iou_vs_deletion_spearman is not None:
        note += (f" Across images, CAM's box IoU and its deletion AUC have a Spearman correlation of "
                 f"{report.cam_iou_vs_deletion_spearman:.3f}.")
    return note


def named(report: results.Report, group: str) -> list[tuple[str, object]]:
    """(display name, record) of each method that group measured: a figure's rows."""
    return [(result.method.name, getattr(result, group)) for result in report.measured(group)]


def cascade_rows(report: results.Report, cascade: dict) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The cascade figure's rows, each (label, {stage: map}): the first sanity-tested method's
    (CAM's) map of each image kept, then the first image's map of each method that does not use the
    weights (the edge map), which no stage changes."""
    tested, stages = [result.method for result in report.measured("sanity")], list(cascade)
    first = tested[0].key
    rows = [(f"image {i}", {stage: cascade[stage][first][i] for stage in stages})
            for i in range(len(cascade[stages[0]][first]))]
    return rows + [(f"{method.name}\nimage 0", {stage: cascade[stage][method.key][0] for stage in stages})
                   for method in tested if not method.uses_weights]


FIGURE_CAPTIONS = {
    "localization_examples.png": "Test images: the map, its box at the operating threshold (green) and the true box (red)",
    "localization_thresholds.png": "Box accuracy against the threshold, and pixel precision-recall",
    "faithfulness_curves.png": "Deletion and insertion: the class probability as pixels are removed or inserted",
    "sanity_cascade.png": "Cascading randomization: the maps as the model's stages are re-initialized",
    "sanity_curves.png": "Cascading randomization: similarity to the trained model's maps, stage by stage",
}


def write_report(report: results.Report, examples: list[figures.Example], cascade: dict,
                 gallery: list[html_page.GalleryImage], output_dir: Path) -> None:
    """Write localization.md, localization.json, the figures of the groups run and report.html (the
    page to browse: the summary sortable, the gallery, the figures) to output_dir; report.files (set here) lists them. A figure of an earlier report that this one does not
    draw is deleted (these fixed names only), so that no file in the folder passes for this run's."""
    groups = report.groups
    figures = [  # (name, whether this report draws it, how)
        ("localization_examples.png", bool(examples), lambda path: figures.examples_figure(examples, path)),
        ("localization_thresholds.png", "localization" in groups,
         lambda path: figures.threshold_curves_figure(named(report, "localization"), path)),
        ("faithfulness_curves.png", "faithfulness" in groups,
         lambda path: figures.removal_curves_figure(named(report, "faithfulness"), path)),
        ("sanity_cascade.png", bool(cascade), lambda path: figures.cascade_figure(cascade_rows(report, cascade), path)),
        ("sanity_curves.png", "sanity" in groups, lambda path: figures.sanity_curves_figure(named(report, "sanity"), path)),
    ]
    report.files = ["localization.md", "localization.json", "report.html"] + [name for name, drawn, _ in figures if drawn]
    parts = []
    if "localization" in groups:
        parts.append(
            f"Localization of `{report.checkpoint}` on {report.images} {report.dataset['name']} "
            f"{report.split} images (top-1 / GT-known loc at each method's threshold, chosen with "
            f"{report.thresholds_chosen_on}; sweep step {report.threshold_step}).\n\n" + markdown_table(report)
            + "\n" + same_maps_note(report) + f" What each method's maps cost, per image at batch size {report.batch_size} "
            f"and over a plain forward pass of the same batches ({report.forward_ms_per_image:.2f} ms per image; "
            "both with the batch norms folded into the convolutions): "
            "the last columns below.\n")
    if report.explained_images is not None:
        parts.append(explained_note(report) + "\n\n" + summary_table(report))
    else:
        parts.append("All methods side by side (the localization group only):\n\n" + summary_table(report))
    parts.append(f"Files of this report: {', '.join(report.files)}.\n")
    text = "\n".join(parts)
    for name, drawn, draw in figures:
        if drawn:
            draw(output_dir / name)
        else:
            (output_dir / name).unlink(missing_ok=True)
    with files.atomic_output(output_dir / "localization.md") as temporary:
        temporary.write_text(text)
    with files.atomic_output(output_dir / "localization.json") as temporary:
        temporary.write_text(json.dumps(report.as_json(), indent=1) + "\n")
    title = f"`{report.checkpoint}` on {report.dataset['name']}'s {report.split} split: {', '.join(groups)}"
    html_page.write_report_page(
        output_dir / "report.html", title, [part.split("\n\n")[0] for part in parts[:-1]], *summary_rows(report),
        gallery, [(FIGURE_CAPTIONS[name], output_dir / name) for name, drawn, _ in figures if drawn])
    print(text, end="")
    print(f"done in {report.seconds:.1f} s; wrote " + ", ".join(str(output_dir / name) for name in report.files))


def main(argv: list[str] | None = None) -> None:
    devices.keep_freed_memory()
    with cli.enough_memory("lower --batch_size"):
        evaluate(cli.parse_hyperparameters(sys.modules[__name__], argv), cli.given_names(argv))


if __name__ == "__main__":
    cli.run(main)
