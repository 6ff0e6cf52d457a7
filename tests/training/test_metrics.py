import pytest
import torch

from training import metrics


class LeftOrRight(torch.nn.Module):
    """Logits (sum of the left column, sum of the right column) of images (B, 1, H, W)."""

    def forward(self, images):
        return torch.stack([images[..., 0].sum((1, 2)), images[..., -1].sum((1, 2))], dim=1)


def test_flip_test_averages_the_logits_of_each_image_and_its_mirror_image():
    images = torch.zeros(2, 1, 4, 4)
    images[0, 0, :, 0] = 1.0  # bright left column: logits (4, 0), label 0
    images[1, 0, :, -1] = 1.0  # bright right column: logits (0, 4), label 1
    batches = [(images, torch.tensor([0, 1]))]
    loss, accuracy = metrics.evaluate(LeftOrRight(), batches, torch.device("cpu"))
    assert accuracy == 100.0 and loss == pytest.approx(torch.log1p(torch.exp(torch.tensor(-4.0))).item(), rel=1e-5)
    loss, accuracy = metrics.evaluate(LeftOrRight(), batches, torch.device("cpu"), flip=True)
    assert loss == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-5)  # mirrored: logits (2, 2) for both


class LeftColumn(torch.nn.Module):
    """Logits (sum of the left column, 0) of each image (B, 1, H, W)."""

    def forward(self, images):
        return torch.stack([images[..., 0].sum((1, 2)), torch.zeros(len(images))], dim=1)


def test_shift_test_weights_the_image_a_half_and_each_diagonal_shift_a_quarter():
    images = torch.zeros(1, 1, 4, 4)
    images[0, 0, :, 0] = 1.0  # bright left column: logit 4 unshifted
    batches = [(images, torch.tensor([0]))]
    # Moved up-left, the left column holds column 1 (0) over one black pixel: -1; moved down-right,
    # it is all black: -4. So the logits are (4 / 2 - 1 / 4 - 4 / 4, 0) = (0.75, 0).
    loss, _ = metrics.evaluate(LeftColumn(), batches, torch.device("cpu"), shift=1, black=(-1.0,))
    assert loss == pytest.approx(torch.log1p(torch.exp(torch.tensor(-0.75))).item(), rel=1e-5)
    loss, _ = metrics.evaluate(LeftColumn(), batches, torch.device("cpu"), shift=1, black=(0.0,))  # (2, 0)
    assert loss == pytest.approx(torch.log1p(torch.exp(torch.tensor(-2.0))).item(), rel=1e-5)
    with pytest.raises(TypeError, match="needs black"):
        metrics.evaluate(LeftColumn(), batches, torch.device("cpu"), shift=1)


def test_shifted_moves_the_image_and_fills_the_uncovered_border_with_black():
    images = torch.arange(16.0).view(1, 1, 4, 4)
    down_right = metrics.shifted(images, 1, torch.tensor([-9.0]))
    assert torch.equal(down_right[0, 0, 1:, 1:], images[0, 0, :3, :3])
    assert (down_right[0, 0, 0] == -9).all() and (down_right[0, 0, :, 0] == -9).all()
    up_left = metrics.shifted(images.to(memory_format=torch.channels_last), -2, torch.tensor([-9.0]))
    assert torch.equal(up_left[0, 0, :2, :2], images[0, 0, 2:, 2:]) and (up_left[0, 0, 2:] == -9).all()
    assert up_left.is_contiguous(memory_format=torch.channels_last)
