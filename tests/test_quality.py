"""Photo quality: real photos pass, the same photos degraded on purpose are flagged right."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from skin.quality import PROBLEM_CODES, MIN_SHORT_SIDE, Problem, QualityReport, check_quality

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# --- synthetic photos ----------------------------------------------------------------------


def _textured(size=(320, 240), seed=0) -> Image.Image:
    """A skin-coloured, textured, well-exposed synthetic photo (no real data needed)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[:h, :w]
    base = np.array([200, 150, 125], np.float32)
    shade = 25 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    noise = rng.normal(0, 10, (h, w))
    blobs = Image.fromarray((rng.random((h // 8, w // 8)) * 255).astype(np.uint8)).resize((w, h))
    texture = shade + noise + (np.asarray(blobs, np.float32) - 128) * 0.2
    img = np.clip(base + texture[..., None] * np.array([1.0, 0.9, 0.8]), 0, 255)
    return Image.fromarray(img.astype(np.uint8))


def _darken(im, factor=0.25):
    return Image.fromarray((np.asarray(im, np.float32) * factor).astype(np.uint8))


def _blur(im, frac=0.015):
    return im.filter(ImageFilter.GaussianBlur(frac * max(im.size)))


def _glare(im):
    im = im.copy()
    w, h = im.size
    ImageDraw.Draw(im).ellipse([w * 0.2, h * 0.2, w * 0.75, h * 0.75], fill=(255, 255, 255))
    return im


def _tiny(im):
    return im.resize((64, 48))


def _flat(im, factor=0.1):
    a = np.asarray(im, np.float32)
    return Image.fromarray((a.mean() + (a - a.mean()) * factor).astype(np.uint8))


def _bright(im):
    return Image.fromarray(np.clip(np.asarray(im, np.float32) * 1.8 + 60, 0, 255).astype(np.uint8))


def _grey(im):
    """Black and white, as a phone's mono filter saves it: an RGB JPEG whose edges JPEG tinted."""
    import io

    buf = io.BytesIO()
    im.convert("L").convert("RGB").save(buf, "JPEG", quality=85)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


DEGRADATIONS = {
    "too_dark": _darken,
    "no_colour": _grey,
    "blurry": _blur,
    "glare": _glare,
    "low_resolution": _tiny,
    "low_contrast": _flat,
    "too_bright": _bright,
}


def test_good_synthetic_photo_passes_with_measurements():
    report = check_quality(_textured())
    assert isinstance(report, QualityReport)
    assert report.ok and report.problems == [] and report.codes == []
    m = report.measurements
    assert (m["width"], m["height"]) == (320, 240) and m["analysed_size"] == [256, 192]
    for key in ("mean_luminance", "p95_luminance", "luminance_std", "glare_fraction", "laplacian_var"):
        assert key in m


@pytest.mark.parametrize("code", list(DEGRADATIONS))
def test_each_degradation_is_flagged_with_its_code_and_an_actionable_tip(code):
    report = check_quality(DEGRADATIONS[code](_textured()))
    assert not report.ok
    assert report.codes == [code], report.measurements
    problem = report.problems[0]
    assert isinstance(problem, Problem) and problem.code in PROBLEM_CODES
    assert problem.message.strip() and len(problem.tip) > 20


def test_tips_say_what_to_do():
    tips = {code: check_quality(fn(_textured())).problems[0].tip.lower() for code, fn in DEGRADATIONS.items()}
    assert "light" in tips["too_dark"] and "light" in tips["too_bright"] and "light" in tips["glare"]
    assert "steady" in tips["blurry"] and "focus" in tips["blurry"]
    assert "closer" in tips["low_resolution"]
    assert "colour photo" in tips["no_colour"]
    assert str(MIN_SHORT_SIDE) in check_quality(_tiny(_textured())).problems[0].message


def test_several_problems_are_all_reported():
    report = check_quality(_tiny(_blur(_textured(), 0.03)))
    assert report.codes == ["blurry", "low_resolution"]


def test_array_and_pil_inputs_agree_and_bad_inputs_raise():
    im = _textured()
    assert check_quality(np.asarray(im)).measurements == check_quality(im).measurements
    # greyscale PIL images are converted, and read as what they are: black and white
    assert check_quality(im.convert("L")).codes == ["no_colour"]
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        check_quality(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="no pixels"):
        check_quality(np.zeros((0, 10, 3), np.uint8))


def test_black_and_white_frames():
    assert "too_dark" in check_quality(np.zeros((300, 300, 3), np.uint8)).codes
    assert "too_bright" in check_quality(np.full((300, 300, 3), 255, np.uint8)).codes


def test_fast_on_a_512px_photo():
    im = _textured((512, 512))
    check_quality(im)
    start = time.perf_counter()
    for _ in range(5):
        check_quality(im)
    per_call = (time.perf_counter() - start) / 5
    assert per_call < 0.030, f"{per_call * 1000:.1f} ms per 512 px photo"


# --- real photos ---------------------------------------------------------------------------


def _real_sample(n_each=10) -> list[Path]:
    folders = [
        (SHARED / "ham10000" / "images", "*.jpg"),
        (SHARED / "pad_ufes20" / "images", "*.png"),
        (SHARED / "utkface" / "UTKFace", "*.jpg"),
    ]
    paths = []
    for folder, pattern in folders:
        if not folder.is_dir():
            pytest.skip(f"{folder} not found (needs ../shared/data)")
        files = sorted(folder.glob(pattern))
        paths += files[:: max(1, len(files) // n_each)][:n_each]
    return paths


@pytest.mark.needs_shared_data
def test_real_photos_mostly_pass_and_their_degraded_copies_are_flagged():
    paths = _real_sample()
    passed = 0
    missed = []
    for path in paths:
        with Image.open(path) as im:
            im = im.convert("RGB")
        passed += check_quality(im).ok
        degraded = {
            "no_colour": _grey(im),
            "too_dark": _darken(im),
            "blurry": _blur(im),
            "low_resolution": _tiny(im),
        }
        if "utkface" not in str(path):  # portraits: patch/flatten may push them to too_bright/too_dark
            degraded |= {"glare": _glare(im), "low_contrast": _flat(im)}
        for code, img in degraded.items():
            if code not in check_quality(img).codes:
                missed.append((path.name, code))
    assert passed >= 0.9 * len(paths), f"only {passed}/{len(paths)} real photos passed"
    assert not missed, missed


def test_skin_on_a_black_background_is_not_too_dark_but_its_darkened_copy_is():
    """A well-exposed subject on a black cloth (DermNet's clinical photos: over half the frame
    crushed to black) is no exposure problem; the same photo at a quarter of the light is."""
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[:, 200:] = np.asarray(_textured((120, 240)))  # skin fills 3/8 of the frame, the rest is black
    assert "too_dark" not in check_quality(frame).codes
    assert "too_dark" in check_quality(_darken(Image.fromarray(frame))).codes


@pytest.mark.needs_shared_data
def test_tips_fire_no_more_often_on_dark_than_on_light_skin():
    """The per-tone audit (bench/bench_quality_tone.py) on a fixed sample of clean photos: 'too dark'
    never fires, and any tip fires on the dark estimated-tone bucket at most 1.5x as often as on light.
    The portrait of very dark skin (mean luminance 37, bright end 74) that a mean rule called too dark
    passes."""
    import random

    from bench.bench_quality_tone import DATASETS, audit, rates

    rows = []
    for name in ("dermnet", "utkface"):
        pattern, lesion_photo = DATASETS[name]
        paths = sorted(SHARED.glob(pattern))
        if not paths:
            pytest.skip(f"{SHARED / pattern} not found (needs ../shared/data)")
        rows += audit(random.Random(0).sample(paths, 150), lesion_photo)
    result = rates(rows)
    portrait = SHARED / "utkface" / "UTKFace" / "40_0_1_20170116201948808.jpg.chip.jpg"
    with Image.open(portrait) as im:
        assert check_quality(im.convert("RGB")).ok
    assert not any("too_dark" in r["codes"] for r in rows)
    assert result["dark_over_light"]["any"] <= 1.5, result["buckets"]
