"""GAP-ending CNNs, their class activation maps (CAM), and checkpoints.

Every model is a `GapNet`: `features` maps images (B, C, H, W) to the last conv feature maps
f of shape (B, K, h, w), global average pooling (GAP) averages them over (h, w), and one linear
layer `fc` (K -> num_classes) gives the logits. For class c the CAM is

    M_c(x, y) = sum_k fc.weight[c, k] * f_k(x, y),    so    logit_c = mean_xy M_c(x, y) + fc.bias[c].

`class_activation_maps`, after GapNet and `gap_network` (which makes any GAP + linear module a
GapNet, checked), is the one place this is computed. Then come this
repo's own networks (`MODELS`), `build_model` (which also builds torchvision's GAP classifiers, cut
by networks/torchvision_models.py) and the checkpoints (files checked by utils/checkpoints.py).
"""

import copy
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.fx.experimental import optimization

from networks import torchvision_models
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


class AdaptedGapNet(GapNet):
    """A GapNet of modules from your own code, made by `gap_network`. build_model cannot rebuild them,
    so it has no `arch` and no checkpoint: reading its arch, as save_checkpoint does, is a UserError."""

    def __init__(self, features: nn.Module, fc: nn.Linear, source: str):
        nn.Module.__init__(self)  # not GapNet's, which stores an arch
        self.features, self.fc, self.source = features, fc, source

    @property
    def arch(self) -> dict:
        raise UserError(f"this {self.source} was adapted by model.gap_network and has no checkpoint (build_model "
                        "cannot rebuild your modules): save its weights with torch.save(net.state_dict(), path)")


class MethodTrunk(nn.Module):
    """A module's method as a trunk, such as timm's net.forward_features: x -> module.method(x)."""

    def __init__(self, module: nn.Module, method: str):
        super().__init__()
        self.module, self.method = module, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.module, self.method)(x)


def gap_network(trunk: nn.Module, fc: nn.Linear, reference: nn.Module | None = None, input_size: int = 224,
                in_channels: int = 3, tolerance: float = 1e-4) -> GapNet:
    """Your own classifier as a GapNet, for CAM: `trunk` maps images (B, in_channels, H, W) to the last
    feature maps (B, K, h, w) (an nn.Module, or a method of one such as timm's net.forward_features), and
    `fc` (K -> num_classes) is the linear layer that the head applies to their global average.

    Returned in eval mode (reference too is set to eval mode) once a probe batch of 2 random images
    (in_channels, input_size, input_size) shows that the trunk gives 4-D maps of fc.in_features
    channels, that the network's logits equal mean(CAM) + fc.bias (class_activation_maps), and, given
    the original network `reference` (images -> logits), that they equal its logits: the check that its
    head is GAP + fc and nothing more. Logits agree within `tolerance` relative to the largest logit
    magnitude (at least 1). UserError naming the check that fails.
    """
    source = type(reference if reference is not None else getattr(trunk, "__self__", trunk)).__name__
    if not isinstance(trunk, nn.Module):
        owner = getattr(trunk, "__self__", None)
        if not isinstance(owner, nn.Module):
            raise UserError(f"the trunk must be an nn.Module or a method of one (such as timm's net.forward_features), "
                            f"got {type(trunk).__name__}")
        trunk = MethodTrunk(owner, trunk.__name__)
    if not isinstance(fc, nn.Linear):
        raise UserError(f"fc must be the nn.Linear that the head applies to the pooled maps, got {type(fc).__name__}")
    if fc.bias is None:
        raise UserError("fc has no bias, which class_activation_maps reads: give it a zero one, which changes no "
                        "logit (fc.bias = nn.Parameter(torch.zeros(fc.out_features)))")
    if not tolerance >= 0:
        raise UserError(f"tolerance must be >= 0 (the relative logit error allowed), got {tolerance}")
    if fc.weight.is_meta:
        raise UserError("fc's weights are on the meta device, not loaded: load or materialize them first")
    for role, module in (("the trunk", trunk), ("the reference", reference)):
        weight = next(module.parameters(), None) if module is not None else None
        if weight is not None and (weight.device, weight.dtype) != (fc.weight.device, fc.weight.dtype):
            raise UserError(f"{role} holds {weight.dtype} weights on {weight.device} and fc {fc.weight.dtype} on "
                            f"{fc.weight.device}: put both on one device in one dtype (for example fc.to(...))")
    net = AdaptedGapNet(trunk, fc, source).eval()
    probe = torch.randn(2, in_channels, input_size, input_size, generator=torch.Generator().manual_seed(0))
    probe = probe.to(fc.weight)  # its device and dtype
    with torch.no_grad():
        features = probe_output(trunk, probe, "the trunk")
        if features.dim() != 4:
            raise UserError(f"the trunk gives shape {tuple(features.shape)} for a probe batch {tuple(probe.shape)}: it "
                            "must give the last feature maps (B, K, h, w), before the head's pooling")
        if features.shape[1] != fc.in_features:
            raise UserError(f"the trunk gives {features.shape[1]} channels but fc takes {fc.in_features} features: "
                            "fc is not the layer that the head applies to the pooled maps of this trunk")
        logits, _ = class_activation_maps(net, probe)
        forward = fc(features.mean(dim=(-2, -1)))  # net(probe), from the maps above
        if not (error := logits_error(forward, logits)) <= tolerance:  # NaN fails too
            raise UserError(f"the logits differ from mean(CAM) + fc.bias by {error:.2g} (relative): fc is not a plain "
                            "linear layer, or the trunk is not deterministic in eval mode")
        if reference is None:
            return net
        expected = probe_output(reference.eval(), probe, "the reference")
        if expected.shape != logits.shape:
            raise UserError(f"the reference gives shape {tuple(expected.shape)} but trunk and fc give logits of shape "
                            f"{tuple(logits.shape)}: fc is not the reference's classifier")
        if not (error := logits_error(logits, expected)) <= tolerance:
            raise UserError(f"the adapted network's logits differ from those of the {source} by {error:.2g} (relative, "
                            f"{tolerance:g} allowed): its head is not global average pooling + fc on the trunk's maps, "
                            "so CAM does not apply to it as adapted")
    return net


def probe_output(module: nn.Module, probe: torch.Tensor, role: str) -> torch.Tensor:
    """module(probe) for gap_network's checks; UserError if it fails or gives no tensor."""
    try:
        output = module(probe)
    except (RuntimeError, ValueError) as error:  # how torch says that shapes do not fit
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise UserError(f"{role} fails on a probe batch of shape {tuple(probe.shape)} ({reason}); pass gap_network "
                        "the input_size and in_channels that it takes") from None
    if not isinstance(output, torch.Tensor):
        raise UserError(f"{role} must return a tensor, got {type(output).__name__}")
    if not output.is_floating_point():
        raise UserError(f"{role} gives {output.dtype} values on a probe batch: it must give floating-point ones")
    if not output.isfinite().all():
        raise UserError(f"{role} gives NaN or infinite values on a probe batch of random images: its weights are "
                        "damaged or not loaded")
    return output


def logits_error(logits: torch.Tensor, expected: torch.Tensor) -> float:
    """max |logits - expected| over the largest |expected| (at least 1): the relative error of logits (B, N)."""
    return ((logits - expected).abs().max() / expected.abs().max().clamp_min(1)).item()


def class_activation_maps(model: GapNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, num_classes) and the CAMs of every class (B, num_classes, h, w), from one forward pass.

    cams[b, c] = sum_k fc.weight[c, k] * features(x)[b, k]: raw maps, no ReLU and no
    normalization, so positive values argue for class c and negative values against it, and
    logits == cams.mean(dim=(-2, -1)) + fc.bias. Gradients flow as for the logits; call it under
    torch.no_grad() (and model.eval()) for inference.
    """
    # the sum over k as a 1x1 convolution with fc's weights: the einsum "ck,bkhw->bchw", faster on a CPU
    cams = F.conv2d(model.features(x), model.fc.weight[:, :, None, None])
    return cams.mean(dim=(-2, -1)) + model.fc.bias, cams  # the logits, read off the maps


def folded_batch_norms(model: GapNet) -> GapNet:
    """A copy of model (in eval mode) for forward passes that read its logits and maps, not its batch
    norms: every batch norm that follows a convolution folded into it (torch.fx's `fuse`), so the
    same logits, features and maps up to float rounding from 1.2x less time on a CPU; model itself
    where its features cannot be traced (fx)."""
    folded = copy.deepcopy(model).eval()
    try:
        folded.features = optimization.fuse(folded.features, inplace=True)
    except Exception:  # noqa: BLE001 -- fx cannot trace every module (data-dependent control flow): no folding
        return model
    return folded


def conv_bn_relu(in_channels: int, out_channels: int, dilation: int = 1) -> list[nn.Module]:
    """3x3 conv (same size, dilated by `dilation`), batch norm, ReLU."""
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


# the default network: build_model("cnn") without options (train.py's literals, tests/test_train.py)
CNN_DEFAULTS = {"width": 16, "pools": 2, "convs": (2, 2, 2), "head": 256, "dilation": 1}


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
    try:
        model = model_from_arch(arch)
    except (TypeError, ValueError, RuntimeError) as error:  # options the builders cannot take
        detail = " ".join(str(error).split())[:200]
        raise CheckpointError(f"{path} is damaged: its stated model {arch['name']!r} with options {arch['options']} "
                              f"cannot be built ({detail}); use a checkpoint written by train.py") from None
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:300]
        raise CheckpointError(f"the weights in {path} do not fit its stated model {arch['name']!r}: {detail}") from None
    return model.to(device).eval(), checkpoint
