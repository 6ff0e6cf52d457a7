"""Does the map land on the object? The localization report of a checkpoint, on its test (or validation) split.

    python evaluate_cam.py                                    # checkpoints/last.pt
    python evaluate_cam.py --checkpoint=PATH --limit=1000     # the first 1000 images only
    python evaluate_cam.py --split=validation                 # choose a reading (--normalization ...) here
    python evaluate_cam.py --help                             # every hyperparameter with its default

The checkpoint's dataset must carry ground-truth boxes and masks (fashion-mnist-cluttered). For
CAM read the standard way (raw, min-max: the published tables' row), for CAM read as
--normalization / --percentile / --flip_maps say (localization.cam_heat_maps), for Grad-CAM on the
same model and for a centered Gaussian baseline it measures top-1 and GT-known localization
accuracy, MaxBoxAcc, MaxBoxAccV2 and PxAP (see localization.py). Following Choe et al. (CVPR 2020),
when the checkpoint was trained with a --validation split, the operating threshold of top-1 and
GT-known loc is each method's best box threshold on that split (box-labelled canvases of held-out
training items), never one chosen on the test split; otherwise it is --cam_threshold.

Writes to outputs/: localization.md (the table), localization.json (the numbers and the curves),
localization_examples.png (images with their maps, the predicted box in green and the true one in
red) and localization_thresholds.png (box accuracy against the threshold, pixel precision-recall);
faithfulness_curves.png and sanity_cascade.png for those groups. The .md and .json list the files
written; a figure of an earlier run that this run does not draw is deleted, so none passes for this run's.
"""

from utils import cli  # noqa: I001 -- first: a Ctrl-C while torch loads then ends in one line, not a traceback

if __name__ == "__main__":
    cli.quiet_interrupts()

import json
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure

import data
from utils import devices
import drawing
import faithfulness
from utils import files
import localization
import model as models
from utils import checkpoints, seeds

# --- hyperparameters: edit them here, or override them on the command line (--name=value) ---
checkpoint: str = "checkpoints/last.pt"  # a checkpoint trained on fashion-mnist-cluttered (the last one, as Choe et al. report)
split: str = "test"  # test | validation (the held-out training canvases of a run trained with --validation)
normalization: str = localization.RECIPE_READING.normalization  # the read CAM row: minmax | max | ivr (localization.normalize_maps)
percentile: float = localization.RECIPE_READING.percentile  # ivr: the quantile of each map subtracted before scaling, in [0, 1)
flip_maps: bool = localization.RECIPE_READING.flip  # the read CAM row: average in the CAMs of the mirror image, mirrored back
data_dir: str = ""  # where the test set is found; "": the data_dir the checkpoint was trained with
download: bool = True  # download the source dataset if it is not on disk
batch_size: int = 250  # images per batch
limit: int = 0  # evaluate the first N images of each split only, in every group (0: all of them)
cam_threshold: float = localization.CAM_THRESHOLD  # box threshold of top-1 and GT-known loc when the run has no validation split
threshold_step: float = localization.THRESHOLD_STEP  # step of the threshold sweep (0 to 1) of MaxBoxAcc, MaxBoxAccV2 and PxAP
examples: int = 16  # images shown in localization_examples.png
groups: str = "localization,faithfulness,sanity"  # which reports to make (comma-separated): localization | faithfulness | sanity
explained: int = 1000  # faithfulness and sanity: the first N images of the split, within --limit (0: all of them)
steps: int = 16  # deletion and insertion: steps from 0% to 100% of the pixels (at least 2)
baseline: str = "blur"  # deletion and insertion: what removed pixels become: blur | black | mean
road_images: int = 100  # ROAD on the first N explained images (0: none; it solves a linear system per image and step)
tolerance: float = 0.0  # pointing game: pixels the map's peak may lie from the object
random_labels_checkpoint: str = ""  # sanity: a run trained with --permute_labels, for the data randomization test
seed: int = 0  # which test images the examples figure shows, the random map, ROAD's noise and the cascade (any int)
output_dir: str = "outputs"  # where the report is written
device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
# ------------------------------------------------------------------------------------------------

SPLITS = ("test", "validation")
GROUPS = ("localization", "faithfulness", "sanity")
STANDARD_ROW = "CAM (standard: raw, min-max)"
SANITY_ROWS = {"CAM": STANDARD_ROW, "Grad-CAM": "Grad-CAM", "edge (Sobel)": "edge (Sobel)"}  # raw_maps' names
FLAG_GROUPS = {  # the flags that only some groups use (the others apply to every group): the groups using each
    "threshold_step": ("localization",), "examples": ("localization",),
    "cam_threshold": ("localization", "faithfulness"), "normalization": ("localization", "faithfulness"),
    "percentile": ("localization", "faithfulness"), "flip_maps": ("localization", "faithfulness"),
    "explained": ("faithfulness", "sanity"), "steps": ("faithfulness",), "baseline": ("faithfulness",),
    "road_images": ("faithfulness",), "tolerance": ("faithfulness",), "random_labels_checkpoint": ("sanity",),
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
    ]
    cli.require(checks)
    cli.check_choice("split", cfg.split, SPLITS)
    cli.check_choice("normalization", cfg.normalization, localization.NORMALIZATIONS)
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


def describe_reading(reading: localization.MapReading) -> str:
    """The read CAM row's name, e.g. "CAM, ivr 0.3, flips"."""
    parts = [reading.normalization + (f" {reading.percentile:g}" if reading.normalization == "ivr" else "")]
    return "CAM, " + ", ".join(parts + (["flips"] if reading.flip else []))


def method_maps(net, images: torch.Tensor, labels: torch.Tensor, center: np.ndarray,
                reading: localization.MapReading) -> dict:
    """{method: (float maps (B, H, W) in [0, 1] of the true class, bool (B,) whether the class is
    predicted right)} for a batch of images (B, C, H, W): CAM read the standard way, CAM read as
    `reading` (when it differs), Grad-CAM, and the centered baseline."""
    true = labels[:, None]
    logits, _, standard = localization.cam_heat_maps(net, images, localization.STANDARD_READING, true)
    correct = (logits.argmax(1) == labels).cpu().numpy()
    methods = {STANDARD_ROW: (standard[:, 0].cpu().numpy(), correct)}
    if reading != localization.STANDARD_READING:
        read_logits, _, heat = localization.cam_heat_maps(net, images, reading, true)
        methods[describe_reading(reading)] = (heat[:, 0].cpu().numpy(), (read_logits.argmax(1) == labels).cpu().numpy())
    _, grad_cams = models.grad_cam(net, images, labels)
    grad_heat = localization.normalize_maps(localization.upsample_maps(grad_cams[:, None], images.shape[-2:]))
    methods["Grad-CAM"] = (grad_heat[:, 0].cpu().numpy(), correct)
    methods["center baseline"] = (np.broadcast_to(center, (len(labels), *center.shape)), correct)
    return methods


def measure(net, loaded: data.LoadedDataset, split: str, cfg, device, reading, shown: list[int]
            ) -> tuple[dict, list, int]:
    """({method: LocalizationEvaluator.compute() metrics plus its classification_top1}, the
    examples for the figure (the images at indices `shown`), images measured) on one split."""
    dataset = getattr(loaded, split)
    count = first_images(len(dataset), cfg.limit)
    thresholds = localization.threshold_sweep(cfg.threshold_step)
    center = localization.centered_gaussian(loaded.info.image_size, loaded.info.image_size)
    evaluators, correct_counts, examples = {}, {}, []
    for start, (images, labels) in zip(range(0, count, cfg.batch_size),
                                       loaded.loader(split, cfg.batch_size, device, limit=count)):
        images, labels = images.to(device), labels.to(device)
        boxes, masks = data.ground_truth(dataset, start, start + len(labels))
        for name, (maps, correct) in method_maps(net, images, labels, center, reading).items():
            evaluator = evaluators.setdefault(name, localization.LocalizationEvaluator(thresholds, cfg.cam_threshold))
            evaluator.accumulate(maps, boxes, masks, correct)
            correct_counts[name] = correct_counts.get(name, 0) + int(correct.sum())
        for index in (i for i in shown if start <= i < start + len(labels)):
            b = index - start
            _, predicted, heat = localization.cam_heat_maps(net, images[b:b + 1], reading)
            heat = heat[0, 0].cpu().numpy()
            examples.append({
                "index": index, "image": drawing.to_rgb_image(images[b], loaded.info.mean, loaded.info.std),
                "heat": heat, "truth": boxes[b], "true": loaded.info.classes[int(labels[b])],
                "predicted": loaded.info.classes[int(predicted[0, 0])],
            })
    metrics = {name: {**evaluator.compute(), "classification_top1": 100 * correct_counts[name] / count}
               for name, evaluator in evaluators.items()}
    return metrics, examples, count


def explained_maps(net, images: torch.Tensor, classes: torch.Tensor, center: np.ndarray, reading, seed: int) -> dict:
    """{method: float maps (B, H, W) in [0, 1] of classes (B,)}: method_maps' methods, a random map
    (uniform noise, fixed by seed) and the Sobel edge map of the image, min-max normalized."""
    maps = {name: heat for name, (heat, _) in method_maps(net, images, classes, center, reading).items()}
    noise = torch.rand(len(images), *images.shape[-2:], generator=torch.Generator().manual_seed(seed))
    maps["random"] = noise.numpy()
    maps["edge (Sobel)"] = localization.normalize_maps(faithfulness.sobel_edges(images)).cpu().numpy()
    return maps


def measure_explanations(net, loaded: data.LoadedDataset, split: str, cfg, device, reading, random_labels_net) -> dict:
    """The faithfulness and sanity groups on the first cfg.explained images of split (within
    cfg.limit): the maps explain the class the model predicts (the decision), pointing scores are
    against the item.
    Returns {"faithfulness": {method: scores}, "sanity": {method: scores}, "examples": cascade
    maps, "cam_maps": standard CAM maps (N, H, W), "images": N}."""
    dataset = getattr(loaded, split)
    count = first_images(len(dataset), cfg.explained, cfg.limit)
    groups = chosen_groups(cfg)
    center = localization.centered_gaussian(loaded.info.image_size, loaded.info.image_size)
    evaluators, sanity, cam_maps, boxes_seen = {}, faithfulness.SanityEvaluator(cfg.seed), [], []
    for start, (images, labels) in zip(range(0, count, cfg.batch_size),
                                       loaded.loader(split, cfg.batch_size, device, limit=count)):
        images = images.to(device)
        with torch.no_grad():
            predicted = net(images).argmax(1)
        boxes, masks = data.ground_truth(dataset, start, start + len(labels))
        if "faithfulness" in groups:
            maps = explained_maps(net, images, predicted, center, reading, seeds.mix(cfg.seed, start))
            for name, heat in maps.items():
                evaluator = evaluators.setdefault(name, faithfulness.FaithfulnessEvaluator(
                    cfg.steps, cfg.baseline, loaded.info.mean, loaded.info.std, cfg.tolerance, cfg.road_images, cfg.seed))
                evaluator.accumulate(net, images, predicted, heat, masks, boxes)
            cam_maps.append(maps[STANDARD_ROW])
            boxes_seen.append(boxes)
        if "sanity" in groups:
            sanity.accumulate(net, images, predicted, random_labels_net)
    result = {"images": count}
    if "faithfulness" in groups:
        result["faithfulness"] = {name: evaluator.compute() for name, evaluator in evaluators.items()}
        result["cam_maps"], result["boxes"] = np.concatenate(cam_maps), np.concatenate(boxes_seen)
    if "sanity" in groups:
        result["sanity"] = {SANITY_ROWS[name]: scores for name, scores in sanity.compute().items()}
        result["examples"] = sanity.examples
    return result


def evaluate(cfg, given: set[str] = frozenset()) -> dict:
    """Compute the report cfg asks for, write it, and return it (the JSON's content). given: the
    hyperparameters set on the command line (cli.given_names), refused when no group run uses them."""
    validate(cfg, given)
    groups = chosen_groups(cfg)
    device = devices.pick_device(cfg.device)
    net, checkpoint = models.load_checkpoint(cfg.checkpoint, device, checkpoints.TRAINING_METADATA)
    if note := checkpoints.selection_note(cfg.checkpoint, checkpoint):
        print(note)
    random_labels_net = None
    if cfg.random_labels_checkpoint:
        random_labels_net, other = models.load_checkpoint(cfg.random_labels_checkpoint, device, checkpoints.TRAINING_METADATA)
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
    info = data.DatasetInfo.from_dict(checkpoint["dataset"])
    loaded = data.load_dataset(
        info.name, cfg.data_dir or checkpoint["hyperparameters"]["data_dir"], cfg.download, info.image_size,
        info.options,
    )
    if data.ground_truth(loaded.test, 0, 1) is None:
        raise cli.UserError(
            f"{cfg.checkpoint} was trained on {info.name}, whose test set has no ground-truth boxes; "
            "evaluate a checkpoint trained with --dataset=fashion-mnist-cluttered"
        )
    held_out = checkpoint["hyperparameters"].get("validation", 0)
    if held_out:
        loaded = loaded.hold_out(held_out, seeds.mix(checkpoint["hyperparameters"]["seed"]))  # as train.py held it out
    elif cfg.split == "validation":
        raise cli.UserError(f"{cfg.checkpoint} was trained without a validation split; train with --validation=N "
                            "(for example 5000) to evaluate on held-out training canvases")
    output_dir = files.writable_folder(cfg.output_dir, "output_dir")
    reading = localization.MapReading(cfg.normalization, cfg.percentile,
                                      cfg.flip_maps and data.trained_with_flips(info.name))
    print(f"evaluating {cfg.checkpoint} on {info.name}'s {cfg.split} split on {device}: {', '.join(groups)}"
          + ("; operating thresholds chosen on its validation split" if held_out and "localization" in groups else ""))
    started = time.perf_counter()
    report = {"checkpoint": str(cfg.checkpoint), "dataset": info.as_dict(), "split": cfg.split, "groups": groups,
              "methods": {}}
    examples = []
    if "localization" in groups:
        shown_count = first_images(len(getattr(loaded, cfg.split)), cfg.limit)
        shown = sorted(random.Random(cfg.seed).sample(range(shown_count), min(cfg.examples, shown_count)))
        methods, examples, count = measure(net, loaded, cfg.split, cfg, device, reading, shown)
        chosen_on = methods if not held_out or cfg.split == "validation" else measure(
            net, loaded, "validation", cfg, device, reading, [])[0]
        for name, metrics in methods.items():
            metrics["operating"] = (
                localization.at_threshold(metrics, chosen_on[name]["max_box_acc_threshold"]) if held_out
                else {"threshold": cfg.cam_threshold, "top1_loc": metrics["top1_loc"],  # exactly at --cam_threshold,
                      "gt_known_loc": metrics["gt_known_loc"]})  # which need not lie on the sweep
        shown_row = STANDARD_ROW if reading == localization.STANDARD_READING else describe_reading(reading)
        operating = methods[shown_row]["operating"]["threshold"]
        for example in examples:
            example["box"] = localization.boxes_from_maps(example["heat"][None], operating)[0]
        report.update(images=count, thresholds_chosen_on="validation" if held_out else f"--cam_threshold={cfg.cam_threshold}",
                      threshold_step=cfg.threshold_step)
        report["methods"] = {name: {"localization": metrics} for name, metrics in methods.items()}
        report["seconds_localization"] = round(time.perf_counter() - started, 1)
    cascade = {}
    if "faithfulness" in groups or "sanity" in groups:
        explained = measure_explanations(net, loaded, cfg.split, cfg, device, reading, random_labels_net)
        report["explained_images"] = explained["images"]
        for group in ("faithfulness", "sanity"):
            for name, scores in explained.get(group, {}).items():
                report["methods"].setdefault(name, {})[group] = scores
        if "faithfulness" in groups:
            report.update(steps=cfg.steps, baseline=cfg.baseline, road_images=min(cfg.road_images, explained["images"]),
                          tolerance=cfg.tolerance)
            threshold = (report["methods"][STANDARD_ROW]["localization"]["operating"]["threshold"]
                         if "localization" in groups else cfg.cam_threshold)
            ious = localization.box_iou(localization.boxes_from_maps(explained["cam_maps"], threshold), explained["boxes"])
            deletion = report["methods"][STANDARD_ROW]["faithfulness"]["per_image"]["deletion_auc"]
            report["cam_iou_vs_deletion_spearman"] = float(faithfulness.spearman_correlation(
                ious[None], np.asarray(deletion)[None])[0])
        cascade = explained.get("examples", {})
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_report(report, examples, cascade, output_dir)
    return report


def markdown_table(report: dict) -> str:
    """The localization metrics as a markdown table, a row per method."""
    lines = [
        "| method | top-1 cls | threshold | top-1 loc | GT-known loc | MaxBoxAcc | MaxBoxAccV2 | (IoU 0.3 / 0.5 / 0.7) | PxAP |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, groups in report["methods"].items():
        if "localization" not in groups:
            continue
        metrics = groups["localization"]
        by_iou = " / ".join(f"{value:.1f}" for value in metrics["max_box_acc_v2_by_iou"].values())
        operating = metrics["operating"]
        lines.append(
            f"| {name} | {metrics['classification_top1']:.2f} | {operating['threshold']:.2f} | "
            f"{operating['top1_loc']:.2f} | {operating['gt_known_loc']:.2f} | {metrics['max_box_acc']:.2f} | "
            f"{metrics['max_box_acc_v2']:.2f} | {by_iou} | {metrics['pxap']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def summary_table(report: dict) -> str:
    """One row per method, with the localization, faithfulness and sanity scores that were measured
    (— where a group was not run or does not apply)."""
    def cell(groups, group, key, scale=1.0, digits=1):
        value = groups.get(group, {})
        for part in key.split("/"):
            value = value.get(part) if isinstance(value, dict) else None
        return "—" if value is None else f"{scale * value:.{digits}f}"

    def road(groups, order):
        scores = (groups.get("faithfulness") or {}).get("road")
        return "—" if not scores else f"{100 * float(np.mean(scores[order])):.1f}"

    header = ("| method | MaxBoxAccV2 ↑ | PxAP ↑ | pointing game ↑ | energy pointing ↑ | deletion AUC ↓ | insertion AUC ↑ "
              "| ROAD MoRF ↓ | ROAD LeRF ↑ | average drop ↓ | increase ↑ | cascade: Spearman ↓ | cascade: SSIM ↓ "
              "| random labels: Spearman ↓ |")
    lines = [header, "|---" + "|---:" * 13 + "|"]
    for name, groups in report["methods"].items():
        last_stage = [stage for stage in groups.get("sanity", {}) if stage != "random labels"]
        lines.append(" | ".join([
            f"| {name}", cell(groups, "localization", "max_box_acc_v2"), cell(groups, "localization", "pxap"),
            cell(groups, "faithfulness", "pointing_game"), cell(groups, "faithfulness", "energy_pointing_game"),
            cell(groups, "faithfulness", "deletion_auc", 100), cell(groups, "faithfulness", "insertion_auc", 100),
            road(groups, "morf"), road(groups, "lerf"), cell(groups, "faithfulness", "average_drop"),
            cell(groups, "faithfulness", "increase"),
            cell(groups, "sanity", f"{last_stage[-1]}/spearman", digits=2) if last_stage else "—",
            cell(groups, "sanity", f"{last_stage[-1]}/ssim", digits=2) if last_stage else "—",
            cell(groups, "sanity", "random labels/spearman", digits=2),
        ]) + " |")
    return "\n".join(lines) + "\n"


def explained_note(report: dict) -> str:
    """The paragraph above the summary table: which images the faithfulness and sanity groups that
    ran were measured on, and how."""
    groups = report["groups"]
    how = []
    if "faithfulness" in groups:
        road = (f"ROAD: mean class probability in % over {faithfulness.ROAD_PERCENTAGES}% removed, on the first "
                f"{report['road_images']} images" if report["road_images"] else "no ROAD (--road_images=0)")
        how.append(f"deletion and insertion AUC in % of probability, {report['steps']} steps, {report['baseline']} "
                   f"baseline; {road}; pointing game within {report['tolerance']:g} px of the object")
    if "sanity" in groups:
        how.append("cascade: after the last stage, the first conv re-initialized")
    note = ("All methods side by side: " + ("localization on the images above; " if "localization" in groups else "")
            + " and ".join(group for group in ("faithfulness", "sanity") if group in groups)
            + f" on the first {report['explained_images']} {report['split']} images, maps of the predicted class ("
            + "; ".join(how) + ").")
    if "cam_iou_vs_deletion_spearman" in report:
        note += (f" Across images, CAM's box IoU and its deletion AUC have a Spearman correlation of "
                 f"{report['cam_iou_vs_deletion_spearman']:.3f}.")
    return note


def write_report(report: dict, examples: list[dict], cascade: dict, output_dir: Path) -> None:
    """Write localization.md, localization.json and the figures of the groups run to output_dir;
    report["files"] (set here) lists them. A figure of an earlier report that this one does not
    draw is deleted (these fixed names only), so that no file in the folder passes for this run's."""
    groups = report["groups"]
    figures = [  # (name, whether this report draws it, how)
        ("localization_examples.png", bool(examples), lambda path: write_examples(examples, path)),
        ("localization_thresholds.png", "localization" in groups, lambda path: write_curves(report, path)),
        ("faithfulness_curves.png", "faithfulness" in groups, lambda path: write_removal_curves(report, path)),
        ("sanity_cascade.png", bool(cascade), lambda path: write_cascade(cascade, path)),
    ]
    report["files"] = ["localization.md", "localization.json"] + [name for name, drawn, _ in figures if drawn]
    parts = []
    if "localization" in groups:
        parts.append(
            f"Localization of `{report['checkpoint']}` on {report['images']} {report['dataset']['name']} "
            f"{report['split']} images (top-1 / GT-known loc at each method's threshold, chosen with "
            f"{report['thresholds_chosen_on']}; sweep step {report['threshold_step']}).\n\n" + markdown_table(report))
    if "explained_images" in report:
        parts.append(explained_note(report) + "\n\n" + summary_table(report))
    parts.append(f"Files of this report: {', '.join(report['files'])}.\n")
    text = "\n".join(parts)
    for name, drawn, draw in figures:
        if drawn:
            draw(output_dir / name)
        else:
            (output_dir / name).unlink(missing_ok=True)
    with files.atomic_output(output_dir / "localization.md") as temporary:
        temporary.write_text(text)
    with files.atomic_output(output_dir / "localization.json") as temporary:
        temporary.write_text(json.dumps(report, indent=1) + "\n")
    print(text, end="")
    print(f"done in {report['seconds']:.1f} s; wrote " + ", ".join(str(output_dir / name) for name in report["files"]))


def write_examples(examples: list[dict], path: Path, scale: int = 4) -> None:
    """A grid of test images: CAM of the predicted class over the image, its box (green) at the
    box threshold and the ground-truth box (red), with the IoU."""
    columns = min(8, len(examples))
    rows = -(-len(examples) // columns)
    figure = Figure(figsize=(2.1 * columns, 2.4 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, example in zip(axes, examples):
        size = example["image"].shape[0] * scale
        picture = cv2.resize(example["image"], (size, size), interpolation=cv2.INTER_NEAREST)
        heat = cv2.resize(example["heat"], (size, size), interpolation=cv2.INTER_NEAREST)
        drawn = drawing.overlay(picture, heat, alpha=0.45)
        drawing.draw_box(drawn, example["truth"] * scale, (255, 0, 0))
        drawing.draw_box(drawn, example["box"] * scale, (0, 255, 0))
        iou = localization.box_iou(example["box"], example["truth"])
        axis.imshow(drawn)
        mark = "" if example["true"] == example["predicted"] else " (wrong)"
        axis.set_title(f"#{example['index']} {example['predicted']}{mark}\nIoU {iou:.2f}", fontsize=8)
        axis.axis("off")
    for axis in axes[len(examples):]:
        axis.axis("off")
    drawing.save_figure(figure, path)


def write_curves(report: dict, path: Path) -> None:
    """Box accuracy against the threshold (largest component, IoU 0.5), and pixel precision-recall."""
    figure = Figure(figsize=(11, 4), layout="constrained")
    box_axis, pixel_axis = figure.subplots(1, 2)
    for name, groups in report["methods"].items():
        if "localization" not in groups:
            continue
        metrics = groups["localization"]
        curves = metrics["curves"]
        line, = box_axis.plot(curves["thresholds"], curves["box_acc_largest_iou0.5"], label=f"{name}")
        box_axis.axvline(metrics["max_box_acc_threshold"], color=line.get_color(), alpha=0.3, linestyle=":")
        pixel_axis.plot(curves["pixel_recall"], curves["pixel_precision"], label=f"{name} (PxAP {metrics['pxap']:.1f})")
        box_axis.axvline(metrics["operating"]["threshold"], color=line.get_color(), alpha=0.6, linestyle="--")
    box_axis.set(xlabel="threshold on the normalized map", ylabel="box accuracy at IoU 0.5 (%)",
                 title="box accuracy against the threshold", ylim=(0, 100))
    pixel_axis.set(xlabel="pixel recall", ylabel="pixel precision", title="pixel precision-recall",
                   xlim=(0, 1), ylim=(0, 1.02))
    for axis in (box_axis, pixel_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    drawing.save_figure(figure, path)


def write_removal_curves(report: dict, path: Path) -> None:
    """The mean deletion and insertion curves of each method: class probability against the share
    of pixels removed (deletion) or revealed (insertion)."""
    figure = Figure(figsize=(11, 4), layout="constrained")
    axes = figure.subplots(1, 2)
    for name, groups in report["methods"].items():
        if "faithfulness" not in groups:
            continue
        scores = groups["faithfulness"]
        for axis, kind in zip(axes, ("deletion", "insertion")):
            curve = scores["curves"][kind]
            axis.plot(np.linspace(0, 1, len(curve)), curve, label=f"{name} (AUC {100 * scores[kind + '_auc']:.1f})")
    for axis, kind, verb in zip(axes, ("deletion", "insertion"), ("removed", "revealed")):
        axis.set(xlabel=f"share of pixels {verb} (highest map values first)", ylabel="probability of the class",
                 title=f"{kind} ({'lower' if kind == 'deletion' else 'higher'} is more faithful)", xlim=(0, 1), ylim=(0, 1.02))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    drawing.save_figure(figure, path)


def write_cascade(cascade: dict, path: Path) -> None:
    """Adebayo et al.'s figure: rows are images, columns the cascade's stages (trained, then each
    stage re-initialized from the top); CAM maps min-max normalized, and a last row of the edge
    map of the first image, which no stage changes."""
    stages = list(cascade)
    rows = [("CAM", i) for i in range(len(cascade[stages[0]]["CAM"]))] + [("edge (Sobel)", 0)]
    figure = Figure(figsize=(1.3 * len(stages), 1.45 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), len(stages), squeeze=False)
    for row, (method, index) in enumerate(rows):
        for column, stage in enumerate(stages):
            heat = localization.normalize_maps(torch.from_numpy(cascade[stage][method][index][None]))[0].numpy()
            axes[row, column].imshow(drawing.colorize(heat))
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
            if row == 0:
                axes[row, column].set_title(stage.replace("features.", "conv "), fontsize=7)
        axes[row, 0].set_ylabel(f"{method}\nimage {index}" if method != "CAM" else f"image {index}", fontsize=7)
    drawing.save_figure(figure, path)


def main(argv: list[str] | None = None) -> None:
    devices.keep_freed_memory()
    with cli.enough_memory("lower --batch_size"):
        evaluate(cli.parse_hyperparameters(sys.modules[__name__], argv), cli.given_names(argv))


if __name__ == "__main__":
    cli.run(main)
