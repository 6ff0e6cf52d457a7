"""Maps that ignore the model, to measure the metrics against: a centered Gaussian, uniform noise and
the Sobel edge map. Each `*_maps(net, images, classes, seed)` gives float maps (B, H, W) in [0, 1] for
images (B, C, H, W); a metric that ranks CAM no better than these cannot tell CAM's maps apart.
"""

import numpy as np
import torch
import torch.nn.functional as F

from evaluation import map_reading

CENTER_SIGMA = 0.25  # the centered baseline's Gaussian: its standard deviation as a share of the image side


def centered_gaussian(height: int, width: int, sigma: float = CENTER_SIGMA) -> np.ndarray:
    """The centered baseline's map: float32 (H, W) in [0, 1], a Gaussian at the image center with
    standard deviation sigma times the side. Its boxes over the sweep are centered boxes of every size."""
    rows = (np.arange(height) - (height - 1) / 2) / (sigma * height)
    cols = (np.arange(width) - (width - 1) / 2) / (sigma * width)
    heat = np.exp(-0.5 * (rows[:, None] ** 2 + cols[None, :] ** 2))
    return ((heat - heat.min()) / (heat.max() - heat.min())).astype(np.float32)


def sobel_edges(images: torch.Tensor) -> torch.Tensor:
    """The edge-detector baseline: the Sobel gradient magnitude of images (N, C, H, W), summed over
    channels: (N, H, W), independent of any model."""
    kernel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=images.device)
    weights = torch.stack([kernel, kernel.T])[:, None].repeat(images.shape[1], 1, 1, 1).to(images.dtype)
    gradients = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), weights, groups=images.shape[1])
    return gradients.view(len(images), images.shape[1], 2, *images.shape[-2:]).pow(2).sum(dim=2).sqrt().sum(dim=1)


def center_maps(net, images, classes, seed):
    """The centered Gaussian (centered_gaussian, sigma CENTER_SIGMA), whatever the image."""
    center = torch.from_numpy(centered_gaussian(*images.shape[-2:]))
    return center.expand(len(images), *center.shape)


def random_maps(net, images, classes, seed):
    """Uniform noise, fixed by seed."""
    return torch.rand(len(images), *images.shape[-2:], generator=torch.Generator().manual_seed(seed))


def edge_raw(net, images, classes):
    return sobel_edges(images)


def edge_maps(net, images, classes, seed):
    """The Sobel edge map of the image, min-max normalized: it never looks at the model."""
    return map_reading.normalize_maps(edge_raw(net, images, classes))
