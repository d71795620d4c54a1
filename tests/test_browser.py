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

A second test runs the app on its default models (``skinlens.yaml``: the
embedded condition, clinical and age models and the photo-type gate) with a
real DermNet clinical photo: the page shows the detected photo type and the
fairness cards with measured numbers per skin tone
(``tests/artifacts/skinlens_default_models.png``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from skin.history.users import Users
from tests.app_helpers import RunningApp, make_app_models
from tests.bad_uploads import sideways_photo, skin_photo

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
            _screenshot(page, tmp_path / f"skinlens_{source}.png")
        finally:
            browser.close()


@pytest.mark.slow
def test_browser_default_models_show_the_photo_type_and_fairness_numbers(tmp_path):
    from skin.phototype import PHOTO_TYPE_NAMES

    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
    chromium = _chromium()
    photo = SHARED / "dermnet" / "images" / "Acne vulgaris" / "acne-face-10-1.jpg"
    if not photo.is_file():
        pytest.skip(f"needs a real clinical photo for the photo-type gate to detect ({photo} not found; "
                    "see ../shared/data/README.md)")
    with RunningApp(REPO / "skinlens.yaml", tmp_path) as app, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 2200})
            page.goto(app.url, wait_until="domcontentloaded")
            page.get_by_text("Not medical advice").first.wait_for(timeout=60_000)
            page.locator("#photo input[type=file]").set_input_files(str(photo))
            page.locator("#photo img").first.wait_for(timeout=60_000)
            page.locator("#analyse").click()
            detected = page.locator("#predictions").get_by_text("Detected:")
            detected.first.wait_for(timeout=120_000)
            # a phone photo of acne on a face: clinical or face, never dermoscopy or out of scope
            text = page.locator("#predictions").inner_text()
            assert any(f"Detected: {PHOTO_TYPE_NAMES[t]}" in text for t in ("clinical", "face")), text
            assert "Skin condition, ordinary photo" in text  # routed to the clinical model
            assert "acne_rosacea" not in text and "bcc_scc" not in text  # readable names, not raw labels
            fairness = page.locator("#fairness")
            fairness.get_by_text("95 % CI").first.wait_for(timeout=60_000)
            cards = fairness.inner_text()
            assert cards.count("95 % CI") == 3  # one table with numbers per shipped model
            assert "not measured for any skin tone" not in cards
            assert "(you)" in cards  # the visitor's bucket highlighted
            # the card beside the answer comes first: the clinical model's, not the dermoscopy model's
            assert cards.index("Skin condition, ordinary photo") < cards.index("The other models")
            assert cards.index("The other models") < cards.index("Skin condition (7 HAM10000")
            # Explain offers the model that read the photo, not the close-up model that refused it
            clinical_title = "Skin condition, ordinary photo"
            assert page.locator("#explain-model input").input_value().startswith(clinical_title)
            page.locator("#explain").click()
            page.locator("#explain-details").get_by_text("clinical").first.wait_for(timeout=120_000)
            _screenshot(page, tmp_path / "skinlens_default_models.png")
        finally:
            browser.close()


@pytest.mark.slow
def test_browser_heic_photo_is_analysed_upright(tmp_path):
    """An iPhone HEIC, stored sideways, picked in a browser that knows its type (macOS: ``image/heic``):
    Gradio's widget accepts it as ``image/*`` and the app reads and turns it (Chromium cannot show its
    preview; where the browser gives no type, Gradio's widget refuses the file before it is sent)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
    chromium = _chromium()
    with RunningApp(make_app_models(tmp_path), tmp_path) as app, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(app.url, wait_until="domcontentloaded")
            page.get_by_text("Not medical advice").first.wait_for(timeout=60_000)
            page.locator("#photo input[type=file]").set_input_files(
                {"name": "IMG_0002.HEIC", "mimeType": "image/heic", "buffer": sideways_photo("HEIF")})
            page.locator("#photo button[aria-label='Remove Image']").wait_for(timeout=60_000)  # upload done
            page.locator("#analyse").click()
            page.locator("#predictions").get_by_text("probability").first.wait_for(timeout=120_000)
            assert "rotated upright from the camera's orientation (6)" in page.locator("#quality").inner_text()
        finally:
            browser.close()


def _screenshot(page, shot: Path) -> None:
    """The whole page to ``shot`` (a real picture, not an empty page) and to ``tests/artifacts/``."""
    page.screenshot(path=str(shot), full_page=True)
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


@pytest.mark.slow
def test_browser_phone_width_tables_scroll_instead_of_breaking_words(tmp_path):
    """At a phone's width (390 px) the fairness table's columns were squeezed until words broke letter by
    letter (a 12-line "balanced accuracy" header): the tables now scroll sideways, the page itself does not."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
    chromium = _chromium()
    photo, _ = _photo(tmp_path)
    # the default models: their cards have the widest table (five columns, with the confidence column)
    with RunningApp(REPO / "skinlens.yaml", tmp_path) as app, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
            page.goto(app.url, wait_until="domcontentloaded")
            page.get_by_text("Not medical advice").first.wait_for(timeout=60_000)
            page.locator("#photo input[type=file]").set_input_files(str(photo))
            page.locator("#photo img").first.wait_for(timeout=60_000)
            page.locator("#analyse").click()
            page.locator("#fairness").get_by_text("95 % CI").first.wait_for(timeout=120_000)
            layout = page.evaluate("""() => {
                // every word of every cell must fit its cell's width: a narrower cell broke the word
                const probe = document.createElement('span');
                probe.style.cssText = 'position:absolute;visibility:hidden;white-space:nowrap';
                document.body.appendChild(probe);
                const broken = [];
                for (const cell of document.querySelectorAll('#fairness th, #fairness td')) {
                    const style = getComputedStyle(cell);
                    probe.style.font = style.font;
                    const room = cell.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
                    // a line may break at a space or after a dash ("0.53–" / "0.71"), nowhere else
                    for (const word of cell.innerText.split(/\\s+|(?<=[–-])/).filter(Boolean)) {
                        probe.textContent = word;
                        if (probe.getBoundingClientRect().width > room + 1) broken.push(word);
                    }
                }
                probe.remove();
                return {broken, page: document.documentElement.scrollWidth, view: window.innerWidth};
            }""")
            _screenshot(page, tmp_path / "skinlens_phone.png")
            assert layout["broken"] == [], layout
            assert layout["page"] <= layout["view"], layout
        finally:
            browser.close()
