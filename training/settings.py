"""The checks of train.py's settings: their ranges, flags that conflict, the image sizes a model needs, what --resume
may change.

Each takes train.py's hyperparameters as `cfg` and, where it needs the dataset registry, data.DATASETS as `specs`; they
raise UserError with the fix. training/ imports only utils, so train.py passes in what model.py and data.py know.
"""

import math
from pathlib import Path
from types import SimpleNamespace

from utils import cli

# What --resume may change when given: where and how the saved run goes on, not what it computes.
RUNTIME_SETTINGS = ("data_dir", "download", "device", "num_workers", "checkpoint_dir", "output_dir", "resume",
                    "overwrite")


def check(cfg, given: set[str], specs: dict, map_side, smallest_image_size) -> None:
    """UserError for a value out of range or flags that conflict (given: the hyperparameters set on
    the command line), then check_image_size (map_side and smallest_image_size: model.py's)."""
    checks = [
        (cfg.width >= 1, f"--width must be at least 1, got {cfg.width}"),
        (0 <= cfg.pools <= 2, f"--pools must be 0, 1 or 2, got {cfg.pools}"),
        (cfg.head >= 0, f"--head must be >= 0, got {cfg.head}"),
        (cfg.dilation >= 1, f"--dilation must be at least 1, got {cfg.dilation}"),
        (cfg.epochs >= 1, f"--epochs must be at least 1, got {cfg.epochs}"),
        (cfg.evaluate_every >= 0, f"--evaluate_every must be >= 0, got {cfg.evaluate_every}"),
        (cfg.decay_every >= 1, f"--decay_every must be at least 1, got {cfg.decay_every}"),
        (0 < starting_scale(cfg, specs) <= 1,
         f"--progressive_start must be auto or in (0, 1], got {cfg.progressive_start}"),
        (0 <= cfg.align_start <= 1, f"--align_start must be in [0, 1], got {cfg.align_start}"),
        (0 < cfg.progressive_until <= 1, f"--progressive_until must be in (0, 1], got {cfg.progressive_until}"),
        (cfg.batch_size >= 1, f"--batch_size must be at least 1, got {cfg.batch_size}"),
        (cfg.lr > 0, f"--lr must be positive, got {cfg.lr}"),
        (cfg.backbone_lr >= 0, f"--backbone_lr must be >= 0, got {cfg.backbone_lr}"),
        (0 <= cfg.momentum < 1, f"--momentum must be in [0, 1), got {cfg.momentum}"),
        (cfg.weight_decay >= 0, f"--weight_decay must be >= 0, got {cfg.weight_decay}"),
        (0 <= cfg.label_smoothing < 1, f"--label_smoothing must be in [0, 1), got {cfg.label_smoothing}"),
        (cfg.hide_patch >= 0, f"--hide_patch must be >= 0, got {cfg.hide_patch}"),
        (0 <= cfg.hide_probability < 1, f"--hide_probability must be in [0, 1), got {cfg.hide_probability}"),
        (0 <= cfg.cutmix <= 1, f"--cutmix must be in [0, 1], got {cfg.cutmix}"),
        (cfg.align_weight >= 0, f"--align_weight must be >= 0, got {cfg.align_weight}"),
        (cfg.norm_weight >= 0, f"--norm_weight must be >= 0, got {cfg.norm_weight}"),
        (cfg.image_size >= 0, f"--image_size must be >= 0, got {cfg.image_size}"),
        (cfg.clutter >= 0, f"--clutter must be >= 0, got {cfg.clutter}"),
        (1 <= cfg.clutter_size <= 28, f"--clutter_size must be in [1, 28], got {cfg.clutter_size}"),
        (cfg.subset >= 0, f"--subset must be >= 0, got {cfg.subset}"),
        (cfg.validation >= 0, f"--validation must be >= 0, got {cfg.validation}"),
        (cfg.num_workers >= 0, f"--num_workers must be >= 0, got {cfg.num_workers}"),
    ]
    cli.require(checks)
    if cfg.validation and specs[cfg.dataset].open_validation is not None:
        raise cli.UserError(f"--validation holds out training images, and {cfg.dataset} has its own validation split "
                            "(wsolevaluation's val, with boxes or masks): drop --validation")
    if cfg.resume and cfg.overwrite:
        raise cli.UserError("--resume continues the run in --checkpoint_dir and --overwrite replaces it: choose one")
    if "backbone_lr" in given and not cfg.weights and not cfg.resume:
        raise cli.UserError("--backbone_lr sets the learning rate of pretrained features, and this run has no "
                            "--weights: add --weights=DEFAULT (with a torchvision --model), or drop --backbone_lr")
    if "decay_every" in given and cfg.schedule != "step":
        raise cli.UserError(f"--decay_every sets the epochs between the decays of --schedule=step, and this run has "
                            f"--schedule={cfg.schedule}: add --schedule=step, or drop --decay_every")
    check_image_size(cfg, specs, map_side, smallest_image_size)


def model_options(cfg) -> dict:
    """model.build_model's options for cfg.model."""
    if cfg.model != "cnn":
        wsol = {"wsol": True} if cfg.wsol_backbone else {}
        return {**wsol, "large_feature_map": True} if cfg.large_feature_map else wsol
    try:
        convs = tuple(int(count) for count in cfg.convs.split(","))
    except ValueError:
        raise cli.UserError(f"--convs must be 3 whole numbers such as 1,2,2, got {cfg.convs!r}") from None
    return {"width": cfg.width, "pools": cfg.pools, "convs": convs, "head": cfg.head, "dilation": cfg.dilation}


def check_image_size(cfg, specs: dict, map_side, smallest_image_size) -> None:
    """UserError unless cfg.model gives maps of at least 2x2 on cfg's images (CAM needs them, and so
    does batch norm when a batch holds one image), and on the first, smaller training images of
    progressive resizing too. map_side and smallest_image_size: model.py's."""
    spec = specs[cfg.dataset]
    size = cfg.image_size or spec.image_size
    if spec.scored_size and size != spec.scored_size:
        raise cli.UserError(f"--image_size={size}: {cfg.dataset}'s boxes and masks are scored at {spec.scored_size} x "
                            f"{spec.scored_size}, as wsolevaluation scores them; drop --image_size")
    if size < spec.min_image_size:
        raise cli.UserError(f"--image_size must be at least {spec.min_image_size} for {cfg.dataset}, got {size}")
    options = model_options(cfg)

    def side(image_size: int) -> int:
        return map_side(cfg.model, spec.channels, image_size, **options)

    def smallest_giving(maps: int, too_small: int) -> int:
        return smallest_image_size(cfg.model, spec.channels, too_small, maps, **options)

    if side(size) < 2:
        raise cli.UserError(f"--image_size={size} gives {cfg.model} maps of {side(size)}x{side(size)}, and CAM needs "
                            f"at least 2x2: use --image_size={smallest_giving(2, size)} or more"
                            + (" (or fewer --pools)" if cfg.model == "cnn" and cfg.pools else ""))
    first = first_training_side(cfg, specs)
    if first < size and side(first) < 2:  # first == size was checked just above
        enough = math.ceil(100 * smallest_giving(2, first) / size) / 100
        raise cli.UserError(f"--progressive_start={cfg.progressive_start} starts training on images of {first} px, "
                            f"which give {cfg.model} maps of {side(first)}x{side(first)}, and batch norm needs at "
                            f"least 2x2: use --progressive_start={enough} or more (1: no progressive resizing)")


def starting_scale(cfg, specs: dict) -> float:
    """cfg's --progressive_start as a number: auto is the dataset's own (DatasetSpec.progressive_start);
    UserError for a value that is neither auto nor a number."""
    if cfg.progressive_start == "auto":
        return specs[cfg.dataset].progressive_start
    try:
        return float(cfg.progressive_start)
    except ValueError:
        raise cli.UserError(f"--progressive_start must be auto or in (0, 1], got {cfg.progressive_start}") from None


def first_training_side(cfg, specs: dict) -> int:
    """The side of the first training images: smaller than the images' own under progressive
    resizing (--progressive_start; schedules.progressive_side grows it)."""
    return max(1, round((cfg.image_size or specs[cfg.dataset].image_size) * starting_scale(cfg, specs)))


def resumed(cfg, given: set[str], path: Path, checkpoint: dict, world_size: int, specs: dict):
    """cfg with the saved run's hyperparameters, from last.pt at path (its checkpoint dict); UserError
    if it holds no training state, was trained by another number of processes (world_size: this
    run's), or a flag the user gave (`given`) asks for another value than the saved run has."""
    if "optimizer" not in checkpoint:
        raise cli.UserError(f"--resume: {path} holds no training state (optimizer, scheduler)")
    saved_processes = checkpoint.get("world_size", 1)
    if saved_processes != world_size:
        raise cli.UserError(
            f"--resume: {path} was trained by {saved_processes} process(es), this run has {world_size}; "
            f"resume with the same count (torchrun --nproc_per_node=N, or plain python for 1)"
        )
    if "best_split" not in checkpoint:
        raise cli.UserError(f"--resume: {path} was written by an older train.py; start a new run with --overwrite "
                            f"or another --checkpoint_dir")
    saved = {**vars(cfg), **checkpoint["hyperparameters"]}  # a setting added since the run began: its default
    asked = {**saved, **{name: getattr(cfg, name) for name in given}, "checkpoint_dir": cfg.checkpoint_dir,
             "resume": True}
    asked["progressive_start"] = starting_scale(SimpleNamespace(**asked), specs)  # auto: the saved dataset's own
    differing = [f"--{name}={getattr(cfg, name)!r} (saved: {saved[name]!r})" for name in sorted(given)
                 if name not in RUNTIME_SETTINGS and asked[name] != saved[name]]
    if differing:
        raise cli.UserError(f"--resume goes on with the saved run's settings, and {', '.join(differing)} differ; "
                            f"drop them, or start a new run with --overwrite or another --checkpoint_dir")
    return type(cfg)(**asked)


def check_same_dataset(info: dict, saved: dict, data_dir: str) -> None:
    """UserError unless the dataset loaded from data_dir (its DatasetInfo.as_dict()) is the one the
    resumed run trained on (saved: the checkpoint's "dataset"): its classes, channels, image size and
    settings."""
    differing = [f"{key} {value!r} (saved: {saved.get(key)!r})" for key, value in info.items()
                 if value != saved.get(key)]
    if differing:
        raise cli.UserError(f"--resume: the dataset in --data_dir={data_dir} is not the one the saved run trained on: "
                            f"{'; '.join(differing)[:300]}; resume with the run's own --data_dir, or start a new run")
