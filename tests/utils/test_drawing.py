import numpy as np
import pytest
import torch

from utils import cli, drawing


def test_to_rgb_image_undoes_the_normalization():
    original = np.random.default_rng(0).integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    pixels = torch.tensor(original).permute(2, 0, 1) / 255
    tensor = (pixels - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert np.array_equal(drawing.to_rgb_image(tensor, mean, std), original)
    gray = drawing.to_rgb_image(torch.zeros(1, 5, 6), (0.5,), (0.5,))
    assert gray.shape == (5, 6, 3) and gray.dtype == np.uint8 and (gray == 128).all()


def test_colorize_returns_rgb_not_bgr():
    heat = np.array([[0.0, 1.0]])
    colors = drawing.colorize(heat, "jet")
    assert colors.shape == (1, 2, 3) and colors.dtype == np.uint8
    cold, hot = colors[0, 0], colors[0, 1]
    assert cold[2] > 100 and cold[0] < 50  # JET's low end is blue: blue channel last in RGB
    assert hot[0] > 100 and hot[2] < 50  # JET's high end is red: red channel first in RGB


def test_overlay_blends_with_alpha():
    image = np.full((4, 6, 3), 200, dtype=np.uint8)
    heat = np.linspace(0, 1, 24).reshape(4, 6)
    colored = drawing.colorize(heat, "jet")
    assert np.array_equal(drawing.overlay(image, heat, alpha=0.0), image)
    assert np.array_equal(drawing.overlay(image, heat, alpha=1.0), colored)
    half = drawing.overlay(image, heat, alpha=0.5)
    assert half.dtype == np.uint8 and half.shape == (4, 6, 3)
    assert np.abs(half.astype(int) - (image.astype(int) + colored) / 2).max() <= 0.5


def test_unknown_colormap():
    with pytest.raises(cli.UserError, match="unknown colormap 'rainbowz'; choose one of: .*jet"):
        drawing.colorize(np.zeros((2, 2)), "rainbowz")
