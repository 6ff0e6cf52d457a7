"""Write evaluate_cam.py's report.html: one self-contained page (summary table, image gallery, figures).

Every image is embedded as a base64 data: URI and the page's only script is inline, so it works
opened from a file:// URL with no network. Numbers are written at full precision in data-value
attributes (the text shows DECIMALS decimals); a missing number (None or NaN) shows as — and sorts
last in either direction.

What a test can query:
- table#summary: a th.sortable per column in thead (click: ascending, again: descending; its
  span.arrow shows ▲ or ▼, aria-sort says which); in tbody a tr per method, a td per cell, with
  data-value where the cell is a number and class "missing" where it is None.
- section#gallery-section with the controls select#gallery-sort ("index", "iou:METHOD",
  "deletion_auc:METHOD"), select#gallery-order ("ascending" | "descending"),
  input.method-filter (checkboxes, value METHOD), select#class-filter ("" for all, else a true
  class), select#correct-filter ("all" | "right" | "wrong"), and span#gallery-count.
- div#gallery: a div.card per image (id "image-INDEX"; data-index, data-true-class,
  data-predicted-class, data-correct "true" | "false"), holding p.classes and a div.overlay per
  method in the gallery's order (data-method, data-iou, data-deletion-auc: "" where missing), each
  with its img (or span.no-overlay) and p.scores.
- section#figures: a figure.report-figure per figure, its img and figcaption.
"""

import base64
import html
import math
import re
from dataclasses import dataclass
from pathlib import Path

from utils.files import atomic_output

DECIMALS = 2  # the decimals a number is shown with; data-value holds it whole
MISSING = "—"


@dataclass
class GalleryImage:
    """One image of the gallery: its index in the split, its true and predicted class names, and per
    method name its overlay (PNG bytes, true box red and the method's box green), box IoU and
    deletion AUC (None: not measured)."""

    index: int
    true_class: str
    predicted_class: str
    overlays: dict[str, bytes]
    iou: dict[str, float | None]
    deletion_auc: dict[str, float | None]

    @property
    def correct(self) -> bool:
        """Whether the predicted class is the true one."""
        return self.true_class == self.predicted_class


def write_report_page(path: Path, title: str, notes: list[str], summary_header: list[str],
                      summary_rows: list[list[str | float | None]], gallery: list[GalleryImage],
                      figures: list[tuple[str, Path]]) -> None:
    """Write the page to path atomically. notes: paragraphs under the title (`code` in backticks
    becomes <code>); summary_rows: a row per method, a cell per header (text, number, or None);
    gallery: its cards in this order; figures: (caption, PNG file) each. An empty part is left out."""
    sections = [f"<h1>{marked_up(title)}</h1>"] + [f'<p class="note">{marked_up(note)}</p>' for note in notes]
    if summary_rows:
        sections.append(summary_section(summary_header, summary_rows))
    if gallery:
        sections.append(gallery_section(gallery))
    if figures:
        sections.append(figures_section(figures))
    page = PAGE.format(title=html.escape(title), style=STYLE, body="\n".join(sections), script=SCRIPT)
    with atomic_output(path) as temporary:
        temporary.write_text(page, encoding="utf-8")


def marked_up(text: str) -> str:
    """Escaped text with `code` spans as <code>, **bold** as <strong>, and lines that start with "- "
    (a markdown list) each on a line of its own."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text, flags=re.S).replace("\n- ", "<br>• ")


def number(value) -> float | None:
    """A cell's value as a float, or None where it is missing (None or NaN)."""
    if value is None or math.isnan(float(value)):
        return None
    return float(value)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def shown(value: float | None) -> str:
    return MISSING if value is None else f"{value:.{DECIMALS}f}"


def summary_cell(cell: str | float | tuple[float, str] | None) -> str:
    """A td: text as given, a number with its data-value (and, given as (number, text), the text
    under it: its interval), None as a missing cell."""
    if isinstance(cell, str):
        return f"<td>{html.escape(cell)}</td>"
    cell, under = cell if isinstance(cell, tuple) else (cell, None)
    value = number(cell)
    if value is None:
        return f'<td class="missing">{MISSING}</td>'
    note = "" if under is None else f'<br><span class="interval">{html.escape(under)}</span>'
    return f'<td class="number" data-value="{value!r}">{shown(value)}{note}</td>'


def summary_section(header: list[str], rows: list[list[str | float | None]]) -> str:
    heads = "".join(f'<th class="sortable" title="sort by {html.escape(name)}">{html.escape(name)}'
                    f'<span class="arrow"></span></th>' for name in header)
    body = "\n".join("<tr>" + "".join(summary_cell(cell) for cell in row) + "</tr>" for row in rows)
    return (f'<section id="summary-section"><h2>Summary</h2>'
            f'<table id="summary"><thead><tr>{heads}</tr></thead>\n<tbody>\n{body}\n</tbody></table></section>')


def gallery_methods(gallery: list[GalleryImage]) -> list[str]:
    """The method names of any image's overlays, in order of first appearance."""
    return list(dict.fromkeys(name for image in gallery for name in image.overlays))


def option(value: str, label: str) -> str:
    return f'<option value="{html.escape(value)}">{html.escape(label)}</option>'


def overlay_cell(image: GalleryImage, method: str) -> str:
    """One method's div.overlay in a card: its image (or a placeholder), name, IoU and deletion AUC."""
    iou, deletion = number(image.iou.get(method)), number(image.deletion_auc.get(method))
    name = html.escape(method)
    png = image.overlays.get(method)
    picture = (f'<img src="{data_uri(png)}" alt="{name} on image {image.index}">' if png is not None
               else '<span class="no-overlay">no map</span>')
    attributes = " ".join(f'data-{key}="{"" if value is None else repr(value)}"'
                          for key, value in (("iou", iou), ("deletion-auc", deletion)))
    return (f'<div class="overlay" data-method="{name}" {attributes}>{picture}'
            f'<p class="method-name">{name}</p>'
            f'<p class="scores">IoU {shown(iou)} · del {shown(deletion)}</p></div>')


def card(image: GalleryImage, methods: list[str]) -> str:
    verdict = "right" if image.correct else "wrong"
    true_class, predicted = html.escape(image.true_class), html.escape(image.predicted_class)
    return (f'<div class="card {verdict}" id="image-{image.index}" data-index="{image.index}" '
            f'data-true-class="{true_class}" data-predicted-class="{predicted}" '
            f'data-correct="{str(image.correct).lower()}">'
            f'<p class="classes"><b>#{image.index}</b> true <b>{true_class}</b> · predicted <b>{predicted}</b> '
            f'<span class="verdict">{"✓ right" if image.correct else "✗ wrong"}</span></p>'
            f'<div class="overlays">{"".join(overlay_cell(image, method) for method in methods)}</div></div>')


def gallery_section(gallery: list[GalleryImage]) -> str:
    methods = gallery_methods(gallery)
    sort_options = option("index", "image index") + "".join(
        option(f"{metric}:{method}", f"{label} of {method}")
        for method in methods for metric, label in (("iou", "IoU"), ("deletion_auc", "deletion AUC")))
    checkboxes = "".join(f'<label><input type="checkbox" class="method-filter" value="{html.escape(method)}" checked>'
                         f'{html.escape(method)}</label>' for method in methods)
    classes = option("", "all") + "".join(option(name, name) for name in sorted({i.true_class for i in gallery}))
    controls = (
        f'<div id="gallery-controls">'
        f'<label>sort by <select id="gallery-sort">{sort_options}</select></label>'
        f'<select id="gallery-order">{option("ascending", "ascending")}{option("descending", "descending")}</select>'
        f'<span class="group">methods {checkboxes}</span>'
        f'<label>true class <select id="class-filter">{classes}</select></label>'
        f'<label>prediction <select id="correct-filter">'
        f'{option("all", "all")}{option("right", "right")}{option("wrong", "wrong")}</select></label>'
        f'<span id="gallery-count"></span></div>')
    cards = "\n".join(card(image, methods) for image in gallery)
    return (f'<section id="gallery-section"><h2>Images</h2>'
            f'<p class="note">Overlays: true box red, the method\'s box green; IoU of the boxes and deletion AUC '
            f'per image.</p>{controls}\n<div id="gallery">\n{cards}\n</div></section>')


def figures_section(figures: list[tuple[str, Path]]) -> str:
    items = "\n".join(
        f'<figure class="report-figure"><img src="{data_uri(Path(path).read_bytes())}" alt="{html.escape(caption)}">'
        f'<figcaption>{marked_up(caption)}</figcaption></figure>' for caption, path in figures)
    return f'<section id="figures"><h2>Figures</h2>\n{items}\n</section>'


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
{body}
<script>{script}</script>
</body>
</html>
"""

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 24px; }
h1 { font-size: 22px; margin: 0 0 8px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
p.note { max-width: 960px; margin: 4px 0; color: #444; }
code { font-size: 90%; background: #f2f2f2; padding: 0 3px; border-radius: 3px; }
#summary { border-collapse: collapse; font-variant-numeric: tabular-nums; }
#summary th, #summary td { padding: 3px 8px; border-bottom: 1px solid #e4e4e4; white-space: nowrap; }
#summary th { background: #f5f5f5; text-align: left; cursor: pointer; user-select: none; font-weight: 600; }
#summary th:hover { background: #e9eef6; }
#summary td.number, #summary td.missing { text-align: right; }
#summary td.missing { color: #999; }
#summary .interval { color: #666; font-size: 80%; white-space: nowrap; }
#summary tbody tr:hover { background: #fafafa; }
th .arrow { display: inline-block; width: 1em; margin-left: 2px; color: #36c; }
th .arrow:empty::after { content: "↕"; color: #bbb; }
#gallery-controls { position: sticky; top: 0; z-index: 1; background: #fff; padding: 8px 0;
  border-bottom: 1px solid #ddd; display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: center; }
#gallery-controls label { white-space: nowrap; }
#gallery-controls .group label { margin-left: 6px; }
#gallery-count { color: #666; }
#gallery { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 12px; }
.card { width: min-content; border: 1px solid #ddd; border-radius: 6px; padding: 8px; background: #fff; }
.card.wrong { border-color: #e0a0a0; background: #fff8f8; }
.card p { margin: 0; }
.classes { margin-bottom: 6px !important; }
.verdict { white-space: nowrap; font-size: 12px; padding: 0 4px; border-radius: 3px; }
.right .verdict { color: #176c2a; background: #e3f4e6; }
.wrong .verdict { color: #a01c1c; background: #fbe2e2; }
.overlays { display: flex; gap: 8px; }
.overlay { width: 112px; text-align: center; font-size: 12px; }
.overlay img, .no-overlay { width: 112px; height: 112px; display: block; image-rendering: pixelated; }
.no-overlay { line-height: 112px; background: #f2f2f2; color: #999; }
.method-name { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.scores { color: #555; font-variant-numeric: tabular-nums; }
.report-figure { margin: 16px 0; }
.report-figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; max-width: 960px; margin-top: 4px; }
"""

SCRIPT = """
"use strict";
// Compare two sort keys (a number, a string, or null for missing): missing last whichever the
// direction, numbers before text.
function compareKeys(a, b, direction) {
  if (a === null || b === null) return (a === null) - (b === null);
  if (typeof a !== typeof b) return typeof a === "number" ? -1 : 1;
  return direction * (typeof a === "number" ? a - b : a.localeCompare(b));
}

const summary = document.getElementById("summary");
if (summary) {
  const heads = Array.from(summary.tHead.rows[0].cells);
  heads.forEach((head, column) => head.addEventListener("click", () => {
    const direction = head.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    const key = row => {
      const cell = row.cells[column];
      if (cell.classList.contains("missing")) return null;
      return "value" in cell.dataset ? Number(cell.dataset.value) : cell.textContent;
    };
    const body = summary.tBodies[0];
    Array.from(body.rows).sort((a, b) => compareKeys(key(a), key(b), direction)).forEach(row => body.appendChild(row));
    heads.forEach(other => { other.removeAttribute("aria-sort"); other.querySelector(".arrow").textContent = ""; });
    head.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
    head.querySelector(".arrow").textContent = direction === 1 ? "▲" : "▼";
  }));
}

const gallery = document.getElementById("gallery");
if (gallery) {
  const control = id => document.getElementById(id);
  const cards = Array.from(gallery.querySelectorAll(".card"));
  const overlayOf = (card, method) =>
    Array.from(card.querySelectorAll(".overlay")).find(overlay => overlay.dataset.method === method);
  function sortCards() {
    const choice = control("gallery-sort").value;
    const direction = control("gallery-order").value === "descending" ? -1 : 1;
    const split = choice.indexOf(":");
    const metric = choice.slice(0, split), method = choice.slice(split + 1);
    const key = card => {
      if (choice === "index") return Number(card.dataset.index);
      const overlay = overlayOf(card, method);  // every card has every method's, a placeholder where no map
      const value = metric === "iou" ? overlay.dataset.iou : overlay.dataset.deletionAuc;
      return value === "" ? null : Number(value);
    };
    cards.slice().sort((a, b) => compareKeys(key(a), key(b), direction)
                                 || Number(a.dataset.index) - Number(b.dataset.index))
      .forEach(card => gallery.appendChild(card));
  }
  function filterCards() {
    const hidden = new Set(Array.from(document.querySelectorAll(".method-filter")).filter(box => !box.checked)
                             .map(box => box.value));
    const trueClass = control("class-filter").value, correct = control("correct-filter").value;
    let count = 0;
    cards.forEach(card => {
      const shown = (trueClass === "" || card.dataset.trueClass === trueClass)
        && (correct === "all" || (correct === "right") === (card.dataset.correct === "true"));
      card.style.display = shown ? "" : "none";
      count += shown;
      card.querySelectorAll(".overlay").forEach(overlay => {
        overlay.style.display = hidden.has(overlay.dataset.method) ? "none" : "";
      });
    });
    control("gallery-count").textContent = count + " of " + cards.length + " images shown";
  }
  ["gallery-sort", "gallery-order"].forEach(id => control(id).addEventListener("change", sortCards));
  document.querySelectorAll(".method-filter, #class-filter, #correct-filter")
    .forEach(input => input.addEventListener("change", filterCards));
  sortCards();
  filterCards();
}
"""
