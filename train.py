"""Train a GAP-ending CNN; write checkpoints/last.pt (every epoch) and best.pt (best validation accuracy).

    python train.py                                   # Fashion-MNIST, the default small CNN
    python train.py --dataset=cifar10 --model=resnet18_small --epochs=30
    python train.py --dataset=folder --data_dir=PHOTOS --model=resnet50 --weights=DEFAULT --image_size=224 --lr=0.01
    python train.py --resume                          # continue the run saved in checkpoints/last.pt
    torchrun --standalone --nproc_per_node=4 train.py # 4 GPUs, DistributedDataParallel (README)
    python train.py --help                            # every hyperparameter with its default

best.pt is the epoch of best accuracy on the validation split (--validation, or the dataset's own: cub,
ilsvrc, openimages) among those measured (every --evaluate_every-th and the last); a run without one
chooses it on the test split, records so in best.pt ("best_split"), and the scripts that load it say so. Also
writes outputs/metrics.csv (one row per epoch) and outputs/training_curves.png. Ctrl-C or SIGTERM
stops after the current step and saves last.pt, from which --resume goes on. A new run refuses a
checkpoint_dir or output_dir that holds an earlier run's files (--resume or --overwrite), or a
checkpoint_dir that another run is using.
"""

from utils import cli  # noqa: I001 -- first: a Ctrl-C while torch loads then ends in one line, not a traceback

if __name__ == "__main__":
    cli.quiet_interrupts()

import contextlib
import dataclasses
import math
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import data
import model as models
from networks import torchvision_models
from training import metrics, schedules, settings, wsol
from utils import checkpoints, devices, distributed, files, run_folder, seeds

# --- hyperparameters: edit them here, or override them on the command line (--name=value) ---
# data
dataset: str = "fashion-mnist"  # fashion-mnist | fashion-mnist-cluttered | mnist | cifar10 | cifar100 | svhn | stl10
    # | folder | cub | ilsvrc | openimages
data_dir: str = "data"  # where datasets are looked for and downloaded to (for folder: its root)
metadata_dir: str = ""  # cub | ilsvrc | openimages: wsolevaluation's metadata/<NAME>/ ("": <data_dir>/metadata/<NAME>)
    # (disk: cub ~1.2 GB, ilsvrc ~150 GB, openimages a few GB; in memory only the metadata: images are streamed)
download: bool = True  # download a dataset that is not on disk
image_size: int = 0  # resize images to this side; 0: the dataset's own size (folder: 128; cluttered: canvas 64)
clutter: int = 6  # fashion-mnist-cluttered: crops of other items pasted on each canvas
clutter_size: int = 10  # fashion-mnist-cluttered: side of those crops in pixels (at most 28)
subset: int = 0  # use only N images of each split (0: all), for quick checks: the first N
    # (folder: N stratified by class, fixed by --seed)
validation: int = 0  # hold out N training images as a validation split, to choose hyperparameters on: the last N
    # (folder: stratified by class, fixed by --seed)
permute_labels: bool = False  # train on the training labels randomly permuted (fixed by --seed): a sanity check's model
# model
model: str = "cnn"  # cnn | resnet18_small | vgg16_gap, or a torchvision classifier with a GAP + linear head
    # (resnet50, densenet121, ...)
weights: str = ""  # torchvision models: start from these torchvision weights (DEFAULT, IMAGENET1K_V1, ...;
    # "": random); fc resized to the classes
wsol_backbone: bool = False  # resnet*, inception_v3, vgg16: wsolevaluation's CAM backbone of it (finer maps, new head)
large_feature_map: bool = False  # with --wsol_backbone: wsolevaluation's large_feature_map
    # (28x28 maps at 224 px instead of 14x14)
width: int = 16  # cnn: channels of its first stage (doubled in each of the next two)
pools: int = 2  # cnn: 2x2 max pools after its first stages (0-2); its maps are 1/2**pools of the image side
convs: str = "2,2,2"  # cnn: conv-BN-ReLU blocks in each of its 3 stages
head: int = 256  # cnn: channels of a last 1x1 conv-BN-ReLU on the final maps (0: none)
dilation: int = 1  # cnn: dilation of its third stage's convs (2 with one pool fewer: finer maps, same field of view)
# training
epochs: int = 9  # passes over the training set
batch_size: int = 128  # images per step (per process under torchrun: N processes step on N x batch_size)
lr: float = 0.2  # peak learning rate of SGD with Nesterov momentum
backbone_lr: float = 0.1  # with --weights: the pretrained features' peak learning rate, as a fraction of --lr
    # (the new layers train at --lr: fc, and with --wsol_backbone those wsolevaluation trains at its head's rate)
momentum: float = 0.9  # SGD momentum
weight_decay: float = 5e-4  # L2 penalty on all weights
schedule: str = "onecycle"  # learning-rate schedule, stepped every batch: onecycle | cosine | step | constant
decay_every: int = 30  # --schedule=step: epochs between the x0.1 decays of the lr
    # (wsolevaluation's lr_decay_frequency)
label_smoothing: float = 0.0  # cross-entropy label smoothing in [0, 1)
progressive_start: str = "auto"  # progressive resizing: train first on images scaled to this fraction of their side,
    # growing to full size (1: off; auto: the dataset's own, 0.7 for fashion-mnist, 1 for the others)
progressive_until: float = 0.5  # progressive resizing: the fraction of the run by which the images reach full size
seed: int = 0  # seeds the weights, the data order and the augmentation
# WSOL training methods (training/wsol.py)
hide_patch: int = 0  # Hide-and-Seek: hide cells of this many pixels a side of each training image (0: off)
hide_probability: float = 0.5  # Hide-and-Seek: the chance that each cell is hidden
cutmix: float = 0.0  # CutMix: the chance that a training batch is mixed (0: off)
align_weight: float = 0.0  # weight of Kim et al.'s feature-direction alignment loss (0: off)
align_start: float = 0.25  # the alignment and norm losses join the cross-entropy from this fraction of the run on
    # (Kim et al.: after 20-30%)
norm_weight: float = 0.0  # weight of Kim et al.'s background feature-norm loss (0: off)
# evaluation
flip_test: bool = True  # test accuracy from the mean logits of each image and its mirror image
    # (datasets trained with flips)
shift_test: bool = True  # after the last epoch, also the accuracy over 1-pixel diagonal shifts of each image
    # ("test_tta"; datasets trained with shifts)
evaluate_every: int = 3  # measure the validation and test splits after every N-th epoch and after the last
    # (1: every epoch; 0: the last only; best.pt is chosen among them; each costs ~2/3 of a fashion-mnist epoch)
# system
device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
num_workers: int = 0  # image folders: DataLoader worker processes (0: load in the training process)
channels_last: bool = True  # NHWC memory layout for the convolutions (faster training on CPUs)
precision: str = "auto"  # auto (bf16 autocast on GPUs and CPUs with native bf16, else fp32) | bf16 | fp32
compile: bool = False  # torch.compile the model (pays off on GPUs, not on small CPUs: docs/performance.md)
# output
checkpoint_dir: str = "checkpoints"  # where last.pt and best.pt are written
output_dir: str = "outputs"  # where metrics.csv and training_curves.png are written
resume: bool = False  # continue the run in checkpoint_dir/last.pt with its saved hyperparameters
overwrite: bool = False  # start a new run in a checkpoint_dir that holds an earlier run's checkpoints, replacing them
# ------------------------------------------------------------------------------------------------

OUTPUT_FILES = ("metrics.csv", "training_curves.png")  # what a run writes to --output_dir


def validate(cfg, given: set[str] = frozenset()) -> None:
    """Raise UserError for a name that does not exist, a value out of range, or flags that conflict
    (given: the hyperparameters set on the command line)."""
    for option, choices in (("dataset", data.DATASETS), ("schedule", schedules.SCHEDULES),
                            ("precision", devices.PRECISIONS)):
        cli.check_choice(option, getattr(cfg, option), choices)
    models.check_model_name(cfg.model)
    if cfg.weights:
        models.torchvision_weights(cfg.model, cfg.weights)
    for flag in ("wsol_backbone", "large_feature_map"):
        if getattr(cfg, flag) and cfg.model in models.MODELS:
            raise cli.UserError(f"--{flag} builds wsolevaluation's CAM backbone of a torchvision resnet, "
                                f"inception_v3 or vgg16, not of this repo's --model={cfg.model}: pass one of those "
                                f"(e.g. --model=resnet50), or drop --{flag}")
    if cfg.metadata_dir:
        data.check_metadata_dir(cfg.dataset)
    settings.check(cfg, given, data.DATASETS, models.map_side, models.smallest_image_size)


def split_sizes(loaded: data.LoadedDataset) -> dict[str, int]:
    """{split: its images} of the splits a run reads: what --resume checks is still on disk."""
    return {split: len(getattr(loaded, split)) for split in ("train", "validation", "test")
            if getattr(loaded, split) is not None}


@dataclass
class Run:
    """What the epoch loop needs, as setup() makes it: new, or as saved in last.pt."""

    cfg: object
    device: torch.device
    processes: distributed.Processes
    folder: run_folder.RunFolder
    loaded: data.LoadedDataset
    feed: dict  # how LoadedDataset.loader feeds this process
    evaluated: dict  # split name -> its loader, the splits measured after each epoch
    net: models.GapNet
    train_net: torch.nn.Module  # net, wrapped for DDP and torch.compile as asked
    optimizer: torch.optim.Optimizer
    scheduler: object
    steps_per_epoch: int
    history: list = field(default_factory=list)  # a metrics row per finished epoch
    best_accuracy: float = -1.0  # on best_split
    best: dict = field(default_factory=dict)  # {"run_id", "best_epoch"}: which run and epoch best.pt holds
    position: metrics.EpochPosition = field(default_factory=metrics.EpochPosition)

    def say(self, *text) -> None:
        if self.processes.rank == 0:
            print(*text)

    def contents(self, **entries) -> dict:
        """What a checkpoint holds beside the weights (see run_folder.RunFolder.save_last)."""
        return {"dataset": self.loaded.info.as_dict(), "images": split_sizes(self.loaded),
                "hyperparameters": vars(self.cfg),
                "world_size": self.processes.world_size, "best_accuracy": self.best_accuracy,
                "best_split": self.best_split, "history": self.history, **self.best, **entries}

    @property
    def best_split(self) -> str:
        """The split whose accuracy chooses best.pt: validation where the run holds one out."""
        return "validation" if "validation" in self.evaluated else "test"


def setup(cfg, given: set[str], device, processes: distributed.Processes, folder: run_folder.RunFolder) -> Run:
    """The Run of cfg: checks the folders, loads the data, builds or resumes the model."""
    checkpoint, cfg = processes.agree(lambda: check_folders(cfg, given, processes, folder))
    options = {key: getattr(cfg, key) for key in data.DATASETS[cfg.dataset].options if hasattr(cfg, key)}
    with cli.enough_memory("lower --image_size"):
        loaded = processes.local_leaders_first(
            lambda: data.load_dataset(cfg.dataset, cfg.data_dir, cfg.download, cfg.image_size, options))
    if cfg.validation:
        loaded = loaded.hold_out(cfg.validation, seeds.mix(cfg.seed))
    if cfg.permute_labels:
        loaded = loaded.with_permuted_labels(seeds.mix(cfg.seed))
    if checkpoint is not None:  # the same verdict in every process: no collective
        images = split_sizes(loaded)  # a run saved before they were recorded: its description alone
        settings.check_same_dataset({**loaded.info.as_dict(), "images": images},
                                    {**checkpoint["dataset"], "images": checkpoint.get("images", images)}, cfg.data_dir)
    feed = {"device": device, "limit": cfg.subset, "seed": seeds.mix(cfg.seed), "num_workers": cfg.num_workers,
            "rank": processes.rank, "memory_format": devices.memory_format(cfg.channels_last),
            "world_size": processes.world_size}
    evaluated = {split: loaded.loader(split, 2 * cfg.batch_size, **feed)
                 for split in (["validation"] if loaded.validation is not None else []) + ["test"]}
    steps_per_epoch = len(loaded.loader("train", cfg.batch_size, generator=torch.Generator(), **feed))
    torch.manual_seed(seeds.mix(cfg.seed))
    if checkpoint is not None:  # every weight is in last.pt: no pretrained weights file is read again
        net = models.model_from_arch(checkpoint["arch"])
    else:
        pretrained = {"weights": cfg.weights, "download": cfg.download} if cfg.weights else {}
        net = models.build_model(cfg.model, len(loaded.info.classes), loaded.info.channels,
                                 **settings.model_options(cfg), **pretrained)
    net = net.to(device, memory_format=devices.memory_format(cfg.channels_last))
    fast = torchvision_models.head_rate_layers(cfg.model) if cfg.weights and cfg.wsol_backbone else ()
    groups = schedules.parameter_groups(net, cfg.lr * cfg.backbone_lr if cfg.weights else None, fast)
    optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                                weight_decay=cfg.weight_decay)
    scheduler = schedules.make_scheduler(optimizer, cfg.schedule, cfg.epochs * steps_per_epoch,
                                        cfg.decay_every * steps_per_epoch)
    train_net = net
    if processes.world_size > 1:
        train_net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile and torch._dynamo.is_dynamo_supported():
        train_net = torch.compile(train_net)
    elif cfg.compile and processes.rank == 0:
        print("torch.compile is not supported on this Python or platform; training without it")
    run = Run(cfg, device, processes, folder, loaded, feed, evaluated, net, train_net, optimizer, scheduler,
              steps_per_epoch, best={"run_id": uuid.uuid4().hex, "best_epoch": None})
    if checkpoint is not None:
        load_saved_run(run, checkpoint)
    return run


def check_folders(cfg, given: set[str], processes: distributed.Processes, folder: run_folder.RunFolder
                  ) -> tuple[dict | None, object]:
    """(last.pt's checkpoint and the saved run's cfg, or None and cfg as given for a new run), after
    checking that the folders may be used: with --resume, last.pt must be there and agree with the
    given flags; a new run's checkpoint_dir and output_dir must hold no earlier run's files (unless
    --overwrite). The folders are checked by rank 0 (see Processes.agree)."""
    checkpoint = None
    if cfg.resume:
        path = folder.path / "last.pt"
        if not path.is_file():
            raise cli.UserError(f"--resume: {path} not found; start a run without --resume, or set --checkpoint_dir")
        _, checkpoint = models.load_checkpoint(path, needs=checkpoints.TRAINING_METADATA)
        cfg = settings.resumed(cfg, given, path, checkpoint, processes.world_size, data.DATASETS)
        if repaired := folder.repair_best(checkpoint):
            print(repaired)
    else:
        folder.check_new_run(cfg.overwrite)
        # auto saved as its value: a later change of the dataset's default leaves this run as it was
        cfg = type(cfg)(**{**vars(cfg), "progressive_start": settings.starting_scale(cfg, data.DATASETS)})
    if processes.rank == 0:
        output_dir = files.writable_folder(cfg.output_dir, "output_dir")
        earlier = [name for name in OUTPUT_FILES if (output_dir / name).exists()]
        if earlier and not cfg.resume and not cfg.overwrite:
            raise cli.UserError(f"{output_dir} holds {' and '.join(earlier)} of an earlier run; choose another "
                                f"--output_dir, or replace them with --overwrite")
    return checkpoint, cfg


def load_saved_run(run: Run, checkpoint: dict) -> None:
    """Load the saved weights, optimizer, schedule, history and in-epoch position into run."""
    run.net.load_state_dict(checkpoint["state_dict"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.history, run.best_accuracy = checkpoint["history"], checkpoint["best_accuracy"]
    run.best = {"run_id": checkpoint.get("run_id"), "best_epoch": checkpoint["best_epoch"]}
    epoch = len(run.history) + 1
    if "position" in checkpoint:
        run.position = metrics.EpochPosition(**checkpoint["position"])
        run.say(f"resuming {run.folder.last} in epoch {epoch} of {run.cfg.epochs}, after step {run.position.step} "
                f"of {run.steps_per_epoch}")
    else:
        run.say(f"resuming {run.folder.last} after epoch {checkpoint['epoch']} of {run.cfg.epochs}")
    if run.processes.rank > 0:  # the saved sums are over all processes: counted once, by rank 0
        run.position = metrics.EpochPosition(step=run.position.step, seconds=run.position.seconds)


def train(cfg, given: set[str] = frozenset()) -> dict:
    """Run the training cfg describes, in this process or as one of those torchrun started;
    returns the last epoch's metrics row. given: the hyperparameters set on the command line
    (with --resume they must agree with the saved run). Ctrl-C or SIGTERM stops it after the
    current step, saving last.pt to resume from that step (cli.Stopped)."""
    validate(cfg, given)
    device, processes = distributed.join_processes(cfg.device)
    try:
        with contextlib.ExitStack() as claim:
            folder = processes.agree(lambda: claim.enter_context(
                run_folder.claimed(cfg.checkpoint_dir, active=processes.rank == 0)))
            run = setup(cfg, given, device, processes, folder)
            fix = "lower --batch_size (or --image_size, --width)"
            with distributed.stop_requests() as stop, cli.enough_memory(fix):
                return run_epochs(run, stop)
    finally:
        if processes.world_size > 1:
            dist.destroy_process_group()


def run_epochs(run: Run, stop: distributed.StopRequest) -> dict:
    """The epochs of run from where it stands; returns the last epoch's metrics row."""
    cfg, start_epoch = run.cfg, len(run.history) + 1
    if start_epoch > cfg.epochs:
        run.say(f"{run.folder.last} has finished all {cfg.epochs} epochs; nothing to resume")
        return run.history[-1]
    world = run.processes.world_size
    in_processes = (f" in {world} processes (batch {cfg.batch_size} each, {cfg.batch_size * world} in all)"
                    if world > 1 else "")
    run.say(f"training {cfg.model} on {cfg.dataset} ({len(run.loaded.train)} train / {len(run.loaded.test)} test "
            f"images{', ' + str(cfg.subset) + ' of each' if cfg.subset else ''}) on {run.device}{in_processes} "
            f"for {cfg.epochs} epochs")
    for epoch in range(start_epoch, cfg.epochs + 1):
        started, learning_rate = time.perf_counter() - run.position.seconds, run.optimizer.param_groups[-1]["lr"]
        finished = train_epoch(run, epoch, stop)
        run.position.seconds = time.perf_counter() - started
        if not finished:
            save_and_stop(run, epoch, stop.signal)
        end_epoch(run, epoch, learning_rate, started)
    say_finished(run)
    return run.history[-1]


def train_epoch(run: Run, epoch: int, stop: distributed.StopRequest) -> bool:
    """One pass over the training split from run.position (the batches before its step are drawn but
    not trained on, so that the random draws line up); returns whether it reached the end of the
    epoch: a stop request ends it after the step in which it is seen, the same step in every process.
    The running sums stay on the device until the end of the epoch."""
    cfg, device = run.cfg, run.device
    epoch_seed = seeds.mix(cfg.seed, epoch)  # the data order and the augmentation depend on (seed, epoch) alone
    torch.manual_seed(epoch_seed)
    loader = run.loaded.loader("train", cfg.batch_size, generator=torch.Generator().manual_seed(epoch_seed), **run.feed)
    run.train_net.train()
    layout, first_side = devices.memory_format(cfg.channels_last), settings.first_training_side(cfg, data.DATASETS)
    until = min(cfg.progressive_until, 1 - 1 / cfg.epochs)  # the last epoch trains at full size
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen, step, stopping = 0, run.position.step, False
    bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, dynamic_ncols=True,
               disable=None if run.processes.rank == 0 else True)  # off when not a terminal
    for index, (images, labels) in enumerate(bar):
        if index < run.position.step:
            continue
        if stopping:
            break
        images = images.to(device, non_blocking=True, memory_format=layout)
        labels = labels.to(device, non_blocking=True)
        progress = ((epoch - 1) * run.steps_per_epoch + index) / (cfg.epochs * run.steps_per_epoch)
        side = schedules.progressive_side(images.shape[-1], first_side, until, progress)
        if side != images.shape[-1]:  # square images (B, C, S, S) -> (B, C, side, side)
            images = F.interpolate(images, size=(side, side), mode="bilinear", antialias=True).contiguous(
                memory_format=layout)
        generator = torch.Generator().manual_seed(seeds.mix(epoch_seed, index))
        loss, logits, stopping = train_step(run, images, labels, progress, generator, stop)
        step, seen = step + 1, seen + len(labels)
        loss_sum += loss.detach().double() * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        if not bar.disable and step % 20 == 0:  # a host sync, only where the bar is shown
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{100 * correct.item() / seen:.1f}%")
    loss_total, correct_total, seen_total = run.processes.sum([loss_sum.item(), correct.item(), seen], device)
    start = run.position
    run.position = metrics.EpochPosition(step, start.loss_sum + loss_total, start.correct + int(correct_total),
                                          start.seen + int(seen_total), start.seconds)
    return not stopping


def train_step(run: Run, images: torch.Tensor, labels: torch.Tensor, progress: float, generator: torch.Generator,
               stop: distributed.StopRequest) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """One optimizer step on images (B, C, H, W) and labels (B,), at progress (in [0, 1]) of the run:
    the input methods (Hide-and-Seek, CutMix; their draws from generator), the forward pass, the loss
    terms (cross-entropy, Kim et al.'s alignment and norm terms after --align_start of the run), the
    backward pass, the optimizer and the schedule. Returns (loss, logits (B, classes), whether a stop
    was requested in any process).

    Each step waits once for the host: to see, before the optimizer steps, that the loss is finite (a
    NaN loss is never stepped on) and whether a stop was requested, both in one all-reduce across
    processes. On a GPU that wait is for the forward pass only, since the backward pass is queued first."""
    cfg = run.cfg
    if cfg.hide_patch:
        images = wsol.hide_patches(images, cfg.hide_patch, cfg.hide_probability, generator)
    partner_labels, lam = labels, 1.0
    if cfg.cutmix and torch.rand((), generator=generator) < cfg.cutmix:
        images, partner_labels, lam = wsol.cut_mix(images, labels, generator)
    with devices.autocast(cfg.precision, run.device):
        logits, features = run.train_net(images, with_features=True)
        loss = lam * F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)
        if lam < 1:
            loss = loss + (1 - lam) * F.cross_entropy(logits, partner_labels, label_smoothing=cfg.label_smoothing)
        if (cfg.align_weight or cfg.norm_weight) and progress >= cfg.align_start:
            alignment, norm = wsol.alignment_losses(features, run.net.fc.weight[labels])
            loss = loss + cfg.align_weight * alignment + cfg.norm_weight * norm
    checks = torch.stack([loss.detach().isfinite().logical_not(), torch.tensor(bool(stop.signal), device=run.device)])
    checks = run.processes.total(checks.double()).to("cpu", non_blocking=True)
    forward_done = torch.cuda.Event() if run.device.type == "cuda" else None
    if forward_done is not None:
        forward_done.record()
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if forward_done is not None:
        forward_done.synchronize()
    not_finite, stopping = checks.tolist()
    if not_finite:
        raise cli.UserError(f"the training loss became {loss.item()} (at {100 * progress:.1f}% of the run); stopped "
                            f"before that step, keeping the checkpoints of the last finished epoch; try a lower --lr")
    run.optimizer.step()
    run.scheduler.step()
    return loss, logits, bool(stopping)


def end_epoch(run: Run, epoch: int, learning_rate: float, started: float) -> None:
    """After epoch: measure the evaluated splits (after every --evaluate_every-th epoch and the last),
    add the metrics row, save last.pt (and best.pt when the best split's accuracy improved), write
    the metrics files and print the epoch's line."""
    cfg = run.cfg
    run.processes.average_buffers(run.net)
    flip = cfg.flip_test and run.loaded.augment.flip
    last = epoch == cfg.epochs
    measured = last or (cfg.evaluate_every > 0 and epoch % cfg.evaluate_every == 0)
    shifts = ([0] if measured else []) + ([1] if last and cfg.shift_test and run.loaded.augment.shifts else [])
    scores = {split + ("_tta" if shift else ""): metrics.evaluate(
                  run.net, loader, run.device, devices.memory_format(cfg.channels_last), flip,
                  lambda: devices.autocast(cfg.precision, run.device), run.processes, shift, run.loaded.info.black)
              for shift in shifts for split, loader in run.evaluated.items()}  # the final model also shifted: *_tta
    run.history.append(metrics.metrics_row(epoch, learning_rate, run.position, scores,
                                            time.perf_counter() - started, run.history))
    run.position = metrics.EpochPosition()
    chosen_loss, chosen_accuracy = scores.get(run.best_split, (math.nan, math.nan))
    improved = math.isfinite(chosen_loss) and chosen_accuracy > run.best_accuracy  # a NaN model is never the best
    if improved:
        run.best_accuracy, run.best["best_epoch"] = chosen_accuracy, epoch
    if run.processes.rank == 0:
        contents = run.contents(epoch=epoch, test_accuracy=metrics.last_test_accuracy(run.history))
        run.folder.save_last(run.net, **contents, optimizer=run.optimizer.state_dict(),
                             scheduler=run.scheduler.state_dict())
        if improved:
            run.folder.save_best(run.net, **contents, chosen_on=run.best_split)
        metrics.write_metrics(run.history, Path(cfg.output_dir))
    run.say(metrics.describe_epoch(run.history[-1], cfg.epochs) + ("  (best)" if improved else "")
            + ("" if math.isfinite(chosen_loss) or not measured
               else f"  ({run.best_split} loss not finite: not kept as best.pt)"))


def say_finished(run: Run) -> None:
    """The closing line: the final test accuracy, the best epoch, the time and the files written."""
    written = [*run.folder.written, *(Path(run.cfg.output_dir) / name for name in OUTPUT_FILES)]
    final = run.history[-1]
    with_shifts = (f", {final['test_tta_accuracy']:.2f}% with test-time shifts (test_tta)"
                   if "test_tta_accuracy" in final else "")
    best = (f"best epoch {run.best['best_epoch']} ({run.best_accuracy:.2f}% on {run.best_split})"
            if run.best["best_epoch"] is not None else f"no epoch had a finite {run.best_split} loss, so no best")
    run.say(f"test accuracy {final['test_accuracy']:.2f}% at the last epoch{with_shifts}; {best}; "
            f"{final['elapsed_seconds']:.0f} s of training; wrote {', '.join(map(str, written))}")


def save_and_stop(run: Run, epoch: int, signal_name: str):
    """Save last.pt at run.position (in epoch, after a stop request) and raise cli.Stopped."""
    if run.processes.rank > 0:
        raise cli.Stopped("")  # rank 0 saves and says so
    contents = run.contents(epoch=epoch - 1, test_accuracy=metrics.last_test_accuracy(run.history))
    run.folder.save_last(run.net, **contents, optimizer=run.optimizer.state_dict(),
                         scheduler=run.scheduler.state_dict(), position=dataclasses.asdict(run.position))
    raise cli.Stopped(f"stopped by {signal_name} in epoch {epoch}, after step {run.position.step} of "
                      f"{run.steps_per_epoch}; continue with --resume: saved {run.folder.last}")


def main(argv: list[str] | None = None) -> None:
    devices.keep_freed_memory()
    train(cli.parse_hyperparameters(sys.modules[__name__], argv), cli.given_names(argv))


if __name__ == "__main__":
    cli.run(main)
