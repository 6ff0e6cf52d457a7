"""GAP-ending CNNs, their class activation maps (CAM), and checkpoints.

Every model is a `GapNet`: `features` maps images (B, C, H, W) to the last conv feature maps
f of shape (B, K, h, w), global average pooling (GAP) averages them over (h, w), and one linear
layer `fc` (K -> num_classes) gives the logits. For class c the CAM is

    M_c(x, y) = sum_k fc.weight[c, k] * f_k(x, y),    so    logit_c = mean_xy M_c(x, y) + fc.bias[c].

`class_activation_maps` is the one place this is computed.
"""

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cli import UserError
from files import atomic_output

CHECKPOINT_FORMAT = "cam-checkpoint-v1"


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or does not fit its stated model."""


class GapNet(nn.Module):
    """images (B, C, H, W) -> features (B, K, h, w) -> GAP (B, K) -> fc -> logits (B, num_classes).

    `arch` records how `build_model` made it ({"name", "num_classes", "in_channels", "options"}),
    so that a checkpoint can rebuild it.
    """

    def __init__(self, features: nn.Module, fc: nn.Linear, arch: dict):
        super().__init__()
        self.features = features
        self.fc = fc
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(-2, -1)))


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """3x3 conv (same size), batch norm, ReLU."""
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


CNN_DEFAULTS = {"width": 16, "pools": 2, "convs": (2, 2, 2), "head": 256}  # the default network (train.py's too)


def cnn_features(in_channels: int, width: int = CNN_DEFAULTS["width"], pools: int = CNN_DEFAULTS["pools"],
                 convs: tuple[int, ...] = CNN_DEFAULTS["convs"], head: int = CNN_DEFAULTS["head"]
                 ) -> tuple[nn.Module, int]:
    """The default small CNN: 3 stages of convs[s] 3x3 conv-BN-ReLU blocks each (width, 2*width,
    4*width channels), with 2x2 max pooling after the first `pools` (0 to 2) stages, so h, w =
    H / 2**pools, W / 2**pools (7x7 on 28x28 images with the default 2; finer maps localize more
    sharply but cost more). A first stage of one conv skips the costly full-resolution conv of width
    to width channels. With head > 0, a last 1x1 conv-BN-ReLU widens the final maps to head
    channels (as MobileNetV2 does before its pooling): more features for the linear layer at a
    small cost, since it runs on the smallest maps."""
    if not 0 <= pools <= 2:
        raise TypeError(f"pools must be 0, 1 or 2, got {pools}")
    if len(convs) != 3 or min(convs) < 1:
        raise TypeError(f"convs must give 3 stages of at least 1 conv each, got {convs}")
    layers, channels = [], in_channels
    for stage, (out_channels, count) in enumerate(zip((width, 2 * width, 4 * width), convs)):
        for _ in range(count):
            layers += conv_bn_relu(channels, out_channels)
            channels = out_channels
        if stage < pools:
            layers.append(nn.MaxPool2d(2))
    if head:
        layers += [nn.Conv2d(channels, head, kernel_size=1, bias=False), nn.BatchNorm2d(head), nn.ReLU(inplace=True)]
        channels = head
    return nn.Sequential(*layers), channels


def resnet18_features(in_channels: int) -> tuple[nn.Module, int]:
    """torchvision's ResNet-18 for small inputs: a 3x3 stride-1 stem and no stem max pooling,
    so h, w = H/8, W/8 (4x4 on 28x28, 4x4 on 32x32, 12x12 on 96x96). Its own head is GAP + linear."""
    resnet = torchvision.models.resnet18(weights=None)
    stem = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    blocks = OrderedDict(conv1=stem, bn1=resnet.bn1, relu=resnet.relu)
    blocks.update((name, getattr(resnet, name)) for name in ("layer1", "layer2", "layer3", "layer4"))
    return nn.Sequential(blocks), 512


VGG16_CONV_LAYERS = [64, 64, "pool", 128, 128, "pool", 256, 256, 256, "pool", 512, 512, 512, "pool", 512, 512, 512]


def vgg16_gap_features(in_channels: int, max_pools: int = 2) -> tuple[nn.Module, int]:
    """VGG16-GAP of the CAM paper: VGG16's conv1_1..conv5_3 (with batch norm, to train from
    scratch), the layers after conv5_3 removed, then a 3x3 conv with 1024 channels.

    The paper keeps all four pools before conv5 (14x14 maps on 224x224 images); on the small
    images here that leaves 1x1 or 2x2 maps, so by default only the first `max_pools` (2) are
    kept: h, w = H / 2**max_pools.
    """
    layers, channels, pools = [], in_channels, 0
    for item in VGG16_CONV_LAYERS:
        if item == "pool":
            pools += 1
            if pools <= max_pools:
                layers.append(nn.MaxPool2d(2))
        else:
            layers += conv_bn_relu(channels, item)
            channels = item
    layers += conv_bn_relu(channels, 1024)
    return nn.Sequential(*layers), 1024


MODELS = {"cnn": cnn_features, "resnet18": resnet18_features, "vgg16_gap": vgg16_gap_features}


def build_model(name: str, num_classes: int, in_channels: int, **options) -> GapNet:
    """A GapNet by name ('cnn', 'resnet18', 'vgg16_gap'); options go to the feature builder
    (cnn: width, pools; vgg16_gap: max_pools)."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    try:
        features, num_features = MODELS[name](in_channels, **options)
    except TypeError as error:
        raise UserError(f"bad options {options} for model {name!r}: {error}") from None
    for module in features.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    arch = {"name": name, "num_classes": num_classes, "in_channels": in_channels, "options": dict(options)}
    return GapNet(features, nn.Linear(num_features, num_classes), arch)


def map_side(name: str, in_channels: int, image_size: int, **options) -> int:
    """Side h of the square maps that build_model(name, ..., **options) gives on image_size x
    image_size inputs (0: too small to give any). Found on the meta device, so it costs no memory
    and no compute at any size."""
    with torch.device("meta"):
        probe = build_model(name, 1, in_channels, **options).eval()
        try:
            return probe.features(torch.zeros(1, in_channels, image_size, image_size)).shape[-1]
        except RuntimeError:  # "Output size is too small" in a pooling layer
            return 0


def class_activation_maps(model: GapNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, num_classes) and the CAMs of every class (B, num_classes, h, w), from one forward pass.

    cams[b, c] = sum_k fc.weight[c, k] * features(x)[b, k]: raw maps, no ReLU and no
    normalization, so positive values argue for class c and negative values against it, and
    logits == cams.mean(dim=(-2, -1)) + fc.bias. Gradients flow as for the logits; call it under
    torch.no_grad() (and model.eval()) for inference.
    """
    # the sum over k as a 1x1 convolution with fc's weights: the einsum "ck,bkhw->bchw", 1.5x faster on a CPU
    cams = F.conv2d(model.features(x), model.fc.weight[:, :, None, None])
    return cams.mean(dim=(-2, -1)) + model.fc.bias, cams  # the logits, read off the maps


def grad_cam(model: GapNet, x: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, num_classes) and the Grad-CAM (Selvaraju et al. 2017) of classes[b] for each
    image b, (B, h, w), with autograd on the last conv feature maps f = model.features(x):

        alpha_k = mean_xy d logit_c / d f_k(x, y),    map = ReLU(sum_k alpha_k f_k).

    On a GapNet alpha_k = fc.weight[c, k] / (h * w), so the map is ReLU(CAM of c) / (h * w): the
    same map as CAM up to a ReLU and a scale. Both results are detached; model weights get no grads.
    """
    with torch.enable_grad():
        features = model.features(x)
        if not features.requires_grad:  # the input and the model are frozen: ask for grads of f alone
            features.requires_grad_()
        logits = model.fc(features.mean(dim=(-2, -1)))
        scores = logits.gather(1, classes.view(-1, 1)).sum()
        (gradients,) = torch.autograd.grad(scores, features)
    weights = gradients.mean(dim=(-2, -1))  # (B, K)
    maps = torch.einsum("bk,bkhw->bhw", weights, features.detach()).relu()
    return logits.detach(), maps


def save_checkpoint(path: str | Path, model: GapNet, **metadata) -> None:
    """Write the model's weights, its `arch` and the metadata (plain values and tensors) to path
    (see write_checkpoint)."""
    write_checkpoint(path, {"format": CHECKPOINT_FORMAT, "arch": model.arch, "state_dict": model.state_dict(),
                            **metadata})


def write_checkpoint(path: str | Path, checkpoint: dict) -> None:
    """Write a checkpoint dict (as save_checkpoint makes it) to path atomically: an interrupted save
    never leaves a broken checkpoint, and a full disk is a UserError that keeps the previous file."""
    with atomic_output(path) as temporary, open(temporary, "wb") as file:  # a file object: disk errors are OSErrors
        torch.save(checkpoint, file)


TRAINING_METADATA = ("dataset", "hyperparameters")  # what train.py stores beside the weights


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", needs: tuple[str, ...] = ()
                    ) -> tuple[GapNet, dict]:
    """Rebuild the model saved at path, on device and in eval mode; returns (model, checkpoint dict).

    Loads with weights_only=True, so a file carrying pickled code is refused. Raises
    CheckpointError when the file is missing, unreadable, not a checkpoint of this repo, lacks
    one of the entries in `needs`, or its weights do not fit its stated model.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} not found; train one with `python train.py` or pass --checkpoint=PATH"
        )
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # noqa: BLE001 -- torch raises many types for truncated, foreign or unsafe files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint written by this repo's train.py")
    arch = checkpoint.get("arch")
    if not isinstance(arch, dict) or not {"name", "num_classes", "in_channels", "options"} <= arch.keys() \
            or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path} is incomplete: it lacks the model description or the weights; retrain it")
    missing = [key for key in needs if not isinstance(checkpoint.get(key), dict)]
    if missing:
        raise CheckpointError(
            f"{path} lacks its {' and '.join(missing)} description, which train.py writes; use a checkpoint from train.py"
        )
    broken = [name for name, tensor in checkpoint["state_dict"].items()
              if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not tensor.isfinite().all()]
    if broken:
        raise CheckpointError(f"{path} holds NaN or infinite weights ({', '.join(broken[:3])}): its training diverged; "
                              f"use a checkpoint from before that, or retrain with a lower --lr")
    model = build_model(arch["name"], arch["num_classes"], arch["in_channels"], **arch["options"])
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:300]
        raise CheckpointError(f"the weights in {path} do not fit its stated model {arch['name']!r}: {detail}") from None
    return model.to(device).eval(), checkpoint
