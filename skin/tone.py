"""Skin tone: one coarse three-bucket scale shared by every label source.

Fitzpatrick skin types (FST I-VI), the Monk Skin Tone scale (MST 1-10) and the
Individual Typology Angle (ITA°, see :func:`bucket_from_ita`) all map onto
``TONE_BUCKETS = ("light", "medium", "dark")`` so that fairness reports from any
dataset, and the app's estimate for a user's photo, speak the same buckets:

* FST I-II → light, III-IV → medium, V-VI → dark (the grouping DDI publishes).
* MST 1-3 → light, 4-6 → medium, 7-10 → dark (MST 1-3 correspond to FST I-II,
  4-6 to III-IV and 7-10 to V-VI in the scale's published comparisons).
* ITA > 41° → light, 10° < ITA ≤ 41° → medium, ITA ≤ 10° → dark (see
  :func:`bucket_from_ita` for where the two cut-offs come from).

Estimating ITA from a photo
---------------------------
ITA° = arctan((L* − 50) / b*) · 180/π (Chardon et al. 1991, *Int J Cosmet Sci*
13:191-208), with L* and b* from CIELAB (sRGB, D65; ``skimage.color.rgb2lab``).
It is computed over a **skin mask**, never the whole frame (:func:`skin_mask`):
background, hair, clothing, pen marks, glare and the lesion itself would
otherwise pull the angle anywhere. Deliberate choices:

* **Median L*, median b*** over the mask, then one angle. The median ignores up
  to half the pixels being wrong (shadows, highlights, freckles, a bit of lesion
  that the mask let through), where the mean drifts with every one of them; and
  taking the angle of the medians avoids averaging per-pixel angles, which blow
  up towards ±90° wherever a pixel's b* is near 0.
* Work on a copy downscaled to at most :data:`WORK_SIDE` px: a median over tens
  of thousands of pixels does not need more, and it keeps this fast.
* A camera photo is not a colorimeter: white balance, exposure and the phone's
  tone curve all move L* and b*. Treat the result as a coarse estimate (a
  bucket), not a measurement; it is only as good as the light it was taken in.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from skimage.color import rgb2lab

from skin.images import as_rgb_array
from skin.reports import MetricCI, to_jsonable

TONE_BUCKETS = ("light", "medium", "dark")
#: The column every builder writes the estimated bucket to (beside a dataset's own ``tone_bucket`` labels).
ESTIMATED_TONE_COLUMN = "tone_bucket_estimated"

# Chardon et al. (1991) skin colour categories, lightest first, with the lower
# (exclusive) ITA bound of each; the last one is unbounded below. Used as in
# Del Bino & Bernerd (2013, *Br J Dermatol* 169 Suppl 3:33-40).
CHARDON_CATEGORIES = ("very_light", "light", "intermediate", "tan", "brown", "dark")
_CHARDON_LOWER = (55.0, 41.0, 28.0, 10.0, -30.0, -math.inf)

# ITA cut-offs of the three buckets: light > 41° ≥ medium > 10° ≥ dark.
ITA_LIGHT_MIN = 41.0
ITA_DARK_MAX = 10.0

# --- skin mask ---------------------------------------------------------------
# Chai & Ngan (1999), "Face segmentation using skin-color map in videophone
# applications", IEEE TCSVT 9(4):551-564: skin chrominance in ITU-R BT.601
# YCrCb (8-bit) lies in Cr ∈ [133, 173], Cb ∈ [77, 127] across skin colours.
CR_RANGE = (133, 173)
CB_RANGE = (77, 127)
# Pixels whose colour says little about the skin: L* < 10 is shadow, hair or a
# pupil (chroma there is mostly sensor noise); L* > 95 is clipped or specular;
# C*ab > 50 is more saturated than skin (surgical ink, strong erythema, a
# vascular lesion): measured skin in Del Bino & Bernerd stays under ~35.
L_RANGE = (10.0, 95.0)
MAX_CHROMA = 50.0
# Lesion photos (PAD-UFES-20, ISIC) are centred on the lesion: drop a central
# disc of this radius (fraction of the short side, so the disc spans half of it)
# and the darkest fraction of what is left (pigment the disc did not cover).
LESION_CENTER_RADIUS = 0.25
LESION_DROP_DARKEST = 0.10
# Below these the "median skin colour" is a few stray pixels: report no skin.
MIN_SKIN_FRACTION = 0.05
MIN_SKIN_PIXELS = 50

WORK_SIDE = 256


def bucket_from_fitzpatrick(fst: int | None) -> str | None:
    """FST 1-6 → bucket; ``None`` (unknown) → ``None``."""
    if fst is None:
        return None
    fst = int(fst)
    if not 1 <= fst <= 6:
        raise ValueError(f"Fitzpatrick type must be 1-6, got {fst}")
    return TONE_BUCKETS[(fst - 1) // 2]


#: Fitzpatrick types in pairs, as DDI reports them; pair i is tone bucket ``TONE_BUCKETS[i]``.
FST_PAIRS = ("I-II", "III-IV", "V-VI")


def fst_pair(fst: int | None) -> str | None:
    """FST 1-6 → ``"I-II"``, ``"III-IV"`` or ``"V-VI"``; ``None`` (unknown) → ``None``."""
    bucket = bucket_from_fitzpatrick(fst)
    return None if bucket is None else FST_PAIRS[TONE_BUCKETS.index(bucket)]


def bucket_from_monk(mst: int | None) -> str | None:
    """Monk 1-10 → bucket; ``None`` (unknown) → ``None``."""
    if mst is None:
        return None
    mst = int(mst)
    if not 1 <= mst <= 10:
        raise ValueError(f"Monk skin tone must be 1-10, got {mst}")
    return "light" if mst <= 3 else "medium" if mst <= 6 else "dark"


def chardon_category(ita: float) -> str:
    """Chardon et al. (1991) category of an ITA angle in degrees.

    very_light: ITA > 55°; light: 41° < ITA ≤ 55°; intermediate: 28° < ITA ≤ 41°;
    tan: 10° < ITA ≤ 28°; brown: −30° < ITA ≤ 10°; dark: ITA ≤ −30°. A value on
    a cut-off belongs to the darker category (the bounds are exclusive below).
    """
    ita = _finite_angle(ita)
    for name, lower in zip(CHARDON_CATEGORIES, _CHARDON_LOWER):
        if ita > lower:
            return name
    return CHARDON_CATEGORIES[-1]  # unreachable: the last bound is -inf


def bucket_from_ita(ita: float | None) -> str | None:
    """ITA° → ``"light"`` / ``"medium"`` / ``"dark"``; ``None`` → ``None``.

    light: ITA > 41° (Chardon very light + light); medium: 10° < ITA ≤ 41°
    (intermediate + tan); dark: ITA ≤ 10° (brown + dark). This is the
    correspondence of Kinyanjui et al. (2020, "Fairness of classifiers across
    skin tones in dermatology", MICCAI, Table 1, after Del Bino & Bernerd 2013),
    whose categories down to 41° are the light ones, 41°-10° the intermediate
    and tanned ones and ≤ 10° "dark", read against FST as in DDI's grouping:
    I-II light, III-IV medium, V-VI dark (:func:`bucket_from_fitzpatrick`).
    The correspondence is loose: ITA measures constitutive colour, FST sun
    reactivity, and they overlap by a type or more in published comparisons.
    """
    if ita is None:
        return None
    ita = _finite_angle(ita)
    if ita > ITA_LIGHT_MIN:
        return "light"
    return "medium" if ita > ITA_DARK_MAX else "dark"


def _finite_angle(ita: float) -> float:
    value = float(ita)
    if not math.isfinite(value) or not -90.0 <= value <= 90.0:
        raise ValueError(f"ITA must be a finite angle in [-90, 90] degrees, got {ita!r}")
    return value


def _downscale(rgb: np.ndarray, max_side: int = WORK_SIDE) -> np.ndarray:
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    from PIL import Image

    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))


def _ycrcb(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BT.601 full-range Cr, Cb (8-bit offsets), as in Chai & Ngan / OpenCV.

    Not ``cv2.cvtColor``: its uint8 output rounds Cr and Cb to integers and its
    float path assumes [0, 1] input, either of which moves the box's edges.
    """
    x = rgb.astype(np.float32)
    y = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    cr = (x[..., 0] - y) * 0.713 + 128.0
    cb = (x[..., 2] - y) * 0.564 + 128.0
    return cr, cb


def skin_mask(
    image,
    *,
    exclude_center: float = 0.0,
    drop_darkest: float = 0.0,
    lab: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean HxW mask of pixels that look like skin, at the image's resolution.

    Rule: Chai & Ngan (1999) YCrCb chrominance box (133 ≤ Cr ≤ 173,
    77 ≤ Cb ≤ 127), minus pixels that are too dark or clipped
    (L* outside [10, 95]) or too saturated for skin (C*ab > 50); see the module
    constants for why. For lesion photos, ``exclude_center`` (radius of a
    central disc, as a fraction of the short side) removes the lesion the
    photo is centred on, and ``drop_darkest`` (a fraction in [0, 0.5)) removes
    that share of the darkest remaining pixels (pigment outside the disc).
    ``lab`` may pass a precomputed CIELAB copy of the image to save work.
    """
    rgb = as_rgb_array(image)
    if not 0.0 <= exclude_center <= 1.0:
        raise ValueError(f"exclude_center is a fraction of the short side in [0, 1], got {exclude_center}")
    if not 0.0 <= drop_darkest < 0.5:
        raise ValueError(f"drop_darkest is a fraction in [0, 0.5), got {drop_darkest}")
    if lab is None:
        lab = rgb2lab(rgb)
    elif lab.shape != rgb.shape:
        raise ValueError(f"lab has shape {lab.shape}, the image {rgb.shape}: pass the image's own Lab copy")
    cr, cb = _ycrcb(rgb)
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    mask = (
        (cr >= CR_RANGE[0]) & (cr <= CR_RANGE[1])
        & (cb >= CB_RANGE[0]) & (cb <= CB_RANGE[1])
        & (L >= L_RANGE[0]) & (L <= L_RANGE[1])
        & (np.hypot(a, b) <= MAX_CHROMA)
    )
    if exclude_center > 0:
        h, w = mask.shape
        yy, xx = np.ogrid[:h, :w]
        r = exclude_center * min(h, w)
        mask &= (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2 > r * r
    k = int(drop_darkest * mask.sum())
    if k > 0:  # by rank, not by a quantile value: ties must not keep them all
        idx = np.flatnonzero(mask)
        darkest = idx[np.argpartition(L.ravel()[idx], k - 1)[:k]]
        mask.ravel()[darkest] = False
    return mask


def ita(image, mask=None) -> float | None:
    """ITA° of the skin in ``image`` from median L* and median b* over ``mask``.

    ``mask`` (HxW bool, same size as the image) defaults to :func:`skin_mask`
    of a downscaled copy. Returns ``None`` when fewer than
    :data:`MIN_SKIN_PIXELS` pixels are masked or the median b* is not positive
    (not skin-coloured: the angle is undefined at b* = 0).
    """
    rgb = as_rgb_array(image)
    if mask is None:
        rgb = _downscale(rgb)
        lab = rgb2lab(rgb)
        mask = skin_mask(rgb, lab=lab)
    else:
        mask = np.asarray(mask)
        if mask.shape != rgb.shape[:2]:
            raise ValueError(
                f"mask has shape {mask.shape} but the image is {rgb.shape[:2]}: "
                "pass a mask of the image's own height and width"
            )
        mask = mask.astype(bool)
        lab = rgb2lab(rgb)
    return _ita_from_lab(lab, mask)


def _ita_from_lab(lab: np.ndarray, mask: np.ndarray) -> float | None:
    if int(mask.sum()) < MIN_SKIN_PIXELS:
        return None
    L = float(np.median(lab[..., 0][mask]))
    b = float(np.median(lab[..., 2][mask]))
    if b <= 0:
        return None
    return math.degrees(math.atan((L - 50.0) / b))


def estimate_tone(image, *, lesion_photo: bool = False, work_side: int = WORK_SIDE) -> dict:
    """ITA, Chardon category and tone bucket of the skin in a photo.

    Returns ``{"ita", "chardon", "bucket", "skin_fraction", "message"}``. When
    less than :data:`MIN_SKIN_FRACTION` of the picture is skin, ``ita``,
    ``chardon`` and ``bucket`` are ``None`` and ``message`` says so (never an
    exception: a photo without skin is a normal input for the app).
    ``lesion_photo=True`` excludes the central lesion and the darkest pixels
    (see :func:`skin_mask`); use it for close-ups centred on a lesion.
    ``work_side`` is the long side of the downscaled copy the work is done on
    (the dataset builders use a smaller one than the app: thousands of images).
    """
    if isinstance(work_side, bool) or not isinstance(work_side, int) or work_side < 8:
        raise ValueError(f"work_side is the long side in pixels of the work copy (>= 8), got {work_side!r}")
    rgb = _downscale(as_rgb_array(image), work_side)
    lab = rgb2lab(rgb)
    mask = skin_mask(
        rgb,
        exclude_center=LESION_CENTER_RADIUS if lesion_photo else 0.0,
        drop_darkest=LESION_DROP_DARKEST if lesion_photo else 0.0,
        lab=lab,
    )
    fraction = float(mask.mean())
    value = _ita_from_lab(lab, mask) if fraction >= MIN_SKIN_FRACTION else None
    if value is None:
        if fraction < MIN_SKIN_FRACTION:
            why = "no skin found: take the photo closer to the skin, in even daylight"
        elif int(mask.sum()) < MIN_SKIN_PIXELS:
            why = f"no skin found: the image is too small (fewer than {MIN_SKIN_PIXELS} skin pixels)"
        else:
            why = "no skin found: the colours have no skin-like yellow (a strong blue or grey cast?)"
        return {"ita": None, "chardon": None, "bucket": None, "skin_fraction": fraction, "message": why}
    return {
        "ita": value,
        "chardon": chardon_category(value),
        "bucket": bucket_from_ita(value),
        "skin_fraction": fraction,
        "message": "ok",
    }


# --- how far the estimate agrees with dermatologists' labels -----------------------
#: Written by ``bench/pad_ita_correlation.py``; read by the model card and the app's fairness card.
TONE_AGREEMENT_PATH = Path(__file__).with_name("tone_agreement.json")
TONE_AGREEMENT_SCHEMA = 1


@dataclass(frozen=True)
class ToneAgreement:
    """How often the estimated (ITA) bucket equals the Fitzpatrick bucket, on images that have both.

    The estimate is what every builder writes as ``tone_bucket_estimated``
    (``dataset_scripts/_base.py``); the labels are the dataset's own Fitzpatrick
    types, bucketed by :func:`bucket_from_fitzpatrick`. ``agreement`` is the share
    of the ``n`` images whose two buckets are equal, with a percentile bootstrap
    interval (``n_boot`` resamples); ``cohen_kappa`` is that agreement beyond
    chance (scikit-learn, unweighted); ``spearman_rho`` ranks ITA against the
    Fitzpatrick type (negative when the two agree: a darker type, a lower angle).
    """

    dataset: str
    #: images with a Fitzpatrick label and an estimate
    n: int
    #: images with a Fitzpatrick label (``n_labelled - n`` had too little skin for an estimate)
    n_labelled: int
    agreement: MetricCI
    cohen_kappa: float | None
    spearman_rho: float | None
    spearman_p: float | None
    #: Fitzpatrick bucket → estimated bucket → images
    confusion: dict[str, dict[str, int]]
    n_boot: int

    def sentence(self) -> str:
        """One line for a card: the figure, its interval and its n."""
        a = self.agreement
        ci = f" (95% CI {a.ci_low:.0%}–{a.ci_high:.0%})" if a.has_ci else ""
        kappa = f", Cohen's κ {self.cohen_kappa:.2f} (0 = chance)" if self.cohen_kappa is not None else ""
        value = "n/a" if a.value is None else f"{a.value:.0%}"
        return (
            f"The estimated skin-tone bucket (ITA from the photo's skin pixels) matched the Fitzpatrick "
            f"bucket the dataset records for {value}{ci} of {self.n} {self.dataset} photos{kappa}: "
            "a rough guide to tone, not a measurement."
        )

    def to_dict(self) -> dict:
        return {"schema_version": TONE_AGREEMENT_SCHEMA, **to_jsonable({f.name: getattr(self, f.name)
                                                                         for f in fields(self)})}

    @classmethod
    def from_dict(cls, d: dict) -> ToneAgreement:
        if d.get("schema_version") != TONE_AGREEMENT_SCHEMA:
            raise ValueError(f"tone agreement schema {d.get('schema_version')!r}, expected {TONE_AGREEMENT_SCHEMA}")
        missing = [f.name for f in fields(cls) if f.name not in d]
        if missing:
            raise ValueError(f"tone agreement lacks {', '.join(missing)}")
        values = {f.name: d[f.name] for f in fields(cls)}
        values["agreement"] = MetricCI.from_dict(d["agreement"])
        return cls(**values)


@functools.lru_cache(maxsize=4)
def load_tone_agreement(path=TONE_AGREEMENT_PATH) -> ToneAgreement:
    """The measured ITA-vs-Fitzpatrick agreement (:class:`ToneAgreement`) from its JSON file
    (read once per path: every fairness card states it)."""
    with open(path) as f:
        data = json.load(f)
    try:
        return ToneAgreement.from_dict(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}; regenerate it with bench/pad_ita_correlation.py") from e
