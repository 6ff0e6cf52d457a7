"""The report's tables, notes and files: localization.md, localization.json, the figures and report.html.

Numbers become text only here (and in the figures): the records of evaluation/results.py hold
floats, and the methods get their display names (Method.name) in these tables.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation import faithfulness, figures, html_page, intervals, registry, results, sanity
from utils import files


def markdown_table(report: results.Report) -> str:
    """The localization metrics as a markdown table, a row per method, each number with its bootstrap
    interval (where one was drawn)."""
    lines = [
        "| method | top-1 cls | threshold | top-1 loc | GT-known loc | MaxBoxAcc | MaxBoxAccV2 "
        "| (IoU 0.3 / 0.5 / 0.7) | PxAP |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in report.measured("localization"):
        scores, operating = result.localization, result.localization.operating
        cells = {name: with_interval(scores.statistic(name), scores.intervals.get(name), 2) for name in (
            "classification_top1", "operating.top1_loc", "operating.gt_known_loc", "max_box_acc", "max_box_acc_v2",
            "pxap")}
        by_iou = " / ".join(with_interval(value, scores.intervals.get(f"max_box_acc_v2_by_iou.{iou}"), 1)
                            for iou, value in scores.max_box_acc_v2_by_iou.items()) or "—"
        threshold = "—" if operating is None else f"{operating.threshold:.2f}"  # no operating point: masks only
        lines.append(" | ".join([f"| {result.method.name}", cells["classification_top1"], threshold,
                                 cells["operating.top1_loc"], cells["operating.gt_known_loc"], cells["max_box_acc"],
                                 cells["max_box_acc_v2"], by_iou, cells["pxap"]]) + " |")
    conventions = sorted({result.localization.box_convention for result in report.measured("localization")})
    return "\n".join(lines) + "\n" + "".join(f"\nBoxes: {convention}.\n" for convention in conventions)


def with_interval(value: float | None, bounds: list[float] | None, digits: int) -> str:
    """A number and its interval as the tables show them: "92.31 [91.79, 92.82]", "—" for None."""
    if value is None:
        return "—"
    return f"{value:.{digits}f}" + ("" if bounds is None else " " + bracketed(bounds, digits))


def bracketed(bounds: list[float], digits: int) -> str:
    """An interval as the tables show it: "[91.79, 92.82]"."""
    return f"[{bounds[0]:.{digits}f}, {bounds[1]:.{digits}f}]"


def same_maps_note(report: results.Report) -> str:
    """The line under the localization table: which methods gave the maps of ReLU(CAM), min-max
    normalized (registry.relu_cam), on every image, and how far the others' are from them."""
    located = report.measured("localization")
    same = [result for result in located if result.localization.equals_cam_max_diff <= registry.SAME_MAPS_TOLERANCE]
    others = sorted((result for result in located if result not in same),
                    key=lambda result: result.localization.equals_cam_max_diff)  # the closest first
    parts = []
    if same:
        parts.append(f"{', '.join(result.method.name for result in same)}: the same maps as ReLU(CAM), min-max "
                     f"normalized, on all {report.localization.images} images (max |diff| "
                     f"{max(result.localization.equals_cam_max_diff for result in same):.0e})")
    if others:
        closest = others[0].localization.equals_cam_max_diff
        parts.append(f"the others' maps differ from those by a max |diff| of {closest:.2f} ({others[0].method.name}) "
                     "or more" if same else f"No method gives the maps of ReLU(CAM), min-max normalized: the closest "
                     f"differs from them by a max |diff| of {closest:.2f} ({others[0].method.name})")
    return "; ".join(parts) + "."


def percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


Value = Callable[[results.MethodResult], float | None]


@dataclass(frozen=True)
class Column:
    """A column of the summary: its title (its arrow says which way is better), how a MethodResult
    gives its value (None: not measured), the decimals shown; where the value is a mean over random
    draws, how it gives their standard deviation (shown as "mean ± sd"); where it is a statistic of a
    group's images, that group and statistic (the name in the record's intervals and
    difference_from_cam) and the scale from the statistic to the column's unit."""

    title: str
    value: Value
    digits: int = 1
    spread: Value | None = None
    group: str | None = None
    statistic: str | None = None
    scale: float = 1.0

    @property
    def higher_is_better(self) -> bool:
        return "↑" in self.title

    def record(self, result: results.MethodResult):
        return self.group and getattr(result, self.group)

    def interval(self, result: results.MethodResult) -> list[float] | None:
        """The value's bootstrap interval in the column's unit (None: none drawn)."""
        bounds = self.record(result) and self.record(result).intervals.get(self.statistic)
        return [self.scale * bound for bound in bounds] if bounds else None

    def difference(self, result: results.MethodResult) -> intervals.Difference | None:
        """The method's paired difference from the standard CAM in the column's unit (None: none)."""
        difference = self.record(result) and self.record(result).difference_from_cam.get(self.statistic)
        if not difference:
            return None
        return difference.scaled(self.scale)

    def verdict(self, difference: intervals.Difference) -> str:
        """"better", "worse" or "no difference" (the interval holds 0), of a difference from CAM."""
        if difference.covers_zero:
            return "no difference"
        return "better" if (difference.interval[0] > 0) == self.higher_is_better else "worse"


def scored(title: str, group: str, statistic: str, scale: float = 1.0, digits: int = 1) -> Column:
    """A column of a statistic of a group's images, with its interval and difference from CAM."""
    def value(result: results.MethodResult) -> float | None:
        record = getattr(result, group)
        number = record and record.statistic(statistic)
        return None if number is None else scale * number
    return Column(title, value, digits, group=group, statistic=statistic, scale=scale)


SUMMARY_COLUMNS = (
    scored("MaxBoxAccV2 ↑", "localization", "max_box_acc_v2"),
    scored("PxAP ↑", "localization", "pxap"),
    scored("pointing game ↑", "faithfulness", "pointing_game"),
    scored("energy pointing ↑", "faithfulness", "energy_pointing_game"),
    scored("deletion AUC ↓", "faithfulness", "deletion_auc", 100),
    scored("insertion AUC ↑", "faithfulness", "insertion_auc", 100),
    scored("ROAD MoRF ↓", "faithfulness", "road_morf", 100),
    scored("ROAD LeRF ↑", "faithfulness", "road_lerf", 100),
    scored("average drop ↓", "faithfulness", "average_drop"),
    scored("increase ↑", "faithfulness", "increase"),
    Column("cascade: Spearman ↓", lambda r: r.sanity and r.sanity.last_stage.spearman, 2,
           lambda r: r.sanity and r.sanity.last_stage.spearman_std),
    Column("cascade: SSIM ↓", lambda r: r.sanity and r.sanity.last_stage.ssim, 2,
           lambda r: r.sanity and r.sanity.last_stage.ssim_std),
    Column("random labels: Spearman ↓",
           lambda r: r.sanity and r.sanity.random_labels and r.sanity.random_labels.spearman, 2),
    Column("ms / image", lambda r: r.cost and r.cost.ms_per_image, 2),
    Column("× forward", lambda r: r.cost and r.cost.over_forward),
)
FAITHFULNESS_COLUMNS = [column for column in SUMMARY_COLUMNS if column.group == "faithfulness"]
BASELINES = (registry.RANDOM, registry.CENTER, registry.EDGE)  # what CAM must beat for a metric to tell


def as_float(value) -> float | None:
    return None if value is None else float(value)


def summary_rows(report: results.Report) -> tuple[list[str], list[list]]:
    """(header, rows): one row per method measured, its name then each column's value and, after
    a column with a spread, that spread ("± sd") as a column of its own (float, or None where a
    group was not run or does not apply; (float, its interval as text) where it has one);
    report.html's sortable table."""
    header = ["method"] + [title for column in SUMMARY_COLUMNS
                           for title in (column.title, *(("± sd",) if column.spread else ()))]
    rows = []
    for result in report.measured():
        row = [result.method.name]
        for column in SUMMARY_COLUMNS:
            value, bounds = as_float(column.value(result)), column.interval(result)
            row.append((value, bracketed(bounds, column.digits)) if bounds else value)
            row += [as_float(column.spread(result))] if column.spread else []
        rows.append(row)
    return header, rows


def summary_table(report: results.Report) -> str:
    """The summary as markdown: a row per method measured, the values with each column's decimals
    and their bootstrap intervals, means over random draws as mean ± standard deviation, — where a
    group was not run or does not apply."""
    lines = ["| method | " + " | ".join(column.title for column in SUMMARY_COLUMNS) + " |",
             "|---" + "|---:" * len(SUMMARY_COLUMNS) + "|"]
    for result in report.measured():
        cells = [result.method.name]
        for column in SUMMARY_COLUMNS:
            value, spread = column.value(result), column.spread and column.spread(result)
            cells.append(with_interval(value, column.interval(result), column.digits)
                         + ("" if value is None or spread is None else f" ± {spread:.2f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def signed(difference: intervals.Difference, digits: int) -> str:
    """"+1.2 [+0.5, +1.9]": a difference and its interval, signs shown: -0.0 is a value just below 0,
    +0.0 one just above it or 0 itself."""
    def shown(number: float) -> str:
        return f"{number + 0.0:+.{digits}f}"  # + 0.0: a negative zero is 0
    bounds = difference.interval
    return shown(difference.value) + ("" if bounds is None else f" [{shown(bounds[0])}, {shown(bounds[1])}]")


def differences_section(report: results.Report) -> str:
    """Each method against the standard CAM on the same images (paired bootstrap): a sentence per
    method naming the columns where it is better, worse, or shows no difference (the interval holds
    0), then the differences with their intervals as a table. Empty without intervals or CAM."""
    columns = [column for column in SUMMARY_COLUMNS
               if column.statistic and any(column.difference(result) for result in report.measured())]
    compared = [result for result in report.measured() if any(column.difference(result) for column in columns)]
    if not compared:
        return ""
    sentences = []
    for result in compared:
        verdicts: dict[str, list[str]] = {"better": [], "worse": [], "no difference": []}
        for column in columns:
            difference = column.difference(result)
            if difference:
                verdicts[column.verdict(difference)].append(column.title.rstrip(" ↑↓"))
        sentences.append(f"- {result.method.name}: " + "; ".join(
            f"{verdict} on {', '.join(titles)}" for verdict, titles in verdicts.items() if titles) + ".")
    lines = ["| method | " + " | ".join(column.title for column in columns) + " |",
             "|---" + "|---:" * len(columns) + "|"]
    for result in compared:
        differences = [column.difference(result) for column in columns]
        lines.append(f"| {result.method.name} | " + " | ".join(
            "—" if difference is None else signed(difference, column.digits)
            for column, difference in zip(columns, differences)) + " |")
    return (f"Against {registry.CAM.name} on the same images (each method's score less CAM's, with its "
            f"{intervals.LEVEL}% paired bootstrap interval; \"no difference\" where the interval holds 0):\n"
            + "\n".join(sentences) + "\n\n" + "\n".join(lines) + "\n")


def discrimination_section(report: results.Report) -> str:
    """Can each faithfulness metric tell the model's CAM from the baselines here? Per metric: CAM
    against the random, center and edge maps (CAM's score less the baseline's, paired interval:
    "CAM better", "baseline better" or "cannot tell"), and how consistently the images rank the
    methods (Krippendorff's alpha, intervals.rank_reliability); then the metrics that cannot rank CAM
    above the edge detector, flagged. Empty without the faithfulness group's intervals, CAM or a baseline."""
    faithful = report.faithfulness
    methods = report.methods
    baselines = [baseline for baseline in BASELINES if baseline.key in methods and methods[baseline.key].faithfulness
                 and methods[baseline.key].faithfulness.difference_from_cam]
    if not faithful or not baselines:
        return ""
    lines = ["| metric | " + " | ".join(f"CAM vs {baseline.name}" for baseline in baselines)
             + " | rank reliability (α) |", "|---" + "|---" * len(baselines) + "|---:|"]
    unable = []
    for column in FAITHFULNESS_COLUMNS:
        cells = []
        for baseline in baselines:
            difference = column.difference(methods[baseline.key])  # the baseline's less CAM's
            if difference is None:
                cells.append("—")
                continue
            cam_less_baseline = difference.scaled(-1)
            verdict = {"better": "baseline better", "worse": "CAM better", "no difference": "cannot tell"}[
                column.verdict(difference)]
            cells.append(f"{verdict} ({signed(cam_less_baseline, column.digits)})")
            if baseline is registry.EDGE and verdict != "CAM better":
                unable.append(column.title.rstrip(" ↑↓"))
        alpha = faithful.reliability.get(column.statistic)
        lines.append(f"| {column.title} | " + " | ".join(cells) + f" | {'—' if alpha is None else f'{alpha:.2f}'} |")
    flag = (f"**Flagged: {', '.join(unable)} cannot rank CAM above the edge detector (a map that ignores the model) "
            "on these images, so here they do not tell a faithful map from one that follows the ink.** "
            if unable else "")
    return ("Can each faithfulness metric tell the model's CAM from maps that ignore the model? CAM's score less "
            f"each baseline's on the same images, with its {intervals.LEVEL}% paired interval, and how consistently "
            "the images rank all the methods above by the metric (Krippendorff's alpha over images, Tomsett et al., "
            "AAAI 2020: 1 every image ranks them alike, 0 no better than chance). " + flag + "\n\n"
            + "\n".join(lines) + "\n")


def explained_note(report: results.Report) -> str:
    """The paragraph above the summary table: which images the faithfulness and sanity groups that
    ran were measured on, and how."""
    faithful, sane = report.faithfulness, report.sanity
    how = []
    if faithful:
        road = (f"ROAD: mean class probability in % over {faithfulness.ROAD_PERCENTAGES}% removed, on the first "
                f"{faithful.road_images} images" if faithful.road_images else "no ROAD (--road_images=0)")
        how.append(f"deletion and insertion AUC in % of probability, {faithful.steps} steps, {faithful.baseline} "
                   f"baseline; {road}; pointing game within {faithful.tolerance:g} px of the object")
    if sane:
        how.append(f"cascade: after the last stage, the first conv re-initialized; mean ± standard deviation over "
                   f"{sane.seeds} random draw{'s' * (sane.seeds > 1)}")
    note = ("All methods side by side: " + ("localization on the images above; " if report.localization else "")
            + " and ".join(group for group in ("faithfulness", "sanity") if group in report.groups)
            + f" on the first {report.explained_images} {report.split} images, maps of the predicted class ("
            + "; ".join(how) + ").")
    tested = report.measured("sanity")
    if tested:
        verdicts = {verdict: [result.method.name for result in tested if result.sanity.passes_cascade is verdict]
                    for verdict in (True, False, None)}
        note += (f" Passes the cascading randomization (after the last stage, |Spearman| + 2 sd below "
                 f"{sanity.UNCORRELATED:g}): {', '.join(verdicts[True]) or 'none'}; fails: "
                 f"{', '.join(verdicts[False]) or 'none'}.")
        if verdicts[None]:
            note += (f" Undefined, so not passing: {', '.join(verdicts[None])} (its maps are constant: a "
                     "rank correlation with a constant map is undefined).")
    if faithful and faithful.resamples:
        road = ("ROAD's over its images" if faithful.road_images >= intervals.MIN_IMAGES else
                f"none on ROAD's {faithful.road_images} images, fewer than {intervals.MIN_IMAGES}")
        note += (f" Brackets: {intervals.LEVEL}% percentile bootstrap intervals over these images "
                 f"({faithful.resamples:,} resamples; {road}; {faithful.bootstrap_seconds:.1f} s of the group's "
                 "time with the rank reliabilities); sanity's ± is over its draws, and timings have none.")
    elif faithful and faithful.images < intervals.MIN_IMAGES:
        note += f" No intervals: fewer than {intervals.MIN_IMAGES} images."
    if faithful and faithful.cam_iou_vs_deletion_spearman is not None:
        bounds = faithful.cam_iou_vs_deletion_interval
        note += (f" Across images, CAM's box IoU and its deletion AUC have a Spearman correlation of "
                 f"{with_interval(faithful.cam_iou_vs_deletion_spearman, bounds, 3)}.")
    return note


def named(report: results.Report, group: str) -> list[tuple[str, object]]:
    """(display name, record) of each method that group measured: a figure's rows."""
    return [(result.method.name, getattr(result, group)) for result in report.measured(group)]


def cascade_rows(report: results.Report, cascade: dict) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The cascade figure's rows, each (label, {stage: map}): the first sanity-tested method's
    (CAM's) map of each image kept, then the first image's map of each method that does not use the
    weights (the edge map), which no stage changes."""
    tested, stages = [result.method for result in report.measured("sanity")], list(cascade)
    first = tested[0].key
    rows = [(f"image {i}", {stage: cascade[stage][first][i] for stage in stages})
            for i in range(len(cascade[stages[0]][first]))]
    return rows + [(f"{method.name}\nimage 0", {stage: cascade[stage][method.key][0] for stage in stages})
                   for method in tested if not method.uses_weights]


FIGURE_CAPTIONS = {  # report.html's caption of each figure, by file name
    "localization_examples.png":
        "Test images: the map, its box at the operating threshold (green) and the true box (red)",
    "localization_thresholds.png": "Box accuracy against the threshold, and pixel precision-recall",
    "faithfulness_curves.png": "Deletion and insertion: the class probability as pixels are removed or inserted",
    "sanity_cascade.png": "Cascading randomization: the maps as the model's stages are re-initialized",
    "sanity_curves.png": "Cascading randomization: similarity to the trained model's maps, stage by stage",
}


def drawn_figures(groups: list[str], examples: list, cascade: dict) -> list[str]:
    """The figures a report of these groups draws (the examples figure when it has examples, the
    cascade figure when the sanity group kept maps), in FIGURE_CAPTIONS' order."""
    drawn = {"localization_examples.png": bool(examples), "localization_thresholds.png": "localization" in groups,
             "faithfulness_curves.png": "faithfulness" in groups, "sanity_cascade.png": bool(cascade),
             "sanity_curves.png": "sanity" in groups}
    return [name for name in FIGURE_CAPTIONS if drawn[name]]


def report_files(groups: list[str], examples: list, cascade: dict) -> list[str]:
    """Every file a report of these groups writes: the tables, the page, then the figures it draws."""
    return ["localization.md", "localization.json", "report.html"] + drawn_figures(groups, examples, cascade)


def localization_note(report: results.Report) -> str:
    """The paragraph and table of the localization group."""
    located = report.localization
    bootstrap = (f"; brackets: {intervals.LEVEL}% percentile bootstrap intervals over the images, "
                 f"{located.resamples:,} resamples, {located.bootstrap_seconds:.1f} s" if located.resamples else "")
    empty = any(result.localization.mask_pixels == 0 for result in report.measured("localization"))
    no_pixels = (" PxAP is undefined (—): every mask of these images is empty (a dataset's masks read as empty "
                 "when they hold no nonzero pixel).\n" if empty else "")
    return (f"Localization of `{report.checkpoint}` on {located.images} {report.dataset['name']} "
            f"{report.split} images (top-1 / GT-known loc at each method's threshold, chosen with "
            f"{located.thresholds_chosen_on()}; sweep step {located.threshold_step}{bootstrap}).\n\n"
            + markdown_table(report) + no_pixels
            + "\n" + same_maps_note(report) + " What each method's maps cost, per image at batch size "
            f"{report.batch_size} and over a plain forward pass of the same batches "
            f"({located.forward_ms_per_image:.2f} ms per image; both with the batch norms folded into the "
            "convolutions): the last columns below.\n")


def write_report(report: results.Report, examples: list[figures.Example], cascade: dict,
                 gallery: list[html_page.GalleryImage], output_dir: Path) -> None:
    """Write report.files to output_dir: localization.md, localization.json, the figures of the
    groups run and report.html (the page to browse: the summary sortable, the gallery, the figures).
    A figure of an earlier report that this one does not draw is deleted (these fixed names only),
    so that no file in the folder passes for this run's."""
    draw = {
        "localization_examples.png": lambda path: figures.examples_figure(examples, path),
        "localization_thresholds.png": lambda path: figures.threshold_curves_figure(named(report, "localization"),
                                                                                    path),
        "faithfulness_curves.png": lambda path: figures.removal_curves_figure(named(report, "faithfulness"), path),
        "sanity_cascade.png": lambda path: figures.cascade_figure(cascade_rows(report, cascade), path),
        "sanity_curves.png": lambda path: figures.sanity_curves_figure(named(report, "sanity"), path),
    }
    parts = [localization_note(report)] if report.localization else []
    if report.explained_images is not None:
        parts.append(explained_note(report) + "\n\n" + summary_table(report))
    else:
        parts.append("All methods side by side (the localization group only):\n\n" + summary_table(report))
    parts += [section for section in (discrimination_section(report), differences_section(report)) if section]
    parts.append(f"Files of this report: {', '.join(report.files)}.\n")
    text = "\n".join(parts)
    for name in FIGURE_CAPTIONS:
        if name in report.files:
            draw[name](output_dir / name)
        else:
            (output_dir / name).unlink(missing_ok=True)
    with files.atomic_output(output_dir / "localization.md") as temporary:
        temporary.write_text(text)
    with files.atomic_output(output_dir / "localization.json") as temporary:
        temporary.write_text(json.dumps(report.as_json(), indent=1) + "\n")
    title = f"`{report.checkpoint}` on {report.dataset['name']}'s {report.split} split: {', '.join(report.groups)}"
    html_page.write_report_page(
        output_dir / "report.html", title, [part.split("\n\n")[0] for part in parts[:-1]], *summary_rows(report),
        gallery, [(caption, output_dir / name) for name, caption in FIGURE_CAPTIONS.items() if name in report.files])
    print(text, end="")
    print(f"done in {report.seconds:.1f} s; wrote " + ", ".join(str(output_dir / name) for name in report.files))
