"""Is this photo good enough to analyse? Cheap checks with advice a person can act on.

:func:`check_quality` measures exposure, contrast, glare, blur, resolution and colour on a
copy downscaled to at most :data:`WORK_SIDE` px (a few ms on a 512 px photo) and
returns a :class:`QualityReport` whose problems each carry a ``code``, a
``message`` saying what is wrong and a ``tip`` saying what to do about it.

Every threshold below is a module constant with its reason. They were set from
the spread of real photos (HAM10000 dermoscopy, PAD-UFES-20 phone close-ups,
UTKFace portraits, including the darkest skin in them) against the same photos
degraded on purpose, leaving a margin on the side of the real ones: a check
that rejects good photos of dark skin as "too dark" would be worse than none.
Luminance is ITU-R BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B on 0-255.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from skin.images import as_rgb_array

# Measurements are taken at this long side (never upscaled). Fixing the scale
# makes the blur measure independent of the camera's resolution: a 4000 px
# photo and its 1000 px copy give the same Laplacian variance, and 256 px is
# about the detail the classifier sees (224 px input).
WORK_SIDE = 256

# Exposure. Phones meter for mid grey, so a correctly exposed photo, even of the
# darkest skin filling the frame, keeps its bright end (95th percentile of Y)
# above about 75: the lowest of 8,647 real photos (every other UTKFace portrait
# and DermNet photo, all PAD-UFES-20) was 76.9, while the same photos darkened
# to a quarter all fell to 63 or below. The *mean* is no test of exposure: it
# is low on well-exposed dark skin filling the frame (real photos went down to
# 36), and a mean threshold made "too dark" fire on dark skin only
# (bench/bench_quality_tone.py audits every tip per estimated tone bucket).
TOO_DARK_P95 = 70.0
# More than half the frame crushed to black (Y <= 5) is underexposed, unless what
# is lit is well exposed: DermNet's clinical photos put the skin on a black
# cloth (the lit part's median ~160), an underexposed photo has its lit part dim.
CLIPPED_DARK_LEVEL = 5
CLIPPED_DARK_MAX = 0.5
LIT_MEDIAN_MIN = 60.0
# Overexposure: a mean above 220 (real photos reach ~200) or a quarter of the
# frame clipped to white (Y >= 250: real photos stay under ~10%, except skin
# photographed on white paper or sheets: 4 of DermNet's 3,146, see
# bench/README.md, the quality audit per tone).
TOO_BRIGHT_MEAN = 220.0
CLIPPED_BRIGHT_LEVEL = 250
CLIPPED_BRIGHT_MAX = 0.25

# Contrast: standard deviation of Y. Real skin close-ups are low in contrast
# (lowest seen ~10: a uniform dermoscopy field), a fogged lens or a photo of a
# screen flattens them further; below 8 there is little left to analyse.
LOW_CONTRAST_STD = 8.0

# Glare: specular reflection (flash, oily skin, wet lesion, a lamp) is near-white
# and colourless: every channel >= 235. A small highlight is normal; when more
# than 15% of the frame is such (real photos: under ~14%, mostly a white
# background in portraits) the colour of that part of the skin is lost.
GLARE_LEVEL = 235
GLARE_MAX_FRACTION = 0.15

# Blur: variance of the 4-neighbour Laplacian of Y at WORK_SIDE (Pech-Pacheco et
# al. 2000, "Diatom autofocusing in brightfield microscopy: a comparative
# study", ICPR). Sharp real photos measured >= ~6 (soft 200 px UTKFace chips;
# phone close-ups and dermoscopy >= ~10-25); the same photos under a Gaussian
# blur of sigma 1% of the long side measured 1-9, at 1.5% under 5.
BLURRY_LAPLACIAN_VAR = 5.0

# Resolution: the short side must be >= 128 px. The classifier's input is
# 224 px; below ~128 px more than three quarters of its pixels would be
# interpolated. (Phone photos are > 1000 px; 128 still admits HAM10000's
# 200x150 previews.)
MIN_SHORT_SIDE = 128

# Colour: the mean chroma (max - min of R, G, B per pixel) of a black-and-white photo is 0, or 1-2
# once JPEG has coloured its edges. Real colour photos of skin start far above: the lowest of all
# 3,146 DermNet photos was 6.8 (a grey scalp), of 1,500 HAM10000 close-ups 10.2, of PAD-UFES-20's 11.6.
# The condition models read colour (redness, pigment) and never saw a black-and-white photo; the age
# model did (UTKFace: about 2.7 % of its portraits), so a face model still answers one
# (skin.service.views.blocking_problems).
NO_COLOUR_CHROMA = 3.0

PROBLEM_CODES = ("too_dark", "too_bright", "low_contrast", "glare", "blurry", "low_resolution", "no_colour")

_ADVICE = {
    "too_dark": (
        "The photo is too dark to see the skin's colour and texture.",
        "Move to brighter, even light (daylight from a window works well) and keep your shadow off the skin.",
    ),
    "too_bright": (
        "The photo is overexposed: bright parts are washed out to white.",
        "Move out of direct sun or away from the lamp to softer, even light, and tap the skin on the screen "
        "so the camera sets its exposure for it.",
    ),
    "low_contrast": (
        "The photo looks flat or hazy.",
        "Wipe the camera lens, use soft light from one side, and photograph the skin itself, not a screen or a print.",
    ),
    "glare": (
        "Shiny reflections (glare) hide part of the skin.",
        "Turn the flash off, move to softer, even light, and tilt the phone a little so reflections move off the skin.",
    ),
    "blurry": (
        "The photo is blurry.",
        "Hold the phone steady (rest your elbows on something), tap the skin on the screen to focus, "
        "and step back a little if the phone cannot focus that close.",
    ),
    "low_resolution": (
        "The photo is too small to show detail.",
        "Move closer so the skin fills most of the frame, and send the original photo, not a thumbnail or screenshot.",
    ),
    "no_colour": (
        "The photo is black and white: the colour of the skin and of the spot is much of what is read.",
        "Send a colour photo (turn off a black-and-white or 'mono' filter in the camera or the editing app).",
    ),
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a photo: ``code`` (one of :data:`PROBLEM_CODES`),
    what is wrong (``message``) and what the person can do (``tip``)."""

    code: str
    message: str
    tip: str


@dataclass
class QualityReport:
    """``ok`` is ``True`` when no problem was found; ``measurements`` holds the
    numbers every decision was made from (see the module constants)."""

    ok: bool
    problems: list[Problem] = field(default_factory=list)
    measurements: dict = field(default_factory=dict)

    @property
    def codes(self) -> list[str]:
        return [p.code for p in self.problems]


def _downscaled(image) -> tuple[np.ndarray, tuple[int, int]]:
    """(RGB array with long side <= WORK_SIDE, original (width, height))."""
    from PIL import Image

    if isinstance(image, Image.Image):
        size = image.size
        pil = image.convert("RGB")
    else:
        arr = as_rgb_array(image)
        size = (arr.shape[1], arr.shape[0])
        if max(size) <= WORK_SIDE:
            return arr, size
        pil = Image.fromarray(arr)
    if max(size) > WORK_SIDE:
        scale = WORK_SIDE / max(size)
        # reduce() first: integer box-averaging is much faster than a resize from full size.
        factor = max(1, int(1 / scale) // 2)
        if factor > 1:
            pil = pil.reduce(factor)
        pil = pil.resize(
            (max(1, round(size[0] * scale)), max(1, round(size[1] * scale))), Image.Resampling.BOX
        )
    return np.asarray(pil), size


def measure(image) -> dict:
    """The numbers :func:`check_quality` decides from (on the downscaled copy)."""
    rgb, (width, height) = _downscaled(image)
    x = rgb.astype(np.float32)
    y = x @ np.array([0.299, 0.587, 0.114], np.float32)
    p5, p95 = np.percentile(y, [5, 95])
    if min(y.shape) >= 3:
        lap = y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4.0 * y[1:-1, 1:-1]
        lap_var = float(lap.var())
    else:
        lap_var = 0.0
    return {
        "width": int(width),
        "height": int(height),
        "analysed_size": [int(rgb.shape[1]), int(rgb.shape[0])],
        "mean_luminance": float(y.mean()),
        "p5_luminance": float(p5),
        "p95_luminance": float(p95),
        "luminance_std": float(y.std()),
        "clipped_dark_fraction": float((y <= CLIPPED_DARK_LEVEL).mean()),
        # the median of what is not crushed to black (0 when nothing is lit)
        "lit_median_luminance": float(np.median(lit)) if (lit := y[y > CLIPPED_DARK_LEVEL]).size else 0.0,
        "clipped_bright_fraction": float((y >= CLIPPED_BRIGHT_LEVEL).mean()),
        "glare_fraction": float((rgb.min(axis=2) >= GLARE_LEVEL).mean()),
        "mean_chroma": float((x.max(axis=2) - x.min(axis=2)).mean()),
        "laplacian_var": lap_var,
    }


def check_quality(image) -> QualityReport:
    """Check a photo (PIL image or HxWx3 uint8 array) and say what to fix.

    Problems are listed in the order of :data:`PROBLEM_CODES`. Knock-on
    effects are not reported twice: low contrast, glare and no colour not
    for an under- or overexposed photo (its exposure squashes contrast and
    colour; ``too_bright`` covers glare), and blur not for a badly exposed or flat one, whose
    Laplacian is small for that reason alone and whose tip (better light)
    comes first.
    """
    m = measure(image)
    found: list[str] = []
    too_dark = m["p95_luminance"] < TOO_DARK_P95 or (
        m["clipped_dark_fraction"] > CLIPPED_DARK_MAX and m["lit_median_luminance"] < LIT_MEDIAN_MIN
    )
    too_bright = m["mean_luminance"] > TOO_BRIGHT_MEAN or m["clipped_bright_fraction"] > CLIPPED_BRIGHT_MAX
    # Under- and overexposure squash the spread of Y themselves: fix the light first.
    low_contrast = not (too_dark or too_bright) and m["luminance_std"] < LOW_CONTRAST_STD
    if too_dark:
        found.append("too_dark")
    if too_bright:
        found.append("too_bright")
    if low_contrast:
        found.append("low_contrast")
    if not too_bright and m["glare_fraction"] > GLARE_MAX_FRACTION:
        found.append("glare")
    if not (too_dark or too_bright or low_contrast) and m["laplacian_var"] < BLURRY_LAPLACIAN_VAR:
        found.append("blurry")
    if min(m["width"], m["height"]) < MIN_SHORT_SIDE:
        found.append("low_resolution")
    if not (too_dark or too_bright) and m["mean_chroma"] < NO_COLOUR_CHROMA:
        found.append("no_colour")
    problems = []
    for code in found:
        message, tip = _ADVICE[code]
        if code == "low_resolution":
            message = (
                f"The photo is too small ({m['width']}x{m['height']} px; "
                f"at least {MIN_SHORT_SIDE} px on the short side is needed)."
            )
        problems.append(Problem(code, message, tip))
    return QualityReport(ok=not problems, problems=problems, measurements=m)
