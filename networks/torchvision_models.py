"""torchvision's classifiers that end in global average pooling and one linear layer, cut into (features, fc).

`trunk_and_head` knows where each family's trunk ends; `torchvision_trunk` builds one with random
weights or with torchvision's pretrained weights, read offline from torch's hub cache when they are
there (`pretrained_classifier` says where to put the file when they are not). model.build_model
wraps the result in a GapNet. The other families are refused with the reason (`cam_refusal`).
"""

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
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
                          "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
                          before=transform), net.fc
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
    "alexnet": "its head flattens the feature maps into fully connected layers "
               "(use --model=vgg16_gap for the CAM paper's VGG)",
    "vgg": "its head flattens the feature maps into fully connected layers (use --model=vgg16_gap for the CAM paper's "
           "VGG, or vgg16 with the option wsol=True, train.py --wsol_backbone, for wsolevaluation's VGG16-GAP)",
    "convnext": "its head applies a LayerNorm after the global average pooling, so the logits are not a linear map "
                "of the pooled features",
    "mobilenet": "its head is pooling, a linear layer, Hardswish and a second linear layer",
    "squeezenet": "its classifier is a 1x1 conv and a ReLU before the pooling, not a linear layer after it",
    "vit": "it is a vision transformer, with no final conv feature maps to pool",
    "swin": "it is a vision transformer, with no final conv feature maps to pool",
    "maxvit": "it is a vision transformer, with no final conv feature maps to pool",
}
WSOL_FAMILIES = ("resnet", "resnext", "wide_resnet", "inception_v3", "vgg16")  # those wsol=True knows
WSOL_ONLY = ("vgg16",)  # GapNets only as wsolevaluation's CAM variant (wsol=True)


class StrideOneReduction(nn.Module):
    """torchvision's Inception-v3 Mixed_6a (InceptionB, a 35 -> 17 grid reduction) run at stride 1
    with padding 1, as wsolevaluation's CAM variant does (wsol/inception.py, InceptionB(288,
    kernel_size=3, stride=1, padding=1)). Its convs and their weight names are Mixed_6a's own."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.branch3x3, self.branch3x3dbl_1 = block.branch3x3, block.branch3x3dbl_1
        self.branch3x3dbl_2, self.branch3x3dbl_3 = block.branch3x3dbl_2, block.branch3x3dbl_3
        for conv in (self.branch3x3.conv, self.branch3x3dbl_3.conv):
            conv.stride, conv.padding = (1, 1), (1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), double, F.max_pool2d(x, kernel_size=3, stride=1, padding=1)], 1)


def wsol_trunk(name: str, net: nn.Module, num_classes: int, large_feature_map: bool) -> tuple[nn.Module, nn.Linear]:
    """(features, fc) of wsolevaluation's CAM backbone (github.com/clovaai/wsolevaluation, wsol/) made
    from torchvision's classifier `net` (its pretrained weights already in it):

    - ResNets (wsol/resnet.py ResNetCam): layer4 at stride 1 (14x14 maps at 224 px); with
      large_feature_map layer3 too (28x28). The head stays GAP + fc.
    - inception_v3 (wsol/inception.py InceptionCam): Conv2d_1a padded by 1, both stem max pools
      padded by 1 with ceil_mode, a 3x3 stride-2 max pool after Mixed_5d (none with
      large_feature_map), Mixed_6a at stride 1, Mixed_7* dropped, then dropout 0.5, 3x3 conv 768 ->
      1024 + ReLU, dropout 0.5, 3x3 conv 1024 -> 1024 + ReLU, dropout 0.5, and fc as the 1x1 conv to
      the classes (SPG_A4; GAP of a 1x1 conv's maps is fc of the GAP). No transform_input: it feeds
      ImageNet-normalized images to Google's weights as they are.
    - vgg16 (wsol/vgg.py VggCam): conv1_1..conv5_3 with pool5 dropped (14x14 maps at 224 px; with
      large_feature_map pool4 too: 28x28), then conv6, a 3x3 conv 512 -> 1024 with bias, + ReLU.

    New layers are initialized as wsolevaluation does (wsol/util.py initialize_weights): He for
    VGG's conv6, Xavier for Inception's head; a new linear fc N(0, 0.01), Inception's Xavier."""
    if name.startswith(("resnet", "resnext", "wide_resnet")):
        for layer in (net.layer3, net.layer4) if large_feature_map else (net.layer4,):
            for module in layer[0].modules():  # the block's strided conv and its downsample conv
                if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
                    module.stride = (1, 1)
        features, fc = trunk_and_head(name, net)
        if fc.out_features != num_classes:
            fc = nn.Linear(fc.in_features, num_classes)
            nn.init.normal_(fc.weight, 0, 0.01)
            nn.init.zeros_(fc.bias)
        return features, fc
    if name == "inception_v3":
        net.Conv2d_1a_3x3.conv.padding = (1, 1)
        layers = [(n, getattr(net, n)) for n in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3")]
        layers += [("maxpool1", nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)),
                   *((n, getattr(net, n)) for n in ("Conv2d_3b_1x1", "Conv2d_4a_3x3")),
                   ("maxpool2", nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)),
                   *((n, getattr(net, n)) for n in ("Mixed_5b", "Mixed_5c", "Mixed_5d"))]
        if not large_feature_map:
            layers.append(("maxpool3", nn.MaxPool2d(3, stride=2, ceil_mode=True)))
        layers += [("Mixed_6a", StrideOneReduction(net.Mixed_6a)),
                   *((n, getattr(net, n)) for n in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"))]
        head = [nn.Conv2d(768, 1024, 3, padding=1), nn.Conv2d(1024, 1024, 3, padding=1)]
        layers += [("dropout1", nn.Dropout(0.5)), ("SPG_A3_1b", nn.Sequential(head[0], nn.ReLU())),
                   ("dropout2", nn.Dropout(0.5)), ("SPG_A3_2b", nn.Sequential(head[1], nn.ReLU())),
                   ("dropout3", nn.Dropout(0.5))]
        fc = nn.Linear(1024, num_classes)
        for module in (*head, fc):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
        return nn.Sequential(OrderedDict(layers)), fc
    if name == "vgg16":
        layers = list(net.features)[:-1]  # pool5 dropped
        if large_feature_map:
            del layers[max(i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d))]  # pool4
        conv6 = nn.Conv2d(512, 1024, 3, padding=1)
        nn.init.kaiming_normal_(conv6.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv6.bias)
        fc = nn.Linear(1024, num_classes)
        nn.init.normal_(fc.weight, 0, 0.01)
        nn.init.zeros_(fc.bias)
        return nn.Sequential(OrderedDict(features=nn.Sequential(*layers), conv6=conv6, relu=nn.ReLU())), fc
    raise UserError(f"wsol=True (wsolevaluation's CAM backbone) applies to {', '.join(WSOL_FAMILIES)}, not {name}")


def head_rate_layers(name: str) -> tuple[str, ...]:
    """The children of wsol_trunk(name)'s features that wsolevaluation trains at its classifier's
    learning rate (lr x lr_classifier_ratio; main.py _set_optimizer, _FEATURE_PARAM_LAYER_PATTERNS),
    beside fc: ResNet's layer4, Inception's two 3x3 head convs, VGG's conv6."""
    if name.startswith(("resnet", "resnext", "wide_resnet")):
        return ("layer4",)
    return {"inception_v3": ("SPG_A3_1b", "SPG_A3_2b"), "vgg16": ("conv6",)}[name]


def torchvision_names() -> list[str]:
    """torchvision's classifiers that become GapNets here (GAP + one linear head), by name."""
    return [name for name in torchvision.models.list_models(module=torchvision.models) if name.startswith(GAP_FAMILIES)]


def weights_entry(name: str, weights: str):
    """torchvision's weights entry `weights` (DEFAULT, IMAGENET1K_V1, ...) of its classifier `name`;
    UserError listing the choices when it has none of that name."""
    choices = torchvision.models.get_model_weights(name)
    if weights not in choices.__members__:
        raise UserError(f"--weights={weights!r} is not a weights name of {name}; choose one of: "
                        f"{', '.join(choices.__members__)}")
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
            f"by running `python -c \"import torchvision; "
            f"torchvision.models.get_model('{name}', weights='{entry.name}')\"` "
            f"on a machine with internet and copying the file")


def torchvision_trunk(name: str, num_classes: int, in_channels: int, weights: str | None = None,
                      download: bool = True, wsol: bool = False, large_feature_map: bool = False,
                      **options) -> tuple[nn.Module, nn.Linear, dict]:
    """torchvision's classifier `name` cut into (features, fc, arch) (see trunk_and_head), with random
    weights or those of torchvision's `weights` entry (read offline from torch's hub cache when
    there); model.build_model makes the GapNet. A num_classes other than the weights' gets a new fc of
    that size, for fine-tuning. options go to the torchvision builder (googlenet, inception_v3:
    transform_input, which their weights set). wsol=True makes wsolevaluation's CAM backbone of
    resnet*, inception_v3 or vgg16 (wsol_trunk; large_feature_map: its finer maps); both are kept in
    arch's options, so that a checkpoint rebuilds it."""
    if name in WSOL_ONLY and not wsol:
        raise UserError(cam_refusal(name))
    if large_feature_map and not wsol:
        raise UserError("large_feature_map is an option of wsolevaluation's CAM backbones: add wsol=True "
                        "(train.py --wsol_backbone)")
    if wsol and not name.startswith(WSOL_FAMILIES):
        raise UserError(f"wsol=True (wsolevaluation's CAM backbone) applies to {', '.join(WSOL_FAMILIES)}, not {name}")
    if in_channels != 3:
        raise UserError(f"{name} takes RGB images (3 channels), and this dataset has {in_channels}; use an RGB "
                        "dataset such as --dataset=folder or cifar10")
    entry = weights_entry(name, weights) if weights else None
    if entry is not None:
        net = pretrained_classifier(name, entry, download)
        options = {"transform_input": True} if name in ("googlenet", "inception_v3") and not wsol else {}
    else:
        extra = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
        extra = {"init_weights": False} if name in WSOL_ONLY else extra
        try:
            net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **options, **extra)
        except TypeError as error:
            raise UserError(f"bad options {options} for model {name!r}: {error}") from None
    features, fc = wsol_trunk(name, net, num_classes, large_feature_map) if wsol else trunk_and_head(name, net)
    if fc.out_features != num_classes:
        fc = nn.Linear(fc.in_features, num_classes)
    if wsol:
        options = {**options, "wsol": True, "large_feature_map": large_feature_map}
    arch = {"name": name, "num_classes": num_classes, "in_channels": in_channels, "options": dict(options),
            "weights": str(entry) if entry is not None else None}
    return features, fc, arch
