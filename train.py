"""Train a GAP-ending CNN; write checkpoints/last.pt (every epoch) and best.pt (best test accuracy).

    python train.py                                   # Fashion-MNIST, the default small CNN
    python train.py --dataset=cifar10 --model=resnet18 --epochs=30
    python train.py --resume                          # continue the run saved in checkpoints/last.pt
    torchrun --standalone --nproc_per_node=4 train.py # 4 GPUs, DistributedDataParallel (README)
    python train.py --help                            # every hyperparameter with its default

Also writes outputs/metrics.csv (one row per epoch) and outputs/training_curves.png. Ctrl-C or
SIGTERM stops after the current step and saves last.pt, from which --resume goes on. A new run
refuses a checkpoint_dir that holds an earlier run's checkpoints (--resume or --overwrite), or one
that another run is using.
"""

import cli  # noqa: I001 -- first: a Ctrl-C while torch loads then ends in one line, not a traceback

import contextlib
import csv
import math
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import data
import model as models
import run_folder

# --- hyperparameters: edit them here, or override them on the command line (--name=value) ---
dataset: str = "fashion-mnist"  # fashion-mnist | fashion-mnist-cluttered | mnist | cifar10 | cifar100 | svhn | stl10 | folder
data_dir: str = "data"  # where datasets are looked for and downloaded to (for folder: its root)
download: bool = True  # download a dataset that is not on disk
image_size: int = 0  # resize images to this side; 0: the dataset's own size (folder: 128; cluttered: canvas 64)
clutter: int = 6  # fashion-mnist-cluttered: crops of other items pasted on each canvas
clutter_size: int = 10  # fashion-mnist-cluttered: side of those crops in pixels (at most 28)
subset: int = 0  # use only the first N images of each split (0: all), for quick checks
model: str = "cnn"  # cnn | resnet18 | vgg16_gap
width: int = 32  # cnn: channels of its first stage (doubled in each of the next two)
pools: int = 2  # cnn: 2x2 max pools after its first stages (0-2); its maps are 1/2**pools of the image side
epochs: int = 10  # passes over the training set
batch_size: int = 128  # images per step (per process under torchrun: N processes step on N x batch_size)
lr: float = 0.1  # peak learning rate of SGD with Nesterov momentum
momentum: float = 0.9  # SGD momentum
weight_decay: float = 5e-4  # L2 penalty on all weights
schedule: str = "onecycle"  # learning-rate schedule, stepped every batch: onecycle | cosine | constant
label_smoothing: float = 0.1  # cross-entropy label smoothing in [0, 1)
seed: int = 0  # seeds the weights, the data order and the augmentation
device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
num_workers: int = 0  # image folders: DataLoader worker processes (0: load in the training process)
channels_last: bool = True  # NHWC memory layout for the convolutions (1.35x faster training on a 2-core CPU)
precision: str = "auto"  # auto (bf16 autocast on GPUs and CPUs with native bf16, else fp32) | bf16 | fp32
compile: bool = False  # torch.compile the model (pays off on GPUs, not on a 2-core CPU: see README)
flip_test: bool = True  # test accuracy from the mean logits of each image and its mirror image (datasets trained with flips)
checkpoint_dir: str = "checkpoints"  # where last.pt and best.pt are written
output_dir: str = "outputs"  # where metrics.csv and training_curves.png are written
resume: bool = False  # continue the run in checkpoint_dir/last.pt with its saved hyperparameters
overwrite: bool = False  # start a new run in a checkpoint_dir that holds an earlier run's checkpoints, replacing them
# ------------------------------------------------------------------------------------------------

SCHEDULES = ("onecycle", "cosine", "constant")
PRECISIONS = ("auto", "bf16", "fp32")
# Where training stands within an epoch: steps done, the sums of loss, right answers and images
# over all processes, and seconds spent; saved by a stop, so that --resume goes on from there.
EPOCH_START = {"step": 0, "loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
# What --resume may change: where and how the saved run goes on, not what it computes.
RUNTIME_SETTINGS = ("data_dir", "download", "device", "num_workers", "checkpoint_dir", "output_dir", "resume",
                    "overwrite")
SEEDS = 2**64  # torch.manual_seed takes seeds in [0, 2**64): any --seed is taken modulo this


def validate(cfg) -> None:
    """Raise UserError for a value out of range or a name that does not exist."""
    for option, choices in (("dataset", data.DATASETS), ("model", models.MODELS), ("schedule", SCHEDULES),
                            ("precision", PRECISIONS)):
        cli.check_choice(option, getattr(cfg, option), choices)
    checks = [
        (cfg.width >= 1, f"--width must be at least 1, got {cfg.width}"),
        (0 <= cfg.pools <= 2, f"--pools must be 0, 1 or 2, got {cfg.pools}"),
        (cfg.epochs >= 1, f"--epochs must be at least 1, got {cfg.epochs}"),
        (cfg.batch_size >= 1, f"--batch_size must be at least 1, got {cfg.batch_size}"),
        (cfg.lr > 0, f"--lr must be positive, got {cfg.lr}"),
        (0 <= cfg.momentum < 1, f"--momentum must be in [0, 1), got {cfg.momentum}"),
        (cfg.weight_decay >= 0, f"--weight_decay must be >= 0, got {cfg.weight_decay}"),
        (0 <= cfg.label_smoothing < 1, f"--label_smoothing must be in [0, 1), got {cfg.label_smoothing}"),
        (cfg.image_size >= 0, f"--image_size must be >= 0, got {cfg.image_size}"),
        (cfg.clutter >= 0, f"--clutter must be >= 0, got {cfg.clutter}"),
        (1 <= cfg.clutter_size <= 28, f"--clutter_size must be in [1, 28], got {cfg.clutter_size}"),
        (cfg.subset >= 0, f"--subset must be >= 0, got {cfg.subset}"),
        (cfg.num_workers >= 0, f"--num_workers must be >= 0, got {cfg.num_workers}"),
    ]
    for ok, message in checks:
        if not ok:
            raise cli.UserError(message)
    if cfg.resume and cfg.overwrite:
        raise cli.UserError("--resume continues the run in --checkpoint_dir and --overwrite replaces it: choose one")
    check_image_size(cfg)


def model_options(cfg) -> dict:
    """build_model's options for cfg.model."""
    return {"width": cfg.width, "pools": cfg.pools} if cfg.model == "cnn" else {}


def check_image_size(cfg) -> None:
    """UserError unless cfg.model gives maps of at least 2x2 on cfg's images: CAM needs them, and so
    does batch norm when a batch holds one image."""
    spec = data.DATASETS[cfg.dataset]
    size = cfg.image_size or spec.image_size
    if size < spec.min_image_size:
        raise cli.UserError(f"--image_size must be at least {spec.min_image_size} for {cfg.dataset}, got {size}")
    def side(image_size: int) -> int:
        return models.map_side(cfg.model, spec.channels, image_size, **model_options(cfg))

    if side(size) < 2:
        too_small, smallest = size, 2 * size
        while side(smallest) < 2:
            too_small, smallest = smallest, 2 * smallest
        while smallest - too_small > 1:  # bisect: the maps grow with the images
            middle = (too_small + smallest) // 2
            too_small, smallest = (too_small, middle) if side(middle) >= 2 else (middle, smallest)
        raise cli.UserError(f"--image_size={size} gives {cfg.model} maps of {side(size)}x{side(size)}, and CAM needs at least 2x2: "
                            f"use --image_size={smallest} or more" + (" (or fewer --pools)" if cfg.model == "cnn" and cfg.pools else ""))


def make_scheduler(optimizer, cfg, total_steps: int):
    if cfg.schedule == "onecycle":
        # A quarter of the steps warm up; in short runs 1.5 steps, since OneCycleLR divides by zero when
        # its warm-up is exactly 1 step (total_steps == 4) or the whole run.
        warmup = max(0.25, min(0.75, 1.5 / total_steps))
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total_steps, pct_start=warmup)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def memory_format(cfg) -> torch.memory_format:
    return torch.channels_last if cfg.channels_last else torch.contiguous_format


def autocast(cfg, device: torch.device):
    """bf16 autocast where cfg.precision asks for it (auto: where bf16 is fast), else a no-op context."""
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and models.fast_bf16(device))
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


@dataclass(frozen=True)
class Processes:
    """This process's place among those torchrun started: rank 0 of 1 without torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # among the processes of this machine

    def local_leaders_first(self, work):
        """work() in the first process of each machine, then in the others: one download or
        generation of a dataset per machine, which the others then read."""
        if self.local_rank > 0:
            dist.barrier()
        result = work()
        if self.local_rank == 0 and self.world_size > 1:
            dist.barrier()
        return result

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """values summed over all processes (the same list back in a single process)."""
        if self.world_size == 1:
            return values
        total = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return total.tolist()

    def average_buffers(self, net: torch.nn.Module) -> None:
        """Make the batch-norm running statistics the mean over all processes, so every process
        (and the checkpoint) holds the same model."""
        if self.world_size == 1:
            return
        for buffer in net.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer /= self.world_size


def join_processes(cfg) -> tuple[torch.device, Processes]:
    """This process's device and Processes. Under torchrun (WORLD_SIZE > 1) it joins the process
    group: NCCL with one GPU per process (cuda:LOCAL_RANK), or gloo on CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = models.pick_device(cfg.device)
    if world_size == 1:
        return device, Processes()
    if device.type not in ("cuda", "cpu"):
        raise cli.UserError(f"torchrun runs on CUDA GPUs or on CPU, not on {device.type}; set --device=cpu or cuda")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, Processes(dist.get_rank(), world_size, int(os.environ["LOCAL_RANK"]))


def train_one_epoch(model, loader, optimizer, scheduler, cfg, device, description: str, processes: Processes,
                    stop: cli.StopRequest, position: dict) -> dict:
    """One pass over loader, from `position`: {"step": batches already done, "loss_sum", "correct",
    "seen": their sums over all processes}. Returns the position after the pass, with "finished"
    False when a stop was requested before its end (every process stops at the same step)."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    step = position["step"]
    progress = tqdm(loader, desc=description, leave=False, dynamic_ncols=True,
                    disable=None if processes.rank == 0 else True)  # off when not a terminal
    finished = True
    for index, (images, labels) in enumerate(progress):
        if index < position["step"]:
            continue  # done before a stop; drawn again all the same, so that the random draws line up
        if processes.sum([float(bool(stop.signal))], device)[0]:  # before the forward pass updates batch norm
            finished = False
            break
        images = images.to(device, non_blocking=True, memory_format=memory_format(cfg))
        labels = labels.to(device, non_blocking=True)
        with autocast(cfg, device):
            logits = model(images)
            loss = F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)
        loss_value = loss.item()
        (loss_total,) = processes.sum([loss_value], device)
        if not math.isfinite(loss_total):
            raise cli.UserError(
                f"the training loss became {loss_total / processes.world_size} ({description}, after {seen} images); "
                f"stopped before that step, keeping the checkpoints of the last finished epoch; try a lower --lr"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        loss_sum += loss_value * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
        progress.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}%")
    sums = processes.sum([loss_sum, correct, seen], device)
    return {"step": step, "finished": finished,
            **{key: position[key] + value for key, value in zip(("loss_sum", "correct", "seen"), sums)}}


@torch.no_grad()
def evaluate(model, loader, device, layout: torch.memory_format = torch.contiguous_format, flip: bool = False,
             precision=contextlib.nullcontext, processes: Processes = Processes()) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in %) of model on loader, in eval mode; with flip, of the mean
    logits of each image and its mirror image. precision() gives the context of each forward pass.
    Each process evaluates its own share of the images (loader); the sums are taken over all."""
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    for images, labels in loader:
        images = images.to(device, non_blocking=True, memory_format=layout)
        labels = labels.to(device, non_blocking=True)
        with precision():
            logits = model(images).float()
            if flip:
                logits = (logits + model(images.flip(3)).float()) / 2
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
    loss_sum, correct, seen = processes.sum([loss_sum, correct, seen], device)
    return loss_sum / seen, 100 * correct / seen


def write_metrics(history: list[dict], output_dir: Path) -> None:
    """metrics.csv (a row per epoch) and training_curves.png (loss and accuracy per epoch)."""
    with cli.atomic_output(output_dir / "metrics.csv") as temporary, open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(10, 4), layout="tight")
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    for split, label in (("train", "train (augmented, label-smoothed loss)"), ("test", "test")):
        loss_axis.plot(epochs, [row[f"{split}_loss"] for row in history], "o-", label=label)
        accuracy_axis.plot(epochs, [row[f"{split}_accuracy"] for row in history], "o-", label=label)
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    with cli.atomic_output(output_dir / "training_curves.png") as temporary:
        figure.savefig(temporary, dpi=100, format="png", bbox_inches="tight", pad_inches=0.1)


def resume_state(cfg, checkpoint_dir: Path, processes: Processes) -> tuple[dict, object]:
    """(checkpoint, cfg with the saved run's hyperparameters) from checkpoint_dir/last.pt."""
    path = checkpoint_dir / "last.pt"
    if not path.is_file():
        raise cli.UserError(f"--resume: {path} not found; start a run without --resume, or set --checkpoint_dir")
    _, checkpoint = models.load_checkpoint(path, needs=models.TRAINING_METADATA)
    if "optimizer" not in checkpoint:
        raise cli.UserError(f"--resume: {path} holds no training state (optimizer, scheduler)")
    saved_processes = checkpoint.get("world_size", 1)
    if saved_processes != processes.world_size:
        raise cli.UserError(
            f"--resume: {path} was trained by {saved_processes} process(es), this run has {processes.world_size}; "
            f"resume with the same count (torchrun --nproc_per_node=N, or plain python for 1)"
        )
    saved = {**vars(cfg), **checkpoint["hyperparameters"]}  # settings added since the run began keep their defaults
    saved.update({name: getattr(cfg, name) for name in RUNTIME_SETTINGS})
    return checkpoint, type(cfg)(**saved)


def training_state(cfg, info: data.DatasetInfo, steps_per_epoch: int, device, checkpoint: dict | None):
    """(model, optimizer, scheduler, history, best test accuracy), new or as saved in checkpoint."""
    torch.manual_seed(cfg.seed % SEEDS)
    net = models.build_model(cfg.model, len(info.classes), info.channels, **model_options(cfg))
    net = net.to(device, memory_format=memory_format(cfg))
    optimizer = torch.optim.SGD(
        net.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay
    )
    scheduler = make_scheduler(optimizer, cfg, cfg.epochs * steps_per_epoch)
    if checkpoint is None:
        return net, optimizer, scheduler, [], -1.0
    net.load_state_dict(checkpoint["state_dict"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    return net, optimizer, scheduler, checkpoint["history"], checkpoint["best_test_accuracy"]


def train(cfg) -> dict:
    """Run the training cfg describes, in this process or as one of those torchrun started;
    returns the last epoch's metrics row. Ctrl-C or SIGTERM stops it after the current step,
    saving last.pt to resume from that step (cli.Stopped)."""
    validate(cfg)
    device, processes = join_processes(cfg)
    try:
        with run_folder.claimed(cfg.checkpoint_dir, active=processes.rank == 0) as folder:
            return train_processes(cfg, device, processes, folder)
    finally:
        if processes.world_size > 1:
            dist.destroy_process_group()


def train_processes(cfg, device: torch.device, processes: Processes, folder: run_folder.RunFolder) -> dict:
    say = print if processes.rank == 0 else lambda *args, **kwargs: None
    output_dir = Path(cfg.output_dir)
    checkpoint = None
    if cfg.resume:
        checkpoint, cfg = resume_state(cfg, folder.path, processes)
        if repaired := folder.repair_best(checkpoint):
            say(repaired)
    else:
        folder.check_new_run(cfg.overwrite)
    if processes.rank == 0:
        cli.writable_folder(output_dir, "output_dir")
    options = {key: getattr(cfg, key) for key in data.DATASETS[cfg.dataset].options if hasattr(cfg, key)}
    with cli.enough_memory("lower --image_size"):
        loaded = processes.local_leaders_first(
            lambda: data.load_dataset(cfg.dataset, cfg.data_dir, cfg.download, cfg.image_size, options)
        )
    feed = {"device": device, "limit": cfg.subset, "num_workers": cfg.num_workers, "memory_format": memory_format(cfg),
            "rank": processes.rank, "world_size": processes.world_size}
    test_loader = loaded.loader("test", 2 * cfg.batch_size, **feed)
    train_count, test_count = (min(cfg.subset or len(split), len(split)) for split in (loaded.train, loaded.test))
    steps_per_epoch = math.ceil(math.ceil(train_count / processes.world_size) / cfg.batch_size)
    net, optimizer, scheduler, history, best_accuracy = training_state(
        cfg, loaded.info, steps_per_epoch, device, checkpoint
    )
    flip_test = cfg.flip_test and loaded.augment.flip
    train_net = net
    if processes.world_size > 1:
        train_net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile and torch._dynamo.is_dynamo_supported():
        train_net = torch.compile(train_net)
    elif cfg.compile:
        say("torch.compile is not supported on this Python or platform; training without it")
    start_epoch = len(history) + 1
    position = dict(EPOCH_START)
    run = {"run_id": uuid.uuid4().hex, "best_epoch": None}  # which run and epoch best.pt holds
    if checkpoint is not None:
        run = {"run_id": checkpoint.get("run_id"), "best_epoch": run_folder.best_epoch(checkpoint)}
        if "position" in checkpoint:
            position = checkpoint["position"]
            say(f"resuming {folder.last} in epoch {start_epoch} of {cfg.epochs}, after step "
                f"{position['step']} of {steps_per_epoch}")
        else:
            say(f"resuming {folder.last} after epoch {checkpoint['epoch']} of {cfg.epochs}")
        if processes.rank > 0:  # the saved sums are over all processes: counted once, by rank 0
            position = {**position, "loss_sum": 0.0, "correct": 0, "seen": 0}
    if start_epoch > cfg.epochs:
        say(f"{folder.last} has finished all {cfg.epochs} epochs; nothing to resume")
        return history[-1]
    processes_note = (f" in {processes.world_size} processes (batch {cfg.batch_size} each, "
                      f"{cfg.batch_size * processes.world_size} in all)" if processes.world_size > 1 else "")
    say(f"training {cfg.model} on {cfg.dataset} ({train_count} train / {test_count} test images) "
        f"on {device}{processes_note} for {cfg.epochs} epochs")

    first_step = (start_epoch, position["step"])  # where this process began: a stop there has nothing to save
    elapsed = history[-1]["elapsed_seconds"] if history else 0.0
    with cli.stop_requests() as stop, cli.enough_memory("lower --batch_size (or --image_size, --width)"):
        for epoch in range(start_epoch, cfg.epochs + 1):
            # The data order and the augmentation depend on (seed, epoch) alone, so a resumed run
            # sees the same batches as an uninterrupted one.
            epoch_seed = (cfg.seed * 100_003 + epoch) % SEEDS
            torch.manual_seed(epoch_seed)
            train_loader = loaded.loader("train", cfg.batch_size, generator=torch.Generator().manual_seed(epoch_seed),
                                         **feed)
            before, started = position["seconds"], time.perf_counter()  # seconds spent on this epoch before a stop
            learning_rate = optimizer.param_groups[0]["lr"]
            position = train_one_epoch(
                train_net, train_loader, optimizer, scheduler, cfg, device, f"epoch {epoch}/{cfg.epochs}", processes,
                stop, position,
            )
            position["seconds"] = before + time.perf_counter() - started
            metadata = {
                "dataset": loaded.info.as_dict(), "hyperparameters": vars(cfg), "world_size": processes.world_size,
                "best_test_accuracy": best_accuracy, "history": history, **run,
            }
            training = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
            if not position.pop("finished"):
                if processes.rank > 0:
                    raise cli.Stopped("")  # rank 0 saves and says so
                if (epoch, position["step"]) == first_step:
                    raise cli.Stopped(f"stopped by {stop.signal} before the first step of this run: nothing was "
                                      f"trained, so nothing was saved ({folder.path} is as it was)")
                last = history[-1] if history else {}
                folder.save_last(net, **training, **metadata, position=position, epoch=epoch - 1,
                                 test_accuracy=last.get("test_accuracy", 0.0))
                raise cli.Stopped(
                    f"stopped by {stop.signal} in epoch {epoch}, after step {position['step']} of {steps_per_epoch}; "
                    f"continue with --resume: saved {folder.last}"
                )
            processes.average_buffers(net)
            test_loss, test_accuracy = evaluate(net, test_loader, device, memory_format(cfg), flip_test,
                                                lambda: autocast(cfg, device), processes)
            seconds = before + time.perf_counter() - started
            elapsed += seconds
            seen = max(position["seen"], 1)
            history.append({
                "epoch": epoch, "lr": round(learning_rate, 6),
                "train_loss": round(position["loss_sum"] / seen, 4),
                "train_accuracy": round(100 * position["correct"] / seen, 2),
                "test_loss": round(test_loss, 4), "test_accuracy": round(test_accuracy, 2),
                "epoch_seconds": round(seconds, 1), "elapsed_seconds": round(elapsed, 1),
            })
            position = dict(EPOCH_START)
            improved = math.isfinite(test_loss) and test_accuracy > best_accuracy  # a NaN model is never the best
            if improved:
                best_accuracy, run["best_epoch"] = test_accuracy, epoch
            if processes.rank == 0:
                metadata.update(epoch=epoch, test_accuracy=test_accuracy, best_test_accuracy=best_accuracy, **run)
                folder.save_last(net, **training, **metadata)
                if improved:
                    folder.save_best(net, **metadata)
                write_metrics(history, output_dir)
            say(
                f"epoch {epoch}/{cfg.epochs}  train loss {history[-1]['train_loss']:.4f} "
                f"acc {history[-1]['train_accuracy']:.2f}%  test loss {test_loss:.4f} acc {test_accuracy:.2f}%  "
                f"{seconds:.1f} s" + ("  (best)" if improved else "")
                + ("" if math.isfinite(test_loss) else "  (test loss not finite: not kept as best.pt)")
            )
    written = [*folder.written, output_dir / "metrics.csv", output_dir / "training_curves.png"]
    say(f"best test accuracy {best_accuracy:.2f}%, {elapsed:.0f} s of training; wrote {', '.join(map(str, written))}")
    return history[-1]


def main(argv: list[str] | None = None) -> None:
    train(cli.parse_hyperparameters(sys.modules[__name__], argv))


if __name__ == "__main__":
    cli.run(main)
