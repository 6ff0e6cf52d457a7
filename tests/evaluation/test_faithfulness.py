import numpy as np
import pytest
import torch
from torch import nn

import model as models
from datasets.ground_truth import GroundTruth
from evaluation import faithfulness, registry, sanity


class RegionOnly(nn.Module):
    """features = the image times a fixed 0/1 region: the logits see those pixels alone."""

    def __init__(self, region: torch.Tensor):
        super().__init__()
        self.register_buffer("region", region)

    def forward(self, x):
        return x * self.region


def region_model(region: torch.Tensor) -> models.GapNet:
    """GapNet whose class-0 logit is 40 * mean(image * region) and class-1 logit its negative."""
    fc = nn.Linear(1, 2)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[40.0], [-40.0]]))
        fc.bias.zero_()
    arch = {"name": "region", "num_classes": 2, "in_channels": 1, "options": {}}
    return models.GapNet(RegionOnly(region), fc, arch).eval()


def test_trapezoid_auc_of_known_curves():
    curves = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.0]])
    assert torch.allclose(faithfulness.trapezoid_auc(curves), torch.tensor([1.0, 0.5, 0.5]))
    assert faithfulness.trapezoid_auc(torch.tensor([[0.0, 1.0]]))[0] == pytest.approx(0.5)


def test_a_map_of_the_region_the_logit_reads_deletes_best_and_its_reverse_worst():
    region = torch.zeros(8, 8)
    region[2:4, 2:5] = 1
    net, images = region_model(region), torch.ones(1, 1, 8, 8)
    classes = torch.tensor([0])
    zeros = torch.zeros_like(images)  # the "mean" baseline: the logits fall to 0, a probability of 0.5
    marked = region[None] + 0.01 * torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0))
    scores = {}
    for name, maps in {"region": marked, "reversed": -marked, "random": torch.rand(1, 8, 8)}.items():
        deletion = faithfulness.removal_curves(net, images, classes, maps, 8, zeros)
        insertion = faithfulness.removal_curves(net, images, classes, maps, 8, zeros, insertion=True)
        scores[name] = (faithfulness.trapezoid_auc(deletion).item(), faithfulness.trapezoid_auc(insertion).item())
        assert deletion[0, 0] == pytest.approx(torch.sigmoid(torch.tensor(80 * 6 / 64)).item(), abs=1e-6)
        assert deletion[0, -1] == pytest.approx(0.5) and insertion[0, 0] == pytest.approx(0.5)
    assert scores["region"][0] < scores["random"][0] < scores["reversed"][0]
    assert scores["region"][1] > scores["random"][1] > scores["reversed"][1]
    # the region's 6 pixels go in the first step of 8 px: the curve is flat at 0.5 after it
    assert scores["region"][0] == pytest.approx((torch.sigmoid(torch.tensor(7.5)).item() + 0.5) / 16 + 7 * 0.5 / 8)


def test_the_curves_ends_shared_by_every_method_give_the_same_scores():
    """Every deletion curve starts at the image's probability and ends at the baseline's (insertion
    the reverse), whatever the map: the evaluator given them (evaluate_cam.py computes them once per
    batch) scores exactly as the one that computes them itself, with two forward passes fewer."""
    torch.manual_seed(0)
    net = models.build_model("cnn", 4, 1, width=4, convs=(1, 1, 1), head=0).eval()
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    images, classes = torch.randn(3, 1, 16, 16), torch.tensor([0, 1, 2])
    maps = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1)).numpy()
    truth = GroundTruth(np.array([[2, 2, 9, 9]] * 3), None, None)
    scores = []
    for shared in (False, True):
        evaluator = faithfulness.FaithfulnessEvaluator(4, "blur", [0.0], [1.0])
        ends = evaluator.unmasked(net, images, classes) if shared else None
        calls.clear()
        evaluator.accumulate(net, images, classes, maps, truth, ends)
        scores.append((evaluator.compute(), len(calls)))
    (alone, alone_calls), (given, given_calls) = scores
    assert given == alone and given_calls == alone_calls - 2  # the image's and the baseline's
    assert given["curves"]["deletion"][0] == pytest.approx(given["curves"]["insertion"][-1])


def test_every_score_is_the_mean_of_its_per_image_scores_which_the_bootstrap_resamples():
    torch.manual_seed(0)
    net = models.build_model("cnn", 4, 1, width=4, convs=(1, 1, 1), head=0).eval()
    images, classes = torch.randn(5, 1, 16, 16), torch.tensor([0, 1, 2, 3, 0])
    maps = torch.rand(5, 16, 16, generator=torch.Generator().manual_seed(1)).numpy()
    evaluator = faithfulness.FaithfulnessEvaluator(4, "blur", [0.0], [1.0], road_images=3)
    evaluator.accumulate(net, images, classes, maps, GroundTruth(np.array([[2, 2, 9, 9]] * 5), None, None))
    scores = evaluator.compute()
    assert set(scores["per_image"]) == set(faithfulness.SCORES + faithfulness.ROAD_SCORES)
    for name in faithfulness.SCORES:
        assert len(scores["per_image"][name]) == 5 and np.mean(scores["per_image"][name]) == pytest.approx(scores[name])
    for order in ("morf", "lerf"):
        assert len(scores["per_image"][f"road_{order}"]) == 3  # ROAD's images alone
        assert np.mean(scores["per_image"][f"road_{order}"]) == pytest.approx(np.mean(scores["road"][order]))


def test_pixel_ranks_put_the_highest_first_and_ties_in_a_seeded_random_order():
    maps = torch.tensor([[[0.2, 0.9], [0.2, 0.5]]])
    ranks = [faithfulness.pixel_ranks(maps, seed).tolist()[0] for seed in range(400)]
    assert all(rank[1] == 0 and rank[3] == 1 and {rank[0], rank[2]} == {2, 3} for rank in ranks)
    assert ranks[7] == faithfulness.pixel_ranks(maps, 7).tolist()[0]  # the same seed, the same order
    assert 160 < sum(rank[0] == 2 for rank in ranks) < 240  # either tied pixel first, about as often


def mean_deletion_auc(net, maps: torch.Tensor, seed: int = 0) -> tuple[float, float]:
    """The mean deletion AUC (8 steps, baseline 0) of the region model over its images (ones), one
    map each (N, 8, 8), and its standard error."""
    images, classes = torch.ones(len(maps), 1, 8, 8), torch.zeros(len(maps), dtype=torch.long)
    curves = faithfulness.removal_curves(net, images, classes, maps, 8, torch.zeros_like(images), order_seed=seed)
    aucs = faithfulness.trapezoid_auc(curves)
    return float(aucs.mean()), float(aucs.std() / len(aucs) ** 0.5)


def top_rows_region_model() -> models.GapNet:
    region = torch.zeros(8, 8)
    region[0:2, 1:7] = 1  # the top rows: where raster order began a plateau
    return region_model(region)


def test_a_constant_map_deletes_as_the_random_map_does_in_expectation():
    """Ties broken at random: a map that says nothing scores as a random map, in expectation (in
    raster order a constant map deleted the top rows first, the region the logit reads here)."""
    net, count = top_rows_region_model(), 512
    constant, spread = mean_deletion_auc(net, torch.full((count, 8, 8), 0.3), seed=1)
    random_maps = torch.rand(count, 8, 8, generator=torch.Generator().manual_seed(2))
    random, random_spread = mean_deletion_auc(net, random_maps, seed=3)
    assert abs(constant - random) < 3 * (spread**2 + random_spread**2) ** 0.5 + 1e-3


def test_a_plateau_scores_the_same_broken_by_tiny_noise_or_zeroed_by_a_relu():
    """A map with a plateau (the background's equal values) scores as the same map with noise far
    below its steps (which breaks the ties) and as its ReLU, which only zeroes a plateau of negative
    values: in every ordered metric (deletion, insertion, ROAD MoRF and LeRF), the means differ by
    less than 3 standard errors of their per-image scores (in raster order they did not)."""
    net, count = top_rows_region_model(), 256
    plateau = torch.zeros(count, 8, 8)
    plateau[:, 4:7, 2:6] = 1.0  # the object the map points at, away from the region the logit reads
    noisy = plateau + 1e-7 * torch.rand(count, 8, 8, generator=torch.Generator().manual_seed(4))
    negative = torch.where(plateau > 0, plateau, torch.full_like(plateau, -0.25))
    images, classes = torch.ones(count, 1, 8, 8), torch.zeros(count, dtype=torch.long)
    truth = GroundTruth(np.array([[2, 4, 6, 7]] * count), None, None)
    scores = {}
    for seed, (name, maps) in enumerate((("plateau", plateau), ("noisy", noisy), ("relu", negative.relu()))):
        evaluator = faithfulness.FaithfulnessEvaluator(8, "mean", [0.0], [1.0], road_images=count, seed=seed)
        evaluator.accumulate(net, images, classes, maps.numpy(), truth)
        scores[name] = {key: np.asarray(values) for key, values in evaluator.compute()["per_image"].items()}
    for name in ("noisy", "relu"):
        for metric in ("deletion_auc", "insertion_auc", "road_morf", "road_lerf"):
            ours, theirs = scores[name][metric], scores["plateau"][metric]
            error = ((ours.var() + theirs.var()) / count) ** 0.5
            assert abs(ours.mean() - theirs.mean()) < 3 * error + 1e-3, (name, metric)


def test_confidence_change_by_hand():
    region = torch.ones(4, 4)
    net = region_model(region)
    images = torch.full((2, 1, 4, 4), 0.5)  # pixel value 0.5 * 0.25 + 0.5 = 0.625 with mean 0.5, std 0.25
    maps = torch.stack([torch.ones(4, 4), torch.zeros(4, 4)])
    drop, increase = faithfulness.confidence_change(net, images, torch.tensor([0, 0]), maps, [0.5], [0.25])
    original = torch.sigmoid(torch.tensor(80 * 0.5)).item()
    masked = torch.sigmoid(torch.tensor(80 * -2.0)).item()  # pixel 0 -> normalized -2
    assert drop[0].item() == pytest.approx(0.0) and not increase[0]
    assert drop[1].item() == pytest.approx((original - masked) / original) and not increase[1]


def test_pointing_game_hits_and_misses_with_a_tolerance():
    maps = np.zeros((3, 10, 10))
    maps[0, 2, 2] = maps[1, 8, 8] = maps[2, 2, 6] = 1
    masks = np.zeros((3, 10, 10), bool)
    masks[:, 1:4, 1:4] = True
    assert faithfulness.pointing_hits(maps, masks).tolist() == [True, False, False]
    assert faithfulness.pointing_hits(maps, masks, tolerance=3).tolist() == [True, False, True]  # (2, 6) is 3 px off


def test_box_energy_by_hand():
    maps = np.zeros((2, 4, 4))
    maps[0, 0, 0], maps[0, 3, 3] = 3.0, 1.0
    maps[1] = -1.0
    assert faithfulness.box_energy(maps, np.array([[0, 0, 2, 2], [0, 0, 4, 4]])).tolist() == [0.75, 0.0]


def test_road_imputation_fills_a_linear_ramp_exactly():
    """Noisy linear imputation without noise: each removed pixel is the weighted mean of its
    neighbours, so a ramp along x, whose removed pixels are away from the border, comes back."""
    ramp = torch.arange(12.0).repeat(12, 1)[None, None].double()
    removed = torch.zeros(1, 12, 12, dtype=torch.bool)
    removed[0, 3:8, 4:9] = True
    imputed = faithfulness.road_impute(ramp, removed, torch.Generator(), noise=0.0)
    assert torch.allclose(imputed, ramp, atol=1e-9)
    noisy = faithfulness.road_impute(ramp, removed, torch.Generator().manual_seed(0), noise=0.1)
    assert torch.equal(noisy[0, 0][~removed[0]], ramp[0, 0][~removed[0]]) and not torch.equal(noisy, ramp)


@pytest.mark.parametrize("seed", [2**64 + 5, 5 - 2**64])
def test_any_int_seeds_the_cascade_and_road_as_its_residue_modulo_2_to_the_64(seed):
    """torch's generators take seeds in [-2**63, 2**64): larger or more negative ones work, as the
    same seed modulo 2**64."""
    torch.manual_seed(0)
    net = models.build_model("cnn", 4, 1, width=4, convs=(1, 1, 1), head=0).eval()
    images, classes = torch.randn(2, 1, 28, 28), torch.tensor([0, 1])

    def cam(model):
        return registry.raw_cam(model, images, classes)

    for (_, ours), (_, theirs) in zip(sanity.cascading_randomization(net, cam, seed),
                                      sanity.cascading_randomization(net, cam, 5), strict=True):
        assert torch.equal(ours, theirs)
    maps = torch.rand(2, 28, 28, generator=torch.Generator().manual_seed(0))
    ours, theirs = (faithfulness.road_scores(net, images, classes, maps, (50,), seed=value) for value in (seed, 5))
    assert all(torch.equal(ours[order], theirs[order]) for order in ("morf", "lerf"))


def test_matches_pytorch_grad_cam_confidence_change_and_road():
    """An independent implementation on the same maps: pytorch-grad-cam's CamMultImageConfidenceChange
    (the softmax score of image x map minus that of the image) and its ROAD imputation."""
    from pytorch_grad_cam.metrics import cam_mult_image as metrics
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    torch.manual_seed(0)
    net = models.build_model("cnn", 4, 1, width=4, convs=(1, 1, 1), head=0).eval()
    images, classes, maps = torch.randn(3, 1, 28, 28), torch.tensor([0, 1, 2]), torch.rand(3, 28, 28)
    # with mean 0 and std 1 the masked image is image x map, as pytorch-grad-cam forms it
    drop, _ = faithfulness.confidence_change(net, images, classes, maps, [0.0], [1.0])
    theirs = metrics.CamMultImageConfidenceChange()(images, maps.numpy(), [ClassifierOutputSoftmaxTarget(int(c))
                                                                            for c in classes], net)
    probabilities = faithfulness.class_probabilities(net, images, classes).numpy()
    assert np.allclose(np.clip(-theirs.ravel(), 0, None) / probabilities, drop.numpy(), atol=1e-5)


def test_road_imputation_matches_pytorch_grad_cam():
    from pytorch_grad_cam.metrics import road
    image = torch.rand(1, 2, 10, 10, generator=torch.Generator().manual_seed(0)).double()
    removed = torch.rand(1, 10, 10, generator=torch.Generator().manual_seed(1)) < 0.4
    ours = faithfulness.road_impute(image, removed, torch.Generator(), noise=0.0)[0]
    theirs = road.NoisyLinearImputer(noise=0.0)(image[0].float(), (~removed[0]).float())
    assert torch.allclose(ours.float(), theirs.float(), atol=1e-5)


def test_deletion_baselines():
    images = torch.rand(2, 1, 9, 9)
    black = faithfulness.baseline_images(images, "black", [0.5], [0.25])
    assert torch.allclose(black, torch.full_like(images, -2.0))
    assert torch.equal(faithfulness.baseline_images(images, "mean", [0.5], [0.25]), torch.zeros_like(images))
    flat = torch.full((1, 1, 9, 9), 3.0)
    assert torch.allclose(faithfulness.baseline_images(flat, "blur", [0.5], [0.25]), flat)  # a blur keeps constants
    with pytest.raises(ValueError, match="unknown baseline 'noise'"):
        faithfulness.baseline_images(images, "noise", [0.5], [0.25])
