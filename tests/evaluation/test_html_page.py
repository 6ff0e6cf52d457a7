import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation import html_page

METHODS = ["CAM", "Grad-CAM", "Score-CAM"]
ODD_CLASS = 'Bag <&> "x"'  # a class name that must be escaped
INDEXES = [21, 3, 57, 8, 40, 15]  # given out of order; the page shows them by index
TRUE_CLASSES = ["Shirt", ODD_CLASS, "Shirt", ODD_CLASS, "Shirt", ODD_CLASS]
PREDICTED = ["Shirt", ODD_CLASS, "Bag", "Shirt", "Shirt", ODD_CLASS]
IOU = {"CAM": [0.5, None, 0.1, 0.9, None, 0.3], "Grad-CAM": [0.2, 0.4, 0.6, 0.8, 0.1, 0.3],
       "Score-CAM": [0.7, 0.6, 0.5, None, 0.3, 0.2]}
DELETION = {"CAM": [0.3, 0.2, 0.1, 0.4, 0.5, 0.6], "Grad-CAM": [0.1] * 6, "Score-CAM": [0.2] * 6}
SUMMARY_HEADER = ["method", "MaxBoxAccV2 ↑", "deletion AUC ↓", "cascade: Spearman ↓"]
SUMMARY_ROWS = [["CAM", (62.5, "[60.1, 64.8]"), 12.25, 0.5], ["Grad-CAM", None, 30.0, float("nan")],
                ["Score-CAM", 71.25, 8.0, 0.25]]
BROWSER, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def png(seed: int, size: int = 16) -> bytes:
    """A small RGB PNG of noise with a red and a green box."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    pixels[2, 2:10], pixels[4:12, 6] = (255, 0, 0), (0, 255, 0)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def gallery() -> list[html_page.GalleryImage]:
    images = []
    for position, (index, true_class, predicted) in enumerate(zip(INDEXES, TRUE_CLASSES, PREDICTED)):
        overlays = {method: png(10 * index + m) for m, method in enumerate(METHODS)}
        if index == 57:
            del overlays["Score-CAM"]  # a method without a map for this image
        images.append(html_page.GalleryImage(
            index, true_class, predicted, overlays, {method: IOU[method][position] for method in METHODS},
            {method: DELETION[method][position] for method in METHODS}))
    return images


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    figures = []
    for number in range(2):
        (folder / f"figure{number}.png").write_bytes(png(number, size=40))
        figures.append((f"figure {number}: `curves` & more", folder / f"figure{number}.png"))
    path = folder / "report.html"
    notes = ["A note on `cam.pt` <b>not bold</b>.",
             "Against CAM: **flagged <x>**:\n- Grad-CAM: better\n- random: worse"]
    html_page.write_report_page(path, "Report <of> `cam.pt`", notes,
                                  SUMMARY_HEADER, SUMMARY_ROWS, gallery(), figures)
    return path


def test_page_is_self_contained_and_escaped(page):
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    sources = re.findall(r'<img src="([^"]*)"', text)
    assert len(sources) == 6 * 3 - 1 + 2 and all(src.startswith("data:image/png;base64,") for src in sources)
    assert base64.b64decode(sources[-1].split(",", 1)[1]) == (page.parent / "figure1.png").read_bytes()
    assert "<b>not bold</b>" not in text and "&lt;b&gt;not bold&lt;/b&gt;" in text
    assert "<code>cam.pt</code>" in text and "Bag &lt;&amp;&gt; &quot;x&quot;" in text and ODD_CLASS not in text
    assert sorted(path.name for path in page.parent.iterdir()) == ["figure0.png", "figure1.png", "report.html"]


def test_missing_summary_cells_show_a_dash_and_numbers_keep_their_value(page):
    text = page.read_text(encoding="utf-8")
    assert text.count('<td class="missing">—</td>') == 2  # None and NaN
    assert '<td class="number" data-value="71.25">71.25</td>' in text


def test_a_number_shows_its_interval_under_it_and_notes_keep_bold_and_list_lines(page):
    text = page.read_text(encoding="utf-8")
    assert '<td class="number" data-value="62.5">62.50<br><span class="interval">[60.1, 64.8]</span></td>' in text
    assert "Against CAM: <strong>flagged &lt;x&gt;</strong>:<br>• Grad-CAM: better<br>• random: worse" in text


# --- in a real browser, from a file:// URL ---

@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (BROWSER.exists() and DRIVER.exists()):
        pytest.skip(f"needs Chromium at {BROWSER} and its driver at {DRIVER} "
                    "(apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(BROWSER)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(str(DRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def opened(browser, page):
    browser.get(page.as_uri())
    return browser


def cards_shown(driver) -> list[int]:
    """The indexes of the displayed cards, in page order."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#gallery .card'))"
        ".filter(card => card.offsetParent !== null).map(card => Number(card.dataset.index));")


def choose(driver, select_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, select_id)).select_by_value(value)


@pytest.mark.oracle
@pytest.mark.slow  # drives Chromium, a subprocess
def test_images_load_and_the_page_renders(opened, tmp_path):
    loaded = opened.execute_script(
        "return Array.from(document.images).map(image => image.complete && image.naturalWidth > 0);")
    assert len(loaded) == 19 and all(loaded)
    assert opened.title == "Report <of> `cam.pt`"
    screenshot = tmp_path / "report.png"
    assert opened.save_screenshot(str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG") and Image.open(screenshot).size[0] > 0


@pytest.mark.oracle
@pytest.mark.slow  # drives Chromium, a subprocess
def test_summary_header_click_sorts_numbers_with_missing_last(opened):
    from selenium.webdriver.common.by import By

    def methods() -> list[str]:
        rows = opened.find_elements(By.CSS_SELECTOR, "#summary tbody tr")
        return [row.find_element(By.TAG_NAME, "td").text for row in rows]

    head = opened.find_elements(By.CSS_SELECTOR, "#summary th.sortable")[1]  # MaxBoxAccV2: 62.5, None, 71.25
    assert methods() == ["CAM", "Grad-CAM", "Score-CAM"]
    head.click()
    assert methods() == ["CAM", "Score-CAM", "Grad-CAM"] and head.find_element(By.CLASS_NAME, "arrow").text == "▲"
    head.click()
    assert methods() == ["Score-CAM", "CAM", "Grad-CAM"] and head.find_element(By.CLASS_NAME, "arrow").text == "▼"
    assert head.get_attribute("aria-sort") == "descending"
    opened.find_elements(By.CSS_SELECTOR, "#summary th.sortable")[2].click()  # deletion AUC: 12.25, 30, 8
    assert methods() == ["Score-CAM", "CAM", "Grad-CAM"] and head.find_element(By.CLASS_NAME, "arrow").text == ""


@pytest.mark.oracle
@pytest.mark.slow  # drives Chromium, a subprocess
def test_gallery_sorts_by_a_method_score_with_missing_last(opened):
    assert cards_shown(opened) == sorted(INDEXES)
    choose(opened, "gallery-sort", "iou:CAM")  # CAM's IoU: 21: 0.5, 3: —, 57: 0.1, 8: 0.9, 40: —, 15: 0.3
    assert cards_shown(opened) == [57, 15, 21, 8, 3, 40]
    choose(opened, "gallery-order", "descending")
    assert cards_shown(opened) == [8, 21, 15, 57, 3, 40]
    choose(opened, "gallery-sort", "deletion_auc:CAM")
    assert cards_shown(opened) == [15, 40, 8, 21, 3, 57]
    choose(opened, "gallery-sort", "index")
    assert cards_shown(opened) == sorted(INDEXES, reverse=True)


@pytest.mark.oracle
@pytest.mark.slow  # drives Chromium, a subprocess
def test_method_checkbox_hides_and_shows_its_overlays_in_every_card(opened):
    from selenium.webdriver.common.by import By

    def displayed(method: str) -> list[bool]:
        return [overlay.is_displayed() for overlay in opened.find_elements(By.CSS_SELECTOR, ".overlay")
                if overlay.get_attribute("data-method") == method]

    box = opened.find_element(By.CSS_SELECTOR, '.method-filter[value="Grad-CAM"]')
    box.click()
    assert displayed("Grad-CAM") == [False] * 6 and displayed("CAM") == [True] * 6
    box.click()
    assert displayed("Grad-CAM") == [True] * 6


@pytest.mark.oracle
@pytest.mark.slow  # drives Chromium, a subprocess
def test_class_and_correctness_filters_show_exactly_the_matching_cards(opened):
    from selenium.webdriver.common.by import By

    truth = dict(zip(INDEXES, zip(TRUE_CLASSES, PREDICTED)))
    for true_class in ["", "Shirt", ODD_CLASS]:
        for correct in ["all", "right", "wrong"]:
            choose(opened, "class-filter", true_class)
            choose(opened, "correct-filter", correct)
            expected = sorted(index for index, (label, predicted) in truth.items()
                              if true_class in ("", label) and correct in ("all", "right" if label == predicted
                                                                           else "wrong"))
            assert cards_shown(opened) == expected, (true_class, correct)
            count = opened.find_element(By.ID, "gallery-count").text
            assert count == f"{len(expected)} of 6 images shown"
