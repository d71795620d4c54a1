"""skin.explain.display: normalising a map for display and drawing it over the photo."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skin.explain import explain, normalize_attribution, overlay
from tests.explain_models import MEAN, STD, tiny_effnet


def test_normalize_attribution():
    a = np.array([[-2.0, 0.0], [1.0, 3.0]])
    pos = normalize_attribution(a, clip_percentile=100)
    np.testing.assert_allclose(pos, [[0, 0], [1 / 3, 1]])
    np.testing.assert_allclose(normalize_attribution(a, sign="absolute", clip_percentile=100), [[2 / 3, 0], [1 / 3, 1]])
    allv = normalize_attribution(a, sign="all", clip_percentile=100)
    assert allv.min() == 0 and allv.max() == 1
    assert (normalize_attribution(np.zeros((3, 3))) == 0).all()
    clipped = normalize_attribution(np.arange(100.0).reshape(10, 10), clip_percentile=90)
    assert clipped.max() == 1 and (clipped == 1).sum() > 1
    with pytest.raises(ValueError, match="sign"):
        normalize_attribution(a, sign="negative")


def test_overlay_returns_rgb_of_photo_size():
    from PIL import Image

    photo = Image.fromarray(np.full((90, 120, 3), 200, np.uint8), "RGB")
    attribution = np.zeros((32, 32), np.float32)
    attribution[8:16, 4:12] = 1.0
    out = overlay(photo, attribution, label="melanoma")
    assert out.mode == "RGB" and out.size == photo.size
    assert np.asarray(out).std() > 0
    plain = overlay(photo.convert("L"), attribution, alpha=0.3, cmap="viridis", legend=False)
    assert plain.mode == "RGB" and plain.size == photo.size
    assert overlay(photo, attribution, min_side=384).size == (512, 384)
    with pytest.raises(ValueError, match="colormap"):
        overlay(photo, attribution, cmap="not-a-map")
    with pytest.raises(ValueError, match="H x W"):
        overlay(photo, np.zeros((3, 32, 32)))


def test_a_long_class_name_is_shortened_to_fit_the_legend():
    from PIL import Image, ImageDraw

    from skin.explain.display import _legend_font, fit_text

    font = _legend_font(13)
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    long = "high contribution to Benign keratosis (seborrhoeic keratosis, sun spot)"
    assert draw.textlength(long, font=font) > 250
    fitted = fit_text(long, font, 250)
    assert fitted.endswith("…") and long.startswith(fitted[:-1]) and draw.textlength(fitted, font=font) <= 250
    assert fit_text("high contribution to Melanoma", font, 250) == "high contribution to Melanoma"
    # the strip the app draws (384 px wide) ends in the shortened name, not off the edge
    photo = Image.fromarray(np.full((384, 384, 3), 200, np.uint8), "RGB")
    out = np.asarray(overlay(photo, np.ones((8, 8), np.float32), label=long[21:]))
    assert (out[-8:, -4:] == 0).all()  # the strip's black margin on the right is left free


def test_overlay_colours_are_the_colormap_s():
    """The 256-entry colour table draws what matplotlib's colormap draws (to quantisation)."""
    from matplotlib import colormaps
    from PIL import Image

    photo = Image.new("RGB", (64, 48), (0, 0, 0))
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (48, 1))
    out = np.asarray(overlay(photo, ramp, alpha=1.0, legend=False, cmap="viridis"), np.float32)
    heat = normalize_attribution(ramp)
    heat = np.asarray(Image.fromarray(heat, mode="F").resize((64, 48), Image.BILINEAR))
    expected = colormaps["viridis"](np.clip(heat, 0, 1))[..., :3] * 255
    assert np.abs(out - expected).max() <= 1.0


@pytest.mark.needs_shared_data
def test_overlay_on_real_ham10000_photo(shared_data):
    from PIL import Image

    images = shared_data / "ham10000" / "images"
    if not images.is_dir():
        pytest.skip(f"HAM10000 images not found at {images}")
    photo = Image.open(sorted(images.glob("*.jpg"))[0]).convert("RGB")
    x = (torch.from_numpy(np.asarray(photo.resize((64, 64)), np.float32) / 255).permute(2, 0, 1) - MEAN) / STD
    e = explain(tiny_effnet(), x, method="gradcam")
    out = overlay(photo, e.attribution, label="nv")
    assert out.size == photo.size and out.mode == "RGB"
