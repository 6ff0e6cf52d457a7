import numpy as np
import pytest

from evaluation import baselines, localization


def test_centered_gaussian_peaks_in_the_middle():
    heat = baselines.centered_gaussian(64, 64)
    assert heat.shape == (64, 64) and heat.min() == 0.0 and heat.max() == pytest.approx(1.0)
    assert np.allclose(heat, heat[::-1]) and np.allclose(heat, heat[:, ::-1])
    box = localization.boxes_from_maps(heat[None], 0.5)[0]
    assert (box[0] + box[2]) / 2 == 32 and (box[1] + box[3]) / 2 == 32
