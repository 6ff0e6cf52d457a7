"""How fast each weight learns over a run: SGD's parameter groups, the learning-rate schedules and progressive resizing
of the training images."""

import torch

SCHEDULES = ("onecycle", "cosine", "step", "constant")


def parameter_groups(net: torch.nn.Module, backbone_lr: float | None = None, head_rate_layers: tuple[str, ...] = ()
                     ) -> list[dict]:
    """SGD's parameter groups of a GapNet: all its parameters at the optimizer's lr; or, with backbone_lr
    (pretrained features), its features' children at backbone_lr and the new layers at the optimizer's lr:
    fc, and the children named in head_rate_layers (torchvision_models.head_rate_layers: those
    wsolevaluation trains at its classifier's rate)."""
    if backbone_lr is None:
        return [{"params": list(net.parameters())}]
    layers = list(net.features.named_children())
    trunk = [parameter for name, layer in layers if name not in head_rate_layers for parameter in layer.parameters()]
    new = [parameter for name, layer in layers if name in head_rate_layers for parameter in layer.parameters()]
    return [{"params": trunk, "lr": backbone_lr}, {"params": new + list(net.fc.parameters())}]


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int, decay_steps: int = 0):
    """The learning-rate schedule (onecycle | cosine | step | constant) over total_steps, stepped every
    batch; onecycle peaks at each parameter group's own lr. step: every group's lr times 0.1 after
    each decay_steps steps, as wsolevaluation's adjust_learning_rate does every lr_decay_frequency
    epochs (decay_steps = that many epochs' steps)."""
    if schedule == "onecycle":
        # A quarter of the steps warm up; in short runs 1.5 steps, since OneCycleLR divides by zero when
        # its warm-up is exactly 1 step (total_steps == 4) or the whole run.
        warmup = max(0.25, min(0.75, 1.5 / total_steps))
        peaks = [group["lr"] for group in optimizer.param_groups]  # each group's own peak (parameter_groups)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=total_steps, pct_start=warmup)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=decay_steps, gamma=0.1)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def progressive_side(full: int, smallest: int, until: float, progress: float) -> int:
    """The side of the training images at `progress` (in [0, 1]) of a run that starts at side
    `smallest` and grows linearly to `full` by `until` of the run, in steps of 4 pixels (few
    shapes, so few kernel set-ups), as in progressive resizing (Howard's fast.ai DAWNBench entry,
    2018; FFCV's ResNet recipes): the early, coarse epochs cost (smallest / full)**2 as much.
    `full` throughout when smallest is 0 or not below full."""
    if not 0 < smallest < full or progress >= until:
        return full
    side = smallest + (full - smallest) * progress / until
    return max(smallest, int(side) // 4 * 4)
