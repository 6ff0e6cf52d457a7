"""Training-side methods that spread a GAP network's CAM over the whole object, the map still read as CAM.

None of them changes the network, its GAP + linear head, or how the map is read (fc x features):
- `hide_patches`: Hide-and-Seek (Singh & Lee, ICCV 2017), an input augmentation;
- `cut_mix`: CutMix (Yun et al., ICCV 2019), an input and label mix;
- `alignment_losses`: the feature-direction alignment and feature-norm terms of Kim et al.,
  "Bridging the Gap Between Classification and Localization for Weakly Supervised Object
  Localization" (CVPR 2022), added to the cross-entropy.
train.py's training step (train_step) applies those that its hyperparameters switch on.
"""

import math

import torch

ALIGNMENT_THRESHOLD = 0.5  # foreground: locations whose feature norm is above this share of the image's largest


def hide_patches(images: torch.Tensor, patch: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    """Hide-and-Seek (Singh & Lee, ICCV 2017): the image is cut into a grid of patch x patch cells
    and each cell is hidden with `probability`, independently per image. Hidden pixels take the
    dataset mean (0 on the normalized images given here), as the paper sets them, so that the
    statistics the network sees at test time stay those of training.

    images: normalized float (B, C, H, W) -> the same shape, cells hidden. The draws come from
    generator (a CPU one), so they do not depend on the device."""
    count, _, height, width = images.shape
    rows, cols = math.ceil(height / patch), math.ceil(width / patch)
    keep = (torch.rand(count, 1, rows, cols, generator=generator) >= probability).to(images.device, images.dtype)
    keep = keep.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)[:, :, :height, :width]
    return images * keep


def cut_mix(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """CutMix (Yun et al., ICCV 2019), as in the paper with alpha = 1: a box of a random share of
    the area (uniform in [0, 1]) at a uniformly random center is pasted into each image from
    another image of the batch (one random pairing, one box per batch).

    images (B, C, H, W), labels int64 (B,) -> (mixed images, the pasted images' labels (B,),
    lam: the share of each image that is still its own, from the box as clipped to the image).
    The loss is then lam * CE(labels) + (1 - lam) * CE(other labels)."""
    count, _, height, width = images.shape
    share, center_y, center_x = torch.rand(3, generator=generator).tolist()
    partner = torch.randperm(count, generator=generator).to(images.device)
    side = math.sqrt(share)
    top, bottom = (min(max(round((center_y + sign * side / 2) * height), 0), height) for sign in (-1, 1))
    left, right = (min(max(round((center_x + sign * side / 2) * width), 0), width) for sign in (-1, 1))
    mixed = images.clone()
    mixed[:, :, top:bottom, left:right] = images[partner, :, top:bottom, left:right]
    lam = 1 - (bottom - top) * (right - left) / (height * width)
    return mixed, labels[partner], lam


def alignment_losses(features: torch.Tensor, class_weights: torch.Tensor, threshold: float = ALIGNMENT_THRESHOLD
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The feature-direction alignment and feature-norm terms of Kim et al. (CVPR 2022), as we read
    the paper: CAM_c(x, y) = |f(x, y)| |w_c| cos(f(x, y), w_c), so a map that covers the object
    needs features that point along w_c wherever the object is, not only where it is most
    discriminative. With A = |f(x, y)| / max_xy |f| (the normalized feature norm, held fixed) and
    the foreground the locations where A > threshold:
    - alignment: the mean cosine similarity to w_c over the background minus the one over the
      foreground (in [-2, 2]; raising the cosine on the object, lowering it off it);
    - norm: the mean of A over the background (in [0, 1]; lowering the feature norm off the object).
    The paper's third term, consistency under attentive dropout, is not included.

    features (B, K, h, w); class_weights (B, K), fc.weight of each image's class -> two scalars."""
    features, class_weights = features.float(), class_weights.float()
    norms = features.norm(dim=1)  # (B, h, w)
    normalized = norms / norms.amax(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    foreground = (normalized > threshold).detach().float()
    background = 1 - foreground
    # cos = <f, w> / (|f| |w|), with one pass over the features (F.cosine_similarity makes several)
    dot = torch.einsum("bkhw,bk->bhw", features, class_weights)
    cosine = dot / (norms * class_weights.norm(dim=1)[:, None, None]).clamp_min(1e-6)
    def mean_over(mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return ((mask * values).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp_min(1)).mean()

    alignment = mean_over(background, cosine) - mean_over(foreground, cosine)
    return alignment, mean_over(background, normalized)
