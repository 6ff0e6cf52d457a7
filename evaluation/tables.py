"""The report's tables, notes and files: localization.md, localization.json, the figures and report.html.

Numbers become text only here (and in the figures): the records of evaluation/results.py hold
floats, and the methods get their display names (Method.name) in these tables.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation import faithfulness, figures, html_page, registry, results, sanity
from utils import files


def markdown_table(report: results.Report) -> str:
    """The localization metrics as a markdown table, a row per method."""
    lines = [
        "| method | top-1 cls | threshold | top-1 loc | GT-known loc | MaxBoxAcc | MaxBoxAccV2 "
        "| (IoU 0.3 / 0.5 / 0.7) | PxAP |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    for result in report.measured("localization"):
        scores, operating = result.localization, result.localization.operating
        threshold, top1_loc, gt_known_loc = (  # no operating point: the ground truth has masks only
            (operating.threshold, operating.top1_loc, operating.gt_known_loc) if operating else (None, None, None))
        by_iou = " / ".join(f"{value:.1f}" for value in scores.max_box_acc_v2_by_iou.values()) or "—"
        lines.append(" | ".join([
            f"| {result.method.name}", cell(scores.classification_top1), cell(threshold),
            cell(top1_loc), cell(gt_known_loc), cell(scores.max_box_acc),
            cell(scores.max_box_acc_v2), by_iou, cell(scores.pxap)]) + " |")
    conventions = sorted({result.localization.box_convention for result in report.measured("localization")})
    return "\n".join(lines) + "\n" + "".join(f"\nBoxes: {convention}.\n" for convention in conventions)


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
    """A column of the summary: its title, how a MethodResult gives its value (None: not measured),
    the decimals shown, and where the value is a mean over random draws, how it gives their
    standard deviation (shown as "mean ± sd"; a column of its own in report.html)."""

    title: str
    value: Value
    digits: int = 1
    spread: Value | None = None


SUMMARY_COLUMNS = (
    Column("MaxBoxAccV2 ↑", lambda r: r.localization and r.localization.max_box_acc_v2),
    Column("PxAP ↑", lambda r: r.localization and r.localization.pxap),
    Column("pointing game ↑", lambda r: r.faithfulness and r.faithfulness.pointing_game),
    Column("energy pointing ↑", lambda r: r.faithfulness and r.faithfulness.energy_pointing_game),
    Column("deletion AUC ↓", lambda r: r.faithfulness and 100 * r.faithfulness.deletion_auc),
    Column("insertion AUC ↑", lambda r: r.faithfulness and 100 * r.faithfulness.insertion_auc),
    Column("ROAD MoRF ↓", lambda r: r.faithfulness and percent(r.faithfulness.road_mean("morf"))),
    Column("ROAD LeRF ↑", lambda r: r.faithfulness and percent(r.faithfulness.road_mean("lerf"))),
    Column("average drop ↓", lambda r: r.faithfulness and r.faithfulness.average_drop),
    Column("increase ↑", lambda r: r.faithfulness and r.faithfulness.increase),
    Column("cascade: Spearman ↓", lambda r: r.sanity and r.sanity.last_stage.spearman, 2,
           lambda r: r.sanity and r.sanity.last_stage.spearman_std),
    Column("cascade: SSIM ↓", lambda r: r.sanity and r.sanity.last_stage.ssim, 2,
           lambda r: r.sanity and r.sanity.last_stage.ssim_std),
    Column("random labels: Spearman ↓",
           lambda r: r.sanity and r.sanity.random_labels and r.sanity.random_labels.spearman, 2),
    Column("ms / image", lambda r: r.cost and r.cost.ms_per_image, 2),
    Column("× forward", lambda r: r.cost and r.cost.over_forward),
)


def as_float(value) -> float | None:
    return None if value is None else float(value)


def summary_rows(report: results.Report) -> tuple[list[str], list[list]]:
    """(header, rows): one row per method measured, its name then each column's value and, after
    a column with a spread, that spread ("± sd") as a column of its own (float, or None where a
    group was not run or does not apply); report.html's sortable table."""
    header = ["method"] + [title for column in SUMMARY_COLUMNS
                           for title in (column.title, *(("± sd",) if column.spread else ()))]
    rows = [[result.method.name] + [as_float(value(result)) for column in SUMMARY_COLUMNS
                                    for value in (column.value, *((column.spread,) if column.spread else ()))]
            for result in report.measured()]
    return header, rows


def summary_table(report: results.Report) -> str:
    """The summary as markdown: a row per method measured, the values with each column's decimals,
    means over random draws as mean ± standard deviation, — where a group was not run or does not
    apply."""
    lines = ["| method | " + " | ".join(column.title for column in SUMMARY_COLUMNS) + " |",
             "|---" + "|---:" * len(SUMMARY_COLUMNS) + "|"]
    for result in report.measured():
        cells = [result.method.name]
        for column in SUMMARY_COLUMNS:
            value, spread = column.value(result), column.spread and column.spread(result)
            cells.append("—" if value is None else f"{value:.{column.digits}f}"
                         + ("" if spread is None else f" ± {spread:.2f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
    if faithful and faithful.cam_iou_vs_deletion_spearman is not None:
        note += (f" Across images, CAM's box IoU and its deletion AUC have a Spearman correlation of "
                 f"{faithful.cam_iou_vs_deletion_spearman:.3f}.")
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
    return (f"Localization of `{report.checkpoint}` on {located.images} {report.dataset['name']} "
            f"{report.split} images (top-1 / GT-known loc at each method's threshold, chosen with "
            f"{located.thresholds_chosen_on()}; sweep step {located.threshold_step}).\n\n" + markdown_table(report)
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
