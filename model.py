"""GAP-ending CNNs, their class activation maps (CAM), and checkpoints.

Every model is a `GapNet`: `features` maps images (B, C, H, W) to the last conv feature maps
f of shape (B, K, h, w), global average pooling (GAP) averages them over (h, w), and one linear
layer `fc` (K -> num_classes) gives the logits. For class c the CAM is

    M_c(x, y) = sum_k fc.weight[c, k] * f_k(x, y),    so    logit_c = mean_xy M_c(x, y) + fc.bias[c].

`class_activation_maps`, right below GapNet, is the one place this is computed. Then come this
repo's own networks (`MODELS`), `build_model` (which also builds torchvision's GAP classifiers, cut
by torchvision_models.py) and the checkpoints (files checked by utils/checkpoints.py).
"""

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import torchvision_models
from utils import checkpoints
from utils.checkpoints import CheckpointError
from utils.cli import UserError


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

    def forward(self, x: torch.Tensor, with_features: bool = False):
        """logits (B, num_classes); with_features, (logits, features (B, K, h, w)): training losses
        on the maps then go through this call, as DistributedDataParallel needs."""
        features = self.features(x)
        logits = self.fc(features.mean(dim=(-2, -1)))
        return (logits, features) if with_features else logits


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


def conv_bn_relu(in_channels: int, out_channels: int, dilation: int = 1) -> list[nn.Module]:
    """3x3 conv (same size, dilated by `dilation`), batch norm, ReLU."""
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


CNN_DEFAULTS = {"width": 16, "pools": 2, "convs": (2, 2, 2), "head": 256, "dilation": 1}  # the default network (train.py's too)


def cnn_features(in_channels: int, width: int = CNN_DEFAULTS["width"], pools: int = CNN_DEFAULTS["pools"],
                 convs: tuple[int, ...] = CNN_DEFAULTS["convs"], head: int = CNN_DEFAULTS["head"],
                 dilation: int = CNN_DEFAULTS["dilation"]) -> tuple[nn.Module, int]:
    """The default small CNN: 3 stages of convs[s] 3x3 conv-BN-ReLU blocks each (width, 2*width,
    4*width channels), with 2x2 max pooling after the first `pools` (0 to 2) stages, so h, w =
    H / 2**pools, W / 2**pools (7x7 on 28x28 images with the default 2; finer maps localize more
    sharply but cost more). A first stage of one conv skips the costly full-resolution conv of width
    to width channels. With head > 0, a last 1x1 conv-BN-ReLU widens the final maps to head
    channels (as MobileNetV2 does before its pooling): more features for the linear layer at a
    small cost, since it runs on the smallest maps. The third stage's convs are dilated by
    `dilation`: with one pool fewer and dilation 2 the maps are twice as fine and the last layer
    still sees as far (its receptive field grows by 2 * dilation * stride pixels per conv), as
    Yu & Koltun ("Multi-Scale Context Aggregation by Dilated Convolutions", ICLR 2016) keep the
    field of view of a network whose late pooling they remove."""
    if not 0 <= pools <= 2:
        raise TypeError(f"pools must be 0, 1 or 2, got {pools}")
    if len(convs) != 3 or min(convs) < 1:
        raise TypeError(f"convs must give 3 stages of at least 1 conv each, got {convs}")
    if dilation < 1:
        raise TypeError(f"dilation must be at least 1, got {dilation}")
    layers, channels = [], in_channels
    for stage, (out_channels, count) in enumerate(zip((width, 2 * width, 4 * width), convs)):
        for _ in range(count):
            layers += conv_bn_relu(channels, out_channels, dilation if stage == 2 else 1)
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


MODELS = {"cnn": cnn_features, "resnet18_small": resnet18_features, "vgg16_gap": vgg16_gap_features}


def check_model_name(name: str) -> None:
    """UserError unless build_model knows `name`: one of MODELS or of torchvision_names(); for
    torchvision's other classifiers the error says why CAM does not apply."""
    if name in MODELS or name in torchvision_models.torchvision_names() or name in torchvision_models.WSOL_ONLY:
        return
    if name in torchvision.models.list_models(module=torchvision.models):
        raise UserError(torchvision_models.cam_refusal(name))
    raise UserError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}, or a torchvision classifier with a "
                    f"GAP + linear head such as resnet50, densenet121, efficientnet_b0 (the README lists them)")


def torchvision_weights(name: str, weights: str):
    """torchvision's weights entry `weights` (DEFAULT, IMAGENET1K_V1, ...) of model `name`: the one
    check of a --model and --weights pair. UserError when name is not a model (check_model_name),
    is this repo's own model (no torchvision weights), or has no weights of that name (listing them)."""
    check_model_name(name)
    if name in MODELS:
        raise UserError(f"--weights loads torchvision's pretrained weights, and {name} is this repo's own model; "
                        "use a torchvision model such as --model=resnet50, or drop --weights")
    return torchvision_models.weights_entry(name, weights)


def build_model(name: str, num_classes: int, in_channels: int, **options) -> GapNet:
    """A GapNet by name: this repo's 'cnn', 'resnet18_small', 'vgg16_gap' (options go to the feature
    builder: cnn: width, pools, convs, head, dilation; vgg16_gap: max_pools), or one of
    torchvision_models.torchvision_names() (options: weights, download, and wsol, large_feature_map
    for wsolevaluation's CAM backbones of resnet*, inception_v3 and vgg16; see
    torchvision_models.torchvision_trunk)."""
    check_model_name(name)
    if name not in MODELS:
        return GapNet(*torchvision_models.torchvision_trunk(name, num_classes, in_channels, **options))
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


def build_skeleton(name: str, num_classes: int, in_channels: int, **options) -> GapNet:
    """build_model's model on the meta device: its shapes without its memory or its initialization
    (to_empty() then gives it real, uninitialized memory). RegNet's builder computes its widths with
    tensors, which the meta device cannot read back: it is built on the CPU and then moved."""
    try:
        with torch.device("meta"):
            return build_model(name, num_classes, in_channels, **options)
    except NotImplementedError:
        return build_model(name, num_classes, in_channels, **options).to("meta")


def map_side(name: str, in_channels: int, image_size: int, **options) -> int:
    """Side h of the square maps that build_model(name, ..., **options) gives on image_size x
    image_size inputs (0: too small to give any). Found on the meta device, so it costs no memory
    and no compute at any size."""
    probe = build_skeleton(name, 1, in_channels, **options).eval()
    with torch.device("meta"):
        try:
            return probe.features(torch.zeros(1, in_channels, image_size, image_size)).shape[-1]
        except RuntimeError:  # "Output size is too small" in a pooling layer
            return 0


def smallest_image_size(name: str, in_channels: int, too_small: int, maps: int = 2, **options) -> int:
    """The smallest image size above too_small (>= 1, a size whose maps are under maps x maps) on which
    build_model(name, ..., **options) gives maps of at least maps x maps (see map_side)."""
    def side(image_size: int) -> int:
        return map_side(name, in_channels, image_size, **options)

    smallest = 2 * too_small
    while side(smallest) < maps:
        too_small, smallest = smallest, 2 * smallest
    while smallest - too_small > 1:  # bisect: the maps grow with the images
        middle = (too_small + smallest) // 2
        too_small, smallest = (too_small, middle) if side(middle) >= maps else (middle, smallest)
    return smallest


def model_from_arch(arch: dict) -> GapNet:
    """The model a GapNet's `arch` describes, with fresh weights (a checkpoint's weights load into it);
    it reads no pretrained weights file, and keeps arch (its "weights" entry too)."""
    model = build_model(arch["name"], arch["num_classes"], arch["in_channels"], **arch["options"])
    model.arch = arch
    return model


def save_checkpoint(path: str | Path, model: GapNet, **metadata) -> None:
    """Write the model's weights, its `arch` and the metadata (plain values and tensors) to path,
    atomically (utils.checkpoints.write_checkpoint)."""
    checkpoints.write_checkpoint(path, checkpoints.checkpoint_of(model, **metadata))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", needs: tuple[str, ...] = ()
                    ) -> tuple[GapNet, dict]:
    """Rebuild the model saved at path, on device and in eval mode; returns (model, checkpoint dict).

    The file is read and checked by utils.checkpoints.read_checkpoint (weights_only=True; `needs`:
    entries it must hold). CheckpointError also when its weights do not fit its stated model.
    """
    checkpoint = checkpoints.read_checkpoint(path, device, needs)
    arch = checkpoint["arch"]
    model = model_from_arch(arch)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:300]
        raise CheckpointError(f"the weights in {path} do not fit its stated model {arch['name']!r}: {detail}") from None
    return model.to(device).eval(), checkpoint
