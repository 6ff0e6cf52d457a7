import numpy as np
import pytest
import torch
from scipy import stats

import model as models
from evaluation import baselines, registry, sanity
from utils import seeds


def test_similarity_scores_by_hand():
    maps = np.random.default_rng(0).random((2, 16, 16))
    assert np.allclose(sanity.spearman_correlation(maps, maps), 1)
    assert np.allclose(sanity.spearman_correlation(maps, -maps), -1)
    assert np.allclose(sanity.spearman_correlation(maps, maps**3 + 5), 1)  # ranks only
    assert np.allclose(sanity.ssim(maps, maps), 1)
    assert (sanity.ssim(maps, maps[::-1]) < 0.5).all()


def test_similarities_against_a_reference_computed_once_are_scipys_spearman_and_ssim():
    generator = torch.Generator().manual_seed(0)
    trained, later = torch.randn(3, 8, 8, generator=generator), torch.randn(3, 8, 8, generator=generator)
    trained[0, :4] = 0.0  # ties share their mean rank
    reference = sanity.Reference.of(trained)
    scores = sanity.similarities(later, reference)
    for name, values in sanity.similarities(later, trained).items():
        assert np.array_equal(scores[name], values), name
    pairs = zip(later.double().numpy(), trained.double().numpy())
    expected = [stats.spearmanr(a.ravel(), b.ravel())[0] for a, b in pairs]
    assert np.allclose(scores["spearman"], expected)
    assert np.allclose(sanity.similarities(trained, reference)["spearman_abs"], 1)


@pytest.mark.parametrize("kind", ["positive", "signed", "relu"])
def test_ranks_of_absolute_values_are_ranked_anew_only_where_a_value_is_negative(kind):
    values = np.random.default_rng(1).random((3, 6, 6))
    values = {"positive": values, "signed": values - 0.5, "relu": np.maximum(values - 0.3, 0.0)}[kind]
    values[0, 0, 0] = -0.0 if kind == "relu" else values[0, 0, 0]  # ReLU can give -0.0: no negative value
    ranks, abs_ranks = sanity.ranks_and_abs_ranks(values)
    assert np.array_equal(ranks, sanity.centered_ranks(values))
    assert np.array_equal(abs_ranks, sanity.centered_ranks(np.abs(values)))
    assert (abs_ranks is ranks) == (kind != "signed")


def test_ssim_reads_the_others_local_moments_when_at_hand():
    maps, others, third = np.random.default_rng(2).random((3, 3, 12, 12))
    moments = sanity.local_moments(others, sanity.SSIM_SIGMA)
    assert np.array_equal(sanity.ssim(maps, others, other_moments=moments), sanity.ssim(maps, others))
    wrong = sanity.local_moments(third, sanity.SSIM_SIGMA)
    assert not np.allclose(sanity.ssim(maps, others, other_moments=wrong), sanity.ssim(maps, others))


def test_centered_ranks_are_scipys_rankdata_with_ties_less_their_mean():
    maps = np.round(np.random.default_rng(0).normal(size=(5, 9, 7)), 1)  # many ties
    maps[1] = 0.0  # a constant map: every pixel the mean rank
    maps[2, :4] = maps[2, 5:] = 2.5
    expected = stats.rankdata(maps.reshape(5, -1), axis=1)
    assert np.array_equal(sanity.centered_ranks(maps), expected - expected.mean(1, keepdims=True))
    assert sanity.centered_ranks(np.zeros((0, 3, 3))).shape == (0, 9)
    maps[3, 0, 0] = np.nan  # a NaN makes its map's ranks NaN, as rankdata's
    ranks = sanity.centered_ranks(maps)
    assert np.isnan(ranks[3]).all() and not np.isnan(np.delete(ranks, 3, axis=0)).any()


def test_randomizing_fc_changes_cam_but_not_the_edge_map():
    torch.manual_seed(0)
    net = models.build_model("cnn", 4, 1, width=4, convs=(1, 1, 1), head=0).eval()
    images, classes = torch.randn(3, 1, 28, 28), torch.tensor([0, 1, 2])
    def raw_maps(model):
        return {method.key: method.raw(model, images, classes) for method in (registry.CAM, registry.EDGE)}

    trained, stages = raw_maps(net), sanity.cascading_randomization(net, raw_maps)
    names = [name for name, _ in stages]
    assert names == ["fc", "features.8", "features.4", "features.0"]  # fc, then the 3 convs from the top
    after_fc = stages[0][1]
    assert not torch.allclose(after_fc["cam"], trained["cam"])
    for _, maps in stages:
        assert torch.equal(maps["edge"], trained["edge"])
    edge_scores = sanity.similarities(after_fc["edge"], trained["edge"])
    assert np.allclose(edge_scores["spearman"], 1) and np.allclose(edge_scores["ssim"], 1)
    assert torch.equal(raw_maps(net)["cam"], trained["cam"])  # net itself untouched
    assert not torch.equal(sanity.cascading_randomization(net, raw_maps, seed=1)[-1][1]["cam"], stages[-1][1]["cam"])


def test_sanity_evaluator_reports_every_stage_and_the_random_labels_model():
    torch.manual_seed(0)
    net = models.build_model("cnn", 4, 1, width=4, convs=(1, 1, 1), head=0).eval()
    other = models.build_model("cnn", 4, 1, width=4, convs=(1, 1, 1), head=0).eval()
    evaluator = sanity.SanityEvaluator({"cam": registry.CAM, "edge": registry.EDGE}, shown=2)
    for _ in range(2):
        evaluator.accumulate(net, torch.randn(3, 1, 28, 28), torch.tensor([0, 1, 2]), other)
    scores = evaluator.compute()
    stages = ["trained", "fc", "features.8", "features.4", "features.0", sanity.RANDOM_LABELS]
    assert list(scores["cam"]) == stages
    assert scores["cam"]["trained"]["spearman"] == pytest.approx(1)
    assert scores["edge"]["features.0"]["ssim"] == pytest.approx(1)
    assert evaluator.examples["fc"]["cam"].shape == (2, 28, 28)


def test_sanity_evaluator_averages_its_random_draws_and_reports_their_spread():
    """Three draws of the cascade, each seeded seeds.mix(seed, draw): each stage's score is the mean
    of the three per-draw means (over 2 batches of images), its _std their standard deviation; the
    trained stage and the random-labels model are single draws (no spread). Deterministic."""
    torch.manual_seed(0)
    net = models.build_model("cnn", 4, 1, width=4, convs=(1, 1, 1), head=0).eval()
    other = models.build_model("cnn", 4, 1, width=4, convs=(1, 1, 1), head=0).eval()
    batches = [(torch.randn(3, 1, 16, 16), torch.tensor([0, 1, 2])) for _ in range(2)]

    def evaluate():
        evaluator = sanity.SanityEvaluator({"cam": registry.CAM}, seed=7, draws=3)
        for images, classes in batches:
            evaluator.accumulate(net, images, classes, other)
        return evaluator.compute()["cam"]

    scores = evaluate()
    assert scores == evaluate()
    assert list(scores) == ["trained", "fc", "features.8", "features.4", "features.0", sanity.RANDOM_LABELS]
    assert scores["trained"] == {"spearman": 1.0, "spearman_std": None, "spearman_abs": 1.0,
                                 "spearman_abs_std": None, "ssim": pytest.approx(1.0), "ssim_std": None}
    assert scores[sanity.RANDOM_LABELS]["ssim_std"] is None
    per_draw = []
    for draw in range(3):
        stages = [dict(sanity.cascading_randomization(net, lambda model: registry.raw_cam(model, images, classes),
                                                            seeds.mix(7, draw))) for images, classes in batches]
        per_draw.append(np.concatenate([sanity.similarities(maps["features.0"], registry.raw_cam(net, *batch))
                                        ["spearman"] for maps, batch in zip(stages, batches)]).mean())
    assert scores["features.0"]["spearman"] == pytest.approx(np.mean(per_draw))
    assert scores["features.0"]["spearman_std"] == pytest.approx(np.std(per_draw, ddof=1)) and np.std(per_draw) > 0


def test_sanity_evaluator_makes_the_maps_of_a_method_that_does_not_use_the_weights_once():
    """Once per batch, for every stage and the random-labels model; a method that uses the weights
    is asked again at each stage (the trained one, fc and 3 convs) and for the other model."""
    torch.manual_seed(0)
    net = models.build_model("cnn", 4, 1, width=4, convs=(1, 1, 1), head=0).eval()
    other = models.build_model("cnn", 4, 1, width=4, convs=(1, 1, 1), head=0).eval()
    calls = {"fixed": 0, "changing": 0}

    def counted(name, raw):
        def counting(model, images, classes):
            calls[name] += 1
            return raw(model, images, classes)
        return counting

    evaluator = sanity.SanityEvaluator({
        "fixed": registry.Method("fixed", "edge", baselines.edge_maps, counted("fixed", baselines.edge_raw),
                                uses_weights=False),
        "changing": registry.Method("changing", "CAM", registry.CAM.maps, counted("changing", registry.raw_cam))})
    evaluator.accumulate(net, torch.randn(2, 1, 28, 28), torch.tensor([0, 1]), other)
    assert calls == {"fixed": 1, "changing": 1 + 4 + 1}
    scores = evaluator.compute()["fixed"]
    assert all(stage["spearman"] == pytest.approx(1) for stage in scores.values())
