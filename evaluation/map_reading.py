"""How raw CAMs become heat maps: the one place both scripts read maps (`cam_heat_maps`).

A reading (`MapReading`) is a normalization to [0, 1] (min-max, max or IVR; Kim et al., "Normalization
Matters in Weakly Supervised Object Localization", ICCV 2021) and whether the mirror image's CAMs are
averaged in; maps are upsampled bilinearly as floats before any 8-bit conversion.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import model


def upsample_maps(maps: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of float maps (B, N, h, w) -> (B, N, H, W), before any 8-bit conversion."""
    return F.interpolate(maps.float(), size=size, mode="bilinear", align_corners=False)


NORMALIZATIONS = ("minmax", "max", "ivr")


def normalize_maps(maps: torch.Tensor, normalization: str = "minmax", percentile: float = 0.0,
                   eps: float = 1e-8) -> torch.Tensor:
    """Each map (..., H, W) scaled to [0, 1], as Kim et al. ("Normalization Matters in Weakly
    Supervised Object Localization", ICCV 2021) compare them:
    - "minmax": (M - min) / (max - min), the published tables' reading of CAM;
    - "max": ReLU(M) / max, so that negative evidence reads as none rather than lifting the rest;
    - "ivr": M minus its `percentile` quantile (in [0, 1)), clipped at 0, divided by its max.
    A map with nothing above its floor becomes zeros, not NaN."""
    if normalization == "minmax":
        floor = maps.amin(dim=(-2, -1), keepdim=True)
    elif normalization == "max":
        floor = torch.zeros_like(maps[..., :1, :1])
    elif normalization == "ivr":  # the quantile by linear interpolation, as torch.quantile (which caps its input size)
        ordered = maps.flatten(-2).sort(dim=-1).values
        position = percentile * (ordered.shape[-1] - 1)
        low, high = math.floor(position), math.ceil(position)
        floor = (ordered[..., low] + (position - low) * (ordered[..., high] - ordered[..., low]))[..., None, None]
    else:
        raise ValueError(f"unknown normalization {normalization!r}; choose one of {NORMALIZATIONS}")
    shifted = (maps - floor).clamp_min(0)
    return shifted / shifted.amax(dim=(-2, -1), keepdim=True).clamp_min(eps)


@dataclass(frozen=True)
class MapReading:
    """How `cam_heat_maps` turns raw CAMs into heat maps: the normalization (see normalize_maps) with
    its percentile, and whether the CAMs of the mirror image, mirrored back, are averaged in (and
    the logits likewise), as test-time flips."""

    normalization: str = "minmax"
    percentile: float = 0.0
    flip: bool = False


STANDARD_READING = MapReading()  # raw CAM, min-max normalized: the reading of the published tables
RECIPE_READING = MapReading("max", 0.0, True)  # chosen on the validation split (docs/recipes.md): the scripts' default


def cam_heat_maps(net, images: torch.Tensor, reading: MapReading = STANDARD_READING,
                  classes: torch.Tensor | None = None, topk: int = 1, size: int | tuple[int, int] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The one place where CAMs become the heat maps that boxes are drawn from (visualize_cam.py and
    evaluate_cam.py both read maps here). images (B, C, H, W) -> (logits (B, num_classes), classes
    int64 (B, K), heat float (B, K, size, size) in [0, 1]): the CAMs of `classes` (B, K), or of each
    image's `topk` most probable classes when None, read as `reading` says, upsampled bilinearly to
    size (default: the images' size) and normalized. The maps are CAM's, fc x features."""
    with torch.no_grad():
        logits, cams = model.class_activation_maps(net, images)
        if reading.flip:
            mirror_logits, mirror_cams = model.class_activation_maps(net, images.flip(-1))
            logits, cams = (logits + mirror_logits) / 2, (cams + mirror_cams.flip(-1)) / 2
    if classes is None:
        classes = logits.topk(topk, dim=1).indices
    chosen = cams.gather(1, classes[:, :, None, None].expand(-1, -1, *cams.shape[-2:]))
    heat = normalize_maps(upsample_maps(chosen, size or images.shape[-2:]), reading.normalization, reading.percentile)
    return logits, classes, heat
