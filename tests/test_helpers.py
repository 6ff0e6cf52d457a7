"""The tests' own checks fail where they should: a blank or empty figure is not a drawn one."""

import numpy as np
import pytest
from helpers import assert_drawn
from matplotlib.figure import Figure
from PIL import Image


def test_a_blank_figure_and_empty_axes_are_not_drawn(tmp_path):
    Image.fromarray(np.full((60, 80, 3), 255, np.uint8)).save(tmp_path / "blank.png")
    figure = Figure(figsize=(3, 2))
    figure.add_subplot().set_title("nothing plotted")
    figure.savefig(tmp_path / "axes.png")
    for name in ("blank.png", "axes.png"):
        with pytest.raises(AssertionError, match="looks blank"):
            assert_drawn(tmp_path / name)
    figure.axes[0].plot([0, 1, 2], [2, 0, 1])
    figure.savefig(tmp_path / "curve.png")
    assert_drawn(tmp_path / "curve.png")
