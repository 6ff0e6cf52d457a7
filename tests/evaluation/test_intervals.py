import numpy as np
import pytest
import scipy.stats

from evaluation import intervals


def test_each_resample_draws_every_image_count_times_in_all_and_repeats_with_its_seed():
    resamples = intervals.Resamples.draw(50, 200, seed=3)
    assert resamples.weights.shape == (200, 50) and (resamples.weights.sum(axis=1) == 50).all()
    np.testing.assert_array_equal(resamples.weights[7], np.bincount(resamples.indices[7], minlength=50))
    np.testing.assert_array_equal(resamples.indices, intervals.Resamples.draw(50, 200, seed=3).indices)
    assert not np.array_equal(resamples.indices, intervals.Resamples.draw(50, 200, seed=4).indices)


def test_the_interval_of_a_mean_is_scipys_percentile_bootstrap():
    """The weights' means give the percentile interval scipy.stats.bootstrap gives (another draw of
    resamples, so equal within the bootstrap's own noise)."""
    values = np.random.default_rng(0).exponential(size=200)
    ours = intervals.interval(intervals.Resamples.draw(len(values), 4000, seed=0).means(values))
    theirs = scipy.stats.bootstrap((values,), np.mean, n_resamples=4000, method="percentile",
                                   confidence_level=intervals.LEVEL / 100, rng=np.random.default_rng(1))
    np.testing.assert_allclose(ours, [theirs.confidence_interval.low, theirs.confidence_interval.high], atol=0.02)


def test_the_interval_covers_the_true_rate_about_95_times_in_100():
    generator, covered = np.random.default_rng(0), 0
    for trial in range(200):
        hits = generator.random(300) < 0.8
        low, high = intervals.interval(intervals.Resamples.draw(300, 500, seed=trial).means(hits))
        covered += low <= 0.8 <= high
    assert 0.90 <= covered / 200 <= 0.99


def test_a_paired_difference_sees_a_small_shift_that_unpaired_intervals_overlap():
    """Two methods whose per-image scores differ by 0.01 on every image (and vary by 0.3 between
    images): their intervals overlap, their paired difference is exactly the shift, away from 0."""
    scores = np.random.default_rng(1).normal(0.5, 0.3, size=400)
    resamples = intervals.Resamples.draw(400, 1000, seed=0)
    samples, shifted = resamples.means(scores), resamples.means(scores + 0.01)
    intervals_, differences = intervals.summarize({"score": scores.mean() + 0.01}, {"score": shifted},
                                                  {"score": samples}, {"score": scores.mean()})
    low, high = intervals.interval(samples)
    assert intervals_["score"][0] < high and low < intervals_["score"][1]  # they overlap
    assert differences["score"].value == pytest.approx(0.01)
    np.testing.assert_allclose(differences["score"].interval, [0.01, 0.01])
    assert not differences["score"].covers_zero


def test_equal_scores_show_no_difference_and_a_statistic_not_measured_has_none():
    scores = np.linspace(0, 1, 30)
    resamples = intervals.Resamples.draw(30, 100, seed=0)
    _, differences = intervals.summarize({"score": 0.5, "pxap": None}, {"score": resamples.means(scores)},
                                         {"score": resamples.means(scores)}, {"score": 0.5, "pxap": None})
    assert differences["score"].covers_zero and set(differences) == {"score"}
    assert intervals.interval(np.full(10, np.nan)) is None


def test_rank_reliability_is_one_when_every_image_ranks_the_methods_alike_and_near_zero_at_random():
    alike = np.tile([0.1, 0.5, 0.9], (20, 1)) + np.random.default_rng(0).normal(0, 0.01, (20, 1))
    assert intervals.rank_reliability(alike) == pytest.approx(1.0)
    assert intervals.rank_reliability(-alike) == pytest.approx(1.0)  # the direction does not matter
    random = np.random.default_rng(0).random((2000, 4))
    assert abs(intervals.rank_reliability(random)) < 0.02
    reversed_halves = np.vstack([np.tile([1.0, 2.0], (10, 1)), np.tile([2.0, 1.0], (10, 1))])
    assert intervals.rank_reliability(reversed_halves) < 0  # half the images rank them one way, half the other


def test_rank_reliability_is_undefined_for_ties_throughout_or_a_single_method():
    assert intervals.rank_reliability(np.ones((10, 3))) is None
    assert intervals.rank_reliability(np.random.default_rng(0).random((10, 1))) is None
