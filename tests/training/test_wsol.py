import math

import pytest
import torch

from training import wsol


def test_hide_patches_hides_whole_cells_or_nothing():
    images = torch.ones(64, 1, 10, 10)
    hidden = wsol.hide_patches(images, 4, 0.5, torch.Generator().manual_seed(0))
    for image in hidden[:, 0]:  # each 4x4 cell (clipped to 2 wide at the edges) all hidden or all kept
        for top in range(0, 10, 4):
            for left in range(0, 10, 4):
                cell = image[top:top + 4, left:left + 4]
                assert cell.min() == cell.max()
    assert 0.3 < (hidden == 0).float().mean() < 0.7
    assert torch.equal(wsol.hide_patches(images, 4, 0.0, torch.Generator()), images)


def test_cut_mix_pastes_one_box_and_weighs_by_its_area():
    images = torch.arange(4.0)[:, None, None, None].expand(4, 1, 8, 8).clone()
    labels = torch.arange(4)
    mixed, other, lam = wsol.cut_mix(images, labels, torch.Generator().manual_seed(1))
    assert 0 < lam < 1 and sorted(other.tolist()) == [0, 1, 2, 3]
    for b in range(4):
        if other[b] != b:  # an image may be paired with itself
            assert (mixed[b] == b).float().mean().item() == pytest.approx(lam)
            assert (mixed[b] == other[b]).float().mean().item() == pytest.approx(1 - lam)


def test_alignment_losses_by_hand():
    """Two locations: a strong one along w (the foreground) and a weak one against it."""
    weight = torch.tensor([[1.0, 0.0]])
    features = torch.tensor([[3.0, 0.0], [-0.5, 0.5]]).T.reshape(1, 2, 1, 2)  # (B, K, h, w)
    alignment, norm = wsol.alignment_losses(features, weight)
    background_cosine = -1 / math.sqrt(2)
    assert alignment.item() == pytest.approx(background_cosine - 1.0)
    assert norm.item() == pytest.approx(math.sqrt(0.5) / 3)
