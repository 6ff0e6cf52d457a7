import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from datasets.ground_truth import GroundTruth, as_boxes, has_boxes, to_inclusive
from evaluation import localization

GT_BOX = np.array([20, 10, 50, 30])  # x0, y0, x1, y1 (exclusive ends): 30 x 20 pixels


def box_mask(box, size=64) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[box[1]:box[3], box[0]:box[2]] = True
    return mask


def evaluate(maps, boxes, masks, correct, **options) -> dict:
    evaluator = localization.LocalizationEvaluator(**options)
    truth = GroundTruth(as_boxes(boxes), None if masks is None else np.asarray(masks, dtype=bool))
    evaluator.accumulate(np.asarray(maps, dtype=np.float32), truth, np.asarray(correct))
    return evaluator.compute()


def test_box_iou_by_hand():
    assert localization.box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert localization.box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert localization.box_iou([0, 0, 10, 10], [10, 10, 20, 20]) == 0.0  # touching corners
    assert localization.box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0  # empty boxes
    pairwise = localization.box_iou(np.array([[0, 0, 4, 4], [0, 0, 2, 8]]), np.array([0, 0, 2, 4]))
    assert np.allclose(pairwise, [8 / 16, 8 / 16])


def test_box_of_the_largest_of_two_blobs():
    heat = np.zeros((1, 64, 64), dtype=np.float32)
    heat[0, 5:15, 5:15] = 1.0  # 100 pixels, the peak
    heat[0, 30:50, 20:60] = 0.5  # 800 pixels: the largest component above 0.2
    assert localization.boxes_from_maps(heat, 0.2).tolist() == [[20, 30, 60, 50]]
    assert localization.boxes_from_maps(heat, 0.6).tolist() == [[5, 5, 15, 15]]  # the threshold is respected
    assert localization.boxes_from_maps(heat, 0.5).tolist() == [[5, 5, 15, 15]]  # on means strictly above


def test_boxes_from_maps_batch_keeps_images_apart_and_gives_empty_boxes():
    heats = np.zeros((3, 8, 8), dtype=np.float32)
    heats[0, 7, :] = 1.0  # touches the bottom edge: must not join the next image's top edge
    heats[1, 0, 2:4] = 1.0
    boxes, areas = localization.component_boxes(heats > 0.5)[1:]
    assert boxes.tolist() == [[0, 7, 8, 8], [2, 0, 4, 1]] and areas.tolist() == [8, 2]
    assert localization.boxes_from_maps(heats).tolist() == [[0, 7, 8, 8], [2, 0, 4, 1], [0, 0, 0, 0]]


def test_diagonal_pixels_are_one_component():
    heat = np.eye(6, dtype=np.float32)[None]
    assert localization.boxes_from_maps(heat).tolist() == [[0, 0, 6, 6]]


@pytest.mark.parametrize("shape, pattern", [((40, 12, 10), "random"), ((120, 64, 64), "random"),
                                            ((130, 64, 64), "isolated"),
                                            pytest.param((2, 400, 5000), "random", marks=pytest.mark.slow)])
def test_component_boxes_are_scipys_8_connected_components_mask_by_mask(shape, pattern):
    """The stacked calls (each mask's lit rows only, empty rows inside a mask kept) against
    scipy.ndimage.label on each mask alone: sparse random masks, with (from 3 masks on) an empty one
    and one of two pixels with empty rows above, between and below them. In one call (40 masks of
    12 x 10); in two calls of 16-bit labels (about 7,700 stacked rows of 64 x 64 masks, at most
    4,094 a call); with 131,072 one-pixel components (every other pixel of every other row of 128
    masks), nearly as many per call as 16-bit labels hold; and 5,000 px wide, where a mask's 401
    rows need 32-bit labels (16 bits allow 52 rows a call; these hold more than 65,535 components)."""
    on = np.random.default_rng(0).random(shape) > 0.8
    if pattern == "isolated":
        on[:] = False
        on[:, ::2, ::2] = True
    if len(on) >= 3:
        on[1:3] = False
        on[2, 2, 1] = on[2, -3, -2] = True
    owner, boxes, areas = localization.component_boxes(on)
    for n, mask in enumerate(on):
        labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
        sizes = np.bincount(labels.ravel())
        expected = sorted((box[1].start, box[0].start, box[1].stop, box[0].stop, int(sizes[k + 1]))
                          for k, box in enumerate(ndimage.find_objects(labels)))
        found = sorted((*box, area) for box, area in zip(boxes[owner == n].tolist(), areas[owner == n].tolist()))
        assert found == [tuple(item) for item in expected] and len(found) == count, n


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threshold_levels_say_which_thresholds_each_value_is_strictly_above(dtype):
    """maps > thresholds[k] (in float64) exactly where levels > k: with values equal to thresholds
    (0, 0.5 and every float64 one) and NaN, which is above none."""
    thresholds = localization.threshold_sweep(0.1)
    maps = np.round(np.random.default_rng(3).random((4, 5, 6)), 1).astype(dtype)
    maps[0, 0, :3] = np.nan
    levels = localization.threshold_levels(maps, thresholds)
    assert levels.dtype == np.uint8 and levels.min() == 0 and levels.max() == len(thresholds)
    for k, threshold in enumerate(thresholds):
        assert np.array_equal(levels > k, maps.astype(np.float64) > threshold), threshold
    assert localization.threshold_levels(maps, localization.threshold_sweep(0.001)).dtype == np.uint16


@pytest.mark.parametrize("step", [0.1, 0.002])  # 10 thresholds: uint8 levels; 500: uint16
def test_the_sweep_boxes_the_components_of_map_above_each_threshold(step):
    """sweep_ious labels the maps' threshold_levels: the same IoUs as labelling map > t at each
    threshold, with values lying on the thresholds, a constant map and an empty one."""
    rng = np.random.default_rng(4)
    small = torch.tensor(rng.random((6, 1, 5, 5)))
    maps = np.round(F.interpolate(small, size=20, mode="bilinear")[:, 0].numpy(), 1)  # float64
    maps[4], maps[5] = 0.5, 0.0
    truth = np.tile(np.array([[[1, 2, 9, 15], [8, 8, 20, 18]]]), (6, 1, 1))
    thresholds = localization.threshold_sweep(step)
    largest, best = localization.sweep_ious(localization.threshold_levels(maps, thresholds), truth, len(thresholds))
    for t, threshold in enumerate(thresholds):
        owner, boxes, areas = localization.component_boxes(maps > threshold)
        expected_best = np.zeros(len(maps))
        np.maximum.at(expected_best, owner, localization.best_iou(boxes, truth[owner]))
        expected_largest = localization.best_iou(localization.boxes_from_maps(maps, threshold), truth)
        assert np.array_equal(best[:, t], expected_best) and np.array_equal(largest[:, t], expected_largest), threshold
    assert best[5].max() == 0 and 0 < best[:4].mean() < 1


def test_the_evaluator_refuses_thresholds_out_of_order():
    with pytest.raises(ValueError, match="ascending"):
        localization.LocalizationEvaluator(np.array([0.0, 0.5, 0.2]))


def test_a_map_shared_by_every_image_is_labelled_once_with_the_same_ious():
    """The center baseline's map is the same for every image: sweep_ious labels it once per threshold
    and gives each image what labelling its own copy gives."""
    heat = np.random.default_rng(1).random((16, 16)).astype(np.float32)
    maps = np.repeat(heat[None], 3, axis=0)
    truth = np.array([[0, 0, 8, 8], [4, 4, 16, 16], [2, 9, 5, 12]])
    thresholds = localization.threshold_sweep(0.05)
    levels = localization.threshold_levels(maps, thresholds)
    one_by_one = [localization.sweep_ious(levels[n:n + 1], truth[n:n + 1], len(thresholds)) for n in range(3)]
    shared = localization.sweep_ious(levels, truth, len(thresholds))
    for which in (0, 1):
        assert np.array_equal(shared[which], np.concatenate([ious[which] for ious in one_by_one]))
    assert shared[1][:, 10].tolist() != [shared[1][0, 10]] * 3  # the images' own boxes still decide


def test_the_sweep_skips_padding_rows_among_the_true_boxes():
    """An image with fewer true boxes than others has rows of -1: the same IoUs as without them."""
    rng = np.random.default_rng(2)
    small = torch.tensor(rng.random((7, 1, 6, 6), dtype=np.float32))
    maps = F.interpolate(small, size=24, mode="bilinear")[:, 0].numpy()
    maps = (maps - maps.min(axis=(1, 2), keepdims=True)) / np.ptp(maps, axis=(1, 2), keepdims=True)
    truth = np.tile(np.array([[[2, 3, 12, 15], [-1, -1, -1, -1]]]), (7, 1, 1))
    thresholds = localization.threshold_sweep(0.05)
    levels = localization.threshold_levels(maps, thresholds)
    padded = localization.sweep_ious(levels, truth, len(thresholds))
    assert 0 < padded[1].mean() < 1
    assert all(np.array_equal(a, b) for a, b in zip(padded, localization.sweep_ious(levels, truth[:, :1],
                                                                                    len(thresholds))))


def test_a_map_equal_to_the_mask_scores_100():
    mask = box_mask(GT_BOX)
    result = evaluate([mask], [GT_BOX], [mask], [True])
    for metric in ("top1_loc", "gt_known_loc", "max_box_acc", "max_box_acc_v2", "pxap"):
        assert result[metric] == pytest.approx(100.0), metric


def test_a_map_that_is_zero_on_the_object_scores_0():
    mask = box_mask(GT_BOX)
    heat = np.zeros((64, 64), dtype=np.float32)
    heat[40:60, 0:15] = 1.0  # elsewhere
    heat[45:50, 30:64] = 0.3  # a weaker second blob, also off the object
    result = evaluate([heat], [GT_BOX], [mask], [True])
    for metric in ("top1_loc", "gt_known_loc", "max_box_acc", "max_box_acc_v2", "pxap"):
        assert result[metric] == 0.0, metric
    zeros = evaluate([np.zeros((64, 64))], [GT_BOX], [mask], [True])  # a constant map: nothing on, no NaN
    assert zeros["max_box_acc_v2"] == 0.0 and zeros["pxap"] == 0.0


def test_known_iou_decides_the_box_accuracies():
    # The map's box is GT_BOX shifted right by 10 px: IoU = 20 * 20 / (2 * 600 - 400) = 0.5 exactly
    shifted = box_mask(GT_BOX + [10, 0, 10, 0]).astype(np.float32)
    assert localization.box_iou(GT_BOX + [10, 0, 10, 0], GT_BOX) == 0.5
    result = evaluate([shifted], [GT_BOX], [box_mask(GT_BOX)], [True])
    assert result["gt_known_loc"] == 100.0 and result["max_box_acc"] == 100.0
    assert result["max_box_acc_v2_by_iou"] == {"0.3": 100.0, "0.5": 100.0, "0.7": 0.0}
    assert result["max_box_acc_v2"] == pytest.approx(200 / 3)
    assert evaluate([shifted], [GT_BOX], [box_mask(GT_BOX)], [False])["top1_loc"] == 0.0  # wrong class


def test_v2_counts_any_component_but_maxboxacc_only_the_largest():
    heat = box_mask(GT_BOX).astype(np.float32) * 0.8  # on the object, 600 pixels
    heat[40:64, 0:64] = 1.0  # a larger blob elsewhere, 1536 pixels
    result = evaluate([heat], [GT_BOX], [box_mask(GT_BOX)], [True])
    assert result["max_box_acc"] == 0.0 and result["gt_known_loc"] == 0.0
    assert result["max_box_acc_v2"] == 100.0


def test_one_best_threshold_is_chosen_over_the_sweep():
    # low: the object at 0.25 with a small peak at 1.0; its box is right only below 0.25.
    low = box_mask(GT_BOX) * 0.25
    low[12:15, 22:25] = 1.0
    # high: the object at 1.0 on a background at 0.5; its box is right only from 0.5 on.
    high = box_mask(GT_BOX) * 0.5 + 0.5
    result = evaluate([low, high, high], [GT_BOX] * 3, [box_mask(GT_BOX)] * 3, [True] * 3)
    curve = result["curves"]["box_acc_largest_iou0.5"]
    assert curve[10] == pytest.approx(100 / 3) and curve[30] == 0.0 and curve[70] == pytest.approx(200 / 3)
    assert result["max_box_acc"] == pytest.approx(200 / 3) and result["max_box_acc_threshold"] == 0.5


def test_pxap_by_hand():
    # Half of the object at 1.0, the other half and an equal background area at 0.5, the rest 0:
    # above 0.5: precision 1, recall 1/2; above 0.0: precision 2/3, recall 1.
    mask = box_mask(GT_BOX)
    heat = np.zeros((64, 64), dtype=np.float32)
    heat[10:30, 20:35] = 1.0
    heat[10:30, 35:50] = 0.5
    heat[40:60, 0:15] = 0.5
    result = evaluate([heat], [GT_BOX], [mask], [True])
    assert result["pxap"] == pytest.approx(100 * (0.5 * 1 + 0.5 * 2 / 3))


def test_accumulating_in_batches_equals_one_pass():
    rng = np.random.default_rng(0)
    maps = rng.random((6, 32, 32)).astype(np.float32)
    boxes = np.array([[2, 3, 20, 25]] * 6)
    masks = np.stack([box_mask(box, 32) for box in boxes])
    correct = np.array([True, False, True, True, False, True])
    whole = evaluate(maps, boxes, masks, correct)
    evaluator = localization.LocalizationEvaluator()
    for start in range(0, 6, 4):
        truth = GroundTruth(boxes[start:start + 4, None], masks[start:start + 4])
        evaluator.accumulate(maps[start:start + 4], truth, correct[start:start + 4])
    assert evaluator.compute() == whole


def test_at_threshold_reads_the_curves_at_the_nearest_threshold_of_the_sweep():
    maps = np.zeros((2, 8, 8), dtype=np.float32)
    maps[:, 2:6, 2:6] = 0.5
    maps[:, 3:5, 3:5] = 1.0
    boxes = np.array([[2, 2, 6, 6], [3, 3, 5, 5]])
    metrics = evaluate(maps, boxes, np.zeros((2, 8, 8), bool), np.array([True, False]))
    low, high = localization.at_threshold(metrics, 0.3), localization.at_threshold(metrics, 0.702)
    assert low == {"threshold": 0.3, "top1_loc": 50.0, "gt_known_loc": 50.0}  # the 4x4 box: image 0 only
    assert high == {"threshold": 0.7, "top1_loc": 0.0, "gt_known_loc": 50.0}  # the 2x2 box: image 1, misclassified


def test_inclusive_iou_counts_the_last_pixel_by_hand():
    """wsolevaluation's IoU (calculate_multiple_iou): widths and heights are x1 - x0 + 1."""
    assert localization.box_iou([0, 0, 1, 1], [1, 1, 2, 2]) == 0.0  # exclusive: two 1x1 boxes apart
    # 2 x 2 boxes sharing 1 pixel
    assert localization.box_iou([0, 0, 1, 1], [1, 1, 2, 2], inclusive=True) == pytest.approx(1 / 7)
    assert localization.box_iou([0, 0, 0, 0], [0, 0, 0, 0], inclusive=True) == 1.0  # one pixel, not an empty box
    assert localization.box_iou([2, 2, 6, 5], [2, 2, 5, 4], inclusive=True) == pytest.approx(12 / 20)


def test_the_best_matching_true_box_counts_and_padding_rows_do_not():
    heat = np.zeros((1, 32, 32), dtype=np.float32)
    heat[0, 2:5, 2:6] = 1
    far, near, padding = [20, 20, 30, 30], [2, 2, 6, 5], [0, 0, -1, -1]
    for inclusive in (False, True):
        hit = GroundTruth(np.array([[far, near, padding]]), inclusive=inclusive)
        missed = GroundTruth(np.array([[far, padding, padding]]), inclusive=inclusive)
        scores = [localization.LocalizationEvaluator() for _ in range(2)]
        scores[0].accumulate(heat, hit, np.ones(1, bool))
        scores[1].accumulate(heat, missed, np.ones(1, bool))
        hit_scores, missed_scores = scores[0].compute(), scores[1].compute()
        assert hit_scores["gt_known_loc"] == 100.0 and missed_scores["gt_known_loc"] == 0.0
        assert hit_scores["max_box_acc"] == 100.0 and missed_scores["max_box_acc_v2"] == 0.0
        assert hit_scores["pxap"] is None  # no masks
        assert hit_scores["box_convention"] == localization.BOX_CONVENTIONS[inclusive]


def test_inclusive_boxes_are_wsolevaluations_contour_boxes_by_hand():
    """cv2.boundingRect's (x, y, x + w, y + h) reaches one pixel past the region, clipped at W - 1;
    so a map covering the true pixels [2..5] x [2..4] exactly scores IoU 12 / 20 = 0.6 inclusive."""
    heat = np.zeros((8, 8), dtype=np.float32)
    heat[2:5, 2:6] = 1
    boxes, largest = localization.contour_boxes(heat, 0.5)
    assert boxes.tolist() == [[2, 2, 6, 5]] and largest.tolist() == [2, 2, 6, 5]
    heat[:, 5:] = 1  # now touching the right edge: x + w = 8, clipped to 7
    assert localization.contour_boxes(heat, 0.5)[1].tolist() == [2, 0, 7, 7]
    assert localization.contour_boxes(np.zeros((8, 8)), 0.1)[1].tolist() == [0, 0, 0, 0]  # nothing on
    heat = np.zeros((1, 8, 8), dtype=np.float32)
    heat[0, 2:5, 2:6] = 1
    truth = to_inclusive(GroundTruth(np.array([[[2, 2, 6, 5]]])))
    assert truth.boxes.tolist() == [[[2, 2, 5, 4]]] and truth.inclusive
    evaluator = localization.LocalizationEvaluator()
    evaluator.accumulate(heat, truth, np.ones(1, bool))
    scores = evaluator.compute()
    assert scores["max_box_acc_v2_by_iou"] == {"0.3": 100.0, "0.5": 100.0, "0.7": 0.0}  # 0.6 < 0.7
    assert scores["max_box_acc_v2"] == pytest.approx(200 / 3)


def test_pxap_leaves_ignored_pixels_out():
    heat = np.zeros((1, 4, 4), dtype=np.float32)
    heat[0, 0, :2] = 1.0  # two pixels on: one in the mask, one ignored
    masks, ignore = np.zeros((1, 4, 4), bool), np.zeros((1, 4, 4), bool)
    masks[0, 0, 0], ignore[0, 0, 1] = True, True
    evaluator = localization.LocalizationEvaluator()
    evaluator.accumulate(heat, GroundTruth(np.array([[[0, 0, 1, 1]]]), masks, ignore), np.ones(1, bool))
    assert evaluator.compute()["pxap"] == pytest.approx(100.0)  # without the ignore mask: 50


def test_ground_truth_with_masks_only_gives_pxap_and_no_box_metrics():
    """OpenImages: masks, no boxes; the box metrics are None rather than a 0 that reads as a miss."""
    maps = np.zeros((2, 8, 8))
    maps[:, 2:4, 2:4] = 1.0
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[:, 2:4, 2:4] = True
    truth = GroundTruth(boxes=np.zeros((2, 0, 4), dtype=np.int64), masks=masks,
                                     ignore=np.zeros_like(masks), inclusive=True)
    evaluator = localization.LocalizationEvaluator()
    evaluator.accumulate(maps, truth, np.ones(2, dtype=bool))
    metrics = evaluator.compute()
    assert metrics["pxap"] == pytest.approx(100.0)  # the map is the mask
    assert metrics["max_box_acc_v2"] is None and metrics["top1_loc"] is None and metrics["max_box_acc_v2_by_iou"] == {}
    assert "box_acc_largest_iou0.5" not in metrics["curves"] and "pixel_recall" in metrics["curves"]
    assert not has_boxes(truth)


def test_weighting_the_images_scores_what_repeating_them_scores():
    """statistics(weights) under a bootstrap resample's weights is compute() on the images repeated
    that many times: every metric, the operating curves and PxAP (whose pixel counts are per image)."""
    rng = np.random.default_rng(0)
    maps = rng.random((8, 32, 32)).astype(np.float32)
    maps[:, 4:20, 4:24] += 0.6  # most boxes found at some threshold
    boxes = np.array([[4, 4, 24, 20], [2, 2, 30, 30]] * 4)
    masks = np.stack([box_mask(box, 32) for box in boxes])
    correct = np.array([True, False, True, True, False, True, True, True])
    evaluator = localization.LocalizationEvaluator()
    evaluator.accumulate(maps / maps.max(), GroundTruth(boxes[:, None], masks), correct)
    repeats = np.array([0, 3, 1, 0, 2, 1, 1, 0])
    chosen = np.repeat(np.arange(8), repeats)
    repeated = evaluate(maps[chosen] / maps.max(), boxes[chosen], masks[chosen], correct[chosen])
    weighted = {name: values[0] for name, values in evaluator.statistics(repeats[None].astype(float)).items()}
    for name in ("top1_loc", "gt_known_loc", "max_box_acc", "max_box_acc_v2", "pxap"):
        assert weighted[name] == pytest.approx(repeated[name]), name
    assert weighted["classification_top1"] == pytest.approx(100 * correct[chosen].mean())
    np.testing.assert_allclose(weighted["curve.top1_loc"], repeated["curves"]["top1_loc"])
    np.testing.assert_allclose(weighted["curve.pixel_recall"], repeated["curves"]["pixel_recall"])


def test_masks_that_are_all_empty_give_no_pxap_and_say_how_many_mask_pixels_there_were():
    """OpenImages with every mask of the split empty: PxAP is undefined (None), not the 0.0 it read
    as for every method; mask_pixels says why."""
    maps = np.random.default_rng(0).random((2, 8, 8))
    truth = GroundTruth(boxes=np.zeros((2, 0, 4), dtype=np.int64), masks=np.zeros((2, 8, 8), dtype=bool),
                        ignore=np.zeros((2, 8, 8), dtype=bool), inclusive=True)
    evaluator = localization.LocalizationEvaluator()
    evaluator.accumulate(maps, truth, np.ones(2, dtype=bool))
    metrics = evaluator.compute()
    assert metrics["pxap"] is None and metrics["mask_pixels"] == 0
    assert evaluate(maps, [GT_BOX] * 2, None, [True, True])["mask_pixels"] is None  # no masks at all
