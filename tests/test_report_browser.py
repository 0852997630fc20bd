"""Open the demo report in headless Chromium: every figure loads, no page errors; keep a screenshot.

Chromium is Debian's package (`make test` installs it when missing); Playwright drives it
through `executable_path`, so no browser is downloaded. The screenshot is kept in
`test-artifacts/report.png` at the repository root.
"""

from __future__ import annotations

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
                " w: i.naturalWidth, h: i.naturalHeight, alt: i.alt}))"
            )
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=False)
            page.screenshot(path=str(ARTIFACTS / "report-full.png"), full_page=True)
        finally:
            browser.close()
    assert len(images) >= 8, images
    broken = [im for im in images if not im["ok"]]
    assert not broken, broken
    assert all(im["src"].startswith("data:image/png") for im in images)
    assert all(im["alt"] for im in images), "every figure has an alt text"
    assert not problems, problems
    # self-contained: nothing but the file itself (and data: URIs) was requested
    assert all(u.startswith(("file://", "data:")) for u in requests), requests
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000
