"""The page of `ifa-rt serve` in a real browser (Debian's chromium driven by Playwright).

Against the real command on loopback with the bundled model: a real CamVid frame uploaded
through the page shows its overlay, and the label map behind the overlay equals the API's
labels for the same bytes; an oversized image and a wrong token show their readable
messages beside the image. A screenshot goes to the test's temp folder (and, with
IFA_RT_PAGE_SCREENSHOT=PATH, to PATH: that is how docs/img/serve-page.jpg is made).
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _serve import HAVE_RAY, request, running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the test extra installs it
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(not HAVE_RAY, reason="Ray Serve is not installed"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed"),
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
    ),
    pytest.mark.slow,
]

TOKEN = "page-token-0123"
MAX_PIXELS = 200_000  # a 360×480 CamVid frame passes, 600×800 does not
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """`ifa-rt serve camvid` (TorchScript fp32: no background compile) with a token."""
    log = tmp_path_factory.mktemp("serve_page") / "serve.log"
    args = ["--precision", "fp32", "--runtime", "jit", "--shapes", "360x480", "--num-cpus", "2"]
    args += ["--max-pixels", str(MAX_PIXELS)]
    with running_server(log, "camvid", args, env={"IFA_RT_SERVE_TOKEN": TOKEN}) as (url, _):
        yield url


@pytest.fixture(scope="module")
def page(url):
    """A headless chromium page showing the service's page."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        yield page
        browser.close()


def upload(page, path: Path, token: str) -> dict:
    """Upload one file through the page; the page's record of it once its card settled."""
    count = page.evaluate("window.ifaResults.length")
    page.fill("#token", token)
    page.set_input_files("#files", str(path))
    page.wait_for_function(f"window.ifaResults.length > {count}", timeout=WAIT_MS)
    page.wait_for_selector(
        ".card:nth-child(1)[data-state=done], .card:nth-child(1)[data-state=error]",
        timeout=WAIT_MS,
    )
    return page.evaluate(
        f"""() => {{ const r = window.ifaResults[{count}];
                    return {{...r, labels: r.labels ? Array.from(r.labels) : null}}; }}"""
    )


def test_a_real_frame_shows_the_apis_labels(url, page, camvid_val_paths, tmp_path):
    frame = camvid_val_paths[3]
    assert page.inner_text("#facts").startswith("camvid")
    assert page.is_visible("#token")  # the service wants a token
    shown = upload(page, frame, TOKEN)
    assert shown["status"] == 200, shown
    status, headers, png = request(url, frame.read_bytes(), {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    api = np.array(Image.open(io.BytesIO(png)))
    labels = np.array(shown["labels"], np.uint8).reshape(shown["height"], shown["width"])
    np.testing.assert_array_equal(labels, api)
    assert shown["engine"] == headers["x-ifa-engine"] == "jit fp32"
    assert shown["serverMs"] > 0 and shown["roundTripMs"] >= shown["serverMs"]

    card = page.locator(".card").first
    assert card.locator(".stack canvas").count() == 1 and card.locator("img").count() == 2
    legend = card.locator(".legend li").all_inner_texts()
    shares = dict(re.fullmatch(r"(.+?)\s+([0-9.]+) %", text.strip()).groups() for text in legend)
    counts = np.bincount(api.ravel(), minlength=11)
    classes = page.evaluate("MODEL.classes")
    expected = {classes[k]: f"{100 * n / api.size:.1f}" for k, n in enumerate(counts) if n}
    assert shares == expected
    page.screenshot(path=str(tmp_path / "serve-page.png"), full_page=True)
    if os.environ.get("IFA_RT_PAGE_SCREENSHOT"):
        page.screenshot(path=os.environ["IFA_RT_PAGE_SCREENSHOT"], quality=85)
    page.fill("#opacity", "25")
    assert card.locator(".stack canvas").evaluate("c => c.style.opacity") == "0.25"


def test_refusals_are_readable_beside_the_image(page, camvid_val_paths, tmp_path):
    big = tmp_path / "big.png"
    Image.open(camvid_val_paths[0]).convert("RGB").resize((800, 600)).save(big)
    shown = upload(page, big, TOKEN)
    assert shown["status"] == 413
    message = page.locator(".card").first.locator(".error").inner_text()
    assert message.startswith("413 Too large: serve: request body: expected an image of at most")
    assert "got 800x600 (480000 pixels)" in message

    shown = upload(page, camvid_val_paths[0], "not-the-token")
    assert shown["status"] == 401
    message = page.locator(".card").first.locator(".error").inner_text()
    assert message.startswith("401 Unauthorized (check the token): serve: header 'Authorization'")
