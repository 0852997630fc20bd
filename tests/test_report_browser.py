"""Open the demo report in headless Chromium: every figure loads, no page errors; keep a screenshot.

Readability at 100% zoom (1280 px window): the forest plot is the first figure; no figure
is wider than the page or shown scaled down; the smallest font of every figure (written
by the report into the PNG's ``min-font-px`` text chunk, checked here against the
displayed scale) and of every text element of the page is at least 9 px.

Chromium is Debian's package (`make test` installs it when missing); Playwright drives it
through `executable_path`, so no browser is downloaded. The screenshot is kept in
`test-artifacts/report.png` at the repository root.
"""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import pytest
from fixtures_demo import quick_demo  # noqa: F401  (session fixture)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed (make test installs it)")
def test_report_renders_in_chromium(quick_demo):  # noqa: F811
    sync_api = pytest.importorskip("playwright.sync_api")
    report = quick_demo / "audit" / "report" / "index.html"
    problems: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=_chromium(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri(), wait_until="load")
            images = page.evaluate(
                "Array.from(document.images).map(i => ({src: i.src.slice(0, 30), ok: i.complete && i.naturalWidth > 0,"
                " w: i.naturalWidth, h: i.naturalHeight, alt: i.alt, shown: i.getBoundingClientRect().width,"
                " border: i.offsetWidth - i.clientWidth, right: i.getBoundingClientRect().right,"
                " figure: i.closest('figure') ? i.closest('figure').id : ''}))"
            )
            uris = page.evaluate("Array.from(document.images).map(i => i.src)")
            page_width = page.evaluate("document.querySelector('main').getBoundingClientRect().right")
            small_text = page.evaluate(
                "Array.from(document.querySelectorAll('body *')).filter(e => e.childNodes.length &&"
                " Array.from(e.childNodes).some(n => n.nodeType === 3 && n.textContent.trim()) &&"
                " parseFloat(getComputedStyle(e).fontSize) < 9).map(e => e.tagName + ': ' + e.textContent.slice(0, 40))"
            )
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=False)
            page.screenshot(path=str(ARTIFACTS / "report-full.png"), full_page=True)
        finally:
            browser.close()
    assert len(images) >= 8, images
    assert images[0]["figure"] == "fig-forest", [im["figure"] for im in images[:3]]  # the forest plot comes first
    from PIL import Image

    for im, uri in zip(images, uris):
        shown = im["shown"] - im["border"]
        assert im["right"] <= page_width + 0.5, (im["figure"], im["right"], page_width)  # not wider than the page
        assert abs(shown - im["w"]) <= 1, (im["figure"], shown, im["w"])  # natural size: never scaled down
        png = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        min_font = float(png.info["min-font-px"]) * shown / im["w"]
        assert min_font >= 9.0, (im["figure"], min_font)
    assert not small_text, small_text[:5]
    broken = [im for im in images if not im["ok"]]
    assert not broken, broken
    assert all(im["src"].startswith("data:image/png") for im in images)
    assert all(im["alt"] for im in images), "every figure has an alt text"
    assert not problems, problems
    # self-contained: nothing but the file itself (and data: URIs) was requested
    assert all(u.startswith(("file://", "data:")) for u in requests), requests
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000
