import numpy as np
from helpers import assert_drawn
from PIL import Image

from datasets.ground_truth import GroundTruth
from evaluation import figures, localization, results


def localization_result(threshold: float = 0.3) -> results.LocalizationResult:
    """The localization record of a map that covers its box exactly, measured on 2 images."""
    maps, masks = np.zeros((2, 8, 8)), np.zeros((2, 8, 8), bool)
    maps[:, 2:5, 2:6], masks[:, 2:5, 2:6] = 1, True
    evaluator = localization.LocalizationEvaluator()
    evaluator.accumulate(maps, GroundTruth(np.array([[[2, 2, 6, 5]]] * 2), masks), np.ones(2, bool))
    return results.LocalizationResult(classification_top1=100.0, **evaluator.compute(),
                                      operating=results.OperatingPoint(threshold, 100.0, 100.0))


def test_examples_figure_draws_a_grid_of_boxed_maps(tmp_path):
    image, heat = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.float32)
    heat[2:6, 2:6] = 1.0
    examples = [figures.Example(index, image, heat, np.array([1, 1, 5, 5]), "shirt", predicted,
                                box=np.array([2, 2, 6, 6])) for index, predicted in ((3, "shirt"), (7, "bag"))]
    figures.examples_figure(examples, tmp_path / "examples.png")
    assert Image.open(tmp_path / "examples.png").size == (420, 240)  # 2 columns of 2.1 in, 1 row of 2.4 in, 100 dpi
    assert_drawn(tmp_path / "examples.png")


def test_threshold_and_removal_curves_figures(tmp_path):
    figures.threshold_curves_figure([("CAM", localization_result()), ("other", localization_result(0.5))],
                                    tmp_path / "thresholds.png")
    curve = [1.0, 0.5, 0.25]
    faithful = results.FaithfulnessResult(2, 0.5, 0.6, 10.0, 50.0, 100.0, 80.0, {"deletion": curve, "insertion": curve},
                                          {"deletion_auc": [0.5, 0.5], "insertion_auc": [0.6, 0.6]})
    figures.removal_curves_figure([("CAM", faithful)], tmp_path / "removal.png")
    for name in ("thresholds.png", "removal.png"):
        assert Image.open(tmp_path / name).size == (1100, 400)
        assert_drawn(tmp_path / name)


def test_cascade_figure_has_a_row_per_map_and_a_column_per_stage(tmp_path):
    stages = ("trained", "fc", "features.0")
    maps = np.random.default_rng(0).random((8, 8))
    rows = [("image 0", dict.fromkeys(stages, maps)), ("edge (Sobel)\nimage 0", dict.fromkeys(stages, maps))]
    figures.cascade_figure(rows, tmp_path / "cascade.png")
    assert Image.open(tmp_path / "cascade.png").size == (390, 290)
    assert_drawn(tmp_path / "cascade.png")


def test_sanity_curves_figure_draws_each_methods_mean_and_spread_per_stage(tmp_path):
    def stage(mean: float, deviation: float | None) -> results.Similarities:
        return results.Similarities(mean, abs(mean), mean, deviation, deviation, deviation)

    cam = results.SanityResult({"trained": stage(1.0, None), "fc": stage(0.1, 0.05), "features.0": stage(-0.1, 0.2)})
    edge = results.SanityResult(dict.fromkeys(("trained", "fc", "features.0"), stage(1.0, 0.0)))
    figures.sanity_curves_figure([("CAM", cam), ("edge", edge)], tmp_path / "sanity.png")
    assert Image.open(tmp_path / "sanity.png").size == (1100, 400)
    assert_drawn(tmp_path / "sanity.png")
