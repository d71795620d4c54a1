"""A real headless Chromium signs in to the running app, uploads a real photo, waits
for the predictions and the heatmap, saves the analysis twice to "My history"
(photo kept), compares the two entries and saves a screenshot: the trend plot
and the side-by-side heatmaps render offline.

Browser: Debian's ``chromium`` package (``apt-get install chromium``), driven by
the ``playwright`` Python package through ``executable_path`` — Playwright's
own browser download (``playwright install``) is never used. The test skips,
saying which, when either is absent. Screenshots go to the test's ``tmp_path``
and to ``tests/artifacts/`` (git-ignored; CI uploads it as an artefact).

The photo is a real HAM10000 image from ``../shared/data`` when that folder is
there, else a synthetic close-up (the artefact's name says which).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from skin.history.users import Users
from tests.app_helpers import RunningApp, make_app_models
from tests.bad_uploads import skin_photo

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
USER = ("ann", "ann's long passphrase")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium() -> str:
    path = os.environ.get("SKINLENS_CHROMIUM") or next((p for p in CHROMIUM_CANDIDATES if os.path.exists(p)), None)
    if not path:
        pytest.skip("Debian chromium not installed (apt-get install -y chromium); the browser test needs it")
    return path


def _photo(tmp_path: Path) -> tuple[Path, str]:
    images = SHARED / "ham10000" / "images"
    if images.is_dir():
        first = sorted(images.glob("ISIC_*.jpg"))[:1]
        if first:
            return first[0], "ham10000"
    p = tmp_path / "synthetic.jpg"
    skin_photo(seed=11).save(p, "JPEG", quality=92)
    return p, "synthetic"


@pytest.mark.slow
def test_browser_upload_predict_explain(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright not installed (pip install playwright; no 'playwright "
                                          "install' needed: Debian's chromium is used)")
    chromium = _chromium()
    photo, source = _photo(tmp_path)
    Users(tmp_path / "users.json").add(*USER)
    with RunningApp(make_app_models(tmp_path), tmp_path, auth=USER, SKINLENS_USERS=str(tmp_path / "users.json"),
                    SKINLENS_DB=f"sqlite:///{tmp_path / 'history.sqlite'}") as app, \
            sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(app.url, wait_until="domcontentloaded")
            page.get_by_label("username").fill(USER[0])
            page.get_by_label("password").fill(USER[1])
            page.get_by_role("button", name="Login").click()
            page.get_by_text("Not medical advice").first.wait_for(timeout=60_000)
            page.locator("#photo input[type=file]").set_input_files(str(photo))
            page.locator("#photo img").first.wait_for(timeout=60_000)  # preview shown = upload done
            page.locator("#analyse").click()
            page.locator("#predictions").get_by_text("probability").first.wait_for(timeout=120_000)
            assert page.locator("#quality").get_by_text("Photo quality").count() >= 1
            assert page.locator("#fairness").get_by_text("skin tone").count() >= 1
            page.locator("#explain").click()
            heat = page.locator("#heatmap img").first
            heat.wait_for(timeout=120_000)
            page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=heat.element_handle(),
                                   timeout=60_000)
            _save_twice_and_compare(page)
            shot = tmp_path / f"skinlens_{source}.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / shot.name)


def _loaded(page, selector: str) -> None:
    """Wait until the image under ``selector`` has been decoded (a real picture, not a placeholder)."""
    img = page.locator(f"{selector} img").first
    img.wait_for(timeout=60_000)
    page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=img.element_handle(), timeout=60_000)


def _save_twice_and_compare(page) -> None:
    """My history: save the analysis twice with its photo, see two rows and the trend plot, compare them."""
    # one table cell "closeup" (photo type) and one "yes" (photo kept) per saved entry
    cells = ("(text) => [...document.querySelectorAll('#history-table [role=gridcell]')]"
             ".filter(c => c.innerText.trim() == text)")
    for n in (1, 2):
        page.get_by_label("keep this photo").check()
        page.locator("#history-save").click()
        page.wait_for_function(f"() => ({cells})('closeup').length >= {n}", timeout=120_000)
    assert page.evaluate(f"() => [({cells})('closeup').length, ({cells})('yes').length]") == [2, 2]
    _loaded(page, "#history-trends")
    for label, steps in (("Compare: first entry", 1), ("Compare: second entry", 2)):
        page.get_by_label(label).click()
        for _ in range(steps):
            page.keyboard.press("ArrowDown")
        page.keyboard.press("Enter")
    page.locator("#history-compare").click()
    page.locator("#history-verdicts").get_by_text("no meaningful change").first.wait_for(timeout=120_000)
    _loaded(page, "#history-heatmap-older")
    _loaded(page, "#history-heatmap-newer")
