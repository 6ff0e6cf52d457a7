import numpy as np

from datasets.ground_truth import GroundTruth
from evaluation import group_runs, intervals, localization, registry, results, tables

IMAGES = 200


def faithfulness_result(per_image: dict[str, np.ndarray]) -> results.FaithfulnessResult:
    """A method's record whose means are those of its per-image scores."""
    means = {name: float(np.mean(values)) for name, values in per_image.items()}
    return results.FaithfulnessResult(IMAGES, **means, curves={},
                                      per_image={name: values.tolist() for name, values in per_image.items()})


def report_of(scores: dict[str, results.FaithfulnessResult], located: results.LocalizationGroup | None = None
              ) -> results.Report:
    """A report of the faithfulness group over IMAGES images, intervals attached as evaluate_cam.py does."""
    group_runs.faithfulness_intervals(scores, intervals.Resamples.draw(IMAGES, 500, seed=0), None)
    reliability = {name: intervals.rank_reliability(np.stack([r.per_image[name] for r in scores.values()], 1))
                   for name in next(iter(scores.values())).per_image}
    group = results.FaithfulnessGroup(IMAGES, 16, "blur", 0, 0.0, None, 1.0, scores, None, reliability, 500, 0.1)
    chosen = [method for method in (registry.CAM, registry.RANDOM, registry.EDGE) if method.key in scores]
    return results.Report("run.pt", {"name": "fashion-mnist-cluttered"}, "test", ["faithfulness"], chosen, 250,
                          None, located, group, None, 2.0)


def per_image(deletion: float, insertion: float, noise: np.ndarray) -> dict[str, np.ndarray]:
    """Scores around the given means, with the same image-to-image variation for every method."""
    common = {"average_drop": 30 + noise, "increase": 10 + 0 * noise, "pointing_game": 50 + 0 * noise,
              "energy_pointing_game": 40 + noise}
    return {"deletion_auc": deletion + noise / 100, "insertion_auc": insertion + noise / 100, **common}


def test_a_metric_that_cannot_rank_cam_above_the_edge_map_is_flagged_and_one_that_can_is_not():
    """Deletion gives CAM and the edge map the same per-image scores: "cannot tell", flagged;
    insertion ranks CAM above both baselines on every image: "CAM better", not flagged."""
    noise = np.random.default_rng(0).normal(0, 5, IMAGES)
    report = report_of({"cam": faithfulness_result(per_image(0.30, 0.80, noise)),
                        "random": faithfulness_result(per_image(0.60, 0.50, noise)),
                        "edge": faithfulness_result(per_image(0.30, 0.60, noise))})
    text = tables.discrimination_section(report)
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "CAM better (-30.0 [-30.0, -30.0])" in rows["deletion AUC ↓"]  # against random
    assert "cannot tell (+0.0 [+0.0, +0.0])" in rows["deletion AUC ↓"]  # against edge
    assert rows["insertion AUC ↑"].count("CAM better") == 2
    flagged = text.split("**")[1]
    assert "deletion AUC" in flagged and "insertion AUC" not in flagged
    assert " 1.00 |" in rows["insertion AUC ↑"]  # every image ranks CAM, edge, random alike by insertion


def test_each_method_is_said_better_worse_or_no_different_from_cam_by_its_paired_interval():
    noise = np.random.default_rng(1).normal(0, 5, IMAGES)
    report = report_of({"cam": faithfulness_result(per_image(0.30, 0.80, noise)),
                        "edge": faithfulness_result(per_image(0.25, 0.70, noise))})
    text = tables.differences_section(report)
    edge = next(line for line in text.splitlines() if line.startswith("- edge"))
    assert "better on deletion AUC" in edge and "worse on" in edge and "insertion AUC" in edge.split("worse on")[1]
    assert "no difference on" in edge and "average drop" in edge.split("no difference on")[1]
    assert "| method | pointing game ↑ |" in text  # no localization group: no MaxBoxAccV2 or PxAP column
    assert "-5.0 [-5.0, -5.0]" in text


def test_the_summary_shows_each_number_with_its_interval():
    noise = np.random.default_rng(2).normal(0, 5, IMAGES)
    report = report_of({"cam": faithfulness_result(per_image(0.30, 0.80, noise))})
    cam = report.methods["cam"].faithfulness
    low, high = (100 * bound for bound in cam.intervals["deletion_auc"])
    assert low < 100 * cam.deletion_auc < high
    assert f"{100 * cam.deletion_auc:.1f} [{low:.1f}, {high:.1f}]" in tables.summary_table(report)
    header, rows = tables.summary_rows(report)
    assert rows[0][header.index("deletion AUC ↓")] == (100 * cam.deletion_auc, f"[{low:.1f}, {high:.1f}]")
    assert tables.differences_section(report) == ""  # CAM alone: nothing to compare


def test_the_localization_note_says_when_every_mask_is_empty():
    """OpenImages whose masks of the split are all empty: PxAP is "—" and the note says why."""
    evaluator = localization.LocalizationEvaluator()
    masks = np.zeros((2, 8, 8), dtype=bool)
    truth = GroundTruth(np.zeros((2, 0, 4), dtype=np.int64), masks, masks, inclusive=True)
    evaluator.accumulate(np.random.default_rng(0).random((2, 8, 8)), truth, np.ones(2, bool))
    scores = results.LocalizationResult(classification_top1=100.0, **evaluator.compute(), equals_cam_max_diff=0.0)
    group = results.LocalizationGroup(2, False, 0.2, 0.01, 1.0, 1.0, {"cam": scores}, {})
    report = results.Report("run.pt", {"name": "openimages"}, "test", ["localization"], [registry.CAM], 250, None,
                            group, None, None, 1.0)
    note = tables.localization_note(report)
    row = next(line for line in note.splitlines() if line.startswith(f"| {registry.CAM.name}"))
    assert row.endswith("| — |") and "every mask of these images is empty" in note  # the PxAP cell, and why

