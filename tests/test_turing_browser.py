"""The "Real or Fake?" page end to end, in a real headless Chromium driven by Playwright.

Opens the site from file:// (no server), answers every image by keyboard, reloads halfway and
checks nothing is lost, undoes an answer, finishes, checks the page's score, downloads the answers
and scores them with turing-score. Screenshots at phone and desktop widths go to tmp_path, or to
$TURING_SCREENSHOT_DIR when set (to look at them).

Needs Debian's chromium (`apt-get install chromium`) and the `playwright` package; Playwright's
own browser download is never used. Without chromium the test is skipped, with a reason saying so.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dcgan.turing.score import score_answers
from dcgan.turing.site import SiteOptions, build_site
from tests.conftest import TRAINING_DATA

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
N_IMAGES = 12
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
PHONE_SIDEWAYS = {"width": 844, "height": 390}


def chromium_path() -> str | None:
    """The system Chromium (Debian: chromium; Ubuntu and others: chromium-browser)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def fake_lesion(path: Path, seed: int, size: int = 128) -> None:
    """A blurry brown blob on skin-colored noise: a stand-in for a generator's output."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    cx, cy, r = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.15, 0.3)
    lesion = np.clip(1.3 - np.hypot(xx - cx, (yy - cy) * 1.2) / r, 0, 1)[..., None]
    skin = np.array([215, 170, 150]) + rng.normal(0, 8, (size, size, 3))
    brown = np.array([110, 60, 40]) + rng.normal(0, 12, (size, size, 3))
    arr = np.clip(skin * (1 - lesion) + brown * lesion, 0, 255).astype(np.uint8)
    Image.fromarray(arr).filter(ImageFilter.GaussianBlur(1.2)).save(path)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("chromium not found: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright not installed: pip install -r requirements-dev.txt "
                    "(never `playwright install`: the test uses the system chromium)")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A 12-image site: 6 reals from training_data (160 px, brought to 128) and 6 synthetic fakes."""
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    for i in range(8):
        fake_lesion(fakes / f"gen_{i}.png", seed=i)
    out = tmp_path / "study"
    build_site(TRAINING_DATA, fakes, out, SiteOptions(n=N_IMAGES, seed=11))
    return out


def screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TURING_SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shown_id(page: Any) -> str:
    """Wait for the image on screen to be decoded; return its id (from its file name)."""
    page.wait_for_function("() => { const i = document.getElementById('image');"
                           " return i.complete && i.naturalWidth > 0; }")
    src = page.get_attribute("#image", "src")
    return Path(src).stem


def progress(page: Any) -> str:
    return page.inner_text("#progress-text")


def check_layout(page: Any) -> None:
    """No sideways scrolling, the image enlarged well beyond its natural size (128 px here: a 64 or
    128 px image at its own size is too small for a clinician), both answer buttons on screen
    without scrolling, and the ends of the confidence scale labelled."""
    sizes = page.evaluate("() => { const i = document.getElementById('image');"
                          " const r = i.getBoundingClientRect();"
                          " const bottom = Math.max(...['real', 'fake'].map("
                          "   b => document.getElementById(b).getBoundingClientRect().bottom));"
                          " const hints = [...document.querySelectorAll('.confidence-scale .hint')]"
                          "   .map(h => h.getBoundingClientRect().width);"
                          " return [r.width, i.naturalWidth, document.documentElement.scrollWidth,"
                          " window.innerWidth, bottom, window.innerHeight, hints]; }")
    width, natural, scroll_width, inner_width, buttons_bottom, inner_height, hints = sizes
    assert width >= 2 * natural
    assert scroll_width <= inner_width
    assert buttons_bottom <= inner_height
    assert len(hints) == 2 and min(hints) > 0  # "guessing" and "certain" shown


def test_rate_reload_undo_finish_download_score(browser: Any, study: Path, tmp_path: Path) -> None:
    key = json.loads((study / "key.json").read_text())
    truth = {item["id"]: item["label"] for item in key["items"]}
    fakes = [i for i in truth if truth[i] == "fake"]
    wrong_on = set(fakes[:2])  # the rater is fooled by two fakes: 10 of 12 right
    shots = screenshot_dir(tmp_path)

    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((study / "site" / "index.html").as_uri())

    page.wait_for_selector("#start:not([hidden])")
    page.screenshot(path=str(shots / "turing-desktop-start.png"))
    page.keyboard.press("Enter")  # no name yet: refused
    assert page.is_visible("#start") and page.get_attribute("#rater", "aria-invalid") == "true"
    page.fill("#rater", "Dr Test")
    page.keyboard.press("Enter")

    keys = {"real": ["r", "ArrowLeft"], "fake": ["f", "ArrowRight"]}
    seen: list[str] = []
    verdicts: list[str] = []
    for step in range(N_IMAGES):
        if step == N_IMAGES // 2:  # a reload halfway loses nothing
            page.reload()
            assert progress(page) == f"{step + 1} / {N_IMAGES}"
            assert page.inner_text("#who") == "Dr Test"
        image_id = shown_id(page)
        assert progress(page) == f"{step + 1} / {N_IMAGES}" and image_id not in seen
        if step == 3:  # answer, then undo it: the same image comes back
            page.keyboard.press("f")
            shown_id(page)
            page.keyboard.press("Backspace")
            assert shown_id(page) == image_id and progress(page) == f"{step + 1} / {N_IMAGES}"
        if step == 1:  # sharp (pixelated) or smooth enlargement, the native size stated
            native = page.inner_text("#native").replace("\u00a0", " ")
            assert native == "128 × 128 px images, enlarged"
            rendering = "getComputedStyle(document.getElementById('image')).imageRendering"
            assert page.evaluate(rendering) == "auto"
            page.click("#crisp")
            assert page.evaluate(rendering) == "pixelated"
            page.screenshot(path=str(shots / "turing-desktop-sharp.png"))
            page.click("#crisp")
            assert page.evaluate(rendering) == "auto"
            page.click("#crisp")  # left on: kept across the reload below, and keys still answer
        if step == N_IMAGES // 2:
            assert page.evaluate(rendering) == "pixelated"
        if step == 2:
            check_layout(page)
            page.keyboard.press("4")
            page.keyboard.press("Tab")  # keyboard focus is visible
            assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
            page.screenshot(path=str(shots / "turing-desktop-rate.png"))
            page.set_viewport_size(PHONE)
            check_layout(page)
            page.screenshot(path=str(shots / "turing-phone-rate.png"))
            page.set_viewport_size(PHONE_SIDEWAYS)
            check_layout(page)
            page.screenshot(path=str(shots / "turing-phone-sideways-rate.png"))
            page.set_viewport_size(DESKTOP)
        label = truth[image_id]
        verdict = ("real" if label == "fake" else "fake") if image_id in wrong_on else label
        page.keyboard.press(keys[verdict][step % 2])
        seen.append(image_id)
        verdicts.append(verdict)

    page.wait_for_selector("#review:not([hidden])")
    page.keyboard.press("Backspace")  # back from the review to the last image, answer it again
    assert shown_id(page) == seen[-1]
    page.keyboard.press(keys[verdicts[-1]][0])
    page.wait_for_selector("#review:not([hidden])")
    page.keyboard.press("Enter")  # Finish has the focus
    page.wait_for_selector("#done:not([hidden])")
    assert page.inner_text("#score-correct") == str(N_IMAGES - 2)
    page.keyboard.press("Backspace")  # locked: nothing changes
    page.reload()
    assert page.is_visible("#done") and page.inner_text("#score-correct") == str(N_IMAGES - 2)
    page.screenshot(path=str(shots / "turing-desktop-done.png"))
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(shots / "turing-phone-done.png"), full_page=True)

    with page.expect_download() as download_info:
        page.click("#download")
    download = download_info.value
    assert download.suggested_filename == f"turing-answers-{key['site_id']}-dr-test.json"
    answers_path = tmp_path / download.suggested_filename
    download.save_as(str(answers_path))
    context.close()

    answers = json.loads(answers_path.read_text())
    assert answers["rater"] == "Dr Test" and len(answers["answers"]) == N_IMAGES
    assert [a["id"] for a in answers["answers"]] == seen
    assert answers["answers"][2]["confidence"] == 4
    result = score_answers(study, [answers_path])
    stats = result.report["raters"][0]
    assert (stats["correct"], stats["sensitivity"], stats["specificity"]) == (N_IMAGES - 2, 4 / 6, 1.0)
    assert {r["id"] for r in result.report["fakes_called_real"] if r["fooled"]} == wrong_on
    assert all(url.startswith(("file://", "blob:", "data:")) for url in requests), requests
    assert not errors
