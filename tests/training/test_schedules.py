import pytest
import torch

import train
from training import schedules
from utils import cli


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
