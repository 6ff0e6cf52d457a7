"""Does the map land on the object, and does it explain the decision? The report of a checkpoint.

    python evaluate_cam.py                                    # checkpoints/last.pt, every group
    python evaluate_cam.py --checkpoint=PATH --limit=1000     # the first 1000 images only
    python evaluate_cam.py --methods=all                      # pytorch-grad-cam's CAM family beside CAM
    python evaluate_cam.py --help                             # every hyperparameter with its default

The checkpoint's dataset must carry ground-truth boxes or masks (fashion-mnist-cluttered, cub, ilsvrc,
openimages), or --dataset names one with the checkpoint's classes. Each method of --methods (the
registry: CAM read the standard way and as --normalization etc. say, pytorch-grad-cam's family, the
baselines) runs in each group of --groups (evaluation/group_runs.py): localization (MaxBoxAcc,
MaxBoxAccV2, PxAP, top-1 and GT-known loc at an operating threshold chosen on the validation split,
Choe et al., CVPR 2020), faithfulness (deletion, insertion, ROAD, average drop, pointing games) and
sanity (cascading randomization, the random-labels model). Writes to --output_dir: localization.md
and localization.json (the numbers), report.html (the page to browse) and the figures of the groups
run (evaluation/tables.py lists them).
"""

from utils import cli  # noqa: I001 -- first: a Ctrl-C while torch loads then ends in one line, not a traceback

if __name__ == "__main__":
    cli.quiet_interrupts()

import sys
import time

import torch

import data
import model
from evaluation import faithfulness, group_runs, heatmaps, map_reading, registry, results, tables
from utils import checkpoints, devices, files, seeds

# --- hyperparameters: edit them here, or override them on the command line (--name=value) ---
# what to evaluate, in every group
checkpoint: str = "checkpoints/last.pt"  # a run trained on a dataset with boxes (its last epoch, as Choe et al. report)
split: str = "test"  # test | validation (the held-out training images of a run trained with --validation)
dataset: str = ""  # "": the checkpoint's; or one with its classes and boxes (cub on an export_wsol.py folder)
data_dir: str = ""  # where the dataset is ("": where the checkpoint was trained from)
metadata_dir: str = ""  # cub | ilsvrc | openimages: wsolevaluation's metadata/<NAME>/
    # ("": the checkpoint's, or <data_dir>/metadata/<NAME>)
download: bool = True  # download the source dataset if it is not on disk
groups: str = "localization,faithfulness,sanity"  # the groups to run, comma-separated
methods: str = "cam,cam_read,grad_cam,center,random,edge"  # registry keys, comma-separated, or all
    # (all adds pytorch-grad-cam's 14 methods: several times slower)
limit: int = 0  # only the first N images of each split, in every group (0: all of them)
# localization and faithfulness: how CAM is read and boxed
normalization: str = "max"  # the read CAM (cam_read): minmax | max | ivr
percentile: float = 0.0  # ivr: the quantile subtracted from each map before scaling, in [0, 1)
flip_maps: bool = True  # the read CAM: average in the CAMs of the mirror image, mirrored back
cam_threshold: float = 0.2  # the box threshold when the run has no validation split (the CAM paper's 20%)
bootstrap: int = 1000  # resamples of the images behind each 95% interval and paired difference from CAM
    # (a percentile bootstrap over the images, 20 of them at least; 0: bare numbers)
# localization
threshold_step: float = 0.01  # step of the threshold sweep of MaxBoxAcc, MaxBoxAccV2 and PxAP
examples: int = 16  # images in localization_examples.png
inclusive_boxes: bool = False  # score the cluttered set's boxes as inclusive ones, as wsolevaluation would
save_heatmaps: str = ""  # write each image's standard CAM of its true class as DIR/<image id>.npy
    # (min-max, float64), for wsolevaluation's evaluate_wsol
# faithfulness and sanity
explained: int = 1000  # the first N images of the split, within --limit (0: all of them)
# faithfulness
steps: int = 16  # deletion and insertion: steps from 0% to 100% of the pixels (at least 2)
baseline: str = "blur"  # deletion and insertion: what removed pixels become: blur | black | mean
road_images: int = 100  # ROAD on the first N explained images (0: none; a linear solve per image and step)
tolerance: float = 0.0  # pointing game: pixels the map's peak may lie from the object
# sanity
sanity_seeds: int = 3  # random draws of the cascading randomization (mean and spread reported)
random_labels_checkpoint: str = ""  # a run trained with --permute_labels, for the data randomization test
# output and runtime
gallery: int = 36  # report.html: images in its gallery, each with every method's map, box and scores (0: none)
seed: int = 0  # the examples and gallery images, the random map, ROAD's noise and the cascade's draws
output_dir: str = "outputs"  # where the report is written
batch_size: int = 250  # images per batch
cam_batch_size: int = 64  # score_cam and ablation_cam: copies of an image per forward pass (speed, memory)
device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
channels_last: bool = True  # NHWC layout for the model and its images (faster maps on a CPU, the same numbers)
# ------------------------------------------------------------------------------------------------

SPLITS = ("test", "validation")


def flag_groups() -> dict[str, list[str]]:
    """{hyperparameter: the groups that use it}: those its banner above names (none named: every group)."""
    return {flag.name: [group for group in results.GROUPS if group in flag.section.split(":")[0]]
            for flag in cli.declared_hyperparameters(sys.modules[__name__])}


def chosen_groups(text: str) -> list[str]:
    """The groups a --groups flag names, each once, in the order given."""
    return list(dict.fromkeys(group.strip() for group in text.split(",") if group.strip()))


def validate(cfg, given: set[str] = frozenset()) -> None:
    """UserError for a bad value, or for a flag set on the command line (given) that only groups
    left out of --groups use."""
    checks = [
        (cfg.batch_size >= 1, f"--batch_size must be at least 1, got {cfg.batch_size}"),
        (cfg.limit >= 0, f"--limit must be >= 0, got {cfg.limit}"),
        (0 <= cfg.cam_threshold < 1, f"--cam_threshold must be in [0, 1), got {cfg.cam_threshold}"),
        (0 <= cfg.percentile < 1, f"--percentile must be in [0, 1), got {cfg.percentile}"),
        (0.001 <= cfg.threshold_step <= 0.5, f"--threshold_step must be in [0.001, 0.5] (a finer sweep than 1,000 "
                                              f"thresholds costs minutes and moves no digit shown), got "
                                              f"{cfg.threshold_step}"),
        (cfg.gallery >= 0, f"--gallery must be >= 0 (0: no gallery), got {cfg.gallery}"),
        (cfg.bootstrap == 0 or 100 <= cfg.bootstrap <= 10_000, f"--bootstrap must be 0 (no intervals) or in "
                                                              f"[100, 10000] resamples, got {cfg.bootstrap}"),
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
    groups = chosen_groups(cfg.groups)
    if not groups:
        raise cli.UserError(f"--groups={cfg.groups!r} names no group; choose one or more of: "
                            f"{', '.join(results.GROUPS)} (comma-separated)")
    for group in groups:
        cli.check_choice("groups", group, results.GROUPS)
    for name, users in flag_groups().items():
        if name in given and users and not set(users) & set(groups):
            raise cli.UserError(f"--{name} is used by the {' and '.join(users)} group{'s' * (len(users) > 1)}, "
                                f"which --groups={cfg.groups} leaves out: add {' or '.join(users)} to --groups, "
                                f"or drop --{name}")


def check_methods(methods_flag: str, given: set[str], groups: list[str], chosen: list[registry.Method],
                  save_heatmaps: bool) -> None:
    """UserError when a group measures none of the methods chosen, when --save_heatmaps has no
    standard CAM to write, or when --cam_batch_size is given and no chosen method batches."""
    for group in groups:
        if not any(method.runs_in(group) for method in chosen):
            runs = [method.key for method in registry.for_reading(map_reading.RECIPE_READING) if method.runs_in(group)]
            raise cli.UserError(f"--methods={methods_flag} names no method that the {group} group measures; add one "
                                f"of: {', '.join(runs)}, or leave {group} out of --groups")
    if save_heatmaps and registry.CAM not in chosen:
        raise cli.UserError(f"--save_heatmaps writes the standard CAM's maps, which --methods={methods_flag} leaves "
                            f"out: add {registry.CAM.key} to --methods, or drop --save_heatmaps")
    if "cam_batch_size" in given and not any(method.batch_size for method in chosen):
        batched = [key for key, (_, kind, _) in registry.LIBRARY.items() if kind in registry.BATCHED]
        raise cli.UserError(f"--cam_batch_size is used by {' and '.join(batched)}, which --methods={methods_flag} "
                            "leaves out: add one of them to --methods, or drop --cam_batch_size")


def same_weights(net, other) -> bool:
    """Whether two models hold the same state_dict: the same names with equal tensors."""
    mine, theirs = net.state_dict(), other.state_dict()
    return mine.keys() == theirs.keys() and all(torch.equal(mine[name], theirs[name]) for name in mine)


def random_labels_model(path: str, checkpoint_path: str, net, checkpoint: dict, device):
    """The model of path (None when ""), checked to be trained on permuted labels of the same data
    as checkpoint (the run of checkpoint_path, whose model is net), and not to be net itself."""
    if not path:
        return None
    random_labels_net, other = model.load_checkpoint(path, device, checkpoints.TRAINING_METADATA)
    if not other["hyperparameters"].get("permute_labels"):
        raise cli.UserError(f"--random_labels_checkpoint: {path} was not trained with --permute_labels; train one "
                            "with `python train.py --permute_labels ...`")
    if other["dataset"] != checkpoint["dataset"]:
        raise cli.UserError(f"--random_labels_checkpoint: {path} was trained on other data than {checkpoint_path}; "
                            "train it with the same --dataset and settings")
    if same_weights(net, random_labels_net):
        raise cli.UserError(f"--random_labels_checkpoint: {path} holds the same weights as --checkpoint "
                            f"{checkpoint_path}, so the test would compare the model with itself; pass another run, "
                            "trained with `python train.py --permute_labels ...`")
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
        data.check_metadata_dir(name)
        options["metadata_dir"] = cfg.metadata_dir
    loaded = data.load_dataset(name, cfg.data_dir or checkpoint["hyperparameters"]["data_dir"], cfg.download,
                               info.image_size, options, read_as=None if own else info)
    if not own and len(loaded.info.classes) != len(info.classes):
        raise cli.UserError(f"--dataset={name} in {cfg.data_dir} has {len(loaded.info.classes)} classes and "
                            f"{cfg.checkpoint} was trained on {len(info.classes)} ({info.name}); pass a dataset "
                            "with the checkpoint's classes in its label order (export_wsol.py writes the cluttered "
                            "set's)")
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
    """Run the groups cfg asks for, write the report, and return it (localization.json is its
    as_json()). given: the hyperparameters set on the command line (cli.given_names), refused when
    no group run uses them. The localization group, the gallery and the faithfulness scores' class
    probabilities run the model with its batch norms folded into its convolutions
    (model.folded_batch_norms): the same logits and maps up to float rounding, sooner on a CPU."""
    validate(cfg, given)
    groups = chosen_groups(cfg.groups)
    device = devices.pick_device(cfg.device)
    net, checkpoint = model.load_checkpoint(cfg.checkpoint, device, checkpoints.TRAINING_METADATA)
    if note := checkpoints.selection_note(cfg.checkpoint, checkpoint):
        print(note)
    random_labels_net = random_labels_model(cfg.random_labels_checkpoint, cfg.checkpoint, net, checkpoint, device)
    layout = devices.memory_format(cfg.channels_last)
    for loaded_net in (net, random_labels_net):
        if loaded_net is not None:
            loaded_net.to(memory_format=layout)
    folded = model.folded_batch_norms(net).to(memory_format=layout)
    info, loaded, has_validation = load_splits(cfg, checkpoint)
    reading = map_reading.MapReading(cfg.normalization, cfg.percentile,
                                     cfg.flip_maps and data.trained_with_flips(info.name))
    chosen = registry.choose(registry.parse_keys(cfg.methods), reading, cfg.cam_batch_size)
    check_methods(cfg.methods, given, groups, chosen, bool(cfg.save_heatmaps))
    output_dir = files.writable_folder(cfg.output_dir, "output_dir")
    heatmaps_folder = heatmaps.prepared_folder(cfg.save_heatmaps, cfg.checkpoint, cfg.split, cfg.limit) if (
        cfg.save_heatmaps and "localization" in groups) else None
    print(f"evaluating {cfg.checkpoint} on {loaded.info.name}'s {cfg.split} split on {device}: {', '.join(groups)}"
          + ("; operating thresholds chosen on its validation split" if has_validation and "localization" in groups
             else ""))
    started = time.perf_counter()
    source = group_runs.Split(loaded, cfg.split, device, cfg.batch_size, cfg.channels_last, cfg.limit,
                              cfg.inclusive_boxes)
    located, examples = group_runs.localization_group(
        folded, source, chosen, has_validation, cfg.threshold_step, cfg.cam_threshold, cfg.examples, cfg.seed,
        cfg.bootstrap, heatmaps_folder) if "localization" in groups else (None, [])
    settings = group_runs.ExplainSettings(cfg.explained, cfg.steps, cfg.baseline, cfg.road_images, cfg.tolerance,
                                          cfg.sanity_seeds, cfg.cam_threshold, cfg.seed, cfg.bootstrap)
    faithful, sane, cascade = group_runs.explain(net, folded, source, chosen, groups, settings, random_labels_net,
                                                 located) if {"faithfulness", "sanity"} & set(groups) else (
        None, None, {})
    pool = next((group.images for group in (faithful, sane, located) if group), 0)  # the images measured
    gallery = group_runs.gallery(folded, source, chosen, cfg.gallery, pool, cfg.seed, cfg.cam_threshold, located,
                                 faithful) if cfg.gallery else []
    report = results.Report(
        str(cfg.checkpoint), loaded.info.as_dict(), cfg.split, groups, chosen, cfg.batch_size,
        cfg.cam_batch_size if any(method.batch_size for method in chosen) else None, located, faithful, sane,
        round(time.perf_counter() - started, 1), tables.report_files(groups, examples, cascade))
    tables.write_report(report, examples, cascade, gallery, output_dir)
    return report


def main(argv: list[str] | None = None) -> None:
    devices.keep_freed_memory()
    with cli.enough_memory("lower --batch_size"):
        evaluate(cli.parse_hyperparameters(sys.modules[__name__], argv), cli.given_names(argv))


if __name__ == "__main__":
    cli.run(main)
