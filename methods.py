"""The explanation methods, one registry: how each makes maps of a batch.

A method is a `Method`: a short key ("cam"), a display name ("CAM (standard: raw, min-max)") and

    maps(net, images, classes, seed) -> float maps (B, H, W) in [0, 1]

for images (B, C, H, W) as the model takes them and the classes (B,) the maps explain (seed: an int
for the method's random draws, one per batch); where the sanity checks apply, `raw(net, images,
classes)` gives the maps they compare, unnormalized (B, H, W). `uses_weights` says whether the maps
depend on the model's weights (a method that does not is computed once in the cascading
randomization), `layer` which module it reads (`features`, the last conv maps, for GAP nets) and
`groups` which of evaluate_cam.py's localization and faithfulness groups measure it (its sanity
group measures every method with `raw` maps).

`METHODS` is the registry, in the report's order; `for_reading` adds CAM read as the scripts'
--normalization / --percentile / --flip_maps say, when that differs from the standard reading.
evaluate_cam.py runs every group over it, so a method added here is measured everywhere:

    def inverted_cam(net, images, classes, seed):
        return 1 - CAM.maps(net, images, classes, seed)

    register(Method("inverted_cam", "CAM, inverted", inverted_cam))
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import faithfulness
import localization
import model as models

MapsFunction = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor]  # (net, images, classes, seed)
RawFunction = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]  # (net, images, classes)
LogitsFunction = Callable[[nn.Module, torch.Tensor], torch.Tensor]  # (net, images) -> (B, num_classes)


@dataclass(frozen=True)
class Method:
    """One explanation method: see the module's docstring. logits: the logits its top-1
    classification (and the class its example maps show) is read from, when they are not the
    model's own (CAM read with test-time flips averages the mirror image's in)."""

    key: str
    name: str
    maps: MapsFunction
    raw: RawFunction | None = None
    uses_weights: bool = True
    layer: str | None = "features"
    groups: tuple[str, ...] = ("localization", "faithfulness")
    logits: LogitsFunction | None = None

    def runs_in(self, group: str) -> bool:
        """Whether evaluate_cam.py's group (localization | faithfulness | sanity) measures it."""
        return self.raw is not None if group == "sanity" else group in self.groups

    def classify(self, net: nn.Module, images: torch.Tensor, own: torch.Tensor | None = None) -> torch.Tensor:
        """The logits (B, num_classes) this method classifies images with; own: the model's logits
        of the images (model_logits), when they are at hand."""
        if self.logits:
            return self.logits(net, images)
        return own if own is not None else model_logits(net, images)


def model_logits(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's logits, read off its CAMs (exactly those of CAM's standard reading)."""
    with torch.no_grad():
        return models.class_activation_maps(net, images)[0]


# --- the shared parts: raw maps at the image's size, and the readings of CAM ---

def upsampled(maps: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Maps (B, h, w) upsampled bilinearly to the images' size: (B, H, W)."""
    return localization.upsample_maps(maps[:, None], images.shape[-2:])[:, 0]


def raw_cam(net: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The raw CAM of each image's class (signed, no normalization) at the image's size."""
    with torch.no_grad():
        _, cams = models.class_activation_maps(net, images)
    return upsampled(cams[torch.arange(len(classes)), classes], images)


def raw_grad_cam(net: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of each image's class at the image's size; on a GAP net ReLU(CAM) / (h * w)."""
    return upsampled(models.grad_cam(net, images, classes)[1], images)


def cam_maps(reading: localization.MapReading) -> MapsFunction:
    """CAM read as `reading` says (localization.cam_heat_maps, the one place CAMs become heat maps)."""
    def maps(net, images, classes, seed):
        return localization.cam_heat_maps(net, images, reading, classes[:, None])[2][:, 0]
    return maps


def cam_logits(reading: localization.MapReading) -> LogitsFunction:
    """The logits that go with CAM read as `reading` says (averaged with the mirror image's when it flips)."""
    def logits(net, images):
        return localization.cam_heat_maps(net, images, reading)[0]
    return logits


def describe_reading(reading: localization.MapReading) -> str:
    """The read CAM's display name, e.g. "CAM, ivr 0.3, flips"."""
    parts = [reading.normalization + (f" {reading.percentile:g}" if reading.normalization == "ivr" else "")]
    return "CAM, " + ", ".join(parts + (["flips"] if reading.flip else []))


# --- the methods ---

def grad_cam_maps(net, images, classes, seed):
    return localization.normalize_maps(raw_grad_cam(net, images, classes))


def center_maps(net, images, classes, seed):
    """The centered Gaussian (localization.centered_gaussian, sigma localization.CENTER_SIGMA), whatever the image."""
    center = torch.from_numpy(localization.centered_gaussian(*images.shape[-2:]))
    return center.expand(len(images), *center.shape)


def random_maps(net, images, classes, seed):
    """Uniform noise, fixed by seed."""
    return torch.rand(len(images), *images.shape[-2:], generator=torch.Generator().manual_seed(seed))


def edge_raw(net, images, classes):
    return faithfulness.sobel_edges(images)


def edge_maps(net, images, classes, seed):
    """The Sobel edge map of the image, min-max normalized: it never looks at the model."""
    return localization.normalize_maps(edge_raw(net, images, classes))


CAM = Method("cam", "CAM (standard: raw, min-max)", cam_maps(localization.STANDARD_READING), raw=raw_cam)
GRAD_CAM = Method("grad_cam", "Grad-CAM", grad_cam_maps, raw=raw_grad_cam)
CENTER = Method("center", "center baseline", center_maps, uses_weights=False, layer=None)
RANDOM = Method("random", "random", random_maps, uses_weights=False, layer=None, groups=("faithfulness",))
EDGE = Method("edge", "edge (Sobel)", edge_maps, raw=edge_raw, uses_weights=False, layer=None, groups=("faithfulness",))
METHODS: list[Method] = [CAM, GRAD_CAM, CENTER, RANDOM, EDGE]  # the registry, in the report's order


def register(method: Method) -> Method:
    """Add a method to the registry (after the others); its key must be new."""
    if any(known.key == method.key for known in METHODS) or method.key == "cam_read":
        raise ValueError(f"a method with key {method.key!r} is already registered")
    METHODS.append(method)
    return method


def read_cam(reading: localization.MapReading) -> Method:
    """CAM read as `reading` says, classified with that reading's logits; the sanity checks' raw
    CAM stands for it (a reading does not change the map's ranks)."""
    return Method("cam_read", describe_reading(reading), cam_maps(reading), logits=cam_logits(reading))


def for_reading(reading: localization.MapReading) -> list[Method]:
    """The methods a report measures: the registry, with CAM read as `reading` right after the
    standard CAM when the reading differs from the standard one."""
    if reading == localization.STANDARD_READING:
        return list(METHODS)
    at = next(i for i, method in enumerate(METHODS) if method is CAM) + 1
    return [*METHODS[:at], read_cam(reading), *METHODS[at:]]


def examples_method(chosen: list[Method]) -> Method:
    """The method of the examples figure: CAM as the reading flags say (the standard CAM when they
    ask for the standard reading)."""
    return next((method for method in chosen if method.key == "cam_read"), CAM)
