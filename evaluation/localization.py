"""Boxes from class activation maps, and the metrics of weakly supervised object localization.

Conventions, shared by every function here:
- a map (heat) is a float array (H, W), min-max normalized to [0, 1], at the image's resolution;
- at threshold t a pixel is "on" when heat > t (strictly, as OpenCV's THRESH_BINARY);
- a box is (x0, y0, x1, y1) in pixels with exclusive ends (width = x1 - x0); no pixel on gives
  the empty box (0, 0, 0, 0), whose IoU with anything is 0;
- components are 8-connected.

Box rule of the CAM paper (Zhou et al. 2016): threshold at 20% (of the normalized map), take the
bounding box of the largest connected component (largest by pixel count). The metrics follow
Choe et al., "Evaluating Weakly Supervised Object Localization Methods Right" (CVPR 2020):
MaxBoxAcc, MaxBoxAccV2 and PxAP; see `LocalizationEvaluator`.
"""

import cv2
import numpy as np

from datasets.ground_truth import GroundTruth, as_boxes

CAM_THRESHOLD = 0.2  # the CAM paper's box rule: the largest region above 20% of the normalized map
THRESHOLD_STEP = 0.01  # the threshold sweep of MaxBoxAcc, MaxBoxAccV2 and PxAP: 0.00, 0.01, ..., 0.99
LABELS_16_BIT = np.iinfo(np.uint16).max  # OpenCV's 16-bit labels: a labelling call's labels (background too) below it


def threshold_sweep(step: float = THRESHOLD_STEP) -> np.ndarray:
    """The thresholds 0, step, 2 * step, ... below 1, rounded to 6 decimals: (T,) floats in [0, 1)."""
    return np.round(np.arange(0, 1, step), 6)


DEFAULT_THRESHOLDS = threshold_sweep()
IOU_THRESHOLDS = (0.3, 0.5, 0.7)  # MaxBoxAccV2 averages over these
BOX_CONVENTIONS = {  # LocalizationEvaluator.compute()'s "box_convention", by GroundTruth.inclusive
    False: "exclusive ends, boxes of 8-connected components of map > t",
    True: "inclusive ends (+1 widths) and wsolevaluation's boxes (8-bit map > int(255 t), cv2 contours)",
}


def threshold_levels(maps: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many of the ascending thresholds (T,) lie strictly below each value of maps (N, H, W):
    unsigned ints (N, H, W) in [0, T], the smallest type that holds T, so that maps > thresholds[k]
    exactly where levels > k, the maps compared in float64 (whatever numpy's version) and NaN above
    none."""
    levels = np.searchsorted(thresholds, maps, side="left").astype(np.min_scalar_type(len(thresholds)))
    levels[np.isnan(maps)] = 0  # searchsorted sorts NaN last: above every threshold
    return levels


def stacked_rows(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """levels (N, H, W) (unsigned ints, or bool) as component_boxes reads them: (their rows
    (N * H + 1, W) with a row of zeros last, each row's maximum (N, H))."""
    count, height, width = levels.shape
    return np.vstack([levels.reshape(count * height, width), np.zeros((1, width), levels.dtype)]), levels.max(axis=2)


def component_boxes(levels: np.ndarray, above: int = 0, rows: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 8-connected components of levels > above, for a batch of levels (N, H, W) (unsigned ints
    from threshold_levels, or bool masks with above 0), with few OpenCV calls (component_stats):
    (image index int64 (M,), boxes int64 (M, 4), pixel counts int64 (M,)) for the M components, by
    image (within one, in OpenCV's labelling order). rows: stacked_rows(levels), when the same
    levels are labelled at several values of `above`. Each image's rows from its first to its last with a
    pixel on are stacked into one tall image with a row of zeros after each image, so that no
    component crosses from one image into the next, and OpenCV reads no row that holds nothing."""
    count, height, _ = levels.shape
    padded, peaks = rows if rows is not None else stacked_rows(levels)
    lit = peaks > above  # (N, H)
    has = lit.any(axis=1)
    first = lit.argmax(axis=1)
    lengths = np.where(has, height - lit[:, ::-1].argmax(axis=1) - first, 0)  # rows first..last
    blocks = lengths + has  # and the row of zeros after them
    if not blocks.any():
        return np.zeros(0, dtype=np.int64), np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=np.int64)
    ends = np.cumsum(blocks)
    starts = ends - blocks
    image = np.repeat(np.arange(count), blocks)  # the image each stacked row comes from
    row = np.arange(len(image)) - starts[image]  # its row within that image's block
    source = np.where(row < lengths[image], image * height + first[image] + row, count * height)  # last: zeros
    stacked = (padded[source] > above).view(np.uint8)
    left, top, box_width, box_height, areas = component_stats(stacked, ends[has]).T
    owner = image[top]
    top = top - starts[owner] + first[owner]
    return owner, np.stack([left, top, left + box_width, top + box_height], axis=1), areas


def component_stats(stacked: np.ndarray, block_ends: np.ndarray) -> np.ndarray:
    """OpenCV's stats (left, top, width, height, pixel count) int64 (M, 5) of the 8-connected
    components of stacked (R, W), uint8 0 or 1, made of blocks of rows that no component crosses
    (each ends with a row of zeros), block_ends (B,) ascending the row after each block (the last:
    R). One connectedComponentsWithStats call per run of whole blocks few enough rows for 16-bit
    labels (an 8-connected scan opens at most one label per 2 x 2 pixels; this bound, not OpenCV,
    keeps them from overflowing, as only recent OpenCV checks): OpenCV labels those in one thread,
    sooner than 32-bit labels over the whole image on two; a block taller than that gets 32-bit
    labels alone."""
    rows_per_call = 2 * ((LABELS_16_BIT - 1) // ((stacked.shape[1] + 1) // 2))
    stats, start = [], 0
    while start < len(stacked):
        first = np.searchsorted(block_ends, start, side="right")  # the block that starts at `start`
        last = np.searchsorted(block_ends, start + rows_per_call, side="right") - 1  # the last one within reach
        stop = block_ends[max(first, last)]  # that one alone when it is too tall
        labels = cv2.CV_16U if stop - start <= rows_per_call else cv2.CV_32S
        _, _, found, _ = cv2.connectedComponentsWithStats(stacked[start:stop], connectivity=8, ltype=labels)
        found = found[1:].astype(np.int64)  # row 0 is the background
        found[:, cv2.CC_STAT_TOP] += start
        stats.append(found)
        start = stop
    return np.concatenate(stats)


def largest_component_boxes(owner: np.ndarray, boxes: np.ndarray, areas: np.ndarray, count: int) -> np.ndarray:
    """From component_boxes' output: int64 (count, 4), the box of each image's largest component
    (among equals, the one whose box starts highest, then leftmost), the empty box where an image has none."""
    largest = np.zeros((count, 4), dtype=np.int64)
    order = np.lexsort((boxes[:, 0], boxes[:, 1], -areas, owner))  # by image, largest first, then top, left
    first = order[np.r_[True, owner[order][1:] != owner[order][:-1]]] if len(order) else order
    largest[owner[first]] = boxes[first]
    return largest


def boxes_from_maps(maps: np.ndarray, threshold: float = CAM_THRESHOLD) -> np.ndarray:
    """The CAM paper's box for each map (N, H, W): int64 (N, 4), the bounding box of the largest
    component of map > threshold (the empty box if no pixel is above it)."""
    return largest_component_boxes(*component_boxes(maps > threshold), count=len(maps))


def box_iou(boxes: np.ndarray, others: np.ndarray, inclusive: bool = False) -> np.ndarray:
    """IoU in [0, 1] of boxes (..., 4) with others (..., 4), broadcast. inclusive False: exclusive
    ends (width x1 - x0), empty boxes give 0; True: wsolevaluation's calculate_multiple_iou
    (evaluation.py lines 73-91): widths, heights and the intersection's sides are x1 - x0 + 1, so
    (0, 0, 0, 0) is the pixel at the origin, and a union <= 0 gives 0."""
    boxes, others = np.asarray(boxes, dtype=np.float64), np.asarray(others, dtype=np.float64)
    one = 1.0 if inclusive else 0.0
    width = np.clip(np.minimum(boxes[..., 2], others[..., 2]) - np.maximum(boxes[..., 0], others[..., 0]) + one,
                    0, None)
    height = np.clip(np.minimum(boxes[..., 3], others[..., 3]) - np.maximum(boxes[..., 1], others[..., 1]) + one,
                     0, None)
    intersection = width * height
    area = (boxes[..., 2] - boxes[..., 0] + one) * (boxes[..., 3] - boxes[..., 1] + one)
    other_area = (others[..., 2] - others[..., 0] + one) * (others[..., 3] - others[..., 1] + one)
    union = area + other_area - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def best_iou(boxes: np.ndarray, truth_boxes: np.ndarray, inclusive: bool = False) -> np.ndarray:
    """IoU of each box (K, 4) with the best-matching of its image's true boxes (K, M, 4), padding
    rows (x1 < x0) left out, as wsolevaluation's multiple_iou.max(1) (evaluation.py line 265): (K,)."""
    ious = box_iou(np.asarray(boxes)[:, None], truth_boxes, inclusive)
    ious[truth_boxes[..., 2] < truth_boxes[..., 0]] = 0.0
    return ious.max(axis=1) if ious.shape[1] else np.zeros(len(ious))


def sweep_ious(levels: np.ndarray, gt_boxes: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """For the threshold_levels (N, H, W) of N maps at `count` ascending thresholds, and true boxes
    (N, 4) or (N, M, 4) (exclusive ends): at each threshold k, the IoU with the best-matching true
    box of the largest component's box of levels > k, and the best IoU of any component's box, as
    float (N, count) arrays (0 where nothing is on). Every threshold is labelled from one copy of
    the levels' rows (stacked_rows); levels that are all the same (a baseline that ignores the
    image) are labelled once per threshold."""
    gt_boxes, images = as_boxes(gt_boxes), len(levels)
    largest, best = np.zeros((images, count)), np.zeros((images, count))
    shared = images > 1 and bool((levels == levels[:1]).all())
    labelled = levels[:1] if shared else levels
    rows = stacked_rows(labelled)
    for t in range(count):
        owner, boxes, areas = component_boxes(labelled, t, rows)
        if len(owner) == 0:
            break  # higher thresholds keep fewer pixels
        if shared:  # every image has the first one's components
            owner = np.repeat(np.arange(images), len(owner))
            boxes, areas = np.tile(boxes, (images, 1)), np.tile(areas, images)
        np.maximum.at(best[:, t], owner, best_iou(boxes, gt_boxes[owner]))
        largest[:, t] = best_iou(largest_component_boxes(owner, boxes, areas, images), gt_boxes)
    return largest, best


def contour_boxes(heat: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """wsolevaluation's boxes of one map (H, W) in [0, 1] at one threshold (evaluation.py lines
    130-159, compute_bboxes_from_scoremaps): the map as uint8 by truncation (heat * 255), on where
    it is > int(threshold * its max) (cv2 THRESH_BINARY), the contours of cv2.findContours
    (RETR_TREE: holes' contours too, CHAIN_APPROX_SIMPLE), each one's boundingRect as
    (x, y, x + w, y + h) with x1, y1 clipped to W - 1, H - 1 (inclusive ends). Returns (the box of
    every contour (K, 4), the box of the largest by cv2.contourArea (4,)); with no contour both are
    the box (0, 0, 0, 0)."""
    height, width = heat.shape
    image = (np.asarray(heat, dtype=np.float64) * 255).astype(np.uint8)
    _, on = cv2.threshold(image, int(threshold * np.max(image)), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(on, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
    if len(contours) == 0:
        empty = np.zeros((1, 4), dtype=np.int64)
        return empty, empty[0]
    boxes = np.array([cv2.boundingRect(contour) for contour in contours], dtype=np.int64)
    boxes[:, 2:] += boxes[:, :2]
    boxes[:, 2] = np.minimum(boxes[:, 2], width - 1)
    boxes[:, 3] = np.minimum(boxes[:, 3], height - 1)
    return boxes, boxes[max(range(len(contours)), key=lambda i: cv2.contourArea(contours[i]))]


def sweep_ious_inclusive(maps: np.ndarray, gt_boxes: np.ndarray, thresholds: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """sweep_ious as wsolevaluation computes it for inclusive true boxes (N, M, 4): boxes from
    contour_boxes, IoUs from box_iou(inclusive=True), the best over the true boxes and (for the
    second array) over the contours. One OpenCV call per map and threshold: slower."""
    count, gt_boxes = len(maps), as_boxes(gt_boxes)
    largest, best = np.zeros((count, len(thresholds))), np.zeros((count, len(thresholds)))
    for n in range(count):
        for t, threshold in enumerate(thresholds):
            boxes, biggest = contour_boxes(maps[n], threshold)
            ious = best_iou(np.vstack([biggest[None], boxes]), np.broadcast_to(gt_boxes[n], (len(boxes) + 1,
                                                                                            *gt_boxes.shape[1:])), True)
            largest[n, t], best[n, t] = ious[0], ious[1:].max()
    return largest, best


class LocalizationEvaluator:
    """Localization metrics accumulated over batches of maps, wsolevaluation style.

    accumulate(maps, truth, correct) for each batch, then compute() for:
    - top1_loc: % of images whose class is predicted right and whose box at `cam_threshold`
      (largest component) has IoU >= 0.5 with the best-matching true box; gt_known_loc: the same without
      the class condition (the maps given must be those of the true class);
    - max_box_acc: the best over thresholds of the % of images whose largest-component box has
      IoU >= 0.5 (MaxBoxAcc of Choe et al.);
    - max_box_acc_v2: the mean over IoU 0.3, 0.5, 0.7 of the best over thresholds of the % of
      images for which the box of any component has that IoU (MaxBoxAccV2);
    - pxap: the area under the pixel precision-recall curve of (map > t) against the masks, over
      all pixels of all images but the ignored ones (PxAP; None when the ground truth has no masks,
      or no mask pixel at all).
    All in [0, 100]; box_convention says which boxes and IoU (see accumulate). Thresholds are the
    sweep of (map > t), by default 0.00, 0.01, ..., 0.99. Each image's hits and pixel counts are kept
    (`records`), so that statistics(weights) scores any weighting of the images: ones for compute(),
    bootstrap resamples for the intervals (evaluation/intervals.py).
    """

    def __init__(self, thresholds: np.ndarray = DEFAULT_THRESHOLDS, cam_threshold: float = CAM_THRESHOLD):
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        if (np.diff(self.thresholds) < 0).any():
            raise ValueError("thresholds must be ascending")
        self.cam_threshold = cam_threshold
        self.parts: dict[str, list[np.ndarray]] = {}  # per-image records by name, a list of batches each
        self.without_masks = 0  # images accumulated without masks: then no PxAP
        self.inclusive: bool | None = None  # the box convention of the ground truth accumulated

    def add(self, **records: np.ndarray) -> None:
        for name, values in records.items():
            self.parts.setdefault(name, []).append(values)

    def accumulate(self, maps: np.ndarray, truth: GroundTruth, correct: np.ndarray) -> None:
        """maps float (N, H, W) in [0, 1]; truth: the images' GroundTruth (boxes (N, M, 4), masks
        and ignore (N, H, W) or None); correct bool (N,): whether the image's class was predicted
        right (for top1_loc). An image's box counts when its IoU with the best-matching true box
        reaches the IoU threshold (>=, as wsolevaluation). truth.inclusive: boxes and IoU exactly as
        wsolevaluation's BoxEvaluator (contour_boxes, box_iou(inclusive=True)); else this repo's
        (8-connected components, exclusive ends). PxAP leaves out the ignored pixels; without masks
        it is not measured (None)."""
        maps, gt_boxes = np.asarray(maps), as_boxes(truth.boxes)
        if self.inclusive is None:
            self.inclusive = bool(truth.inclusive)
        elif self.inclusive != bool(truth.inclusive):
            raise ValueError("ground truth with inclusive and exclusive boxes accumulated together")
        if truth.inclusive:
            levels = None  # made for PxAP alone, where there are masks
            largest, best = sweep_ious_inclusive(maps, gt_boxes, self.thresholds)  # (N, T)
            boxes = (np.stack([contour_boxes(heat, self.cam_threshold)[1] for heat in maps]) if len(maps)
                     else gt_boxes[:, 0])
        else:
            levels = threshold_levels(maps, self.thresholds)  # the sweep's, and PxAP's
            largest, best = sweep_ious(levels, gt_boxes, len(self.thresholds))  # (N, T)
            boxes = boxes_from_maps(maps, self.cam_threshold)
        correct = np.asarray(correct, dtype=bool)
        located = best_iou(boxes, gt_boxes, truth.inclusive) >= 0.5
        boxed = (gt_boxes[..., 2] >= gt_boxes[..., 0]).any(axis=1) if gt_boxes.size else np.zeros(len(maps), bool)
        hits = best[:, :, None] >= np.asarray(IOU_THRESHOLDS)  # (N, T, 3)
        self.add(correct=correct, gt_known=located, top1=located & correct, largest=largest >= 0.5, boxed=boxed,
                 any=hits.reshape(len(maps), hits.shape[1] * hits.shape[2]))
        if truth.masks is None:
            self.without_masks += len(maps)
            return
        masks = np.asarray(truth.masks, dtype=bool)
        scored = np.ones_like(masks) if truth.ignore is None else ~np.asarray(truth.ignore, dtype=bool)
        levels = threshold_levels(maps, self.thresholds) if levels is None else levels
        count = len(self.thresholds)
        self.add(positive_on=pixels_above(levels, masks & scored, count),
                 negative_on=pixels_above(levels, ~masks & scored, count),
                 positives=(masks & scored).reshape(len(maps), -1).sum(axis=1))

    @property
    def count(self) -> int:
        """Images accumulated."""
        return sum(len(batch) for batch in self.parts.get("correct", []))

    def records(self) -> dict[str, np.ndarray]:
        """Each image's records, batches joined: (N,) or (N, K) arrays."""
        return {name: np.concatenate(batches) for name, batches in self.parts.items()}

    def statistics(self, weights: np.ndarray, records: dict[str, np.ndarray] | None = None
                   ) -> dict[str, np.ndarray]:
        """The metrics of compute() in % under B weightings of the images, weights float (B, N)
        (ones: the images as they are; a bootstrap resample: how often it holds each), each (B,),
        "max_box_acc_index" (B,) the threshold MaxBoxAcc picks, and the curves (B, T) named
        "curve.<name>" (compute()'s curves). Box metrics are NaN without boxes, PxAP NaN without
        masks or mask pixels. records: self.records(), when at hand."""
        records, weights = records or self.records(), np.asarray(weights, dtype=np.float64)
        total = weights.sum(axis=1)[:, None]  # (B, 1)
        no_box = np.where(weights @ records["boxed"] > 0, 1.0, np.nan)[:, None]  # NaN: no box in the weighting

        def percent_of(hits: np.ndarray) -> np.ndarray:  # hits bool (N,) or (N, K): % of the weighted images, (B, K)
            return 100 * (weights @ hits.reshape(len(hits), -1).astype(np.float64)) / total

        any_accuracy = (percent_of(records["any"]) * no_box).reshape(len(weights), len(self.thresholds), -1)
        largest = percent_of(records["largest"]) * no_box  # (B, T)
        best_any = any_accuracy.max(axis=1)  # (B, 3)
        return {
            "classification_top1": percent_of(records["correct"])[:, 0],
            "top1_loc": (percent_of(records["top1"]) * no_box)[:, 0],
            "gt_known_loc": (percent_of(records["gt_known"]) * no_box)[:, 0],
            "max_box_acc": largest.max(axis=1), "max_box_acc_index": np.nan_to_num(largest).argmax(axis=1),
            "max_box_acc_v2": best_any.mean(axis=1),
            **{f"max_box_acc_v2_by_iou.{iou}": best_any[:, i] for i, iou in enumerate(IOU_THRESHOLDS)},
            "curve.top1_loc": percent_of(records["largest"] & records["correct"][:, None]) * no_box,
            "curve.box_acc_largest_iou0.5": largest,
            **{f"curve.box_acc_any_iou{iou}": any_accuracy[:, :, i] for i, iou in enumerate(IOU_THRESHOLDS)},
        } | self.pixel_statistics(records, weights)

    def pixel_statistics(self, records: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, np.ndarray]:
        """PxAP (B,) and the pixel precision and recall curves (B, T) under weights (B, N); PxAP NaN
        without masks (any image accumulated without one) or without a mask pixel."""
        resamples, thresholds = len(weights), len(self.thresholds)
        if self.without_masks or "positives" not in records:
            nothing = np.full((resamples, thresholds), np.nan)
            return {"pxap": np.full(resamples, np.nan), "curve.pixel_precision": nothing, "curve.pixel_recall": nothing}
        positive_on = weights @ records["positive_on"].astype(np.float64)  # (B, T)
        predicted = positive_on + weights @ records["negative_on"].astype(np.float64)
        positives = weights @ records["positives"].astype(np.float64)  # (B,)
        recall = positive_on / np.maximum(positives, 1)[:, None]
        precision = np.divide(positive_on, predicted, out=np.ones_like(predicted), where=predicted > 0)
        recall_drop = recall - np.concatenate([recall[:, 1:], np.zeros((resamples, 1))], axis=1)
        pxap = np.where(positives > 0, 100 * (recall_drop * precision).sum(axis=1), np.nan)
        return {"pxap": pxap, "curve.pixel_precision": precision, "curve.pixel_recall": recall}

    def compute(self) -> dict:
        """The metrics in % and the curves behind them (per threshold). Ground truth without any box
        (OpenImages' masks) gives None for the box metrics and no box curves, as wsolevaluation
        reports PxAP only there; PxAP is None without masks, or where no image has a mask pixel."""
        if self.count == 0:
            raise ValueError("no images accumulated")
        records = self.records()
        scores = {name: values[0] for name, values in self.statistics(np.ones((1, self.count)), records).items()}

        def number(name: str) -> float | None:
            return None if np.isnan(scores[name]) else float(scores[name])

        masked = None if "positives" not in records or self.without_masks else int(records["positives"].sum())
        curves = {"thresholds": self.thresholds.tolist()}
        boxed = not np.isnan(scores["max_box_acc"])
        if boxed:
            curves |= {name: scores[f"curve.{name}"].tolist() for name in (
                "top1_loc", "box_acc_largest_iou0.5", *(f"box_acc_any_iou{iou}" for iou in IOU_THRESHOLDS))}
        if number("pxap") is not None:
            curves |= {name: scores[f"curve.{name}"].tolist() for name in ("pixel_precision", "pixel_recall")}
        return {
            "images": self.count, "top1_loc": number("top1_loc"), "gt_known_loc": number("gt_known_loc"),
            "max_box_acc": number("max_box_acc"),
            "max_box_acc_threshold": float(self.thresholds[scores["max_box_acc_index"]]) if boxed else None,
            "max_box_acc_v2": number("max_box_acc_v2"),
            "max_box_acc_v2_by_iou": {str(iou): number(f"max_box_acc_v2_by_iou.{iou}") for iou in IOU_THRESHOLDS}
            if boxed else {},
            "pxap": number("pxap"), "mask_pixels": masked, "box_convention": BOX_CONVENTIONS[bool(self.inclusive)],
            "curves": curves,
        }


def pixels_above(levels: np.ndarray, selected: np.ndarray, thresholds: int) -> np.ndarray:
    """How many selected pixels (bool (N, H, W)) of each image lie above each of `thresholds`
    thresholds, from their threshold_levels (N, H, W): (N, T) in the smallest unsigned type that holds
    H * W, [n, t] the count with levels > t (a value above exactly k thresholds is on for the first k)."""
    count = len(levels)
    image = np.broadcast_to(np.arange(count)[:, None, None], levels.shape)[selected]
    histogram = np.bincount(image * (thresholds + 1) + levels[selected], minlength=count * (thresholds + 1))
    above = np.cumsum(histogram.reshape(count, thresholds + 1)[:, ::-1], axis=1)[:, ::-1][:, 1:]
    return above.astype(np.min_scalar_type(int(np.prod(levels.shape[1:]))))


def at_threshold(metrics: dict, threshold: float) -> dict:
    """{"threshold", "top1_loc", "gt_known_loc"} of LocalizationEvaluator.compute()'s metrics at one
    threshold of its sweep (the nearest): for an operating threshold chosen on another split."""
    curves = metrics["curves"]
    index = int(np.abs(np.asarray(curves["thresholds"]) - threshold).argmin())
    return {"threshold": curves["thresholds"][index], "top1_loc": curves["top1_loc"][index],
            "gt_known_loc": curves["box_acc_largest_iou0.5"][index]}
