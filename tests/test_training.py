import pytest
import torch

import train
from training import metrics, schedules
from utils import cli


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


def test_progressive_side_grows_in_steps_of_4_to_full_size_by_until():
    sides = [schedules.progressive_side(28, 20, 0.5, step / 100) for step in range(100)]
    assert sides[:25] == [20] * 25 and sides[25:50] == [24] * 25 and sides[50:] == [28] * 50
    assert [schedules.progressive_side(28, 18, 1.0, p) for p in (0.0, 0.1, 0.2, 0.9)] == [18, 18, 20, 24]
    assert schedules.progressive_side(28, 0, 0.5, 0.0) == schedules.progressive_side(28, 28, 0.5, 0.0) == 28  # off


@pytest.mark.parametrize("total_steps", [1, 2, 3, 4, 5, 8, 100])
def test_onecycle_runs_any_number_of_steps_and_peaks_at_lr(total_steps):
    cfg = cli.parse_hyperparameters(train, ["--lr=0.4"])
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    scheduler = schedules.make_scheduler(optimizer, cfg.schedule, total_steps)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(total_steps):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert max(rates) <= 0.4 + 1e-9 and all(rate > 0 for rate in rates[:-1])
    if total_steps == 100:
        assert max(rates) == pytest.approx(0.4) and rates[-1] < 0.001



def test_step_schedule_decays_tenfold_after_each_decay_steps_as_wsolevaluation():
    trunk, head = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([{"params": [trunk], "lr": 0.001}, {"params": [head]}], lr=0.01)
    scheduler = schedules.make_scheduler(optimizer, "step", total_steps=12, decay_steps=4)  # 3 epochs of 4 steps
    rates = []
    for _ in range(12):
        rates.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert rates[:4] == [[0.001, 0.01]] * 4  # every group keeps its own rate, the head's 10x the trunk's
    assert rates[4:8] == [pytest.approx([1e-4, 1e-3])] * 4 and rates[8:] == [pytest.approx([1e-5, 1e-4])] * 4
