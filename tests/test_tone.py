"""Skin tone: ITA on synthetic colours with known CIELAB, category edges, real labels."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.color import lab2rgb, rgb2lab

from skin.tone import (
    CHARDON_CATEGORIES,
    TONE_BUCKETS,
    bucket_from_fitzpatrick,
    bucket_from_ita,
    bucket_from_monk,
    chardon_category,
    estimate_tone,
    ita,
    skin_mask,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _rgb_of_lab(L, a, b) -> np.ndarray:
    """The 8-bit sRGB pixel nearest to a CIELAB colour (shape (3,), uint8)."""
    rgb = lab2rgb(np.array([[[L, a, b]]], dtype=float))
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)[0, 0]


def _exact_ita(pixel: np.ndarray) -> float:
    """ITA of one uint8 pixel, from its exact CIELAB (after 8-bit rounding)."""
    L, _, b = rgb2lab(pixel.reshape(1, 1, 3))[0, 0]
    return math.degrees(math.atan((L - 50) / b))


def _uniform(pixel, size=(48, 64)) -> np.ndarray:
    return np.tile(np.asarray(pixel, np.uint8), (*size, 1))


@pytest.mark.parametrize("lab", [(75, 8, 14), (65, 12, 18), (52, 13, 20), (40, 14, 20), (30, 10, 14)])
def test_ita_of_uniform_skin_colour_is_exact(lab):
    pixel = _rgb_of_lab(*lab)
    img = _uniform(pixel)
    assert skin_mask(img).all()
    expected = _exact_ita(pixel)
    assert ita(img) == pytest.approx(expected, abs=1e-6)
    # and close to the nominal Lab value (8-bit rounding moves it < 1 degree)
    assert ita(img) == pytest.approx(math.degrees(math.atan((lab[0] - 50) / lab[2])), abs=1.0)
    # PIL input gives the same as the array
    assert ita(Image.fromarray(img)) == pytest.approx(expected, abs=1e-6)


def test_ita_uses_the_median_so_a_minority_colour_does_not_move_it():
    main, other = _rgb_of_lab(65, 12, 18), _rgb_of_lab(35, 15, 22)
    img = _uniform(main, size=(40, 40))
    img[:, :14] = other  # 35% of the pixels, also skin-coloured
    assert skin_mask(img).all()
    assert ita(img) == pytest.approx(_exact_ita(main), abs=1e-6)


def test_ita_with_an_explicit_mask_reads_only_the_masked_pixels():
    a, b = _rgb_of_lab(70, 10, 16), _rgb_of_lab(38, 14, 20)
    img = _uniform(a, size=(20, 30))
    img[:, 15:] = b
    mask = np.zeros(img.shape[:2], bool)
    mask[:, 15:] = True
    assert ita(img, mask) == pytest.approx(_exact_ita(b), abs=1e-6)


def test_large_images_are_downscaled_but_give_the_same_angle():
    pixel = _rgb_of_lab(60, 11, 17)
    assert ita(_uniform(pixel, size=(600, 900))) == pytest.approx(_exact_ita(pixel), abs=1e-6)


def test_skin_mask_excludes_background_glare_ink_and_shadow():
    skin = _rgb_of_lab(65, 12, 18)
    img = _uniform(skin, size=(10, 50))
    img[:, 0:10] = (40, 80, 200)  # blue ink / background
    img[:, 10:20] = (255, 255, 255)  # glare
    img[:, 20:30] = (8, 5, 4)  # shadow
    img[:, 30:40] = (120, 120, 120)  # grey
    mask = skin_mask(img)
    assert not mask[:, :40].any()
    assert mask[:, 40:].all()


def test_lesion_options_drop_the_centre_and_the_darkest_pixels():
    img = _uniform(_rgb_of_lab(65, 12, 18), size=(100, 100))
    mask = skin_mask(img, exclude_center=0.25)
    assert not mask[50, 50] and not mask[40:60, 40:60].any()
    assert mask[0, 0] and mask[99, 99] and mask[50, 5]
    assert mask.mean() == pytest.approx(1 - math.pi * 25**2 / 100**2, abs=0.02)

    img[:10] = _rgb_of_lab(35, 15, 22)  # 10% darker pixels (pigment)
    img[10:20] = _rgb_of_lab(55, 13, 20)
    dropped = skin_mask(img, drop_darkest=0.05)
    assert dropped[15:].all() and not dropped[:10].all()

    with pytest.raises(ValueError, match="exclude_center"):
        skin_mask(img, exclude_center=1.5)
    with pytest.raises(ValueError, match="drop_darkest"):
        skin_mask(img, drop_darkest=0.7)


def test_estimate_tone_reports_ita_category_bucket_and_fraction():
    pixel = _rgb_of_lab(75, 8, 14)  # ITA ~ 60: very light
    out = estimate_tone(_uniform(pixel))
    assert out["ita"] == pytest.approx(_exact_ita(pixel), abs=1e-6)
    assert out["chardon"] == "very_light" and out["bucket"] == "light"
    assert out["skin_fraction"] == pytest.approx(1.0)

    dark = estimate_tone(_uniform(_rgb_of_lab(30, 10, 14)))
    assert dark["chardon"] == "dark" and dark["bucket"] == "dark"

    lesion = estimate_tone(_uniform(pixel, size=(100, 100)), lesion_photo=True)
    assert lesion["ita"] == pytest.approx(_exact_ita(pixel), abs=1e-6)
    assert lesion["skin_fraction"] < 0.85


@pytest.mark.parametrize(
    "img",
    [
        np.zeros((40, 40, 3), np.uint8),
        np.full((40, 40, 3), 255, np.uint8),
        np.full((40, 40, 3), (30, 90, 200), np.uint8),
        np.full((40, 40, 3), 128, np.uint8),
    ],
    ids=["black", "white", "blue", "grey"],
)
def test_no_skin_gives_a_clear_none_result_not_an_error(img):
    out = estimate_tone(img)
    assert out["ita"] is None and out["chardon"] is None and out["bucket"] is None
    assert out["skin_fraction"] == 0.0
    assert "no skin" in out["message"]
    assert ita(img) is None


def test_nearly_empty_mask_is_no_skin():
    img = np.full((100, 100, 3), (30, 90, 200), np.uint8)
    img[:3, :] = _rgb_of_lab(65, 12, 18)  # 3% skin
    out = estimate_tone(img)
    assert out["ita"] is None and out["skin_fraction"] == pytest.approx(0.03)
    assert ita(img, np.zeros((100, 100), bool)) is None


def test_tiny_image_is_no_skin_with_a_reason():
    out = estimate_tone(_uniform(_rgb_of_lab(65, 12, 18), size=(4, 5)))
    assert out["ita"] is None and out["skin_fraction"] == 1.0
    assert "too small" in out["message"]


def test_bad_inputs_raise_value_errors_that_say_what_to_do():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        ita(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        estimate_tone(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="mask has shape"):
        ita(np.zeros((10, 10, 3), np.uint8), np.ones((5, 5), bool))


@pytest.mark.parametrize(
    "value, expected",
    [
        (90.0, "very_light"),
        (55.01, "very_light"),
        (55.0, "light"),
        (41.01, "light"),
        (41.0, "intermediate"),
        (28.01, "intermediate"),
        (28.0, "tan"),
        (10.01, "tan"),
        (10.0, "brown"),
        (-29.99, "brown"),
        (-30.0, "dark"),
        (-90.0, "dark"),
    ],
)
def test_chardon_category_edges(value, expected):
    assert chardon_category(value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [(60.0, "light"), (41.01, "light"), (41.0, "medium"), (10.01, "medium"), (10.0, "dark"), (-50.0, "dark"),
     (None, None)],
)
def test_bucket_from_ita_edges(value, expected):
    assert bucket_from_ita(value) == expected


def test_ita_buckets_agree_with_chardon_groups_and_fst_buckets():
    # Chardon group → bucket: two groups per bucket, lightest first, like FST I-II/III-IV/V-VI.
    midpoints = {"very_light": 65, "light": 48, "intermediate": 35, "tan": 20, "brown": -10, "dark": -45}
    assert list(midpoints) == list(CHARDON_CATEGORIES)
    buckets = [bucket_from_ita(v) for v in midpoints.values()]
    assert buckets == [bucket_from_fitzpatrick(fst) for fst in range(1, 7)]
    assert set(buckets) == set(TONE_BUCKETS)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 91.0, -100.0])
def test_impossible_angles_raise(bad):
    with pytest.raises(ValueError, match="ITA"):
        chardon_category(bad)
    with pytest.raises(ValueError, match="ITA"):
        bucket_from_ita(bad)


def test_existing_fitzpatrick_and_monk_buckets_unchanged():
    assert [bucket_from_fitzpatrick(i) for i in range(1, 7)] == ["light", "light", "medium", "medium", "dark", "dark"]
    assert [bucket_from_monk(i) for i in range(1, 11)] == ["light"] * 3 + ["medium"] * 3 + ["dark"] * 4
    assert bucket_from_fitzpatrick(None) is None and bucket_from_monk(None) is None
    with pytest.raises(ValueError):
        bucket_from_fitzpatrick(7)
    with pytest.raises(ValueError):
        bucket_from_monk(0)


def _utk_race(name: str) -> str | None:
    parts = name.split("_")
    return parts[2] if len(parts) >= 4 else None  # a few real files lack a field


@pytest.mark.needs_shared_data
def test_utkface_white_faces_have_higher_median_ita_than_black_faces():
    folder = SHARED / "utkface" / "UTKFace"
    if not folder.is_dir():
        pytest.skip(f"UTKFace not found at {folder} (needs ../shared/data)")
    names = sorted(p.name for p in folder.glob("*.jpg"))
    medians = {}
    for race in ("0", "1"):  # 0 White, 1 Black
        group = [n for n in names if _utk_race(n) == race]
        sample = group[:: max(1, len(group) // 40)][:40]
        values = []
        for name in sample:
            with Image.open(folder / name) as im:
                value = estimate_tone(im)["ita"]
            if value is not None:  # UTKFace has a few greyscale photos: no skin colour
                values.append(value)
        assert len(values) >= 30, f"race {race}: ITA for only {len(values)} of {len(sample)} faces"
        medians[race] = float(np.median(values))
    assert medians["0"] > medians["1"] + 15, medians


def _hand_written_lab(rgb: np.ndarray) -> np.ndarray:
    """The sRGB -> XYZ -> CIELAB conversion skin.tone used before skimage's rgb2lab (D65, 2 degrees)."""
    xyz_from_rgb = np.array([[0.412453, 0.357580, 0.180423],
                             [0.212671, 0.715160, 0.072169],
                             [0.019334, 0.119193, 0.950227]])
    c = np.arange(256) / 255.0
    linear = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    t = linear[rgb] @ (xyz_from_rgb / np.array([0.95047, 1.0, 1.08883])[:, None]).T
    f = np.where(t > 0.008856, np.cbrt(t), 7.787 * t + 16.0 / 116.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], -1)


def test_ita_is_unchanged_from_the_hand_written_lab_conversion():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    rgb[0, :8] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 10, 10], [3, 2, 1],
                  [200, 150, 120]]  # the extremes and the linear part of both curves
    np.testing.assert_allclose(rgb2lab(rgb), _hand_written_lab(rgb), atol=1e-9)
    for L, a, b in [(75, 8, 14), (52, 13, 20), (30, 10, 14)]:  # textured skin: one colour plus noise
        noise = rng.normal(0, 6, (96, 128, 3))
        img = np.clip(_uniform(_rgb_of_lab(L, a, b), size=(96, 128)) + noise, 0, 255).astype(np.uint8)
        lab = _hand_written_lab(img)
        mask = skin_mask(img, lab=lab)
        before = math.degrees(math.atan((np.median(lab[..., 0][mask]) - 50) / np.median(lab[..., 2][mask])))
        assert estimate_tone(img)["ita"] == pytest.approx(before, abs=1e-9)


def test_work_side_sets_the_size_of_the_work_copy():
    pixel = _rgb_of_lab(65, 12, 18)
    big = _uniform(pixel, size=(300, 400))
    assert estimate_tone(big, work_side=64)["ita"] == pytest.approx(estimate_tone(big)["ita"], abs=1e-9)
    for bad in (0, 4, 64.0, True):
        with pytest.raises(ValueError, match="work_side"):
            estimate_tone(big, work_side=bad)


def test_tone_agreement_file_has_the_schema_the_cards_read(tmp_path):
    import json

    from skin.tone import TONE_AGREEMENT_PATH, TONE_AGREEMENT_SCHEMA, ToneAgreement, load_tone_agreement

    a = load_tone_agreement()
    assert isinstance(a, ToneAgreement) and a.dataset and a.n_boot > 0
    assert 0 < a.n <= a.n_labelled
    assert 0 <= a.agreement.ci_low <= a.agreement.value <= a.agreement.ci_high <= 1
    assert -1 <= a.cohen_kappa <= 1 and -1 <= a.spearman_rho <= 1 and 0 <= a.spearman_p <= 1
    assert list(a.confusion) == list(TONE_BUCKETS)
    assert all(list(row) == list(TONE_BUCKETS) for row in a.confusion.values())
    assert sum(sum(row.values()) for row in a.confusion.values()) == a.n
    agree = sum(a.confusion[b][b] for b in TONE_BUCKETS) / a.n
    assert a.agreement.value == pytest.approx(agree)
    line = a.sentence()
    assert f"of {a.n} {a.dataset} photos" in line and f"{a.agreement.value:.0%}" in line and "rough" in line
    raw = json.loads(TONE_AGREEMENT_PATH.read_text())
    assert raw["schema_version"] == TONE_AGREEMENT_SCHEMA and ToneAgreement.from_dict(raw) == a
    assert ToneAgreement.from_dict(a.to_dict()) == a

    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**raw, "schema_version": TONE_AGREEMENT_SCHEMA + 1}))
    with pytest.raises(ValueError, match="schema"):
        load_tone_agreement(wrong)
    lacking = tmp_path / "lacking.json"
    lacking.write_text(json.dumps({k: v for k, v in raw.items() if k != "cohen_kappa"}))
    with pytest.raises(ValueError, match="cohen_kappa"):
        load_tone_agreement(lacking)


def test_white_balance_bench_corrections_undo_a_colour_cast():
    """bench/tone_white_balance.py: a warm cast on a scene with a white patch is undone by white_patch (the
    patch white again, the skin its own colour), and shades_of_gray leaves a neutral scene as it is."""
    from tests.bench_scripts import load_bench

    bench = load_bench("tone_white_balance")
    scene = np.zeros((40, 40, 3), np.uint8)
    scene[:, :20] = (200, 150, 120)  # skin
    scene[:, 20:] = (250, 250, 250)  # a white wall
    cast = np.clip(scene * np.array([1.0, 0.9, 0.7]), 0, 255).astype(np.uint8)  # warm light
    fixed = bench.white_patch(cast).astype(int)
    assert np.abs(fixed[0, 30] - 255).max() <= 1  # the wall white again
    assert np.abs(fixed[0, 5] - np.array([204, 153, 122])).max() <= 3  # the skin back near its colour (x 255/250)
    grey = np.full((10, 10, 3), 128, np.uint8)
    np.testing.assert_array_equal(bench.shades_of_gray(grey), grey)
