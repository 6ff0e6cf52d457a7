"""Drawing maps: undo the normalization, color a map, blend it over the image, draw boxes, save PNGs.

Images are uint8 RGB (H, W, 3) numpy arrays; maps are floats in [0, 1] (H, W). OpenCV's colormaps
give BGR, converted here, so nothing outside this module deals with BGR.
"""

from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from utils.cli import UserError
from utils.files import atomic_output


def to_rgb_image(image: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Undo the normalization of a model input (C, H, W) -> uint8 RGB (H, W, 3); gray is repeated."""
    mean_t = torch.tensor(mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    pixels = (image * std_t + mean_t).clamp(0, 1).mul(255).round().byte().cpu()
    return pixels.expand(3, -1, -1).permute(1, 2, 0).contiguous().numpy()


def colormap_code(name: str) -> int:
    """OpenCV's code for a colormap name ('jet' -> cv2.COLORMAP_JET)."""
    code = getattr(cv2, f"COLORMAP_{name.upper()}", None)
    if code is None:
        names = sorted(key[len("COLORMAP_"):].lower() for key in dir(cv2) if key.startswith("COLORMAP_"))
        raise UserError(f"unknown colormap {name!r}; choose one of: {', '.join(names)}")
    return code


def colorize(heat: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """A map in [0, 1] (H, W) -> uint8 RGB (H, W, 3) in the colormap (OpenCV gives BGR; converted)."""
    levels = np.clip(np.round(heat * 255), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(levels, colormap_code(colormap)), cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """Blend the colorized map (H, W) in [0, 1] over a uint8 RGB image (H, W, 3): uint8 RGB (H, W, 3)."""
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colorize(heat, colormap).astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def draw_box(rgb: np.ndarray, box: np.ndarray, color: tuple[int, int, int], thickness: int = 1) -> None:
    """Draw box (x0, y0, x1, y1), exclusive ends, on a uint8 RGB image (H, W, 3) in place; an empty box draws
    nothing."""
    x0, y0, x1, y1 = (int(value) for value in box)
    if x1 > x0 and y1 > y0:
        cv2.rectangle(rgb, (x0, y0), (x1 - 1, y1 - 1), color, thickness)


def save_png(path: Path, rgb: np.ndarray) -> None:
    with atomic_output(path) as temporary:
        Image.fromarray(rgb).save(temporary, format="PNG")


def save_figure(figure: Figure, path, **options) -> None:
    """Write a matplotlib figure as a PNG at 100 dpi, atomically; options go to savefig."""
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png", **options)


def png_bytes(rgb: np.ndarray) -> bytes:
    """A uint8 RGB image (H, W, 3) encoded as PNG."""
    return cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))[1].tobytes()
