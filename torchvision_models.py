"""torchvision's classifiers that end in global average pooling and one linear layer, cut into (features, fc).

`trunk_and_head` knows where each family's trunk ends; `torchvision_trunk` builds one with random
weights or with torchvision's pretrained weights, read offline from torch's hub cache when they are
there (`pretrained_classifier` says where to put the file when they are not). model.build_model
wraps the result in a GapNet. The other families are refused with the reason (`cam_refusal`).
"""

from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import nn

from utils.cli import UserError

GAP_FAMILIES = ("resnet", "resnext", "wide_resnet", "densenet", "googlenet", "inception_v3", "mobilenet_v2",
                "efficientnet", "mnasnet", "regnet", "shufflenet_v2")


class ImagenetInputTransform(nn.Module):
    """What torchvision's GoogLeNet and Inception-v3 do to their input when built from their
    pretrained weights (transform_input=True): from ImageNet's normalization to the one their
    original weights were trained with, x * std / 0.5 + (mean - 0.5) / 0.5 per channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        return x * (std / 0.5) + (mean - 0.5) / 0.5


def trunk_and_head(name: str, net: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """Split a torchvision classifier whose head is global average pooling + one linear layer into
    (features: the trunk up to and including its last activation, fc). Dropout before fc, a no-op
    in eval mode, is left out. UserError naming why CAM does not apply to the others."""
    def sequential(*names: str, before: list | None = None) -> nn.Sequential:
        return nn.Sequential(OrderedDict([*(before or []), *((n, getattr(net, n)) for n in names)]))

    transform = [("transform_input", ImagenetInputTransform())] if getattr(net, "transform_input", False) else []
    if name.startswith(("resnet", "resnext", "wide_resnet")):
        return sequential("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"), net.fc
    if name.startswith("densenet"):  # its forward applies a ReLU after norm5
        return nn.Sequential(OrderedDict(features=net.features, relu=nn.ReLU())), net.classifier
    if name == "googlenet":
        return sequential("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
                          "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
                          "inception5a", "inception5b", before=transform), net.fc
    if name == "inception_v3":
        return sequential("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                          "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                          "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", before=transform), net.fc
    if name == "mobilenet_v2" or name.startswith("efficientnet"):
        return net.features, net.classifier[1]
    if name.startswith("mnasnet"):
        return net.layers, net.classifier[1]
    if name.startswith("regnet"):
        return sequential("stem", "trunk_output"), net.fc
    if name.startswith("shufflenet_v2"):
        return sequential("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5"), net.fc
    raise UserError(cam_refusal(name))


def cam_refusal(name: str) -> str:
    """Why CAM does not apply to torchvision's classifier `name`, as an error message."""
    return f"CAM does not apply to {name}: {NOT_GAP_HEADS.get(name.split('_')[0].rstrip('0123456789'), NOT_GAP)}"


NOT_GAP = "its head is not global average pooling followed by one linear layer"
NOT_GAP_HEADS = {  # why CAM does not apply, by family
    "alexnet": "its head flattens the feature maps into fully connected layers (use --model=vgg16_gap for the CAM paper's VGG)",
    "vgg": "its head flattens the feature maps into fully connected layers (use --model=vgg16_gap for the CAM paper's VGG)",
    "convnext": "its head applies a LayerNorm after the global average pooling, so the logits are not a linear map of the pooled features",
    "mobilenet": "its head is pooling, a linear layer, Hardswish and a second linear layer",
    "squeezenet": "its classifier is a 1x1 conv and a ReLU before the pooling, not a linear layer after it",
    "vit": "it is a vision transformer, with no final conv feature maps to pool",
    "swin": "it is a vision transformer, with no final conv feature maps to pool",
    "maxvit": "it is a vision transformer, with no final conv feature maps to pool",
}
def torchvision_names() -> list[str]:
    """torchvision's classifiers that become GapNets here (GAP + one linear head), by name."""
    return [name for name in torchvision.models.list_models(module=torchvision.models) if name.startswith(GAP_FAMILIES)]


def weights_entry(name: str, weights: str):
    """torchvision's weights entry `weights` (DEFAULT, IMAGENET1K_V1, ...) of its classifier `name`;
    UserError listing the choices when it has none of that name."""
    choices = torchvision.models.get_model_weights(name)
    if weights not in choices.__members__:
        raise UserError(f"--weights={weights!r} is not a weights name of {name}; choose one of: {', '.join(choices.__members__)}")
    return choices[weights]


def pretrained_classifier(name: str, entry, download: bool) -> nn.Module:
    """torchvision's classifier `name` with the weights `entry`, read from torch's hub cache or, with
    download, fetched into it; a UserError naming the file and the folder it goes in when it is
    neither, or when the cached file is not readable."""
    file = Path(torch.hub.get_dir()) / "checkpoints" / Path(entry.url).name
    if not file.is_file() and not download:
        raise UserError(offline_weights_message(name, entry, file, "--download=false"))
    try:
        return torchvision.models.get_model(name, weights=entry)
    except (OSError, ValueError, RuntimeError, EOFError) as error:  # URLError is an OSError
        reason = " ".join(str(error).split())[:160]
        if file.is_file():
            raise UserError(f"{file} (the {entry} weights of {name}) is not readable ({reason}); delete it and "
                            f"fetch it again") from None
        raise UserError(offline_weights_message(name, entry, file, f"the download failed: {reason}")) from None


def offline_weights_message(name: str, entry, file: Path, why: str) -> str:
    return (f"the {entry} weights of {name} are not on this machine ({why}): put {entry.url} "
            f"at {file} ($TORCH_HOME/hub/checkpoints/{file.name}; TORCH_HOME defaults to ~/.cache/torch), for example "
            f"by running `python -c \"import torchvision; torchvision.models.get_model('{name}', weights='{entry.name}')\"` "
            f"on a machine with internet and copying the file")


def torchvision_trunk(name: str, num_classes: int, in_channels: int, weights: str | None = None,
                      download: bool = True, **options) -> tuple[nn.Module, nn.Linear, dict]:
    """torchvision's classifier `name` cut into (features, fc, arch) (see trunk_and_head), with random
    weights or those of torchvision's `weights` entry (read offline from torch's hub cache when
    there); model.build_model makes the GapNet. A num_classes other than the weights' gets a new fc of
    that size, for fine-tuning. options go to the torchvision builder (googlenet, inception_v3:
    transform_input, which their weights set)."""
    if in_channels != 3:
        raise UserError(f"{name} takes RGB images (3 channels), and this dataset has {in_channels}; use an RGB "
                        "dataset such as --dataset=folder or cifar10")
    entry = weights_entry(name, weights) if weights else None
    if entry is not None:
        net = pretrained_classifier(name, entry, download)
        options = {"transform_input": True} if name in ("googlenet", "inception_v3") else {}
    else:
        extra = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
        try:
            net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **options, **extra)
        except TypeError as error:
            raise UserError(f"bad options {options} for model {name!r}: {error}") from None
    features, fc = trunk_and_head(name, net)
    if fc.out_features != num_classes:
        fc = nn.Linear(fc.in_features, num_classes)
    arch = {"name": name, "num_classes": num_classes, "in_channels": in_channels, "options": dict(options),
            "weights": str(entry) if entry is not None else None}
    return features, fc, arch
