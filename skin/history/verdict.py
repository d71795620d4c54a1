"""Did the skin change? Verdicts per score that know the score's own test-retest noise.

There is no longitudinal labelled data, so a verdict is a measured comparison:

1. **Noise.** :func:`retest_noise` re-scores small, realistic variations of
   the same photo (:func:`variations`: a tighter and a shifted crop, a little
   darker and brighter, a JPEG re-save) and keeps each score's standard
   deviation across them, ``σ``: how much the score moves when nothing about
   the skin changed. It is stored with the entry (never below the score's
   noise floor, :mod:`skin.history.scores`).
2. **Change.** Over two entries the change is ``b − a``; over a series it is
   the weighted least-squares trend (weights ``1/σ²``) times the time the
   series spans, whose standard deviation is ``sd = T / sqrt(Σ wᵢ (tᵢ − t̄)²)``.
   For two entries this is exactly ``b − a`` with ``sd = sqrt(σa² + σb²)``, so
   one rule serves both.
3. **Verdict.** The change counts only when ``|change| > noise`` with
   ``noise = K · sd``, :data:`K` = 1.96: were the skin unchanged and the
   retest errors normal, a change this large would appear by chance in 5 % of
   comparisons. Then ``improved`` / ``deteriorated`` by the score's better
   direction, or ``changed`` for a score without one; else ``no meaningful
   change``.
4. **Comparability.** Entries of different photo type or tone bucket, or
   with a photo-quality flag on one side only, are ``not comparable``: a dark
   photo against a bright one is a photo difference, not a skin change. The
   tone buckets are held against each other only when both entries were read
   the same way (:data:`TONE_READING`, kept in ``models``): across a change of
   how the app reads the tone, a bucket can move with no change of the light,
   so the pair is compared with a ``note`` saying the buckets were not. A
   score missing from an entry (its model did not read that photo: another
   photo type, no face found, the model unavailable) is not comparable alone,
   nor is a score its model scored in two versions (an updated model, or its
   input framed differently: ``models`` of each entry), since the update can
   move the score by itself. An entry saved before versions were kept has none:
   its scores are compared, with a note that they cannot be checked.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from skin.history.scores import ScoreDef, score_definition, score_model

K = 1.96
IMPROVED = "improved"
DETERIORATED = "deteriorated"
CHANGED = "changed"
NO_CHANGE = "no meaningful change"
NOT_COMPARABLE = "not comparable"
VERDICTS = (IMPROVED, DETERIORATED, CHANGED, NO_CHANGE, NOT_COMPARABLE)

#: The key in an entry's ``models`` under which it keeps the version of the app's tone reading
#: (:func:`skin.service.views.tone_version`). Score names cannot hold it: it contains their separator.
TONE_READING = "tone:reading"

#: Share of each side a crop variation cuts: a re-framed shot of the same spot.
CROP_FRACTION = 0.04
#: Brightness factors: the exposure difference between two phone shots of one scene.
BRIGHTNESS = (0.93, 1.07)
#: Quality of the JPEG re-save (a messaging app's recompression).
JPEG_QUALITY = 85


class Scored(Protocol):
    """What a verdict reads from an entry (:class:`skin.history.store.Entry` has it)."""

    saved_at: object
    scores: Mapping[str, float]
    noise: Mapping[str, float]
    photo_type: str
    tone_bucket: str | None
    quality_flags: Sequence[str]
    models: Mapping[str, str]


@dataclass(frozen=True)
class ScoreVerdict:
    """One score's verdict: the change (newest minus oldest, or the trend over the series), the noise
    it was held against (``K · sd``) and, for ``not comparable`` or a missing score, why."""

    score: str
    verdict: str
    change: float
    noise: float
    reason: str = ""


@dataclass(frozen=True)
class Comparison:
    """The verdicts of a comparison; ``comparable`` is false (with ``reason``) when the photos differ."""

    comparable: bool
    reason: str
    verdicts: dict[str, ScoreVerdict]
    #: what was not checked although the pair is comparable ("" when everything was)
    note: str = ""

    def to_dict(self) -> dict:
        """The ``/compare`` answer: ``{"verdicts": {score: {...}}, "comparable", "reason", "note"}``."""
        return {"verdicts": {name: {k: v for k, v in asdict(sv).items() if k != "score"}
                             for name, sv in self.verdicts.items()},
                "comparable": self.comparable, "reason": self.reason, "note": self.note}


# ---------------- noise ----------------
def variations(image) -> list:
    """Small, realistic variations of a PIL photo that leave the skin as it is."""
    from PIL import Image, ImageEnhance

    rgb = image.convert("RGB")
    w, h = rgb.size
    dx, dy = round(w * CROP_FRACTION), round(h * CROP_FRACTION)
    jpeg = io.BytesIO()
    rgb.save(jpeg, "JPEG", quality=JPEG_QUALITY)
    jpeg.seek(0)
    return [
        rgb.crop((dx, dy, w - dx, h - dy)),
        rgb.crop((0, 0, w - 2 * dx, h - 2 * dy)),
        *(ImageEnhance.Brightness(rgb).enhance(f) for f in BRIGHTNESS),
        Image.open(jpeg).convert("RGB"),
    ]


def retest_noise(scorer: Callable[[object], Mapping[str, float]], image,
                 first: Mapping[str, float] | None = None) -> dict[str, float]:
    """``{score: σ}``: each score's standard deviation over the photo and its :func:`variations`.

    ``scorer`` maps a PIL image to ``{score: value}`` (the app's models, or a
    stand-in in tests); ``first``: the photo's own scores when already known.
    A score some variation lacks (its model did not read it: no face found) gets the spread
    of the values it has.
    """
    runs = [dict(first) if first is not None else dict(scorer(image))]
    runs += [dict(scorer(v)) for v in variations(image)]
    names = sorted({n for r in runs for n in r})
    out = {}
    for name in names:
        values = [r[name] for r in runs if name in r]
        out[name] = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return out


# ---------------- comparing ----------------
def comparability(a: Scored, b: Scored) -> str:
    """Why ``a`` and ``b`` cannot be compared ("" when they can); a quality flag is named before the tone
    bucket, since a badly exposed photo also moves its tone estimate."""
    if a.photo_type != b.photo_type:
        return f"different photo type ({a.photo_type} vs {b.photo_type})"
    one_sided = sorted(set(a.quality_flags) ^ set(b.quality_flags))
    if one_sided:
        return (f"photo-quality flag on one side only ({', '.join(one_sided)}): a photo difference, "
                "not a skin change; retake the photo in the same light")
    if a.tone_bucket != b.tone_bucket and tone_reading(a) == tone_reading(b):
        return (f"different skin-tone estimate ({a.tone_bucket or 'none'} vs {b.tone_bucket or 'none'}): "
                "the light or the camera differs, which changes every score")
    return ""


def tone_reading(entry: Scored) -> str | None:
    """The version of the tone reading ``entry`` was given (``None``: saved before versions were kept)."""
    return (getattr(entry, "models", None) or {}).get(TONE_READING)


def tone_note(series: Sequence[Scored]) -> str:
    """Why the tone buckets of ``series`` were not held against each other ("" when they were)."""
    buckets = {e.tone_bucket for e in series}
    if len(buckets) < 2 or len({tone_reading(e) for e in series}) < 2:
        return ""
    shown = " vs ".join(sorted(b or "none" for b in buckets))
    return (f"skin-tone estimates not compared ({shown}): the app changed how it reads the tone between "
            "these entries, which can move the bucket by itself")


def compare(entries: Sequence[Scored], define: Callable[[str], ScoreDef] = score_definition) -> Comparison:
    """Verdict per score over ``entries`` (two or more, in any order; sorted by ``saved_at``)."""
    if len(entries) < 2:
        raise ValueError("a comparison needs at least two entries")
    series = sorted(entries, key=lambda e: e.saved_at)
    why = next((r for e in series[1:] if (r := comparability(series[0], e))), "")
    names = sorted({n for e in series for n in e.scores})
    verdicts = {name: _score_verdict(series, define(name), why) for name in names}
    return Comparison(comparable=not why, reason=why, verdicts=verdicts, note="" if why else tone_note(series))


def _times(series: Sequence[Scored]) -> np.ndarray:
    """Seconds since the first entry; the entries' order when their times do not differ."""
    try:
        t = np.array([(e.saved_at - series[0].saved_at).total_seconds() for e in series], dtype=np.float64)
    except (TypeError, AttributeError):
        t = np.zeros(len(series))
    return t if np.ptp(t) > 0 else np.arange(len(series), dtype=np.float64)


def _score_verdict(series: Sequence[Scored], spec: ScoreDef, not_comparable: str) -> ScoreVerdict:
    missing = sum(spec.name not in e.scores for e in series)
    if missing:
        return ScoreVerdict(spec.name, NOT_COMPARABLE, math.nan, math.nan,
                            f"not scored in {missing} of {len(series)} entries: its model did not read "
                            "that photo (another photo type, no face found, or the model unavailable)")
    y = np.array([e.scores[spec.name] for e in series], dtype=np.float64)
    sd = measurement_sd([e.noise.get(spec.name, math.nan) for e in series], spec)
    change, change_sd = trend_change(_times(series), y, sd)
    noise = K * change_sd
    versions, note = model_versions(series, spec.name)
    if not_comparable or len(versions) > 1:
        return ScoreVerdict(spec.name, NOT_COMPARABLE, change, noise, not_comparable or (
            f"scored by {len(versions)} versions of its model (the app's model was updated): the update "
            "alone can move the score"))
    if abs(change) <= noise:
        return ScoreVerdict(spec.name, NO_CHANGE, change, noise, note)
    if spec.better is None:
        return ScoreVerdict(spec.name, CHANGED, change, noise, "; ".join(
            r for r in ("this score has no better direction", note) if r))
    better = change > 0 if spec.better == "higher" else change < 0
    return ScoreVerdict(spec.name, IMPROVED if better else DETERIORATED, change, noise, note)


def model_versions(series: Sequence[Scored], score: str) -> tuple[set[str], str]:
    """The versions of ``score``'s model over ``series``, and a note when an entry recorded none."""
    key = score_model(score)
    recorded = [(getattr(e, "models", None) or {}).get(key) for e in series]
    unknown = sum(v is None for v in recorded)
    note = (f"{unknown} of {len(series)} entries were saved before model versions were kept: a model update "
            "in between cannot be ruled out") if unknown else ""
    return {v for v in recorded if v is not None}, note


def measurement_sd(values: Sequence[float], spec: ScoreDef) -> np.ndarray:
    """Stored σs of one score, none below the score's floor (a missing σ, NaN, counts as the floor)."""
    sd = np.array(values, dtype=np.float64)
    return np.maximum(np.nan_to_num(sd, nan=spec.noise_floor), spec.noise_floor)


def trend_change(t: np.ndarray, y: np.ndarray, sd: np.ndarray) -> tuple[float, float]:
    """(change over the span of ``t``, its standard deviation) of the weighted least-squares line."""
    w = 1.0 / sd**2
    t_mean = np.sum(w * t) / np.sum(w)
    sxx = np.sum(w * (t - t_mean) ** 2)
    slope = np.sum(w * (t - t_mean) * y) / sxx
    span = t[-1] - t[0]
    return float(slope * span), float(span / math.sqrt(sxx))
