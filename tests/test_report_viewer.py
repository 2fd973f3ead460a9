"""report.html's slice viewer in a real browser (headless Chromium through selenium).

A screenshot of each page is kept under $COVSEG_ARTIFACTS (default runs/artifacts/, ignored by
git) for a person to look at.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

import covseg
from covseg.demo import save_phantom
from covseg.intensity import Intensity
from covseg.io.scan import Geometry, Scan
from covseg.report import render_html
from covseg.report.figures import overlay, png_bytes
from covseg.report.model import (QA, Coverage, InputInfo, LungNumbers, ModelInfo, Preprocessing,
                                 Quantification, Report, Severity)

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1800")
# what the page's canvas shows: pixels drawn, and how many are clearly red or green
PIXELS = """var c = document.getElementById('v-canvas'), d = c.getContext('2d')
  .getImageData(0, 0, c.width, c.height).data, n = 0, red = 0, green = 0;
for (var i = 0; i < d.length; i += 4) {
  if (d[i] + d[i + 1] + d[i + 2] > 30) { n++; }
  if (d[i] > d[i + 1] + 40 && d[i] > d[i + 2] + 40) { red++; }
  if (d[i + 1] > d[i] + 40 && d[i + 1] > d[i + 2] + 40) { green++; }
}
return {lit: n, red: red, green: green, url: c.toDataURL()};"""


def artifacts() -> Path:
    default = Path(__file__).resolve().parents[1] / "runs" / "artifacts"
    root = Path(os.environ.get("COVSEG_ARTIFACTS") or default)
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="module")
def browser():
    binary = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                   if shutil.which(n)), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("no chromium/chromedriver binary found (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (test extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="covseg-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def phantom_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("viewer")
    ct = save_phantom(covseg.make_phantom(shape=(24, 96, 96), spacing=(6.0, 3.6, 3.6)), out / "ct.nii.gz")
    result = covseg.segment(ct, out / "result")
    return out / "result" / "report.html", result


def _open(driver, page: Path):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page.resolve().as_uri())
    WebDriverWait(driver, 10).until(
        lambda d: d.find_element("id", "viewer").get_attribute("data-ready") == "1")
    return driver.find_element("id", "viewer")


def _shown(driver, viewer, z: int) -> dict:
    """Wait until slice z is drawn, then read the canvas."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 5).until(lambda d: viewer.get_attribute("data-drawn") == str(z))
    return driver.execute_script(PIXELS)


def test_report_is_one_offline_file(phantom_report):
    page = phantom_report[0].read_text()
    assert 'id="covseg-viewer-data"' in page and 'id="v-canvas"' in page
    # nothing is fetched: no src/href/url() pointing anywhere but data: URIs
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", page)
    assert "url(" not in page and "@import" not in page and "fetch(" not in page


def test_viewer_scrolls_jumps_and_toggles(browser, phantom_report):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    page, result = phantom_report
    viewer = _open(browser, page)
    slices = result.labels.shape[0]
    start = int(viewer.get_attribute("data-slice"))
    assert start == int((result.labels == 1).sum(axis=(1, 2)).argmax())  # the most affected slice
    first = _shown(browser, viewer, start)
    assert first["lit"] > 0.2 * 640 * 640 and first["red"] > 0 and first["green"] > 0
    assert viewer.get_attribute("data-preset") == "lung"

    down = start - 1 if start > 0 else start + 1
    browser.find_element("tag name", "body").send_keys(Keys.ARROW_UP if down > start else Keys.ARROW_DOWN)
    assert int(viewer.get_attribute("data-slice")) == down
    assert browser.find_element("id", "v-index").text.startswith(f"slice {down + 1} of {slices}")
    moved = _shown(browser, viewer, down)
    assert moved["url"] != first["url"]

    browser.find_element("tag name", "body").send_keys(Keys.PAGE_UP)  # 10 slices headward
    assert int(viewer.get_attribute("data-slice")) == min(slices - 1, down + 10)

    slider = browser.find_element("id", "v-slice")
    browser.execute_script("arguments[0].value = 3; arguments[0].dispatchEvent(new Event('input'))", slider)
    assert int(viewer.get_attribute("data-slice")) == 3
    slider.send_keys(Keys.ARROW_RIGHT)  # the range input's own keys, not the page's
    assert int(viewer.get_attribute("data-slice")) == 4
    canvas = browser.find_element("id", "v-canvas")
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(canvas), 0, -120).perform()
    WebDriverWait(browser, 5).until(lambda d: viewer.get_attribute("data-slice") == "5")  # wheel up: headward

    plot = browser.find_element("id", "v-plot")  # the right end of the plot is the top slice
    width = plot.rect["width"]
    right_end = int(width * (595 - 300) / 600)
    ActionChains(browser).move_to_element_with_offset(plot, right_end, 0).click().perform()
    assert int(viewer.get_attribute("data-slice")) == slices - 1
    ActionChains(browser).move_to_element_with_offset(plot, 0, 0).click().perform()  # the middle
    middle = int(viewer.get_attribute("data-slice"))
    assert abs(middle - (slices - 1) * (300 - 44) / (590 - 44)) <= 1

    set_value = "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))"
    browser.execute_script(set_value, slider, start)
    with_overlay = _shown(browser, viewer, start)
    browser.find_element("id", "v-overlay").click()
    plain = browser.execute_script(PIXELS)
    assert plain["red"] < 0.1 * with_overlay["red"] and plain["green"] < 0.1 * with_overlay["green"]
    browser.find_element("id", "v-overlay").click()

    browser.find_element("css selector", "button[data-preset=mediastinal]").click()
    assert viewer.get_attribute("data-preset") == "mediastinal"
    assert _shown(browser, viewer, start)["url"] != with_overlay["url"]
    browser.find_element("css selector", "button[data-preset=lung]").click()
    ActionChains(browser).scroll_to_element(viewer).perform()
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(artifacts() / "report_viewer.png"))

    grade = browser.find_element("css selector", ".key .grade")
    assert float(grade.value_of_css_property("font-size").removesuffix("px")) >= 20
    assert grade.text == result.quantification.severity.grade
    figure = browser.find_element("css selector", ".figs img")
    assert figure.rect["width"] >= 300  # pictures drawn large, not at their 96 px


def test_picture_has_no_window_presets(browser, tmp_path):
    """A picture (not HU): one slice, presets disabled with a note, the overlay still drawn."""
    yy, xx = np.mgrid[:120, :160]
    picture = (80 + 60 * np.sin(xx / 9.0) * np.cos(yy / 7.0)).astype(np.float32)[None]
    labels = np.zeros((1, 120, 160), np.uint8)
    labels[0, 20:100, 20:70] = 2
    labels[0, 40:70, 30:55] = 1
    scan = Scan(picture, (1.0, 1.0, 1.0), Intensity.DISPLAY, Geometry("plane"), tmp_path / "p.png",
                "picture", spacing_known=False)
    side = LungNumbers(2.0, 0.4, 18.0)
    q = Quantification(4.0, 0.75, 18.75, Severity("CT-1", "mild", "test"), side, side, [18.75])
    report = Report("test", InputInfo("p.png", "picture", [1, 120, 160], [1.0, 1.0, 1.0], False,
                                      "display"), q, None, None,
                    ModelInfo("test", None, None, False, "torch", "fp32"),
                    Preprocessing([256, 256], 1.0, 0, "lung extent", 3, "model", "min-max + CLAHE"),
                    QA([], False),
                    Coverage("one slice", True, True), [], {})
    page = tmp_path / "report.html"
    pictures = {"overlay": png_bytes(overlay(picture[0], labels[0], scan.intensity))}
    page.write_text(render_html(report, pictures, scan, labels))
    viewer = _open(browser, page)
    shown = _shown(browser, viewer, 0)
    assert shown["red"] > 0 and shown["green"] > 0
    buttons = browser.find_elements("css selector", ".presets button")
    assert buttons and all(not b.is_enabled() for b in buttons)
    assert "Hounsfield" in browser.find_element("css selector", ".presets").text
    assert not browser.find_element("id", "v-slice").is_displayed()
    browser.save_screenshot(str(artifacts() / "report_viewer_picture.png"))


def test_slices_are_small_and_fit_the_budget(monkeypatch, tmp_path):
    """Slices shrink to MAX_SIDE; a noisy scan over the budget is encoded at a lower quality."""
    import base64
    import io

    from PIL import Image

    from covseg.report import viewer

    rng = np.random.default_rng(0)
    hu = rng.normal(-300, 400, (4, 300, 400)).astype(np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    labels[:, 100:200, 50:150] = 2
    labels[:, 150:160, 60:70] = 1
    scan = Scan(hu, (2.0, 0.8, 0.8), Intensity.HU, Geometry("nifti"), tmp_path / "ct.nii.gz", "nifti")
    monkeypatch.setattr(viewer, "BUDGET", 1)
    data = viewer.viewer_data(scan, labels, [1.0] * 4)
    assert (data["width"], data["height"]) == (256, 192) and data["quality"] == viewer.QUALITIES[-1]
    assert sorted(data["images"]) == ["lung", "mediastinal"] and data["start"] == 0
    mask = Image.open(io.BytesIO(base64.b64decode(data["labels"][0])))
    assert mask.mode == "P" and mask.size == (256, 192)
    assert set(np.unique(np.asarray(mask))) == {0, 1, 2}
