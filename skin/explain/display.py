"""Showing an attribution map to a person: scaling it to ``[0, 1]`` and drawing it over the
photo the model saw, with a legend that says what the colours mean."""

from __future__ import annotations

import functools

import numpy as np


def normalize_attribution(
    attribution: np.ndarray, *, sign: str = "positive", clip_percentile: float = 99.0
) -> np.ndarray:
    """Map an attribution to ``[0, 1]`` for display.

    ``sign``: ``"positive"`` keeps evidence *for* the target (negative values
    become 0; the default, matching the legend "contribution to <label>"),
    ``"absolute"`` shows magnitude regardless of sign, ``"all"`` min-max
    scales the signed map (0.5 is not zero then). Values are divided by the
    ``clip_percentile``-th percentile and clipped, so a few extreme pixels
    (common in gradient maps) do not wash the rest out.
    """
    a = np.nan_to_num(np.asarray(attribution, dtype=np.float32))
    if sign == "positive":
        a = np.maximum(a, 0)
    elif sign == "absolute":
        a = np.abs(a)
    elif sign == "all":
        a = a - a.min()
    else:
        raise ValueError(f"unknown sign {sign!r}; use 'positive', 'absolute' or 'all'")
    if not 0 < clip_percentile <= 100:
        raise ValueError(f"clip_percentile must be in (0, 100], got {clip_percentile}")
    top = float(np.percentile(a, clip_percentile)) if a.size else 0.0
    if top <= 0:
        top = float(a.max()) if a.size else 0.0
    if top <= 0:
        return np.zeros_like(a)
    return np.clip(a / top, 0.0, 1.0)


def overlay(
    image,
    attribution: np.ndarray,
    alpha: float = 0.45,
    cmap: str = "jet",
    *,
    label: str | None = None,
    legend: bool = True,
    sign: str = "positive",
    min_side: int | None = None,
):
    """Draw ``attribution`` as a heatmap over ``image`` (the photo the user sees).

    The map is normalised (:func:`normalize_attribution`), resized bilinearly
    to the image's size, coloured with the matplotlib colormap ``cmap`` and
    alpha-blended; a legend bar "low -> high contribution to <label>" is drawn
    along the bottom edge. Returns an RGB image of the same size as ``image``,
    or, with ``min_side``, the blend upscaled (bilinear) so its short side is
    at least ``min_side`` before the legend is drawn: a small model input is
    then blended at its own resolution and shown large enough to read the legend.

    The map is stretched to the whole image, so ``image`` must show what the
    model saw: if the processor centre-cropped the photo (timm / HF processors
    usually do), pass the cropped photo, not the original.
    """
    from matplotlib import colormaps
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be a PIL.Image, got {type(image).__name__}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    a = np.asarray(attribution, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"attribution must be an H x W array, got shape {a.shape}")
    if cmap not in colormaps:
        raise ValueError(f"unknown matplotlib colormap {cmap!r}")
    photo = image.convert("RGB")
    width, height = photo.size
    heat = normalize_attribution(a, sign=sign)
    heat = np.asarray(Image.fromarray(heat, mode="F").resize((width, height), Image.BILINEAR))
    # Kept by hand for speed: the colormap's own 256-entry table, indexed as matplotlib indexes it
    # (floor(x * 256)), and an integer alpha blend draw the picture that colours(heat) blended in floats
    # draws, several times faster (equivalence tested in tests/test_explain_display.py).
    index = np.minimum((np.clip(heat, 0.0, 1.0) * 256.0).astype(np.int32), 255)
    rgb = _colour_table(cmap)[index]
    a8 = int(round(alpha * 256))
    blended = (np.asarray(photo, dtype=np.uint16) * (256 - a8) + rgb * a8 + 128) >> 8
    out = Image.fromarray(blended.astype(np.uint8), "RGB")
    if min_side and min(width, height) < min_side:
        scale = min_side / min(width, height)
        out = out.resize((round(width * scale), round(height * scale)), Image.Resampling.BILINEAR)
    if legend and out.width >= 32 and out.height >= 24:
        strip = _legend_strip(out.width, out.height, cmap, label)
        out.paste(strip, (0, out.height - strip.height))
    return out


@functools.lru_cache(maxsize=8)
def _colour_table(cmap: str) -> np.ndarray:
    """``(256, 3)`` uint16 RGB (0..255) of matplotlib colormap ``cmap`` (its entries, by index)."""
    from matplotlib import colormaps

    colours = colormaps[cmap].resampled(256)
    return np.round(colours(np.arange(256))[:, :3] * 255.0).astype(np.uint16)


@functools.lru_cache(maxsize=16)
def _legend_font(font_px: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=font_px)
    except (TypeError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


@functools.lru_cache(maxsize=64)
def _legend_strip(width: int, height: int, cmap: str, label: str | None):
    """The legend strip "low [colour bar] high contribution to <label>" for an image of this size
    (cached: the same few sizes are drawn again and again)."""
    from PIL import Image, ImageDraw

    font_px = max(8, min(height // 18, width // 28))
    font = _legend_font(font_px)
    pad = max(2, font_px // 3)
    strip_h = font_px + 2 * pad
    strip = Image.new("RGB", (width, strip_h), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    tail = f"contribution to {label}" if label else "contribution"
    x = pad
    draw.text((x, pad), "low", fill=(255, 255, 255), font=font)
    x += int(draw.textlength("low", font=font)) + pad
    bar_w = max(16, width // 4)
    ramp = _colour_table(cmap)[np.linspace(0, 255, bar_w).astype(np.int32)].astype(np.uint8)
    bar = np.repeat(ramp[None], max(1, strip_h - 2 * pad), axis=0)
    strip.paste(Image.fromarray(bar, "RGB"), (x, pad))
    x += bar_w + pad
    draw.text((x, pad), fit_text(f"high {tail}", font, width - x - pad), fill=(255, 255, 255), font=font)
    return strip


def fit_text(text: str, font, room: float) -> str:
    """``text``, or its longest start that fits ``room`` pixels in ``font`` with "…" after it (a long
    class name, "Benign keratosis (seborrhoeic keratosis, sun spot)", ran off the legend's right edge)."""
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    if draw.textlength(text, font=font) <= room:
        return text
    lo, hi = 0, len(text)  # the longest prefix that fits, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if draw.textlength(text[:mid].rstrip() + "…", font=font) <= room:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + "…"
