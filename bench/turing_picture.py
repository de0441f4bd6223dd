#!/usr/bin/env python3
"""The README's picture of the "Real or Fake?" page: docs/images/turing_page.png.

Run from the repository root:  .venv/bin/python bench/turing_picture.py [REALS FAKES]

Builds a 20-image site (by default the 64 px ISIC reals of ../shared/data/isic/all-64 and the 2018
DCGAN's samples in ../shared/data/seed-dcgan-100k, brought down to 64 px) in a temp folder, opens it
in the system chromium (Playwright, as tests/test_turing_browser.py does; never `playwright
install`), signs in as "Dr Example", answers the first image "real" and picks confidence 3 on the
second, and saves a 1280x800 screenshot.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.sync_api import sync_playwright  # noqa: E402

from dcgan.turing.site import SiteOptions, build_site  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IMAGE_SHOWN = "document.getElementById('image').complete && document.getElementById('image').naturalWidth > 0"


def main() -> None:
    reals, fakes = (sys.argv[1:3] if len(sys.argv) > 2
                    else (SHARED / "isic" / "all-64", SHARED / "seed-dcgan-100k"))
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium not found: apt-get install chromium")
    out = REPO / "docs" / "images" / "turing_page.png"
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        build_site(reals, fakes, Path(tmp) / "study", SiteOptions(n=20, seed=3))
        browser = pw.chromium.launch(executable_path=chromium, args=FLAGS, headless=True)
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.goto((Path(tmp) / "study" / "site" / "index.html").as_uri())
        page.wait_for_selector("#start:not([hidden])")
        page.fill("#rater", "Dr Example")
        page.keyboard.press("Enter")
        page.wait_for_function(IMAGE_SHOWN)
        page.keyboard.press("r")
        page.wait_for_timeout(300)  # the next image replaces the first
        page.wait_for_function(IMAGE_SHOWN)
        page.keyboard.press("3")
        page.screenshot(path=str(out))
        browser.close()
    print(out)


if __name__ == "__main__":
    main()
