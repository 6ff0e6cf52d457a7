"""The explanation methods, one registry: how each makes maps of a batch.

A method is a `Method`: a short key ("cam"), a display name ("CAM (standard: raw, min-max)") and

    maps(net, images, classes, seed) -> float maps (B, H, W) in [0, 1]

for images (B, C, H, W) as the model takes them and the classes (B,) the maps explain (seed: an int
for the method's random draws, one per batch); where the sanity checks apply, `raw(net, images,
classes)` gives the maps they compare, unnormalized (B, H, W). `uses_weights` says whether the maps
depend on the model's weights (a method that does not is computed once in the cascading
randomization), `layer` which module it reads (`features`, the last conv maps, for GAP nets),
`library` which pytorch-grad-cam class makes its maps (None: this repo's code) and `groups` which of
evaluate_cam.py's localization and faithfulness groups measure it (its sanity group measures every
method with `raw` maps). The baselines' maps are evaluation/baselines.py's.

The CAM family comes from pytorch-grad-cam (Gildenblat et al., PyPI grad-cam 1.5.7), one entry per
class of it that explains a classifier's class, each made by `library_method` (see `LIBRARY`, with
each method's paper; Grad-CAM element-wise, ReLU(gradient x activation) summed, and EigenGrad-CAM are
the library's own): the class on the GapNet's `features` (FullGrad reads the input and every bias
instead) with ClassifierOutputTarget of the classes. Its maps are ReLU'd and min-max scaled per image
at the last conv maps' size, then resized bilinearly to the image's: that is each such method's own
reading, and its `raw` gives the same maps (the sanity checks compare ranks, and min-max normalized
maps). Left out: RandomCAM (unseeded weights; `random` is the seeded baseline), FinerCAM (given the
classes it is Grad-CAM; it otherwise explains the top class against its nearest ones), SegEigenCAM
(segmentation), DeepFeatureFactorization (concepts, not a class's map) and the meta-methods SESS and
RefineCAM (a base method over scales or layers). On a GAP + linear
network Grad-CAM, HiResCAM, XGrad-CAM and ShapleyCAM give the maps of ReLU(CAM) (`relu_cam`), min-max
normalized, to float precision; evaluate_cam.py measures it on every image it evaluates.

`METHODS` is the registry, in the report's order; `for_reading` adds CAM read as the scripts'
--normalization / --percentile / --flip_maps say, when that differs from the standard reading, and
`choose` picks the methods a --methods flag names (`parse_keys`). evaluate_cam.py runs every group
over them, so a method added here is measured everywhere once --methods names it (or is all):

    def inverted_cam(net, images, classes, seed):
        return 1 - CAM.maps(net, images, classes, seed)

    register(Method("inverted_cam", "CAM, inverted", inverted_cam))
"""

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytorch_grad_cam
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import model
from evaluation import baselines, map_reading
from utils import cli

MapsFunction = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor]  # (net, images, classes, seed)
RawFunction = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]  # (net, images, classes)
LogitsAndMapsFunction = Callable[[nn.Module, torch.Tensor, torch.Tensor, int],  # (net, images, classes, seed) ->
                                 tuple[torch.Tensor, torch.Tensor]]  # (its logits (B, num_classes), Method.maps')
CAM_BATCH_SIZE = 64  # Score-CAM and Ablation-CAM: masked or ablated copies of an image per forward pass (speed only)
SAME_MAPS_TOLERANCE = 1e-4  # maps this close to ReLU(CAM)'s everywhere are its maps (float32; the library's 1e-7s)


@dataclass(frozen=True)
class Method:
    """One explanation method: see the module's docstring. logits_and_maps, for a method whose top-1
    classification (and the class its example maps show) is not read from the model's own logits
    (CAM read with test-time flips averages the mirror image's in): (net, images, classes, seed) ->
    (its logits, maps(...)) from the passes that make its maps. batch_size: for the methods that
    batch copies of an image (Score-CAM, Ablation-CAM), how many per forward pass."""

    key: str
    name: str
    maps: MapsFunction
    raw: RawFunction | None = None
    uses_weights: bool = True
    layer: str | None = "features"
    groups: tuple[str, ...] = ("localization", "faithfulness")
    logits_and_maps: LogitsAndMapsFunction | None = None
    library: str | None = None
    batch_size: int | None = None

    def runs_in(self, group: str) -> bool:
        """Whether evaluate_cam.py's group (localization | faithfulness | sanity) measures it."""
        return self.raw is not None if group == "sanity" else group in self.groups

    def classify(self, net: nn.Module, images: torch.Tensor, own: torch.Tensor | None = None) -> torch.Tensor:
        """The logits (B, num_classes) this method classifies images with; own: the model's logits
        of the images (model_logits), when they are at hand. A method with logits_and_maps gives
        them with the maps of class 0, which its logits do not depend on."""
        if self.logits_and_maps:
            return self.logits_and_maps(net, images, torch.zeros(len(images), dtype=torch.long,
                                                                 device=images.device), 0)[0]
        return own if own is not None else model_logits(net, images)


def model_logits(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's logits, read off its CAMs (exactly those of CAM's standard reading)."""
    with torch.no_grad():
        return model.class_activation_maps(net, images)[0]


def upsampled(maps: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Maps (B, h, w) upsampled bilinearly to the images' size: (B, H, W)."""
    return map_reading.upsample_maps(maps[:, None], images.shape[-2:])[:, 0]


def class_cams(net: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The raw CAM of each image's class (signed, no normalization) at the last conv maps' size: (B, h, w)."""
    return logits_and_class_cams(net, images, classes)[1]


def logits_and_class_cams(net: nn.Module, images: torch.Tensor, classes: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """From one forward pass: the model's logits (B, num_classes), as model_logits gives them, and class_cams' maps."""
    with torch.no_grad():
        logits, cams = model.class_activation_maps(net, images)
    return logits, cams[torch.arange(len(classes)), classes]


def raw_cam(net: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The raw CAM of each image's class (signed, no normalization) at the image's size."""
    return upsampled(class_cams(net, images, classes), images)


def relu_cam(net: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """ReLU(CAM) of each image's class, upsampled to the image's size and min-max normalized: (B, H, W)
    in [0, 1]. On a GAP + linear network these are the maps of Grad-CAM (whose channel weights are
    fc's over h * w), HiResCAM, XGrad-CAM and ShapleyCAM, to float precision."""
    return logits_and_relu_cam(net, images, classes)[1]


def logits_and_relu_cam(net: nn.Module, images: torch.Tensor, classes: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """From one forward pass: the model's logits (B, num_classes), as model_logits gives them, and
    relu_cam's maps (B, H, W) of the classes."""
    logits, cams = logits_and_class_cams(net, images, classes)
    return logits, map_reading.normalize_maps(upsampled(cams.relu(), images))


def cam_logits_and_maps(reading: map_reading.MapReading) -> LogitsAndMapsFunction:
    """The logits that go with CAM read as `reading` says (averaged with the mirror image's when it
    flips) and its maps of the classes, from one map_reading.cam_heat_maps call (the one place CAMs
    become heat maps)."""
    def logits_and_maps(net, images, classes, seed):
        logits, _, heat = map_reading.cam_heat_maps(net, images, reading, classes[:, None])
        return logits, heat[:, 0]
    return logits_and_maps


def cam_maps(reading: map_reading.MapReading) -> MapsFunction:
    """CAM read as `reading` says (cam_logits_and_maps' maps)."""
    logits_and_maps = cam_logits_and_maps(reading)
    def maps(net, images, classes, seed):
        return logits_and_maps(net, images, classes, seed)[1]
    return maps


def describe_reading(reading: map_reading.MapReading) -> str:
    """The read CAM's display name, e.g. "CAM, ivr 0.3, flips"."""
    parts = [reading.normalization + (f" {reading.percentile:g}" if reading.normalization == "ivr" else "")]
    return "CAM, " + ", ".join(parts + (["flips"] if reading.flip else []))


@contextlib.contextmanager
def trainable(net: nn.Module):
    """Within: every parameter of net requires grad (pytorch-grad-cam differentiates the class score
    with them), until cut_below turns them off. On exit, net's train/eval mode and its parameters'
    requires_grad and .grad are as before: the library's eval() and zero_grad() and the gradients it
    leaves do not stay."""
    training = net.training
    saved = [(parameter, parameter.requires_grad, parameter.grad) for parameter in net.parameters()]
    try:
        for parameter, _, _ in saved:
            parameter.requires_grad_(True)
        yield
    finally:
        net.train(training)
        for parameter, requires_grad, grad in saved:
            parameter.requires_grad_(requires_grad)
            parameter.grad = grad


def cut_below(net: nn.Module, layer: nn.Module):
    """Differentiate net's outputs at layer's output and no further down: no parameter requires grad
    and a forward hook, run before any other, makes the output a leaf that does. A method's
    gradients at that layer are then what they would be, but autograd does not backpropagate
    through the layers below (Grad-CAM costs about a forward pass instead of three). Returns the
    hook's handle, to remove."""
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return layer.register_forward_hook(lambda module, inputs, output: output.detach().requires_grad_(True),
                                       prepend=True)


def library_maps(kind: type, net: nn.Module, images: torch.Tensor, classes: torch.Tensor,
                 batch_size: int | None = None) -> torch.Tensor:
    """pytorch-grad-cam's method `kind` (GradCAM, ...) on net.features (FullGrad: on the input and
    every bias, as it always reads) for the classes (B,) of images (B, C, H, W): its maps (B, H, W)
    in [0, 1], ReLU'd and min-max scaled per image. The method is built for this call and its hooks
    released after it; net is left as it was (`trainable`). A method that reads only net.features
    and its gradient there gets them through `cut_below` (those that differentiate the input,
    FullGrad and ShapleyCAM, the whole graph). batch_size: copies per forward pass, for Score-CAM
    and Ablation-CAM, which then get one image per call (they loop over the images anyway, and
    Score-CAM holds every image's masked copies at once: over 24 GiB for 200 canvases); their
    progress bars are silenced."""
    chunk = 1 if batch_size else len(images)
    layers = [] if kind is pytorch_grad_cam.FullGrad else [net.features]
    with trainable(net):
        cam = kind(model=net, target_layers=layers)
        cut = cut_below(net, layers[0]) if layers and not cam.compute_input_gradient else None
        try:
            if batch_size:
                cam.batch_size = batch_size
            maps = []
            for start in range(0, len(images), chunk):
                targets = [ClassifierOutputTarget(c) for c in classes[start:start + chunk].tolist()]
                with torch.enable_grad(), contextlib.redirect_stderr(io.StringIO()):
                    maps.append(cam(input_tensor=images[start:start + chunk], targets=targets))
        finally:
            cam.activations_and_grads.release()
            if cut is not None:
                cut.remove()
    return torch.from_numpy(np.concatenate(maps)).to(images.device)


LIBRARY = {  # key: (display name, pytorch-grad-cam class, what it reads), in the report's order, each with its paper
    "grad_cam": ("Grad-CAM", pytorch_grad_cam.GradCAM, "features"),  # Selvaraju et al., ICCV 2017
    "hires_cam": ("HiResCAM", pytorch_grad_cam.HiResCAM, "features"),  # Draelos & Carin, arXiv 2011.08891, 2020
    "xgrad_cam": ("XGrad-CAM", pytorch_grad_cam.XGradCAM, "features"),  # Fu et al., "Axiom-based Grad-CAM", BMVC 2020
    "shapley_cam": ("ShapleyCAM", pytorch_grad_cam.ShapleyCAM, "features"),  # Cai, arXiv 2501.06261, 2025
    "grad_cam_plusplus": ("Grad-CAM++", pytorch_grad_cam.GradCAMPlusPlus, "features"),  # Chattopadhay et al., WACV 2018
    "layer_cam": ("LayerCAM", pytorch_grad_cam.LayerCAM, "features"),  # Jiang et al., IEEE TIP 2021
    "grad_cam_elementwise": ("Grad-CAM element-wise", pytorch_grad_cam.GradCAMElementWise, "features"),  # the library's
    "eigen_cam": ("Eigen-CAM", pytorch_grad_cam.EigenCAM, "features"),  # Muhammad & Yeasin, IJCNN 2020
    "eigen_grad_cam": ("EigenGrad-CAM", pytorch_grad_cam.EigenGradCAM, "features"),  # the library's: Eigen-CAM of g x f
    "kpca_cam": ("KPCA-CAM", pytorch_grad_cam.KPCA_CAM, "features"),  # Karmani et al., arXiv 2410.00267, 2024
    "fem": ("FEM", pytorch_grad_cam.FEM, "features"),  # Fuad et al., "Features understanding in 3D CNNs ...", IPTA 2020
    "full_grad": ("FullGrad", pytorch_grad_cam.FullGrad, "input and biases"),  # Srinivas & Fleuret, NeurIPS 2019
    "score_cam": ("Score-CAM", pytorch_grad_cam.ScoreCAM, "features"),  # Wang et al., CVPR-W 2020
    "ablation_cam": ("Ablation-CAM", pytorch_grad_cam.AblationCAM, "features"),  # Desai & Ramaswamy, WACV 2020
}
BATCHED = (pytorch_grad_cam.ScoreCAM, pytorch_grad_cam.AblationCAM)  # the classes that take a batch_size


def library_method(key: str, batch_size: int = CAM_BATCH_SIZE) -> Method:
    """The registry's entry of LIBRARY[key]: maps and raw maps from library_maps, its display name
    and layer; batch_size for the classes that batch (BATCHED)."""
    name, kind, layer = LIBRARY[key]
    batch_size = batch_size if kind in BATCHED else None

    def raw(net, images, classes):
        return library_maps(kind, net, images, classes, batch_size)

    def maps(net, images, classes, seed):
        return raw(net, images, classes)

    return Method(key, name, maps, raw=raw, layer=layer, library=f"pytorch_grad_cam.{kind.__name__}",
                  batch_size=batch_size)


CAM = Method("cam", "CAM (standard: raw, min-max)", cam_maps(map_reading.STANDARD_READING), raw=raw_cam)
FAMILY = [library_method(key) for key in LIBRARY]  # pytorch-grad-cam's methods
GRAD_CAM = next(method for method in FAMILY if method.key == "grad_cam")
CENTER = Method("center", "center baseline", baselines.center_maps, uses_weights=False, layer=None)
RANDOM = Method("random", "random", baselines.random_maps, uses_weights=False, layer=None, groups=("faithfulness",))
EDGE = Method("edge", "edge (Sobel)", baselines.edge_maps, raw=baselines.edge_raw, uses_weights=False, layer=None,
              groups=("faithfulness",))
METHODS: list[Method] = [CAM, *FAMILY, CENTER, RANDOM, EDGE]  # the registry, in the report's order
READ_CAM = "cam_read"  # the key of CAM read as the scripts' reading flags say (read_cam)


def register(method: Method) -> Method:
    """Add a method to the registry (after the others); its key must be new."""
    if any(known.key == method.key for known in METHODS) or method.key == READ_CAM:
        raise ValueError(f"a method with key {method.key!r} is already registered")
    METHODS.append(method)
    return method


def read_cam(reading: map_reading.MapReading) -> Method:
    """CAM read as `reading` says, classified with that reading's logits; the sanity checks' raw
    CAM stands for it (a reading does not change the map's ranks)."""
    return Method(READ_CAM, describe_reading(reading), cam_maps(reading), logits_and_maps=cam_logits_and_maps(reading))


def for_reading(reading: map_reading.MapReading) -> list[Method]:
    """The methods a report measures: the registry, with CAM read as `reading` right after the
    standard CAM when the reading differs from the standard one."""
    if reading == map_reading.STANDARD_READING:
        return list(METHODS)
    at = next(i for i, method in enumerate(METHODS) if method is CAM) + 1
    return [*METHODS[:at], read_cam(reading), *METHODS[at:]]


def parse_keys(text: str) -> list[str]:
    """The keys a --methods flag names: comma-separated registry keys (READ_CAM: CAM as the reading
    flags say), each once; "all" among them names every one. UserError for an unknown key, or none."""
    known = [method.key for method in METHODS]
    known.insert(known.index(CAM.key) + 1, READ_CAM)
    keys = list(dict.fromkeys(key.strip() for key in text.split(",") if key.strip()))
    if not keys:
        raise cli.UserError(f"--methods={text!r} names no method; choose one or more of: {', '.join(known)} "
                            "(comma-separated), or all")
    for key in keys:
        cli.check_choice("methods", key, [*known, "all"])
    return known if "all" in keys else keys


def choose(keys: list[str], reading: map_reading.MapReading, batch_size: int = CAM_BATCH_SIZE) -> list[Method]:
    """The methods of keys (parse_keys) in the registry's order, CAM read as `reading` for READ_CAM
    (the standard CAM when the reading is the standard one), the batching library methods with
    batch_size copies per forward pass."""
    wanted = set(keys) | ({CAM.key} if READ_CAM in keys and reading == map_reading.STANDARD_READING else set())
    return [library_method(method.key, batch_size) if method.key in LIBRARY and method.batch_size else method
            for method in for_reading(reading) if method.key in wanted]


def examples_method(chosen: list[Method]) -> Method:
    """The method of the examples figure: CAM as the reading flags say, else the standard CAM, else
    the first chosen method that the localization group measures."""
    ranked = sorted((method for method in chosen if method.runs_in("localization")),
                    key=lambda method: (method.key != READ_CAM, method.key != CAM.key))
    return ranked[0]
