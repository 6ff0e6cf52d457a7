from evaluation import results, sanity


def last_stage(spearman: float, std: float | None) -> results.SanityResult:
    """A cascade that ends at a Spearman correlation of spearman ± std over its draws."""
    trained = results.Similarities(1.0, 1.0, 1.0)
    return results.SanityResult({"trained": trained, "fc": trained,
                                 "features.0": results.Similarities(spearman, abs(spearman), 0.0, std, std, 0.0)})


def test_a_method_passes_the_cascade_when_every_draw_ends_uncorrelated():
    limit = sanity.UNCORRELATED
    assert last_stage(0.0, 0.01).passes_cascade and last_stage(-0.05, 0.05).passes_cascade  # 0.15 < 0.2
    assert last_stage(0.05, None).passes_cascade  # one draw: its correlation alone
    assert not last_stage(limit - 0.1, 0.06).passes_cascade  # a draw may be 0.22: not robustly uncorrelated
    assert not last_stage(-0.5, 0.01).passes_cascade  # anticorrelated still depends on the weights' absence
    assert not last_stage(0.18, 0.47).passes_cascade  # Eigen-CAM's arbitrary sign: draws of both signs
